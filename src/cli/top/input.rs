//! Keys of `ringmaster top`, turned into actions (data): what a key means
//! does not depend on the state; the model decides what an action does.

use super::model::Verb;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Up,
    Down,
    First,
    Last,
    /// Ask the daemon to do something to the selected watcher.
    Do(Verb),
    /// Yes to the pending question.
    Confirm,
    /// No to the pending question.
    Cancel,
    /// stdout+stderr → stdout → stderr in the log pane.
    CycleFilter,
    Quit,
}

/// The keys, for the help line and the docs: (keys, what).
pub(crate) const HELP: &[(&str, &str)] = &[
    ("↑↓/jk", "select"),
    ("s", "start"),
    ("x", "stop"),
    ("r", "restart"),
    ("+/-", "incr/decr"),
    ("f", "log filter"),
    ("q", "quit"),
];

/// What a key press means; None for keys that mean nothing (and releases).
pub(crate) fn action(key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            // Raw mode turns Ctrl-C into a key: it quits, as everywhere.
            KeyCode::Char('c') => Some(Action::Quit),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::Home | KeyCode::Char('g') => Action::First,
        KeyCode::End | KeyCode::Char('G') => Action::Last,
        KeyCode::Char('s') => Action::Do(Verb::Start),
        KeyCode::Char('x') => Action::Do(Verb::Stop),
        KeyCode::Char('r') => Action::Do(Verb::Restart),
        KeyCode::Char('+') | KeyCode::Char('=') => Action::Do(Verb::Incr),
        KeyCode::Char('-') | KeyCode::Char('_') => Action::Do(Verb::Decr),
        KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => Action::Confirm,
        KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => Action::Cancel,
        KeyCode::Char('f') => Action::CycleFilter,
        KeyCode::Char('q') => Action::Quit,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn arrows_and_vi_keys_select() {
        assert_eq!(action(key(KeyCode::Up)), Some(Action::Up));
        assert_eq!(action(key(KeyCode::Char('k'))), Some(Action::Up));
        assert_eq!(action(key(KeyCode::Down)), Some(Action::Down));
        assert_eq!(action(key(KeyCode::Char('j'))), Some(Action::Down));
    }

    #[test]
    fn verbs_confirmation_and_quit() {
        assert_eq!(action(key(KeyCode::Char('r'))), Some(Action::Do(Verb::Restart)));
        assert_eq!(action(key(KeyCode::Char('x'))), Some(Action::Do(Verb::Stop)));
        assert_eq!(action(key(KeyCode::Char('s'))), Some(Action::Do(Verb::Start)));
        assert_eq!(action(key(KeyCode::Char('+'))), Some(Action::Do(Verb::Incr)));
        assert_eq!(action(key(KeyCode::Char('-'))), Some(Action::Do(Verb::Decr)));
        assert_eq!(action(key(KeyCode::Char('y'))), Some(Action::Confirm));
        assert_eq!(action(key(KeyCode::Esc)), Some(Action::Cancel));
        assert_eq!(action(key(KeyCode::Char('q'))), Some(Action::Quit));
        assert_eq!(
            action(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
    }

    #[test]
    fn other_keys_and_releases_mean_nothing() {
        assert_eq!(action(key(KeyCode::Char('z'))), None);
        let mut release = key(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert_eq!(action(release), None);
    }
}

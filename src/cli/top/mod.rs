//! `ringmaster top`: a live terminal view of the daemon, in the spirit of
//! htop and `pm2 monit`. `model` is the state (pure), `view` draws it, `input`
//! turns keys into actions, `feed` talks to the daemon; this module runs the
//! loop that joins them and owns the terminal.

mod feed;
mod input;
mod model;
mod view;

use super::Conn;
use anyhow::{bail, Context as _};
use clap::Args;
use crossterm::event::{Event, EventStream};
use feed::{Feed, Request};
use futures::StreamExt;
use model::{Effect, Model};
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::unbounded_channel;

/// Updates applied before the screen is drawn again: a watcher printing
/// thousands of lines a second is drawn once per batch, not once per line.
const BATCH: usize = 1024;

#[derive(Args, Debug)]
pub struct TopArgs {
    /// The watcher to select first (default: the first by name).
    pub name: Option<String>,
    /// Seconds between two refreshes of the status and the samples.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
}

/// Runs `ringmaster top` until `q`; exit code 1 when the daemon cannot be
/// reached or the terminal cannot be used.
pub fn run_top(args: TopArgs, conn: Conn) -> ExitCode {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        eprintln!("error: ringmaster top needs a terminal (use `ringmaster status` or `stats` in scripts)");
        return ExitCode::from(1);
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the client runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let endpoint = super::client::endpoint(&conn);
    let timeout = Duration::from_secs_f64(conn.timeout.clamp(0.001, 86_400.0));
    let period = Duration::from_secs_f64(args.interval.clamp(0.1, 60.0));
    // Connect before taking the terminal over, so that an error reads plainly.
    let feed = match rt.block_on(Feed::connect(&endpoint, timeout, period)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot reach the ringmaster daemon at {endpoint}: {e:#}");
            return ExitCode::from(1);
        }
    };
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            ratatui::restore();
            eprintln!("error: cannot set up the terminal: {e}");
            return ExitCode::from(1);
        }
    };
    let model = Model::new(&endpoint, args.name);
    let result = rt.block_on(ui(&mut terminal, model, feed));
    ratatui::restore();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn now() -> f64 {
    crate::watchers::now_f64()
}

async fn ui(terminal: &mut ratatui::DefaultTerminal, mut model: Model, feed: Feed) -> anyhow::Result<()> {
    let (requests, feed_requests) = unbounded_channel();
    let (feed_updates, mut updates) = unbounded_channel();
    let task = tokio::spawn(feed.run(feed_requests, feed_updates));
    let _stop_feed = AbortOnDrop(task);
    let mut keys = EventStream::new();
    // `kill` ends it as `q` does, leaving the terminal as it was.
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    loop {
        terminal.draw(|f| view::draw(f, &model)).context("drawing")?;
        let effects = tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            key = keys.next() => match key {
                Some(Ok(Event::Key(k))) => input::action(k).map(|a| model.handle(a)).unwrap_or_default(),
                // A resize (or anything else) only needs the redraw.
                Some(Ok(_)) => Vec::new(),
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                None => return Ok(()),
            },
            update = updates.recv() => {
                let Some(u) = update else { bail!("lost the connection to the daemon") };
                let mut effects = model.apply(u, now());
                for _ in 0..BATCH {
                    let Ok(u) = updates.try_recv() else { break };
                    effects.extend(model.apply(u, now()));
                }
                effects
            }
        };
        for e in effects {
            // A send fails only when the feed has ended; the next recv says so.
            let _ = match e {
                Effect::Quit => return Ok(()),
                Effect::Follow(name) => requests.send(Request::Follow(name)),
                Effect::Send(cmd) => requests.send(Request::Send(cmd)),
            };
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

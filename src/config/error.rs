//! Config errors: each names the file, line, column and key, with a source
//! excerpt when the file is TOML (rendered by miette).
//!
//! A file can hold thousands of mistakes, so every error about one file
//! shares its text ([`Source`]) instead of copying it, and a report keeps
//! only the first [`MAX_REPORTED`] errors plus a count of the rest.

use miette::{Diagnostic, NamedSource, SourceSpan};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// Errors shown in one report; the rest are counted ("and N more errors").
pub const MAX_REPORTED: usize = 50;

/// An excerpt is left out when the lines around the error are longer than
/// this: the location is in the message, and a report stays small even for a
/// file written on one enormous line.
const MAX_EXCERPT_BYTES: usize = 4096;

/// The text of one config file, shared by every error about it.
#[derive(Clone, Debug)]
pub struct Source {
    path: String,
    text: Arc<str>,
    named: NamedSource<Arc<str>>,
}

impl Source {
    pub fn new(path: &Path, text: &str) -> Self {
        let path = path.display().to_string();
        let text: Arc<str> = Arc::from(text);
        let named = NamedSource::new(path.clone(), text.clone()).with_language("toml");
        Source { path, text, named }
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct ConfigError {
    pub message: String,
    /// `file:line:col` (or `file:line` for ini), for one-line renderings.
    pub location: String,
    /// The dotted TOML key the error is about, when known.
    pub key: Option<String>,
    #[source_code]
    src: Option<NamedSource<Arc<str>>>,
    #[label("{label}")]
    span: Option<SourceSpan>,
    label: String,
    #[help]
    help: Option<String>,
    #[related]
    pub related: Vec<ConfigError>,
}

impl ConfigError {
    /// An error about a byte range of a TOML source.
    pub fn at(src: &Source, span: Range<usize>, message: impl Into<String>) -> Self {
        let text = src.text();
        let start = floor_char_boundary(text, span.start.min(text.len()));
        let end = floor_char_boundary(text, span.end.clamp(start, text.len()));
        let (line, col) = line_col(text, start);
        let key = key_at(text, start);
        let label = match &key {
            Some(k) => format!("here, in {k}"),
            None => "here".to_string(),
        };
        let mut message = message.into();
        if let Some(k) = &key {
            if !message.contains(k.as_str()) {
                message = format!("{k}: {message}");
            }
        }
        let excerpt = excerpt_is_small(text, start, end);
        ConfigError {
            location: format!("{}:{line}:{col}", src.path),
            message,
            key,
            src: excerpt.then(|| src.named.clone()),
            span: excerpt.then(|| SourceSpan::from(start..end)),
            label,
            help: None,
            related: Vec::new(),
        }
    }

    /// An error with a location but no source excerpt (ini files, I/O).
    pub fn plain(location: impl Into<String>, message: impl Into<String>) -> Self {
        let location = location.into();
        // Without a source excerpt the location must be part of the message.
        ConfigError {
            message: format!("{location}: {}", message.into()),
            location,
            key: None,
            src: None,
            span: None,
            label: String::new(),
            help: None,
            related: Vec::new(),
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Several errors reported together (the first leads); at most
    /// [`MAX_REPORTED`] are kept, and `also_dropped` errors that were never
    /// built are counted with the ones cut here.
    pub fn many_with(mut errors: Vec<ConfigError>, also_dropped: usize) -> Option<ConfigError> {
        if errors.is_empty() {
            return None;
        }
        let mut dropped = also_dropped;
        if errors.len() > MAX_REPORTED {
            dropped += errors.len() - MAX_REPORTED;
            errors.truncate(MAX_REPORTED);
        }
        let mut first = errors.remove(0);
        if dropped > 0 {
            let file = first.location.split(':').next().unwrap_or_default().to_string();
            errors.push(ConfigError::plain(
                file,
                format!("and {dropped} more error{}", if dropped == 1 { "" } else { "s" }),
            ));
        }
        first.related.extend(errors);
        Some(first)
    }

    /// Several errors reported together (the first leads).
    pub fn many(errors: Vec<ConfigError>) -> Option<ConfigError> {
        Self::many_with(errors, 0)
    }

    /// This error and its related ones, flattened.
    pub fn all(&self) -> Vec<&ConfigError> {
        let mut out = vec![self];
        for r in &self.related {
            out.extend(r.all());
        }
        out
    }

    /// The message without a leading `location: `.
    pub fn bare_message(&self) -> &str {
        self.message
            .strip_prefix(self.location.as_str())
            .and_then(|m| m.strip_prefix(": "))
            .unwrap_or(&self.message)
    }

    /// Every error on its own line: `file:line:col: message`.
    pub fn one_line_each(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .map(|e| format!("{}: {}", e.location, e.bare_message()))
            .collect()
    }
}

/// Collects the errors of one check, building only the first
/// [`MAX_REPORTED`] (locating an error scans the source) and counting the rest.
#[derive(Debug, Default)]
pub struct Errors {
    kept: Vec<ConfigError>,
    dropped: usize,
}

impl Errors {
    pub fn push_with(&mut self, build: impl FnOnce() -> ConfigError) {
        if self.kept.len() < MAX_REPORTED {
            self.kept.push(build());
        } else {
            self.dropped += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.kept.len() + self.dropped
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn into_error(self) -> Option<ConfigError> {
        ConfigError::many_with(self.kept, self.dropped)
    }
}

/// Renders all errors in one string, one per line, for logs and control replies.
pub struct OneLine<'a>(pub &'a ConfigError);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.one_line_each().join("; "))
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Whether the lines miette would show around `start..end` are short enough.
fn excerpt_is_small(src: &str, start: usize, end: usize) -> bool {
    let bytes = src.as_bytes();
    // One line of context on each side, as miette's default handler shows.
    let mut from = start;
    for _ in 0..2 {
        from = bytes[..from].iter().rposition(|&b| b == b'\n').unwrap_or(0);
    }
    let mut to = end;
    for _ in 0..2 {
        to = match bytes[to.min(bytes.len())..].iter().position(|&b| b == b'\n') {
            Some(i) => (to + i + 1).min(bytes.len()),
            None => bytes.len(),
        };
    }
    to.saturating_sub(from) <= MAX_EXCERPT_BYTES
}

pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src.as_bytes()[..offset];
    let line = memchr::memchr_iter(b'\n', before).count() + 1;
    let line_start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (line, col)
}

/// The dotted key (`table.key`, segments quoted where TOML needs it, as
/// `circus_ini::key_path` writes them) whose key or value holds `offset`.
/// It is looked up in the parsed document, so a multi-line string with a
/// line that looks like `[table]` cannot mislead it; text that does not
/// parse falls back to reading the lines around the offset.
pub fn key_at(src: &str, offset: usize) -> Option<String> {
    if let Ok(doc) = toml::de::DeTable::parse(src) {
        let mut path = Vec::new();
        if key_in_table(doc.get_ref(), offset, &mut path) {
            return Some(path.join("."));
        }
    }
    key_at_lines(src, offset)
}

fn holds(span: Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end
}

/// Pushes onto `path` the keys down to the innermost entry holding `offset`.
fn key_in_table(t: &toml::de::DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (k, v) in t.iter() {
        path.push(crate::config::circus_ini::key_path(&[k.get_ref()]));
        if key_in_value(v.get_ref(), offset, path) || holds(k.span(), offset) || holds(v.span(), offset) {
            return true;
        }
        path.pop();
    }
    false
}

fn key_in_value(v: &toml::de::DeValue<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    match v {
        toml::de::DeValue::Table(t) => key_in_table(t, offset, path),
        // An array of tables names its elements by the array's key.
        toml::de::DeValue::Array(a) => a.iter().any(|e| key_in_value(e.get_ref(), offset, path)),
        toml::de::DeValue::String(_)
        | toml::de::DeValue::Integer(_)
        | toml::de::DeValue::Float(_)
        | toml::de::DeValue::Boolean(_)
        | toml::de::DeValue::Datetime(_) => false,
    }
}

/// [`key_at`] for text that does not parse: the nearest `[table]` line above
/// and the key of the offset's own line.
fn key_at_lines(src: &str, offset: usize) -> Option<String> {
    let offset = floor_char_boundary(src, offset.min(src.len()));
    let line_start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[offset..].find('\n').map_or(src.len(), |i| offset + i);
    let line = src[line_start..line_end].trim();
    let mut table = None;
    for l in src[..line_start].lines().rev() {
        let t = l.trim();
        if t.starts_with('[') {
            table = Some(t.trim_start_matches('[').trim_end_matches(']').trim().to_string());
            break;
        }
    }
    if line.starts_with('[') {
        return Some(
            line.trim_start_matches('[')
                .trim_end_matches(']')
                .trim()
                .to_string(),
        );
    }
    match (table, line_key(line)) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k.to_string()),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}

/// The key of a `key = value` line as written (quoted keys keep their
/// quotes, so `"A=B" = 1` is the key `"A=B"`), or None without a `=`.
fn line_key(line: &str) -> Option<&str> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some(_), _) if escaped => escaped = false,
            (Some('"'), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '=') => {
                let k = line[..i].trim();
                return (!k.is_empty()).then_some(k);
            }
            (None, _) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_share_the_source_and_are_capped() {
        let text = "x = 1\n".repeat(10_000);
        let src = Source::new(Path::new("big.toml"), &text);
        let mut errors = Errors::default();
        for i in 0..5_000 {
            errors.push_with(|| ConfigError::at(&src, i * 6..i * 6 + 1, "bad"));
        }
        let e = errors.into_error().unwrap();
        let lines = e.one_line_each();
        assert_eq!(lines.len(), MAX_REPORTED + 1, "{lines:?}");
        assert!(
            lines[MAX_REPORTED].ends_with("and 4950 more errors"),
            "{}",
            lines[MAX_REPORTED]
        );
        // One copy of the text, shared by the source and every error.
        assert_eq!(Arc::strong_count(&src.text), MAX_REPORTED + 2);
        let rendered = format!("{:?}", miette::Report::new(e));
        assert!(rendered.len() < 50 * 1024, "{}", rendered.len());
    }

    #[test]
    fn a_line_inside_a_multiline_string_is_not_a_table_header() {
        let src = "[ringmaster]\npubsub_endpoint = \"\"\"\n[circus]\nx\"\"\"\nstats_endpoint = \"bad\"\n";
        let at = src.find("\"bad").unwrap();
        assert_eq!(key_at(src, at).as_deref(), Some("ringmaster.stats_endpoint"));
        let inside = src.find("[circus]").unwrap();
        assert_eq!(key_at(src, inside).as_deref(), Some("ringmaster.pubsub_endpoint"));
    }

    #[test]
    fn keys_of_inline_tables_and_arrays_of_tables() {
        let src =
            "[watchers.web]\nready = { type = \"tcp\", port = 1 }\n[[watchers.web.hooks]]\ncmd = \"x\"\n";
        assert_eq!(
            key_at(src, src.find("1 }").unwrap()).as_deref(),
            Some("watchers.web.ready.port")
        );
        assert_eq!(
            key_at(src, src.find("\"x\"").unwrap()).as_deref(),
            Some("watchers.web.hooks.cmd")
        );
        // Unparseable text: read from the lines.
        assert_eq!(key_at("[a]\nb = = 1\n", 5).as_deref(), Some("a.b"));
    }

    #[test]
    fn keys_of_lines() {
        let src = "[env]\n\"A=B\" = \"1\"\nplain = 2\n";
        assert_eq!(key_at(src, 7).as_deref(), Some("env.\"A=B\""));
        assert_eq!(key_at(src, 20).as_deref(), Some("env.plain"));
        assert_eq!(key_at(src, 1).as_deref(), Some("env"));
    }

    #[test]
    fn no_excerpt_for_an_enormous_line() {
        let text = format!("x = \"{}\"\ny = 1\n", "a".repeat(100_000));
        let src = Source::new(Path::new("long.toml"), &text);
        let e = ConfigError::at(&src, 2..3, "bad");
        assert_eq!(e.location, "long.toml:1:3");
        let rendered = format!("{:?}", miette::Report::new(e));
        assert!(rendered.len() < 4096, "{}", rendered.len());
    }
}

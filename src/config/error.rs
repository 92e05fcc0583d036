//! Config errors: each names the file, line, column and key, with a source
//! excerpt when the file is TOML (rendered by miette).

use miette::{Diagnostic, NamedSource, SourceSpan};
use std::fmt;
use std::ops::Range;
use std::path::Path;

#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct ConfigError {
    pub message: String,
    /// `file:line:col` (or `file:line` for ini), for one-line renderings.
    pub location: String,
    #[source_code]
    src: Option<NamedSource<String>>,
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
    pub fn at(path: &Path, src: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        let (line, col) = line_col(src, span.start);
        let message = message.into();
        let key = key_at(src, span.start);
        let label = match &key {
            Some(k) => format!("here, in {k}"),
            None => "here".to_string(),
        };
        let mut message = message;
        if let Some(k) = key {
            if !message.contains(&k) {
                message = format!("{k}: {message}");
            }
        }
        ConfigError {
            location: format!("{}:{line}:{col}", path.display()),
            message,
            src: Some(NamedSource::new(path.display().to_string(), src.to_string()).with_language("toml")),
            span: Some(SourceSpan::from(span.start..span.end.max(span.start))),
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

    /// Several errors reported together (the first leads).
    pub fn many(mut errors: Vec<ConfigError>) -> Option<ConfigError> {
        if errors.is_empty() {
            return None;
        }
        let mut first = errors.remove(0);
        first.related.extend(errors);
        Some(first)
    }

    /// Every error on its own line: `file:line:col: message`.
    pub fn one_line_each(&self) -> Vec<String> {
        let first = if self.message.starts_with(&self.location) {
            self.message.clone()
        } else {
            format!("{}: {}", self.location, self.message)
        };
        let mut out = vec![first];
        for r in &self.related {
            out.extend(r.one_line_each());
        }
        out
    }
}

/// Renders all errors in one string, one per line, for logs and control replies.
pub struct OneLine<'a>(pub &'a ConfigError);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.one_line_each().join("; "))
    }
}

pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (line, col)
}

/// The dotted key at a byte offset: the enclosing `[table]` plus the key on that line.
pub fn key_at(src: &str, offset: usize) -> Option<String> {
    let offset = offset.min(src.len());
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
    let key = line
        .split('=')
        .next()
        .map(|k| k.trim().trim_matches('"').to_string());
    match (table, key) {
        (Some(t), Some(k)) if !k.is_empty() && line.contains('=') => Some(format!("{t}.{k}")),
        (None, Some(k)) if !k.is_empty() && line.contains('=') => Some(k),
        (Some(t), _) => Some(t),
        _ => None,
    }
}

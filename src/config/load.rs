//! Reading a config file: TOML directly, a Circus ini file through the
//! converter, with errors mapped back to the ini lines.

use super::error::{self, ConfigError};
use super::model::ConfigFile;
use super::{circus_ini, ini, resolve, Config, Format};
use std::collections::BTreeMap;
use std::path::Path;

/// Reads, parses and validates a config file.
pub fn load(path: &Path, format: Option<Format>) -> Result<Config, ConfigError> {
    let format = format.unwrap_or_else(|| Format::guess(path));
    match format {
        Format::Toml => {
            let bytes = std::fs::read(path).map_err(|e| {
                ConfigError::plain(
                    path.display().to_string(),
                    format!("cannot read config file: {e}"),
                )
            })?;
            let src = String::from_utf8(bytes).map_err(|e| {
                let valid = e.utf8_error().valid_up_to();
                // Located by the valid text before the first bad byte.
                let before = String::from_utf8_lossy(&e.as_bytes()[..valid]);
                let (line, col) = error::line_col(&before, valid);
                ConfigError::plain(
                    format!("{}:{line}:{col}", path.display()),
                    "the file is not valid UTF-8 (TOML files must be)",
                )
            })?;
            load_toml_str(path, &src)
        }
        Format::Ini => load_ini(path),
    }
}

fn load_ini(path: &Path) -> Result<Config, ConfigError> {
    use circus_ini::Severity;
    let converted = circus_ini::convert(path).map_err(|e| match e {
        ini::IniError::Syntax(errs) => ConfigError::many_with(
            errs.iter()
                .take(error::MAX_REPORTED)
                .map(|s| ConfigError::plain(s.location.to_string(), s.message.clone()))
                .collect(),
            errs.len().saturating_sub(error::MAX_REPORTED),
        )
        .unwrap_or_else(|| ConfigError::plain(path.display().to_string(), "syntax error")),
        other => ConfigError::plain(path.display().to_string(), other.to_string()),
    })?;
    let mut errors = error::Errors::default();
    for d in converted
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
    {
        errors.push_with(|| ConfigError::plain(d.location.to_string(), d.message.clone()));
    }
    if let Some(e) = errors.into_error() {
        return Err(e);
    }
    let text = circus_ini::to_toml_string(&converted.table);
    // Checked as TOML; an error is reported at the ini line its key came from.
    let mut cfg = load_toml_str(path, &text).map_err(|e| {
        let located: Vec<ConfigError> = e
            .all()
            .into_iter()
            .map(|err| {
                let loc = err
                    .key
                    .as_deref()
                    .and_then(|key| ini_origin(&converted.provenance, key))
                    .map_or_else(|| path.display().to_string(), |l| l.to_string());
                ConfigError::plain(loc, err.bare_message())
            })
            .collect();
        ConfigError::many(located).unwrap_or(e)
    })?;
    cfg.warnings.extend(
        converted
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .map(|d| format!("{}: {}", d.location, d.message)),
    );
    Ok(cfg)
}

/// The ini line a converted TOML key came from: the longest recorded key
/// that is the key itself or one of its parent tables.
fn ini_origin<'a>(
    provenance: &'a BTreeMap<String, circus_ini::Location>,
    key: &str,
) -> Option<&'a circus_ini::Location> {
    let mut k = key;
    loop {
        if let Some(l) = provenance.get(k) {
            return Some(l);
        }
        // Drop the last segment; a quoted segment may itself hold dots.
        k = &k[..last_dot(k)?];
    }
}

/// The byte index of the last `.` of a dotted key outside quotes.
fn last_dot(key: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut last = None;
    let mut escaped = false;
    for (i, c) in key.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '.' if !in_quotes => last = Some(i),
            _ => {}
        }
    }
    last
}

/// Parses and validates TOML text; `path` is used in messages.
pub fn load_toml_str(path: &Path, src: &str) -> Result<Config, ConfigError> {
    let source = error::Source::new(path, src);
    let file: ConfigFile = toml::from_str(src).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        ConfigError::at(&source, span, e.message().trim().to_string())
    })?;
    resolve::resolve(path, &source, file)
}

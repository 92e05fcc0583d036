//! Circus's ini dialect, read the way `circus.util.StrictConfigParser` and
//! `circus.config.read_config` read it (Circus 0.19), so that an existing
//! `circus.ini` means exactly what it meant under circusd.
//!
//! We do not use `rust-ini`: it keeps inline `; comments` in values, breaks on
//! `rem` lines, keeps duplicate sections apart and has no line numbers.
//!
//! Rules (each mirrors a line of `StrictConfigParser._read`):
//! * Lines end at `\n`, `\r\n` or a lone `\r` (Python's universal newlines).
//! * A blank line, or a line whose *first character* is `#` or `;`, is a comment.
//!   So is a line whose first word is `rem` in any case (`rem = 1` too), when
//!   the line starts with `r`/`R`.
//! * A line starting with whitespace continues the previous key's value: it is
//!   stripped and appended after a `\n` (so an indented `# x` is *not* a comment).
//! * `[anything]` starts a section; the name runs to the *last* `]` of the line,
//!   unstripped. A section seen again (in any file) continues the first one.
//! * Otherwise the line is `key = value` or `key: value`, split at the first
//!   `=` or `:`. Keys keep their case. Only the first `;` of a value is looked
//!   at: it starts a comment when the character before it is whitespace (at
//!   index 0, Python's `value[-1]`, the value's last character, is checked).
//!   `""` is the empty string.
//! * A key already set in the section keeps its first value. Continuation
//!   lines after such a duplicate still extend the *first* value when it comes
//!   from the same file (Circus appends to the same list); Circus crashes when
//!   it comes from an earlier file, so there we ignore them with a warning.
//! * `[DEFAULT]` keys show through in every section that lacks them.
//! * `[circus] include` / `include_dir` are read from the main file only (no
//!   recursion), expanded against the process environment, and resolved
//!   against the main file's directory.

mod env;

pub use env::{expand_dollar_upper, EnvMap, FoldedEnv, OverlayEnv};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where something was written: the file and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl Location {
    pub fn new(file: impl Into<PathBuf>, line: usize) -> Self {
        Location {
            file: file.into(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A problem that stops the file from being read at all.
#[derive(Debug, thiserror::Error)]
pub enum IniError {
    #[error("{}: cannot read the configuration file: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", join_lines(.0))]
    Syntax(Vec<SyntaxError>),
}

/// One line that is neither a section, a `key = value`, a comment nor a
/// continuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

fn join_lines(errors: &[SyntaxError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Something the reader accepted but the user should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub location: Location,
    pub message: String,
}

/// `key = value`, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub location: Location,
    /// 1-based column (in characters) where the value starts on its first line.
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The header text between the brackets, exactly as written.
    pub name: String,
    /// The first header that opened it.
    pub location: Location,
    pub entries: Vec<Entry>,
    /// Key → index in `entries`, so a section with many keys reads in linear time.
    index: HashMap<String, usize>,
}

impl Section {
    fn new(name: String, location: Location) -> Self {
        Section {
            name,
            location,
            entries: Vec::new(),
            index: HashMap::new(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.index.get(key).map(|&i| &self.entries[i])
    }

    fn push(&mut self, entry: Entry) -> usize {
        let i = self.entries.len();
        self.index.insert(entry.key.clone(), i);
        self.entries.push(entry);
        i
    }
}

/// Every file read, merged as Circus merges them.
#[derive(Debug, Clone, Default)]
pub struct Document {
    sections: Vec<Section>,
    /// Section name → index in `sections`.
    section_index: HashMap<String, usize>,
    defaults: Option<Section>,
    /// Files read, in order (the main file first).
    pub files: Vec<PathBuf>,
    pub warnings: Vec<Warning>,
}

/// Circus's `DEFAULTSECT`.
pub const DEFAULT_SECTION: &str = "DEFAULT";

impl Document {
    /// Sections other than `[DEFAULT]`, in order of first appearance.
    pub fn sections(&self) -> impl Iterator<Item = &Section> {
        self.sections.iter()
    }

    /// The `[DEFAULT]` section, if the files have one.
    pub fn defaults_section(&self) -> Option<&Section> {
        self.defaults.as_ref()
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.section_index.get(name).map(|&i| &self.sections[i])
    }

    /// A section's entries followed by the `[DEFAULT]` entries it does not
    /// override (RawConfigParser.items).
    pub fn items<'a>(&'a self, section: &'a Section) -> impl Iterator<Item = &'a Entry> + 'a {
        let defaults = self
            .defaults
            .iter()
            .flat_map(|d| d.entries.iter())
            .filter(move |d| section.get(&d.key).is_none());
        section.entries.iter().chain(defaults)
    }

    /// One key of a section, falling back to `[DEFAULT]` (RawConfigParser.get).
    pub fn get(&self, section: &str, key: &str) -> Option<&Entry> {
        let s = self.section(section)?;
        s.get(key)
            .or_else(|| self.defaults.as_ref().and_then(|d| d.get(key)))
    }

    /// Reads one file into the document, merging with what is already there.
    /// Syntax errors are appended to `errors` and reading goes on, so that a
    /// user sees every bad line at once.
    pub fn read_str(&mut self, text: &str, file: &Path, errors: &mut Vec<SyntaxError>) {
        // Circus opens files as UTF-8 text, where a BOM would make line 1 bogus.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        self.files.push(file.to_path_buf());
        let mut cursect: Option<Cursor> = None;
        // The key continuation lines extend: (entry, whether it is still open).
        let mut optname: Option<Continuation> = None;
        for (i, line) in universal_lines(text).enumerate() {
            let lineno = i + 1;
            let loc = || Location::new(file, lineno);
            if line.chars().all(py_space) {
                continue;
            }
            let first = line.chars().next().unwrap_or(' ');
            if first == '#' || first == ';' {
                continue;
            }
            if (first == 'r' || first == 'R')
                && line
                    .split(py_space)
                    .next()
                    .is_some_and(|w| w.to_lowercase() == "rem")
            {
                continue;
            }
            if py_space(first) && cursect.is_some() {
                if let Some(cont) = &optname {
                    let value = line.trim_matches(py_space);
                    if !value.is_empty() {
                        self.continue_value(cont, value, loc());
                    }
                    continue;
                }
            }
            if let Some(header) = section_header(line) {
                cursect = Some(self.open_section(header, loc()));
                optname = None;
                continue;
            }
            let Some(cur) = cursect else {
                errors.push(SyntaxError {
                    location: loc(),
                    message: format!("expected a [section] header before any key, found {:?}", line),
                });
                continue;
            };
            let Some((key, value, column)) = option_line(line) else {
                errors.push(SyntaxError {
                    location: loc(),
                    message: format!(
                        "expected `key = value`, `key: value`, a [section] header, a comment \
                         (#, ; or rem) or an indented continuation line, found {:?}",
                        line
                    ),
                });
                continue;
            };
            let section = self.section_mut(cur);
            if let Some(&idx) = section.index.get(&key) {
                let first = &section.entries[idx];
                let open = first.location.file == file;
                let message = if open {
                    format!(
                        "duplicate key {key:?} in [{}]: the first value (line {}) is kept, as in Circus",
                        section.name, first.location.line
                    )
                } else {
                    format!(
                        "key {key:?} in [{}] is already set at {}; a later file cannot override it, as in Circus",
                        section.name, first.location
                    )
                };
                self.warnings.push(Warning {
                    location: loc(),
                    message,
                });
                optname = Some(Continuation {
                    section: cur,
                    entry: idx,
                    open,
                    duplicate_at: Some(lineno),
                })
                .filter(|_| !key.is_empty());
                continue;
            }
            let entry = section.push(Entry {
                key,
                value,
                location: loc(),
                column,
            });
            optname = Some(Continuation {
                section: cur,
                entry,
                open: true,
                duplicate_at: None,
            })
            // An empty key (`= x`) cannot be continued in Circus: `if optname` is false.
            .filter(|_| !section.entries[entry].key.is_empty());
        }
    }

    fn continue_value(&mut self, cont: &Continuation, value: &str, loc: Location) {
        if !cont.open {
            let section = self.section_mut(cont.section);
            let message = format!(
                "continuation line ignored: it belongs to a duplicate of {:?} in [{}] (line {}), \
                 whose value was set by an earlier file",
                section.entries[cont.entry].key,
                section.name,
                cont.duplicate_at.unwrap_or(0)
            );
            self.warnings.push(Warning {
                location: loc,
                message,
            });
            return;
        }
        let section = self.section_mut(cont.section);
        let entry = &mut section.entries[cont.entry];
        entry.value.push('\n');
        entry.value.push_str(value);
    }

    fn open_section(&mut self, name: &str, loc: Location) -> Cursor {
        if name == DEFAULT_SECTION {
            self.defaults
                .get_or_insert_with(|| Section::new(name.to_string(), loc));
            return Cursor::Defaults;
        }
        if let Some(&i) = self.section_index.get(name) {
            return Cursor::Section(i);
        }
        self.section_index.insert(name.to_string(), self.sections.len());
        self.sections.push(Section::new(name.to_string(), loc));
        Cursor::Section(self.sections.len() - 1)
    }

    fn section_mut(&mut self, cur: Cursor) -> &mut Section {
        match cur {
            Cursor::Section(i) => &mut self.sections[i],
            // open_section created it before handing out the cursor
            Cursor::Defaults => self
                .defaults
                .get_or_insert_with(|| Section::new(DEFAULT_SECTION.into(), Location::new("", 0))),
        }
    }

    /// Reads one file from disk (see [`Document::read_str`]).
    pub fn read_file(&mut self, path: &Path, errors: &mut Vec<SyntaxError>) -> Result<(), IniError> {
        let bytes = std::fs::read(path).map_err(|source| IniError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => self.read_str(&text, path, errors),
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let line = e.as_bytes()[..valid].iter().filter(|&&b| b == b'\n').count() + 1;
                errors.push(SyntaxError {
                    location: Location::new(path, line),
                    message: "the file is not valid UTF-8".to_string(),
                });
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Cursor {
    Defaults,
    Section(usize),
}

#[derive(Clone, Copy, Debug)]
struct Continuation {
    section: Cursor,
    entry: usize,
    open: bool,
    duplicate_at: Option<usize>,
}

/// Longest `include` pattern tried: four times PATH_MAX.
const MAX_INCLUDE_PATTERN: usize = 4 * 4096;
/// Most distinct `include`/`include_dir` patterns tried.
const MAX_INCLUDE_PATTERNS: usize = 1000;

/// Reads the main file and its includes, as `circus.config.read_config`.
/// `process_env` is what `$(circus.env.X)` sees in `include` values (Circus
/// expands them before `[env]` is known).
pub fn load(path: &Path, process_env: &EnvMap) -> Result<Document, IniError> {
    let mut doc = Document::default();
    let mut errors = Vec::new();
    doc.read_file(path, &mut errors)?;

    let base = path.parent().unwrap_or(Path::new(""));
    let vars = process_env.folded();
    let mut patterns: Vec<(String, Location)> = Vec::new();
    if let Some(e) = doc.get("circus", "include") {
        for p in vars.expand(&e.value).split_whitespace() {
            patterns.push((p.to_string(), e.location.clone()));
        }
    }
    if let Some(e) = doc.get("circus", "include_dir") {
        for d in vars.expand(&e.value).split_whitespace() {
            patterns.push((format!("{}/*.ini", d.trim_end_matches('/')), e.location.clone()));
        }
    }

    // Each pattern lists a directory: the same one twice is tried once, and
    // past MAX_INCLUDE_PATTERNS the rest are ignored (a mangled value split
    // into 600,000 words took seconds; found by tests/config_fuzz.rs).
    let mut unique = std::collections::HashSet::new();
    patterns.retain(|(p, _)| unique.insert(p.clone()));
    if patterns.len() > MAX_INCLUDE_PATTERNS {
        let loc = patterns[MAX_INCLUDE_PATTERNS].1.clone();
        doc.warnings.push(Warning {
            location: loc,
            message: format!(
                "{} include patterns; only the first {MAX_INCLUDE_PATTERNS} are used",
                patterns.len()
            ),
        });
        patterns.truncate(MAX_INCLUDE_PATTERNS);
    }
    let mut includes: Vec<(PathBuf, Location)> = Vec::new();
    for (pattern, loc) in patterns {
        let full = if Path::new(&pattern).is_absolute() {
            PathBuf::from(&pattern)
        } else {
            base.join(&pattern)
        };
        let full_str = full.to_string_lossy().into_owned();
        // No path is longer than PATH_MAX; a pattern can be longer only by
        // its `[...]` classes. Past that bound, matching megabytes of pattern
        // against a directory took seconds (found by tests/config_fuzz.rs).
        if full_str.len() > MAX_INCLUDE_PATTERN {
            doc.warnings.push(Warning {
                location: loc.clone(),
                message: format!(
                    "include pattern of {} bytes is longer than any path can be; ignored",
                    full_str.len()
                ),
            });
            continue;
        }
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            // Python's glob skips dot files unless the pattern names them.
            require_literal_leading_dot: true,
        };
        let matches: Vec<PathBuf> = match glob::glob_with(&full_str, options) {
            Ok(paths) => paths.filter_map(Result::ok).collect(),
            Err(e) => {
                doc.warnings.push(Warning {
                    location: loc.clone(),
                    message: format!("include pattern {full_str:?} is not a valid glob ({e}); ignored"),
                });
                continue;
            }
        };
        if matches.is_empty() {
            doc.warnings.push(Warning {
                location: loc.clone(),
                message: format!(
                    "include pattern {full_str:?} matches no file (include paths are relative to the \
                     main config file's directory)"
                ),
            });
        }
        includes.extend(matches.into_iter().map(|m| (m, loc.clone())));
    }

    let mut seen: Vec<PathBuf> = vec![canonical(path)];
    for (file, loc) in includes {
        let canon = canonical(&file);
        // Reading a file twice changes nothing (every key would be a duplicate).
        if seen.contains(&canon) {
            continue;
        }
        seen.push(canon);
        if !file.is_file() {
            doc.warnings.push(Warning {
                location: loc,
                message: format!("included path {} is not a file; ignored", file.display()),
            });
            continue;
        }
        doc.read_file(&file, &mut errors)?;
    }

    // Circus only looks at the main file's include keys.
    if let Some(circus) = doc.section("circus") {
        let main = doc.files.first().cloned().unwrap_or_default();
        let stray: Vec<Warning> = circus
            .entries
            .iter()
            .filter(|e| (e.key == "include" || e.key == "include_dir") && e.location.file != main)
            .map(|e| Warning {
                location: e.location.clone(),
                message: format!(
                    "{} in an included file is not followed (Circus reads includes from the main file only)",
                    e.key
                ),
            })
            .collect();
        doc.warnings.extend(stray);
    }

    if errors.is_empty() {
        Ok(doc)
    } else {
        Err(IniError::Syntax(errors))
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Python's `str.isspace`, which also counts the ASCII separators 0x1c-0x1f.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn universal_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.find(['\n', '\r']) {
            Some(i) => {
                let line = &rest[..i];
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
        }
    })
}

/// `\[(?P<header>.+)\]` anchored at the start: the name runs to the last `]`.
fn section_header(line: &str) -> Option<&str> {
    let inner = line.strip_prefix('[')?;
    let close = inner.rfind(']')?;
    (close > 0).then(|| &inner[..close])
}

/// `(?P<option>.*?)\s*(?P<vi>=|:)\s*(?P<value>.*)$`, then Circus's inline
/// comment and `""` handling. Returns (key, value, value column).
fn option_line(line: &str) -> Option<(String, String, usize)> {
    let delim = line.find(['=', ':'])?;
    let key = line[..delim].trim_end_matches(py_space).to_string();
    let after = &line[delim + 1..];
    let raw = after.trim_start_matches(py_space);
    let column = line[..line.len() - raw.len()].chars().count() + 1;
    let mut value = raw;
    if let Some(pos) = value.find(';') {
        let before = if pos == 0 {
            value.chars().last()
        } else {
            value[..pos].chars().last()
        };
        if before.is_some_and(py_space) {
            value = &value[..pos];
        }
    }
    let value = value.trim_matches(py_space);
    let value = if value == "\"\"" { "" } else { value };
    Some((key, value.to_string(), column))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Document, Vec<SyntaxError>) {
        let mut doc = Document::default();
        let mut errors = Vec::new();
        doc.read_str(text, Path::new("t.ini"), &mut errors);
        (doc, errors)
    }

    fn value<'a>(doc: &'a Document, s: &str, k: &str) -> Option<&'a str> {
        doc.get(s, k).map(|e| e.value.as_str())
    }

    #[test]
    fn option_lines() {
        assert_eq!(option_line("a = b").map(|o| o.1), Some("b".into()));
        assert_eq!(
            option_line("a: b = c").map(|o| (o.0, o.1)),
            Some(("a".into(), "b = c".into()))
        );
        assert_eq!(option_line("a = x ; c").map(|o| o.1), Some("x".into()));
        assert_eq!(option_line("a = x;c").map(|o| o.1), Some("x;c".into()));
        assert_eq!(option_line("a = a;b ; c").map(|o| o.1), Some("a;b ; c".into()));
        assert_eq!(option_line("a = ;x ").map(|o| o.1), Some("".into()));
        assert_eq!(option_line("a = ;x").map(|o| o.1), Some(";x".into()));
        assert_eq!(option_line("a = \"\"").map(|o| o.1), Some("".into()));
        assert_eq!(
            option_line("a = # not a comment").map(|o| o.1),
            Some("# not a comment".into())
        );
        assert_eq!(option_line("key =   v").map(|o| o.2), Some(9));
        assert!(option_line("no delimiter").is_none());
    }

    #[test]
    fn headers() {
        assert_eq!(section_header("[a]"), Some("a"));
        assert_eq!(section_header("[a] ; x]"), Some("a] ; x"));
        assert_eq!(section_header("[a] trailing"), Some("a"));
        assert_eq!(section_header("[]"), None);
        assert_eq!(section_header("[]]"), Some("]"));
        assert_eq!(section_header(" [a]"), None);
    }

    #[test]
    fn comments_continuations_duplicates() {
        let (doc, errors) = parse(
            "; c\n# c\nrem c\nREM\n[s]\nrem = 1\nremark = 2\na = 1\n  two\n\n  # three\nb = x\na = 9\n  more\n[s]\nc = 3\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(value(&doc, "s", "rem"), None);
        assert_eq!(value(&doc, "s", "remark"), Some("2"));
        assert_eq!(value(&doc, "s", "a"), Some("1\ntwo\n# three\nmore"));
        assert_eq!(value(&doc, "s", "c"), Some("3"));
        assert_eq!(doc.warnings.len(), 1);
        assert_eq!(doc.warnings[0].location.line, 13);
    }

    #[test]
    fn syntax_errors_have_lines() {
        let (_, errors) = parse("a = 1\n[s]\nok = 1\nbogus\n");
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].location.line, 1);
        assert_eq!(errors[1].location.line, 4);
    }

    #[test]
    fn defaults_show_through() {
        let (doc, _) = parse("[DEFAULT]\nx = 1\n[s]\ny = 2\n");
        let s = doc.section("s").unwrap();
        let keys: Vec<_> = doc.items(s).map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["y", "x"]);
        assert!(doc.section("DEFAULT").is_none());
    }

    #[test]
    fn universal_newlines() {
        let (doc, errors) = parse("[s]\r\na = 1\rb = 2\r\n  c\n");
        assert!(errors.is_empty());
        assert_eq!(value(&doc, "s", "b"), Some("2\nc"));
        assert_eq!(doc.get("s", "b").unwrap().location.line, 3);
    }
}

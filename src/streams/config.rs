//! `stdout_stream` / `stderr_stream` configuration tables.
//!
//! The table is deserialised as-is from TOML (`deny_unknown_fields`), then
//! checked and turned into a [`ResolvedStream`] by [`StreamConfig::resolve`].
//! Numbers and booleans are also accepted as strings, because configurations
//! imported from Circus INI files carry every value as a string.

use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Context};
use chrono::format::{Item, StrftimeItems};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::StreamKind;

/// Where the lines of one stream go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamClass {
    /// A file, optionally rotated by size (`max_bytes`) or time (`rotate_when`).
    File,
    /// Circus's `TimedRotatingFileStream`: a file rotated by time, hourly
    /// unless `rotate_when` says otherwise (Python's default).
    TimedRotatingFile,
    /// The daemon's own standard output, each line prefixed.
    Stdout,
    /// The daemon's own standard error, each line prefixed.
    Stderr,
    /// Discarded (the lines are still kept in the history and streamed).
    Null,
}

impl StreamClass {
    fn canonical(self) -> &'static str {
        match self {
            StreamClass::File => "file",
            StreamClass::TimedRotatingFile => "TimedRotatingFileStream",
            StreamClass::Stdout => "stdout",
            StreamClass::Stderr => "stderr",
            StreamClass::Null => "null",
        }
    }

    fn parse(s: &str) -> Option<StreamClass> {
        // Circus also takes a dotted path such as `circus.stream.FileStream`;
        // the built-in classes are recognised by their last component.
        let name = s.trim().rsplit('.').next().unwrap_or("").to_ascii_lowercase();
        Some(match name.as_str() {
            "file" | "filestream" | "watchedfilestream" => StreamClass::File,
            "timedrotatingfilestream" => StreamClass::TimedRotatingFile,
            "stdout" | "stdoutstream" | "fancystdoutstream" => StreamClass::Stdout,
            "stderr" | "stderrstream" => StreamClass::Stderr,
            "null" | "nullstream" | "none" => StreamClass::Null,
            _ => return None,
        })
    }
}

impl fmt::Display for StreamClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.canonical())
    }
}

impl Serialize for StreamClass {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.canonical())
    }
}

impl<'de> Deserialize<'de> for StreamClass {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        StreamClass::parse(&s).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown stream class {s:?}: expected one of file, stdout, stderr, null \
                 (or Circus's FileStream, WatchedFileStream, TimedRotatingFileStream, \
                 StdoutStream, FancyStdoutStream)"
            ))
        })
    }
}

/// Output format of the lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// The line as written by the process (optionally prefixed, see `time_format`).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Serialize for LogFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(de::Error::custom(format!(
                "unknown format {s:?}: expected \"text\" or \"json\""
            ))),
        }
    }
}

/// Unit of time rotation (Python's `TimedRotatingFileHandler` `when`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotateWhen {
    Seconds,
    Minutes,
    Hours,
    Days,
    Midnight,
    /// At 00:00 of the given weekday, 0 = Monday … 6 = Sunday.
    Weekday(u8),
}

impl RotateWhen {
    fn parse(s: &str) -> Option<RotateWhen> {
        let up = s.trim().to_ascii_uppercase();
        Some(match up.as_str() {
            "S" => RotateWhen::Seconds,
            "M" => RotateWhen::Minutes,
            "H" => RotateWhen::Hours,
            "D" => RotateWhen::Days,
            "MIDNIGHT" => RotateWhen::Midnight,
            w if w.len() == 2 && w.starts_with('W') => {
                let d = w.as_bytes()[1].wrapping_sub(b'0');
                if d > 6 {
                    return None;
                }
                RotateWhen::Weekday(d)
            }
            _ => return None,
        })
    }

    fn canonical(self) -> String {
        match self {
            RotateWhen::Seconds => "S".into(),
            RotateWhen::Minutes => "M".into(),
            RotateWhen::Hours => "H".into(),
            RotateWhen::Days => "D".into(),
            RotateWhen::Midnight => "MIDNIGHT".into(),
            RotateWhen::Weekday(d) => format!("W{d}"),
        }
    }
}

impl Serialize for RotateWhen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.canonical())
    }
}

impl<'de> Deserialize<'de> for RotateWhen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RotateWhen::parse(&s).ok_or_else(|| {
            de::Error::custom(format!(
                "invalid rotate_when {s:?}: expected S, M, H, D, MIDNIGHT or W0-W6 (any case)"
            ))
        })
    }
}

/// One `stdout_stream` or `stderr_stream` table.
///
/// `StreamConfig::default()` (nothing configured) passes the lines through to
/// the daemon's own stdout (for a stdout stream) or stderr (for a stderr
/// stream), prefixed with the time, the watcher name and the pid.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// `file`, `stdout`, `stderr`, `null` or a Circus class name. When absent:
    /// `file` if `filename` is set, else the daemon's fd matching the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<StreamClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<PathBuf>,
    /// Size rotation threshold in bytes (0 = none). Accepts `"10M"`-style
    /// strings with K/M/G suffixes (powers of 1024).
    #[serde(default, deserialize_with = "de_size", skip_serializing_if = "is_zero_u64")]
    pub max_bytes: u64,
    #[serde(default, deserialize_with = "de_u32", skip_serializing_if = "is_zero_u32")]
    pub backup_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_when: Option<RotateWhen>,
    #[serde(
        default,
        deserialize_with = "de_opt_u32",
        skip_serializing_if = "Option::is_none"
    )]
    pub rotate_interval: Option<u32>,
    /// Use UTC rather than local time for rotation and for the time prefix.
    #[serde(default, deserialize_with = "de_bool", skip_serializing_if = "is_false")]
    pub utc: bool,
    /// Compress rotated files with gzip.
    #[serde(default, deserialize_with = "de_bool", skip_serializing_if = "is_false")]
    pub gzip: bool,
    /// strftime format of the `<time> [<pid>] | ` prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_format: Option<String>,
    #[serde(default, skip_serializing_if = "is_text")]
    pub format: LogFormat,
    /// Prefix colour for `stdout`/`stderr` (when that fd is a terminal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}
fn is_text(v: &LogFormat) -> bool {
    *v == LogFormat::Text
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Num(i64),
    Str(String),
}

fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let trimmed = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, mult) = match trimmed.chars().last() {
        Some('k') => (&trimmed[..trimmed.len() - 1], 1u64 << 10),
        Some('m') => (&trimmed[..trimmed.len() - 1], 1u64 << 20),
        Some('g') => (&trimmed[..trimmed.len() - 1], 1u64 << 30),
        _ => (trimmed, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(mult)
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::Num(n) => u64::try_from(n).map_err(|_| de::Error::custom("must be >= 0")),
        NumOrStr::Str(s) => parse_size(&s)
            .ok_or_else(|| de::Error::custom(format!("invalid size {s:?} (e.g. 1048576 or \"10M\")"))),
    }
}

fn de_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::Num(n) => u32::try_from(n).map_err(|_| de::Error::custom("out of range")),
        NumOrStr::Str(s) => s
            .trim()
            .parse::<u32>()
            .map_err(|_| de::Error::custom(format!("invalid number {s:?}"))),
    }
}

fn de_opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    de_u32(d).map(Some)
}

fn de_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrStr {
        Bool(bool),
        Str(String),
    }
    match BoolOrStr::deserialize(d)? {
        BoolOrStr::Bool(b) => Ok(b),
        BoolOrStr::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" | "" => Ok(false),
            _ => Err(de::Error::custom(format!("invalid boolean {s:?}"))),
        },
    }
}

/// ANSI colours accepted by `color` (Circus's FancyStdoutStream names).
pub(crate) const COLORS: [(&str, u8); 7] = [
    ("red", 1),
    ("green", 2),
    ("yellow", 3),
    ("blue", 4),
    ("magenta", 5),
    ("cyan", 6),
    ("white", 7),
];

/// Default strftime format of the console prefix (FancyStdoutStream's).
pub(crate) const CONSOLE_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// A checked stream configuration, ready to open.
#[derive(Clone, Debug)]
pub(crate) enum ResolvedStream {
    File(FileSpec),
    Console {
        stderr: bool,
        format: LogFormat,
        time: TimeFmt,
        /// `None`: derived from the watcher name; `Some(0)`: no colour.
        color: Option<u8>,
    },
    Null,
}

#[derive(Clone, Debug)]
pub(crate) struct FileSpec {
    pub path: PathBuf,
    pub rotation: Rotation,
    pub gzip: bool,
    pub format: LogFormat,
    /// `None`: raw bytes, no prefix.
    pub time: Option<TimeFmt>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Rotation {
    None,
    Size {
        max_bytes: u64,
        backup_count: u32,
    },
    Time {
        when: RotateWhen,
        interval: u32,
        utc: bool,
        backup_count: u32,
    },
}

/// A validated strftime format.
#[derive(Clone, Debug)]
pub(crate) struct TimeFmt {
    pub items: std::sync::Arc<[Item<'static>]>,
    pub utc: bool,
}

impl TimeFmt {
    pub(crate) fn new(fmt: &str, utc: bool) -> anyhow::Result<TimeFmt> {
        let items = StrftimeItems::new(fmt)
            .parse_to_owned()
            .map_err(|e| anyhow::anyhow!("invalid time_format {fmt:?}: {e}"))?;
        Ok(TimeFmt {
            items: items.into(),
            utc,
        })
    }
}

impl StreamConfig {
    /// A config writing to `path` with no rotation.
    pub fn file(path: impl Into<PathBuf>) -> StreamConfig {
        StreamConfig {
            class: Some(StreamClass::File),
            filename: Some(path.into()),
            ..StreamConfig::default()
        }
    }

    /// A config that discards the lines (history and followers still see them).
    pub fn null() -> StreamConfig {
        StreamConfig {
            class: Some(StreamClass::Null),
            ..StreamConfig::default()
        }
    }

    /// The class actually used for a stream of kind `kind`.
    pub fn effective_class(&self, kind: StreamKind) -> StreamClass {
        match (self.class, &self.filename) {
            (Some(c), _) => c,
            (None, Some(_)) => StreamClass::File,
            (None, None) => match kind {
                StreamKind::Stdout => StreamClass::Stdout,
                StreamKind::Stderr => StreamClass::Stderr,
            },
        }
    }

    /// Check the combination of keys, so that mistakes are reported when the
    /// configuration is loaded rather than ignored.
    pub fn validate(&self, kind: StreamKind) -> anyhow::Result<()> {
        self.resolve_inner(kind, false).map(|_| ())
    }

    pub(crate) fn resolve(&self, kind: StreamKind) -> anyhow::Result<ResolvedStream> {
        self.resolve_inner(kind, true)
    }

    fn resolve_inner(&self, kind: StreamKind, warn: bool) -> anyhow::Result<ResolvedStream> {
        let class = self.effective_class(kind);
        let name = format!("{kind}_stream");
        let time_format = self.time_format.as_deref().filter(|s| !s.is_empty());
        let file_only = [
            ("filename", self.filename.is_some()),
            ("max_bytes", self.max_bytes != 0),
            ("backup_count", self.backup_count != 0),
            ("rotate_when", self.rotate_when.is_some()),
            ("rotate_interval", self.rotate_interval.is_some()),
            ("gzip", self.gzip),
        ];
        match class {
            StreamClass::File | StreamClass::TimedRotatingFile => {
                if self.color.is_some() {
                    bail!("{name}: `color` only applies to class stdout/stderr");
                }
                let path = self
                    .filename
                    .clone()
                    .with_context(|| format!("{name}: class {class} needs `filename`"))?;
                if path.as_os_str().is_empty() {
                    bail!("{name}: `filename` is empty");
                }
                let when = match (class, self.rotate_when) {
                    (_, Some(w)) => Some(w),
                    (StreamClass::TimedRotatingFile, None) => Some(RotateWhen::Hours),
                    _ => None,
                };
                let rotation = match when {
                    Some(when) => {
                        if self.max_bytes != 0 {
                            bail!(
                                "{name}: `max_bytes` (size rotation) and `rotate_when` \
                                 (time rotation) cannot be combined"
                            );
                        }
                        let interval = self.rotate_interval.unwrap_or(1);
                        if interval == 0 {
                            bail!("{name}: `rotate_interval` must be >= 1");
                        }
                        Rotation::Time {
                            when,
                            interval,
                            utc: self.utc,
                            backup_count: self.backup_count,
                        }
                    }
                    None => {
                        if self.rotate_interval.is_some() {
                            bail!("{name}: `rotate_interval` needs `rotate_when`");
                        }
                        if self.max_bytes > 0 && self.backup_count > 0 {
                            Rotation::Size {
                                max_bytes: self.max_bytes,
                                backup_count: self.backup_count,
                            }
                        } else {
                            if warn && self.max_bytes > 0 {
                                tracing::warn!(
                                    "{name}: max_bytes without backup_count never rotates \
                                     (as in Python's RotatingFileHandler); set backup_count >= 1"
                                );
                            }
                            Rotation::None
                        }
                    }
                };
                if warn && self.gzip && rotation == Rotation::None {
                    tracing::warn!("{name}: gzip has no effect without rotation");
                }
                let time = time_format.map(|f| TimeFmt::new(f, self.utc)).transpose()?;
                Ok(ResolvedStream::File(FileSpec {
                    path,
                    rotation,
                    gzip: self.gzip,
                    format: self.format,
                    time,
                }))
            }
            StreamClass::Stdout | StreamClass::Stderr | StreamClass::Null => {
                if let Some((key, _)) = file_only.iter().find(|(_, set)| *set) {
                    bail!("{name}: `{key}` only applies to class file (class is {class})");
                }
                if class == StreamClass::Null {
                    return Ok(ResolvedStream::Null);
                }
                let color = match self.color.as_deref().map(|c| c.trim().to_ascii_lowercase()) {
                    None => None,
                    Some(c) if c.is_empty() || c == "auto" || c == "random" => None,
                    Some(c) if c == "none" || c == "false" || c == "off" => Some(0),
                    Some(c) => Some(
                        COLORS
                            .iter()
                            .find(|(n, _)| *n == c)
                            .map(|(_, v)| *v)
                            .with_context(|| {
                                format!(
                                    "{name}: unknown color {c:?} (red, green, yellow, blue, \
                                     magenta, cyan, white, auto or none)"
                                )
                            })?,
                    ),
                };
                let time = TimeFmt::new(time_format.unwrap_or(CONSOLE_TIME_FORMAT), self.utc)?;
                Ok(ResolvedStream::Console {
                    stderr: class == StreamClass::Stderr,
                    format: self.format,
                    time,
                    color,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<StreamConfig, toml::de::Error> {
        toml::from_str(s)
    }

    #[test]
    fn aliases_and_defaults() {
        let c = parse(
            r#"class = "circus.stream.FileStream"
filename = "/tmp/x.log""#,
        )
        .unwrap();
        assert_eq!(c.class, Some(StreamClass::File));
        let c = parse(r#"filename = "/tmp/x.log""#).unwrap();
        assert_eq!(c.effective_class(StreamKind::Stderr), StreamClass::File);
        let c = StreamConfig::default();
        assert_eq!(c.effective_class(StreamKind::Stderr), StreamClass::Stderr);
        assert_eq!(c.effective_class(StreamKind::Stdout), StreamClass::Stdout);
        let c = parse(
            r#"class = "FancyStdoutStream"
color = "red""#,
        )
        .unwrap();
        assert!(matches!(
            c.resolve(StreamKind::Stdout).unwrap(),
            ResolvedStream::Console {
                color: Some(1),
                stderr: false,
                ..
            }
        ));
    }

    #[test]
    fn rotate_when_case_insensitive() {
        let c = parse(
            r#"class = "TimedRotatingFileStream"
filename = "a.log"
rotate_when = "midnight"
rotate_interval = "2"
utc = "true""#,
        )
        .unwrap();
        match c.resolve(StreamKind::Stdout).unwrap() {
            ResolvedStream::File(f) => assert_eq!(
                f.rotation,
                Rotation::Time {
                    when: RotateWhen::Midnight,
                    interval: 2,
                    utc: true,
                    backup_count: 0
                }
            ),
            _ => panic!(),
        }
        assert_eq!(
            parse(r#"rotate_when = "w3""#).unwrap().rotate_when,
            Some(RotateWhen::Weekday(3))
        );
        assert!(parse(r#"rotate_when = "w7""#).is_err());
        let c = parse("class = \"TimedRotatingFileStream\"\nfilename = \"a\"").unwrap();
        match c.resolve(StreamKind::Stdout).unwrap() {
            ResolvedStream::File(f) => {
                assert!(matches!(
                    f.rotation,
                    Rotation::Time {
                        when: RotateWhen::Hours,
                        ..
                    }
                ))
            }
            _ => panic!(),
        }
    }

    #[test]
    fn errors() {
        assert!(parse("bogus = 1").is_err());
        assert!(parse(r#"class = "Mystery""#).is_err());
        assert!(parse(r#"format = "xml""#).is_err());
        let bad = [
            "class = \"file\"",
            "class = \"stdout\"\nfilename = \"x\"",
            "filename = \"x\"\nmax_bytes = 10\nrotate_when = \"H\"",
            "filename = \"x\"\ntime_format = \"%Q\"",
            "filename = \"x\"\nrotate_interval = 3",
            "filename = \"x\"\nrotate_when = \"H\"\nrotate_interval = 0",
            "class = \"stdout\"\ncolor = \"pink\"",
            "filename = \"x\"\ncolor = \"red\"",
        ];
        for b in bad {
            let c = parse(b).unwrap();
            assert!(c.resolve(StreamKind::Stdout).is_err(), "{b}");
        }
    }

    #[test]
    fn sizes_and_roundtrip() {
        let c = parse("filename = \"x\"\nmax_bytes = \"10M\"\nbackup_count = 3\ngzip = true").unwrap();
        assert_eq!(c.max_bytes, 10 << 20);
        let s = toml::to_string(&c).unwrap();
        assert_eq!(parse(&s).unwrap(), c);
        assert_eq!(parse_size("4KiB"), Some(4096));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("x"), None);
        let c = parse("class = \"json\"");
        assert!(c.is_err());
        let c = parse("class = \"stderr\"\nformat = \"JSON\"\ntime_format = \"%H\"").unwrap();
        let s = toml::to_string(&c).unwrap();
        assert_eq!(parse(&s).unwrap(), c);
    }
}

//! Turning lines into output bytes for a sink.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::SystemTime;

use chrono::{DateTime, Local, SecondsFormat, Utc};

use super::config::{TimeFmt, COLORS};
use super::{Piece, StreamKind};

/// How one capture renders its lines.
pub(crate) enum Style {
    /// The bytes as the process wrote them.
    Raw,
    /// Circus's FileStream `time_format`: `<time> [<pid>] | <line>`.
    Prefixed(TimeFmt),
    /// The daemon's stdout/stderr: `<time> [<watcher> <pid>] | <line>`,
    /// prefix coloured with the given ANSI colour number.
    Console { time: TimeFmt, color: Option<u8> },
    /// JSON lines.
    Json,
}

/// Per-capture formatter; caches the rendered time for the current chunk so
/// that a burst of lines costs one strftime, not one per line.
pub(crate) struct Formatter {
    style: Style,
    /// The constant part of every line: ` [pid] `, ` [watcher pid]` or the
    /// JSON fields after `time`.
    tag: String,
    cache_time: Option<SystemTime>,
    cache: String,
}

impl Formatter {
    pub(crate) fn new(style: Style, watcher: &str, pid: u32, wid: u32, stream: StreamKind) -> Formatter {
        let tag = match &style {
            Style::Prefixed(_) => format!(" [{pid}] "),
            Style::Console { .. } => format!(" [{watcher} {pid}]"),
            Style::Json => format!(
                "\",\"watcher\":{},\"pid\":{pid},\"wid\":{wid},\"stream\":\"{stream}\",\"line\":",
                serde_json::Value::from(watcher)
            ),
            Style::Raw => String::new(),
        };
        Formatter {
            style,
            tag,
            cache_time: None,
            cache: String::new(),
        }
    }

    pub(crate) fn is_raw(&self) -> bool {
        matches!(self.style, Style::Raw)
    }

    /// Render the time of `now` into `self.cache` (once per chunk).
    fn time_str(&mut self, now: SystemTime) {
        if self.cache_time != Some(now) {
            self.cache.clear();
            match &self.style {
                Style::Prefixed(t) | Style::Console { time: t, .. } => render_time(&mut self.cache, t, now),
                Style::Json => {
                    let dt: DateTime<Utc> = now.into();
                    self.cache = dt.to_rfc3339_opts(SecondsFormat::Micros, true);
                }
                Style::Raw => {}
            }
            self.cache_time = Some(now);
        }
    }

    /// Append one rendered line (with its newline unless the line continues
    /// in the next piece and the style is raw) to `out`.
    pub(crate) fn line(&mut self, out: &mut Vec<u8>, now: SystemTime, line: &[u8], piece: Piece) {
        match &self.style {
            Style::Raw => {
                out.extend_from_slice(line);
                if !piece.continues() {
                    out.push(b'\n');
                }
            }
            Style::Prefixed(_) => {
                let sep: &[u8] = if piece.is_continuation() { b"+ " } else { b"| " };
                self.time_str(now);
                out.extend_from_slice(self.cache.as_bytes());
                out.extend_from_slice(self.tag.as_bytes());
                out.extend_from_slice(sep);
                out.extend_from_slice(String::from_utf8_lossy(line).as_bytes());
                out.push(b'\n');
            }
            Style::Console { color, .. } => {
                let color = *color;
                let sep: &[u8] = if piece.is_continuation() { b" + " } else { b" | " };
                self.time_str(now);
                if let Some(c) = color {
                    let _ = write!(out, "\x1b[3{c}m");
                }
                out.extend_from_slice(self.cache.as_bytes());
                out.extend_from_slice(self.tag.as_bytes());
                if color.is_some() {
                    out.extend_from_slice(b"\x1b[0m");
                }
                out.extend_from_slice(sep);
                out.extend_from_slice(String::from_utf8_lossy(line).as_bytes());
                out.push(b'\n');
            }
            Style::Json => {
                self.time_str(now);
                // `{"time":"…` + the constant fields (pre-rendered in `tag`)
                // + the escaped line: one serde call per line, not a struct.
                out.extend_from_slice(b"{\"time\":\"");
                out.extend_from_slice(self.cache.as_bytes());
                out.extend_from_slice(self.tag.as_bytes());
                let text = String::from_utf8_lossy(line);
                if serde_json::to_writer(&mut *out, &*text).is_err() {
                    // Unreachable for a str written into a Vec; keep the
                    // object valid regardless.
                    out.extend_from_slice(b"\"\"");
                }
                match piece {
                    Piece::Whole => {}
                    Piece::First => out.extend_from_slice(b",\"piece\":\"first\""),
                    Piece::Middle => out.extend_from_slice(b",\"piece\":\"middle\""),
                    Piece::Last => out.extend_from_slice(b",\"piece\":\"last\""),
                }
                out.extend_from_slice(b"}\n");
            }
        }
    }
}

pub(crate) fn render_time(buf: &mut String, t: &TimeFmt, now: SystemTime) {
    // chrono reports an item it cannot render (e.g. %Z on a bare offset) as a
    // fmt::Error; fall back to RFC 3339 so that a line is never dropped.
    let start = buf.len();
    let ok = if t.utc {
        let dt: DateTime<Utc> = now.into();
        write!(buf, "{}", dt.format_with_items(t.items.iter())).is_ok()
    } else {
        let dt: DateTime<Local> = now.into();
        write!(buf, "{}", dt.format_with_items(t.items.iter())).is_ok()
    };
    if !ok {
        buf.truncate(start);
        let dt: DateTime<Utc> = now.into();
        buf.push_str(&dt.to_rfc3339_opts(SecondsFormat::Secs, true));
    }
}

/// A stable colour per watcher name, so that interleaved console output of
/// several watchers is easy to tell apart.
pub(crate) fn color_for(name: &str) -> u8 {
    // FNV-1a: tiny, and stable across runs (unlike RandomState).
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    // Skip white (the last entry): it is invisible on light terminals.
    let palette = &COLORS[..COLORS.len() - 1];
    palette[(h as usize) % palette.len()].1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400);
        let w = "web";
        let mut f = Formatter::new(
            Style::Prefixed(TimeFmt::new("%Y-%m-%d", true).unwrap()),
            w,
            7,
            1,
            StreamKind::Stdout,
        );
        let mut out = Vec::new();
        f.line(&mut out, now, b"hello", Piece::Whole);
        f.line(&mut out, now, b"more", Piece::Last);
        assert_eq!(out, b"1970-01-02 [7] | hello\n1970-01-02 [7] + more\n");

        let mut f = Formatter::new(Style::Json, w, 7, 1, StreamKind::Stderr);
        let mut out = Vec::new();
        f.line(&mut out, now, b"caf\xc3\xa9 \xff", Piece::First);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["line"], "café \u{fffd}");
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["time"], "1970-01-02T00:00:00.000000Z");
        assert_eq!(v["piece"], "first");

        let mut f = Formatter::new(
            Style::Console {
                time: TimeFmt::new("%H:%M", true).unwrap(),
                color: Some(2),
            },
            w,
            7,
            1,
            StreamKind::Stdout,
        );
        let mut out = Vec::new();
        f.line(&mut out, now, b"up \xff", Piece::Whole);
        assert_eq!(out, "\x1b[32m00:00 [web 7]\x1b[0m | up \u{fffd}\n".as_bytes());

        let mut f = Formatter::new(Style::Raw, w, 7, 1, StreamKind::Stderr);
        let mut out = Vec::new();
        f.line(&mut out, now, b"\xffab", Piece::First);
        f.line(&mut out, now, b"c", Piece::Last);
        assert_eq!(out, b"\xffabc\n");
    }
}

//! Option values read as Circus reads them (Python's int, float and bool).

use super::Cx;
use crate::config::ini::Entry;
use toml::Value;

impl Cx<'_> {
    pub(super) fn boolean(&mut self, e: &Entry, sec: &str, v: &str) -> Option<bool> {
        let b = to_bool(v);
        if b.is_none() {
            self.error(
                e,
                sec,
                format!("{v:?} is not a boolean (expected yes/true/on/1 or no/false/off/0)"),
            );
        }
        b
    }

    pub(super) fn float(&mut self, e: &Entry, sec: &str, v: &str) -> Option<f64> {
        let f = py_float(v);
        if f.is_none() {
            self.error(e, sec, format!("{v:?} is not a number"));
        }
        f
    }

    pub(super) fn duration(&mut self, e: &Entry, sec: &str, v: &str) -> Option<Value> {
        let f = self.float(e, sec, v)?;
        if !f.is_finite() || !(0.0..=1e12).contains(&f) {
            self.error(e, sec, format!("{v:?} is not a non-negative number of seconds"));
            return None;
        }
        Some(seconds_value(f))
    }
}

pub(super) fn seconds_value(f: f64) -> Value {
    if f.fract() == 0.0 && f < 9.0e15 {
        Value::Integer(f as i64)
    } else {
        Value::Float(f)
    }
}

/// Circus's `to_bool`.
pub(super) fn to_bool(s: &str) -> Option<bool> {
    match s.trim().to_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Some(true),
        "no" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Python's `int(s, radix)` for radix 8 or 10: surrounding whitespace, a
/// sign, `_` between digits, and for octal an optional `0o` prefix.
pub(super) fn py_int(s: &str, radix: u32) -> Option<i64> {
    let t = s.trim();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let t = if radix == 8 {
        t.strip_prefix("0o").or_else(|| t.strip_prefix("0O")).unwrap_or(t)
    } else {
        t
    };
    let digits = strip_underscores(t)?;
    let n = i64::from_str_radix(&digits, radix).ok()?;
    Some(if neg { -n } else { n })
}

/// Python's `float(s)`.
pub(super) fn py_float(s: &str) -> Option<f64> {
    let t = s.trim();
    let lower = t.to_lowercase();
    let bare = lower.trim_start_matches(['+', '-']);
    if matches!(bare, "inf" | "infinity" | "nan") {
        return lower.parse().ok();
    }
    if !t
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-' | '_'))
    {
        return None;
    }
    let cleaned = if t.contains('_') {
        // Python allows `_` only between two digits.
        let b = t.as_bytes();
        let ok = b.iter().enumerate().all(|(i, &c)| {
            c != b'_' || (i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit())
        });
        if !ok {
            return None;
        }
        t.replace('_', "")
    } else {
        t.to_string()
    };
    cleaned.parse().ok()
}

fn strip_underscores(t: &str) -> Option<String> {
    if t.is_empty() || t.starts_with('_') || t.ends_with('_') || t.contains("__") {
        return None;
    }
    if !t.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    Some(t.replace('_', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_numbers() {
        assert_eq!(py_int(" 12 ", 10), Some(12));
        assert_eq!(py_int("012", 10), Some(12));
        assert_eq!(py_int("1_000", 10), Some(1000));
        assert_eq!(py_int("-1", 10), Some(-1));
        assert_eq!(py_int("1__0", 10), None);
        assert_eq!(py_int("0x10", 10), None);
        assert_eq!(py_int("022", 8), Some(0o22));
        assert_eq!(py_int("0o22", 8), Some(0o22));
        assert_eq!(py_int("8", 8), None);
        assert_eq!(py_float("25.5"), Some(25.5));
        assert_eq!(py_float(" 1e1 "), Some(10.0));
        assert_eq!(py_float("1_0.5"), Some(10.5));
        assert!(py_float("inf").is_some_and(f64::is_infinite));
        assert_eq!(py_float("ten"), None);
        assert_eq!(py_float("1._5"), None);
    }

    #[test]
    fn booleans() {
        assert_eq!(to_bool(" YES "), Some(true));
        assert_eq!(to_bool("Off"), Some(false));
        assert_eq!(to_bool("maybe"), None);
        assert_eq!(to_bool(""), None);
    }
}

//! Durations in config files: a number of seconds (as Circus writes them) or a
//! humantime string such as `"500ms"` or `"1m 30s"`.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A non-negative duration read from config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds(pub Duration);

impl Seconds {
    pub const ZERO: Seconds = Seconds(Duration::ZERO);

    pub fn secs(s: u64) -> Self {
        Seconds(Duration::from_secs(s))
    }

    pub fn millis(ms: u64) -> Self {
        Seconds(Duration::from_millis(ms))
    }

    pub fn get(self) -> Duration {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Parses the same forms the config accepts, for CLI and control input.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Ok(f) = t.parse::<f64>() {
            return Self::from_f64(f);
        }
        let d = humantime::parse_duration(t).map_err(|e| {
            format!("invalid duration {s:?}: {e} (expected seconds or e.g. \"500ms\", \"30s\")")
        })?;
        // The same bound as a number of seconds: deadlines are computed as
        // `Instant::now() + d`, which must not overflow.
        Self::from_f64(d.as_secs_f64()).map_err(|_| format!("invalid duration {s:?}: too large"))
    }

    pub fn from_f64(f: f64) -> Result<Self, String> {
        if !f.is_finite() || f < 0.0 {
            return Err(format!(
                "invalid duration {f}: must be a non-negative number of seconds"
            ));
        }
        if f > 1e12 {
            return Err(format!("invalid duration {f}: too large"));
        }
        Ok(Seconds(Duration::from_secs_f64(f)))
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Whole seconds stay integers so converted Circus configs read naturally.
        if self.0.subsec_nanos() == 0 {
            s.serialize_u64(self.0.as_secs())
        } else {
            s.serialize_str(&humantime::format_duration(self.0).to_string())
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration: seconds as a number, or a string such as \"500ms\" or \"30s\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                if v < 0 {
                    return Err(E::custom(format!("invalid duration {v}: must not be negative")));
                }
                Ok(Seconds(Duration::from_secs(v as u64)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(Duration::from_secs(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                Seconds::from_f64(v).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                Seconds::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_and_strings() {
        assert_eq!(Seconds::parse("1.5").unwrap().get(), Duration::from_millis(1500));
        assert_eq!(Seconds::parse("500ms").unwrap().get(), Duration::from_millis(500));
        // A string is bounded like a number: deadlines add it to Instant::now().
        assert!(Seconds::parse("300000000000years")
            .unwrap_err()
            .contains("too large"));
        assert_eq!(Seconds::parse("1m 30s").unwrap().get(), Duration::from_secs(90));
        assert!(Seconds::parse("-1").is_err());
        assert!(Seconds::parse("soon").is_err());
    }
}

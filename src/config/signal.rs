//! Signal names as Circus accepts them: a number, or a name with or without
//! `SIG`, in any case, with `RTMIN+n` / `RTMAX-n` offsets.

use nix::sys::signal::Signal;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// A signal number valid on this system (including real-time signals).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signum(pub i32);

impl Signum {
    pub const TERM: Signum = Signum(libc::SIGTERM);
    pub const KILL: Signum = Signum(libc::SIGKILL);
    pub const HUP: Signum = Signum(libc::SIGHUP);

    pub fn parse(s: &str) -> Result<Signum, String> {
        let t = s.trim();
        if let Ok(n) = t.parse::<i32>() {
            return Signum::from_number(n);
        }
        let up = t.to_ascii_uppercase();
        let name = up.strip_prefix("SIG").unwrap_or(&up);
        let (base, offset) = match name.find(['+', '-']) {
            Some(i) => {
                let (b, o) = name.split_at(i);
                let n: i32 = o[1..].parse().map_err(|_| format!("unknown signal {s:?}"))?;
                (b, if o.starts_with('-') { -n } else { n })
            }
            None => (name, 0),
        };
        let num = match base {
            "RTMIN" => libc::SIGRTMIN() + offset,
            "RTMAX" => libc::SIGRTMAX() + offset,
            _ if offset != 0 => return Err(format!("unknown signal {s:?}")),
            _ => {
                let full = format!("SIG{base}");
                full.parse::<Signal>()
                    .map(|sig| sig as i32)
                    .map_err(|_| format!("unknown signal {s:?} (expected e.g. TERM, SIGINT, 9, RTMIN+1)"))?
            }
        };
        Signum::from_number(num).map_err(|_| format!("unknown signal {s:?}"))
    }

    pub fn from_number(n: i32) -> Result<Signum, String> {
        if n >= 1 && n <= libc::SIGRTMAX() {
            Ok(Signum(n))
        } else {
            Err(format!("invalid signal number {n}"))
        }
    }

    pub fn name(self) -> String {
        match Signal::try_from(self.0) {
            Ok(sig) => sig.as_str().trim_start_matches("SIG").to_string(),
            Err(_) => {
                let min = libc::SIGRTMIN();
                format!("RTMIN+{}", self.0 - min)
            }
        }
    }
}

impl fmt::Display for Signum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Signum {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Signum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Signum;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a signal name such as \"TERM\" or \"SIGINT\", or a signal number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Signum, E> {
                let n = i32::try_from(v).map_err(|_| E::custom(format!("invalid signal number {v}")))?;
                Signum::from_number(n).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Signum, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Signum, E> {
                Signum::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_rt() {
        assert_eq!(Signum::parse("TERM").unwrap(), Signum(15));
        assert_eq!(Signum::parse("sigkill").unwrap(), Signum(9));
        assert_eq!(Signum::parse("9").unwrap(), Signum(9));
        assert_eq!(Signum::parse("RTMIN+1").unwrap().0, libc::SIGRTMIN() + 1);
        assert!(Signum::parse("BOGUS").is_err());
        assert!(Signum::parse("0").is_err());
        assert_eq!(Signum(15).name(), "TERM");
    }
}

//! `$(circus.KEY)` and `((circus.KEY))` substitution in cmd and args, as
//! Circus does it; `ringmaster.` is accepted wherever `circus.` is. Prefix and
//! key match case-insensitively; unknown keys are left as written.

use std::collections::BTreeMap;

pub struct Vars<'a> {
    pub wid: u32,
    pub name: &'a str,
    pub numprocesses: u32,
    /// socket name (lowercase) → fd number in the child.
    pub sockets: &'a [(String, i32)],
    pub env: &'a BTreeMap<String, String>,
    pub working_dir: Option<&'a str>,
}

impl Vars<'_> {
    fn lookup(&self, key: &str) -> Option<String> {
        let k = key.to_ascii_lowercase();
        if let Some(s) = k.strip_prefix("sockets.") {
            return self
                .sockets
                .iter()
                .find(|(n, _)| n == s)
                .map(|(_, fd)| fd.to_string());
        }
        if let Some(e) = k.strip_prefix("env.") {
            return self
                .env
                .iter()
                .find(|(n, _)| n.to_ascii_lowercase() == e)
                .map(|(_, v)| v.clone());
        }
        match k.as_str() {
            "wid" => Some(self.wid.to_string()),
            "name" => Some(self.name.to_string()),
            "numprocesses" => Some(self.numprocesses.to_string()),
            "working_dir" => self.working_dir.map(str::to_string),
            _ => None,
        }
    }
}

fn key_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | ':')
}

/// Replaces every known `$(circus.X)` / `((circus.X))` in `text`.
pub fn substitute(text: &str, vars: &Vars<'_>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['$', '(']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (open, close) = if tail.starts_with("$(") {
            ("$(", ")")
        } else if tail.starts_with("((") {
            ("((", "))")
        } else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
            continue;
        };
        let inner = &tail[open.len()..];
        let lower = inner.to_ascii_lowercase();
        let prefix_len = if lower.starts_with("circus.") {
            Some("circus.".len())
        } else if lower.starts_with("ringmaster.") {
            Some("ringmaster.".len())
        } else {
            None
        };
        let replaced = prefix_len.and_then(|pl| {
            let key_len = inner[pl..]
                .find(|c: char| !key_char(c))
                .unwrap_or(inner.len() - pl);
            let key = &inner[pl..pl + key_len];
            if !inner[pl + key_len..].starts_with(close) {
                return None;
            }
            vars.lookup(key)
                .map(|v| (v, open.len() + pl + key_len + close.len()))
        });
        match replaced {
            Some((value, used)) => {
                out.push_str(&value);
                rest = &tail[used..];
            }
            None => {
                out.push_str(open);
                rest = &tail[open.len()..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_and_alias() {
        let env: BTreeMap<String, String> = [("FOO".to_string(), "bar".to_string())].into();
        let socks = vec![("web".to_string(), 3)];
        let v = Vars {
            wid: 2,
            name: "w",
            numprocesses: 4,
            sockets: &socks,
            env: &env,
            working_dir: None,
        };
        assert_eq!(
            substitute("x --fd $(circus.sockets.web) ((circus.wid)) $(RINGMASTER.ENV.foo) $(circus.nope) $HOME ((x))", &v),
            "x --fd 3 2 bar $(circus.nope) $HOME ((x))"
        );
        assert_eq!(substitute("$(ringmaster.sockets.WEB)", &v), "3");
    }
}

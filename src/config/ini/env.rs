//! Environments as Circus sees them: a Python dict of variables, its
//! case-folded view for `$(circus.env.X)`, and `$UPPER` substitution.

use std::collections::HashMap;

/// An environment with Python dict semantics: insertion order is kept and
/// re-assigning a key keeps its original position. The order matters because
/// `$(circus.env.X)` folds names to lower case and the last one wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvMap {
    entries: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl EnvMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// The daemon's own environment (names or values that are not UTF-8 are
    /// converted lossily, as Python's surrogateescape would not round-trip
    /// them into a TOML file either).
    pub fn from_process() -> Self {
        std::env::vars_os()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
            .collect()
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.index.get(key).map(|&i| self.entries[i].1.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The case-insensitive view that `$(circus.env.X)` uses.
    pub fn folded(&self) -> FoldedEnv {
        let mut map = HashMap::with_capacity(self.entries.len());
        for (k, v) in &self.entries {
            map.insert(k.to_lowercase(), (k.clone(), v.clone()));
        }
        FoldedEnv(map)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for EnvMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut env = EnvMap::new();
        for (k, v) in iter {
            env.insert(k, v);
        }
        env
    }
}

/// Environment names folded to lower case, for `$(circus.env.X)`: each
/// folded name maps to the variable that wins (the last in order) and its value.
#[derive(Debug, Clone, Default)]
pub struct FoldedEnv(HashMap<String, (String, String)>);

impl FoldedEnv {
    /// Replaces `$(circus.env.NAME)` and `((circus.env.NAME))` (any case) with
    /// the variable's value; unknown names are left as written, as Circus
    /// leaves them for its later substitution passes.
    pub fn expand(&self, value: &str) -> String {
        expand_circus_env(value, |n| self.0.get(n).map(|(_, v)| v.as_str()))
    }

    /// The view of `base_env` (of which `self` is the folded view) with `own`
    /// assigned on top, as if `own` were inserted into a copy of `base_env`,
    /// without the copy: a variable `own` re-assigns keeps its place, a new
    /// one comes after every variable of `base_env`.
    pub fn overlay<'a>(&'a self, base_env: &'a EnvMap, own: &'a EnvMap) -> OverlayEnv<'a> {
        let mut added = HashMap::new();
        for (k, v) in own.iter() {
            if base_env.get(k).is_none() {
                added.insert(k.to_lowercase(), v);
            }
        }
        OverlayEnv {
            base: self,
            own,
            added,
        }
    }
}

/// See [`FoldedEnv::overlay`].
#[derive(Debug)]
pub struct OverlayEnv<'a> {
    base: &'a FoldedEnv,
    own: &'a EnvMap,
    /// Folded names of the variables `own` adds, to their values.
    added: HashMap<String, &'a str>,
}

impl OverlayEnv<'_> {
    fn get(&self, folded: &str) -> Option<&str> {
        if let Some(v) = self.added.get(folded) {
            return Some(v);
        }
        let (key, v) = self.base.0.get(folded)?;
        Some(self.own.get(key).unwrap_or(v))
    }

    /// [`FoldedEnv::expand`] against the overlaid view.
    pub fn expand(&self, value: &str) -> String {
        expand_circus_env(value, |n| self.get(n))
    }
}

fn expand_circus_env<'a>(value: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while !rest.is_empty() {
        if let Some((len, name)) = circus_var_at(rest) {
            let key = name.to_lowercase();
            // `$(circus.circus.env.x)` is how Circus spells the full key; mirror it.
            let full = if key.starts_with("circus") {
                key
            } else {
                format!("circus.{key}")
            };
            match full.strip_prefix("circus.env.").and_then(&lookup) {
                Some(v) => out.push_str(v),
                None => out.push_str(&rest[..len]),
            }
            rest = &rest[len..];
            continue;
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// Matches `\$\(circus\.([\w.-]+)\)` or `\(\(circus\.([\w.-]+)\)\)` (case-
/// insensitive prefix) at the start of `s`: (matched length, captured name).
fn circus_var_at(s: &str) -> Option<(usize, &str)> {
    let (open, close) = if s.starts_with("$(") {
        ("$(", ")")
    } else if s.starts_with("((") {
        ("((", "))")
    } else {
        return None;
    };
    let body = &s[open.len()..];
    let prefix = body.get(..7)?;
    if !prefix.eq_ignore_ascii_case("circus.") {
        return None;
    }
    let name_part = &body[7..];
    let name_len: usize = name_part
        .chars()
        .take_while(|&c| c.is_alphanumeric() || c == '_' || c == '.' || c == '-')
        .map(char::len_utf8)
        .sum();
    if name_len == 0 || !name_part[name_len..].starts_with(close) {
        return None;
    }
    Some((open.len() + 7 + name_len + close.len(), &name_part[..name_len]))
}

/// Circus's env-value substitution (`util.parse_env_dict`): each `$NAME`
/// matching `\$[A-Z]+[A-Z0-9_]*` becomes `lookup(NAME)`, or "" when unset.
/// Returns the new value and the names that were unset.
pub fn expand_dollar_upper(value: &str, lookup: impl Fn(&str) -> Option<String>) -> (String, Vec<String>) {
    let mut out = String::with_capacity(value.len());
    let mut unset = Vec::new();
    let bytes = value.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() && bytes[i + 1].is_ascii_uppercase() {
            let start = i + 1;
            let mut end = start + 1;
            while end < bytes.len()
                && (bytes[end].is_ascii_uppercase() || bytes[end].is_ascii_digit() || bytes[end] == b'_')
            {
                end += 1;
            }
            out.push_str(&value[copied..i]);
            let name = &value[start..end];
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => unset.push(name.to_string()),
            }
            i = end;
            copied = end;
        } else {
            i += 1;
        }
    }
    out.push_str(&value[copied..]);
    (out, unset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circus_env_expansion() {
        let env: EnvMap = [("HOME", "/h"), ("home", "/lower"), ("X", "x")]
            .into_iter()
            .collect();
        let f = env.folded();
        assert_eq!(f.expand("$(circus.env.HOME)"), "/lower");
        assert_eq!(f.expand("$(CIRCUS.ENV.x)/((circus.env.X))"), "x/x");
        assert_eq!(
            f.expand("$(circus.wid) $(circus.env.nope)"),
            "$(circus.wid) $(circus.env.nope)"
        );
        assert_eq!(f.expand("$(circus.circus.env.x)"), "x");
        assert_eq!(f.expand("é$(circus.env.x"), "é$(circus.env.x");
    }

    #[test]
    fn overlay_is_an_insert_into_a_copy() {
        let base: EnvMap = [("HOME", "/h"), ("home", "/lower"), ("X", "x")]
            .into_iter()
            .collect();
        let own: EnvMap = [("HOME", "/own"), ("y", "1"), ("Y", "2")].into_iter().collect();
        let mut copy = base.clone();
        for (k, v) in own.iter() {
            copy.insert(k, v);
        }
        let folded = base.folded();
        let overlay = folded.overlay(&base, &own);
        for text in [
            "$(circus.env.home)",
            "$(circus.env.x)",
            "$(circus.env.Y)",
            "$(circus.env.z)",
        ] {
            assert_eq!(overlay.expand(text), copy.folded().expand(text), "{text}");
        }
    }

    #[test]
    fn dollar_upper() {
        let look = |n: &str| (n == "PATH").then(|| "/bin".to_string());
        assert_eq!(expand_dollar_upper("$PATH:/x", look).0, "/bin:/x");
        assert_eq!(expand_dollar_upper("$path $Path", look).0, "$path ath");
        let (v, unset) = expand_dollar_upper("a$NOPE_1b", look);
        assert_eq!(v, "ab");
        assert_eq!(unset, ["NOPE_1"]);
        assert_eq!(expand_dollar_upper("$PATHx$", look).0, "/binx$");
    }
}

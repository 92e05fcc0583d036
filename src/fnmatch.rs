//! Shell-style name patterns, as Python's `fnmatch.fnmatchcase` (Circus
//! uses it for `match: "glob"` commands and for `[env:PATTERN]` sections):
//! `*`, `?`, `[seq]`, `[!seq]`; an unclosed `[` is a literal; no case folding.
//!
//! Matching is iterative with single-star backtracking, so it takes at most
//! pattern length x name length steps and no stack: a pattern comes from a
//! control client and must never stall or overflow the daemon.

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Glob {
    toks: Vec<Tok>,
}

#[derive(Debug, Clone)]
enum Tok {
    Star,
    Any,
    Char(char),
    Set { negate: bool, items: Vec<(char, char)> },
}

/// True when `name` matches `pattern`.
pub fn fnmatch(name: &str, pattern: &str) -> bool {
    Glob::new(pattern).matches(name)
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob {
            toks: compile(pattern),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        match_tokens(&self.toks, &name)
    }
}

fn compile(pattern: &str) -> Vec<Tok> {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let c = p[i];
        i += 1;
        match c {
            '*' => {
                if !matches!(out.last(), Some(Tok::Star)) {
                    out.push(Tok::Star);
                }
            }
            '?' => out.push(Tok::Any),
            '[' => {
                let mut j = i;
                if j < p.len() && p[j] == '!' {
                    j += 1;
                }
                if j < p.len() && p[j] == ']' {
                    j += 1;
                }
                while j < p.len() && p[j] != ']' {
                    j += 1;
                }
                if j >= p.len() {
                    out.push(Tok::Char('['));
                    continue;
                }
                let mut body = &p[i..j];
                i = j + 1;
                let negate = body.first() == Some(&'!');
                if negate {
                    body = &body[1..];
                }
                let mut items = Vec::new();
                let mut k = 0;
                while k < body.len() {
                    if k + 2 < body.len() && body[k + 1] == '-' {
                        // Python drops reversed ranges such as z-a.
                        if body[k] <= body[k + 2] {
                            items.push((body[k], body[k + 2]));
                        }
                        k += 3;
                    } else {
                        items.push((body[k], body[k]));
                        k += 1;
                    }
                }
                out.push(Tok::Set { negate, items });
            }
            other => out.push(Tok::Char(other)),
        }
    }
    out
}

fn match_tokens(pat: &[Tok], name: &[char]) -> bool {
    // Iterative wildcard matching with single-star backtracking.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pat.get(p) {
            Some(Tok::Star) => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some(Tok::Any) => true,
            Some(Tok::Char(c)) => *c == name[n],
            Some(Tok::Set { negate, items }) => {
                let hit = items.iter().any(|&(lo, hi)| lo <= name[n] && name[n] <= hi);
                hit != *negate
            }
            None => false,
        };
        if step {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|t| matches!(t, Tok::Star))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_like_python() {
        assert!(fnmatch("watcher1", "wat*"));
        assert!(fnmatch("abc", "a?c"));
        assert!(fnmatch("a1", "a[0-9]"));
        assert!(!fnmatch("ab", "a[!b]"));
        assert!(fnmatch("a[", "a["));
        assert!(!fnmatch("Web", "web"));
        assert!(fnmatch("anything", "*"));
        assert!(fnmatch("a]", "a[]]"));
        assert!(fnmatch("axxbyyc", "a*b*c"));
        assert!(!fnmatch("axxbyy", "a*b*c"));
        assert!(fnmatch("web-2", "web*"));
        assert!(fnmatch("web", "w?b"));
        assert!(fnmatch("bx", "[a-c]x"));
        assert!(!fnmatch("bx", "[!a-c]x"));
        assert!(!fnmatch("webs", "web"));
    }

    #[test]
    fn hostile_patterns_are_cheap() {
        // A recursive matcher takes exponential time on the first and
        // overflows its stack on the second.
        let name = "a".repeat(44);
        let pattern = format!("{}*b", "*a".repeat(14));
        assert!(!fnmatch(&name, &pattern));
        let stars = "*".repeat(100_000);
        assert!(fnmatch(&name, &stars));
        let mixed = "*?".repeat(50_000);
        assert!(!fnmatch(&name, &mixed));
    }
}

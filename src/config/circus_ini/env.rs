//! `[env]` values and the `[env:PAT,…]` sections given to watchers.

use super::{Cx, RawWatcher, Severity};
use crate::config::ini::{self, Entry};
use std::collections::HashMap;

impl<'a> Cx<'a> {
    /// An env value as the daemon will see it: `$UPPER` is left for the daemon,
    /// which expands it at spawn against its own environment exactly as Circus
    /// did at load time; we only warn now about names that are unset.
    pub(super) fn env_value(&mut self, value: &str, e: &Entry, section: &str) -> String {
        let env = self.process_env;
        let (_, unset) = ini::expand_dollar_upper(value, |n| env.get(n).map(str::to_string));
        for name in unset {
            self.warn(
                e,
                section,
                format!("${name} is not set in the environment; it becomes an empty string, as in Circus"),
            );
        }
        value.trim().to_string()
    }

    /// Gives each watcher the entries of the `[env:PAT,…]` sections that
    /// match its name.
    pub(super) fn assign_env_sections(&mut self, watchers: &mut [RawWatcher<'a>]) {
        let doc = self.doc;
        // [env:PAT,…] sections, in file order; later ones win. A plain name
        // is looked up, only a glob scans the watchers, and a watcher gets a
        // section's entries once however many of its patterns match.
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, w) in watchers.iter().enumerate() {
            by_name.entry(w.name.clone()).or_default().push(i);
        }
        let mut given: Vec<usize> = vec![usize::MAX; watchers.len()];
        for (si, section) in doc.sections().enumerate() {
            let Some(patterns) = section.name.strip_prefix("env:") else {
                continue;
            };
            let mut hits: Vec<usize> = Vec::new();
            for pattern in patterns.split(',').map(str::trim) {
                if pattern.contains(['*', '?', '[']) {
                    hits.extend(
                        watchers
                            .iter()
                            .enumerate()
                            .filter(|(_, w)| crate::fnmatch::fnmatch(&w.name, pattern))
                            .map(|(i, _)| i),
                    );
                } else if let Some(ix) = by_name.get(pattern) {
                    hits.extend(ix.iter().copied());
                }
            }
            if hits.is_empty() {
                self.diag(
                    Severity::Warning,
                    &section.location,
                    format!("[{}] matches no watcher", section.name),
                );
                continue;
            }
            let items: Vec<&Entry> = doc.items(section).collect();
            for i in hits {
                if given[i] == si {
                    continue;
                }
                given[i] = si;
                let w = &mut watchers[i];
                w.env.extend(items.iter().map(|e| (*e, section.name.as_str())));
            }
        }
    }
}

//! The `seq` of published log lines: one count per watcher and stream, so a
//! follower sees how many lines it missed. Kept across an upgrade.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{lock, StreamKind};

static SEQS: Mutex<Option<HashMap<(String, StreamKind), u64>>> = Mutex::new(None);

/// The `seq` of the next line of `watcher`'s `stream`.
pub(crate) fn next(watcher: &str, stream: StreamKind) -> u64 {
    let mut m = lock(&SEQS);
    let e = m
        .get_or_insert_with(HashMap::new)
        .entry((watcher.to_string(), stream))
        .or_insert(0);
    *e += 1;
    *e
}

/// Every count, for an upgrade's snapshot.
pub(crate) fn all() -> Vec<(String, StreamKind, u64)> {
    lock(&SEQS)
        .iter()
        .flatten()
        .map(|((w, s), n)| (w.clone(), *s, *n))
        .collect()
}

/// After an upgrade: the counts go on from the previous image's.
pub(crate) fn restore(counts: impl IntoIterator<Item = (String, StreamKind, u64)>) {
    let mut m = lock(&SEQS);
    let m = m.get_or_insert_with(HashMap::new);
    for (w, s, n) in counts {
        let e = m.entry((w, s)).or_insert(0);
        *e = (*e).max(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_go_on_from_restored_ones() {
        restore([("seq-test-a".to_string(), StreamKind::Stdout, 41)]);
        assert_eq!(next("seq-test-a", StreamKind::Stdout), 42);
        assert_eq!(next("seq-test-a", StreamKind::Stderr), 1);
        assert!(all().contains(&("seq-test-a".to_string(), StreamKind::Stdout, 42)));
    }
}

//! The slots of one watcher: each is a process actor at a worker id (`wid`).
//! Wids are the smallest free numbers, as in Circus, found in O(log n): a
//! wid is free once its slot is gone, not while its process is still
//! stopping.

use crate::processes::ProcessActor;
use actix::Addr;
use std::collections::{BTreeMap, BTreeSet};

/// `A` is the slot actor's address (a plain value in the unit tests).
pub(crate) struct Slot<A = Addr<ProcessActor>> {
    pub(crate) addr: A,
    /// Unique per slot actor: a wid can be reused while its old actor still reports.
    pub(crate) id: u64,
    pub(crate) pid: Option<i32>,
    /// Reported `Stopped` since its last spawn (a slot still spawning has
    /// no pid yet but has not ended). Changed through [`Slots::set_ended`].
    ended: bool,
}

pub(crate) struct Slots<A = Addr<ProcessActor>> {
    /// The watcher's current slots, by wid.
    pub(crate) live: BTreeMap<u32, Slot<A>>,
    /// Slots taken out (scale-down, rollout) whose process is still stopping.
    pub(crate) retiring: BTreeMap<u32, A>,
    /// Wids below `next` that are free again.
    free: BTreeSet<u32>,
    next: u32,
    /// How many live slots have `ended`: "have all ended?" is asked at every
    /// `Stopped` report, and must not walk 10,000 slots each time.
    n_ended: usize,
}

impl<A> Default for Slots<A> {
    fn default() -> Self {
        Slots {
            live: BTreeMap::new(),
            retiring: BTreeMap::new(),
            free: BTreeSet::new(),
            next: 0,
            n_ended: 0,
        }
    }
}

impl<A: Clone + PartialEq> Slots<A> {
    /// The smallest wid that is neither live nor retiring.
    pub(crate) fn take_wid(&mut self) -> u32 {
        if let Some(w) = self.free.pop_first() {
            return w;
        }
        self.next = self.next.saturating_add(1);
        self.next
    }

    /// A new live slot at `wid` (from [`Slots::take_wid`]).
    pub(crate) fn insert(&mut self, wid: u32, addr: A, id: u64) {
        let old = self.live.insert(
            wid,
            Slot {
                addr,
                id,
                pid: None,
                ended: false,
            },
        );
        if old.is_some_and(|o| o.ended) {
            self.n_ended -= 1;
        }
    }

    /// Slot `(wid, id)`, if current, has ended (`Stopped`) or spawned again.
    pub(crate) fn set_ended(&mut self, wid: u32, id: u64, ended: bool) {
        if let Some(s) = self.live.get_mut(&wid).filter(|s| s.id == id) {
            if s.ended != ended {
                s.ended = ended;
                if ended {
                    self.n_ended += 1;
                } else {
                    self.n_ended -= 1;
                }
            }
        }
    }

    /// Every live slot has ended (true when there is none), in O(1).
    pub(crate) fn all_ended(&self) -> bool {
        self.n_ended == self.live.len()
    }

    /// Takes a live slot out; its wid stays reserved until [`Slots::retired`].
    pub(crate) fn retire(&mut self, wid: u32) -> Option<A> {
        let s = self.live.remove(&wid)?;
        if s.ended {
            self.n_ended -= 1;
        }
        self.retiring.insert(wid, s.addr.clone());
        Some(s.addr)
    }

    /// The retiring slot's process is gone: its wid is free.
    pub(crate) fn retired(&mut self, wid: u32, addr: &A) {
        if self.retiring.get(&wid) == Some(addr) {
            self.retiring.remove(&wid);
            if !self.live.contains_key(&wid) {
                self.free.insert(wid);
            }
        }
    }

    /// (wid, slot id, pid) of the live slots that run a process.
    pub(crate) fn running_ids(&self) -> Vec<(u32, u64, i32)> {
        self.live
            .iter()
            .filter_map(|(w, s)| s.pid.map(|p| (*w, s.id, p)))
            .collect()
    }

    /// Pids of the live slots, by wid.
    pub(crate) fn running(&self) -> Vec<(u32, i32)> {
        self.live
            .iter()
            .filter_map(|(w, s)| s.pid.map(|p| (*w, p)))
            .collect()
    }

    /// Every slot actor, live and retiring.
    pub(crate) fn all_addrs(&self) -> Vec<A> {
        self.live
            .values()
            .map(|s| s.addr.clone())
            .chain(self.retiring.values().cloned())
            .collect()
    }

    pub(crate) fn current(&mut self, wid: u32, id: u64) -> Option<&mut Slot<A>> {
        self.live.get_mut(&wid).filter(|s| s.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wids_are_the_smallest_free_numbers() {
        let mut s = Slots::<u32>::default();
        assert_eq!((s.take_wid(), s.take_wid(), s.take_wid()), (1, 2, 3));
        s.free.insert(2);
        assert_eq!(s.take_wid(), 2);
        assert_eq!(s.take_wid(), 4);
    }

    #[test]
    fn all_ended_is_counted_as_slots_come_end_and_go() {
        let mut s = Slots::<u32>::default();
        let scan = |s: &Slots<u32>| s.live.values().all(|x| x.ended);
        for _ in 0..3 {
            let w = s.take_wid();
            s.insert(w, w, u64::from(w));
        }
        assert!(!s.all_ended());
        s.set_ended(1, 1, true);
        s.set_ended(1, 1, true); // a repeated report counts once
        s.set_ended(2, 99, true); // a stale slot id changes nothing
        assert_eq!((s.all_ended(), scan(&s)), (false, false));
        s.set_ended(2, 2, true);
        s.set_ended(3, 3, true);
        assert_eq!((s.all_ended(), scan(&s)), (true, true));
        s.set_ended(3, 3, false); // spawned again
        assert_eq!((s.all_ended(), scan(&s)), (false, false));
        s.retire(3);
        assert_eq!((s.all_ended(), scan(&s)), (true, true));
        s.retire(1);
        let w = s.take_wid();
        s.insert(w, w, 10);
        assert_eq!((s.all_ended(), scan(&s)), (false, false));
    }
}

//! The slots of one watcher: each is a process actor at a worker id (`wid`).
//! Wids are the smallest free numbers, as in Circus, found in O(log n): a
//! wid is free once its slot is gone, not while its process is still
//! stopping.

use crate::processes::ProcessActor;
use actix::Addr;
use std::collections::{BTreeMap, BTreeSet};

pub(crate) struct Slot {
    pub(crate) addr: Addr<ProcessActor>,
    /// Unique per slot actor: a wid can be reused while its old actor still reports.
    pub(crate) id: u64,
    pub(crate) pid: Option<i32>,
    /// Reported `Stopped` since its last spawn (a slot still spawning has
    /// no pid yet but has not ended).
    pub(crate) ended: bool,
}

#[derive(Default)]
pub(crate) struct Slots {
    /// The watcher's current slots, by wid.
    pub(crate) live: BTreeMap<u32, Slot>,
    /// Slots taken out (scale-down, rollout) whose process is still stopping.
    pub(crate) retiring: BTreeMap<u32, Addr<ProcessActor>>,
    /// Wids below `next` that are free again.
    free: BTreeSet<u32>,
    next: u32,
}

impl Slots {
    /// The smallest wid that is neither live nor retiring.
    pub(crate) fn take_wid(&mut self) -> u32 {
        if let Some(w) = self.free.pop_first() {
            return w;
        }
        self.next = self.next.saturating_add(1);
        self.next
    }

    /// Takes a live slot out; its wid stays reserved until [`Slots::retired`].
    pub(crate) fn retire(&mut self, wid: u32) -> Option<Addr<ProcessActor>> {
        let s = self.live.remove(&wid)?;
        self.retiring.insert(wid, s.addr.clone());
        Some(s.addr)
    }

    /// The retiring slot's process is gone: its wid is free.
    pub(crate) fn retired(&mut self, wid: u32, addr: &Addr<ProcessActor>) {
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
    pub(crate) fn all_addrs(&self) -> Vec<Addr<ProcessActor>> {
        self.live
            .values()
            .map(|s| s.addr.clone())
            .chain(self.retiring.values().cloned())
            .collect()
    }

    pub(crate) fn current(&mut self, wid: u32, id: u64) -> Option<&mut Slot> {
        self.live.get_mut(&wid).filter(|s| s.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wids_are_the_smallest_free_numbers() {
        let mut s = Slots::default();
        assert_eq!((s.take_wid(), s.take_wid(), s.take_wid()), (1, 2, 3));
        s.free.insert(2);
        assert_eq!(s.take_wid(), 2);
        assert_eq!(s.take_wid(), 4);
    }
}

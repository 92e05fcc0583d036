//! Control requests across an upgrade in place: the established control
//! connections stay open across the exec (see `transport::hand_over`), and
//! each request still waiting for its reply says here how far it got, so
//! that the next image answers it without running it twice.
//!
//! A request runs in a task scoped with its token ([`scope`]); the command
//! code marks it ([`mark`]) when it reaches a point the next image must
//! know about: the supervisor accepted it (it took effect), it waits for a
//! rollout, or it is the `upgrade` itself.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;

/// How far a request still waiting for its reply at the exec got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Awaiting {
    /// Nothing happened yet (it waited on the frozen daemon, or was not
    /// read yet): the next image runs it.
    NotRun,
    /// The `upgrade` request itself: the next image answers it; `from` is
    /// the previous image's version and binary.
    Upgrade { from: Value },
    /// A `restart`/`reload` (`waiting`) whose rollout was in progress: the
    /// next image resumes the rollout and answers when it ends. `name`: the
    /// one watcher asked for (the reply then carries `info`).
    Rollout { name: Option<String> },
    /// It took effect and its outcome was pending: the next image cannot
    /// know it and answers with an error instead of running it again.
    Interrupted,
}

tokio::task_local! {
    static TOKEN: u64;
}

thread_local! {
    static MARKS: RefCell<HashMap<u64, Awaiting>> = RefCell::new(HashMap::new());
}

/// Runs `f` as the request `token` (so that [`mark`] inside it applies to it).
pub(crate) fn scope<F: Future>(token: u64, f: F) -> impl Future<Output = F::Output> {
    TOKEN.scope(token, f)
}

/// Marks the running request (no effect outside a request). The `upgrade`
/// mark is never replaced.
pub(crate) fn mark(a: Awaiting) {
    let Ok(token) = TOKEN.try_with(|t| *t) else {
        return;
    };
    MARKS.with(|m| {
        let mut m = m.borrow_mut();
        if !matches!(m.get(&token), Some(Awaiting::Upgrade { .. })) {
            m.insert(token, a);
        }
    });
}

/// The mark of request `token`, removed (NotRun when none).
pub(crate) fn take(token: u64) -> Awaiting {
    MARKS
        .with(|m| m.borrow_mut().remove(&token))
        .unwrap_or(Awaiting::NotRun)
}

/// Request `token` is answered: its mark is dropped.
pub(crate) fn forget(token: u64) {
    MARKS.with(|m| m.borrow_mut().remove(&token));
}

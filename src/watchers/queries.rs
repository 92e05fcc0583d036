//! What a watcher tells about itself: its status (with every process), its
//! state alone, its spec.

use super::actor::WatcherActor;
use super::WatcherState;
use crate::config::WatcherSpec;
use crate::processes::{GetProcInfo, ProcInfo};
use actix::prelude::*;
use futures::future::join_all;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct WatcherStatus {
    pub name: String,
    pub state: WatcherState,
    pub numprocesses: u32,
    pub priority: i64,
    pub processes: Vec<ProcInfo>,
}

#[derive(Message)]
#[rtype(result = "WatcherStatus")]
pub struct GetStatus;

impl Handler<GetStatus> for WatcherActor {
    type Result = ResponseFuture<WatcherStatus>;
    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        let infos: Vec<_> = self
            .slots
            .live
            .values()
            .map(|s| s.addr.send(GetProcInfo))
            .collect();
        let base = WatcherStatus {
            name: self.spec.name.clone(),
            state: self.state(),
            numprocesses: self.numprocesses,
            priority: self.spec.priority,
            processes: Vec::new(),
        };
        Box::pin(async move {
            let infos = join_all(infos).await;
            WatcherStatus {
                processes: infos.into_iter().filter_map(Result::ok).collect(),
                ..base
            }
        })
    }
}

/// Just the state (what a plain `status` needs: no fan-out to the processes).
#[derive(Message)]
#[rtype(result = "WatcherState")]
pub struct GetState;

impl Handler<GetState> for WatcherActor {
    type Result = MessageResult<GetState>;
    fn handle(&mut self, _: GetState, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.state())
    }
}

#[derive(Message)]
#[rtype(result = "Arc<WatcherSpec>")]
pub struct GetSpec;

impl Handler<GetSpec> for WatcherActor {
    type Result = MessageResult<GetSpec>;
    fn handle(&mut self, _: GetSpec, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.spec.clone())
    }
}

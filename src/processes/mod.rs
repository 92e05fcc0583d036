//! One actor per process slot (`wid`): spawns, watches, backs off, respawns
//! and stops the process in that slot, following the state machine in
//! [`state`].

mod actor;
mod handlers;
mod messages;
mod readiness;
pub mod spawn;
pub mod spawner;
pub mod state;
pub mod substitute;
mod upgrade;

pub use actor::ProcessActor;
pub use messages::{
    DetachSlot, GetProcInfo, KillSlot, ProcInfo, ReplaceSlot, SignalSlot, SlotEvent, SlotReport, StartSlot,
    StopSlot, UpdateSlotSpec, WaitReady,
};
pub(crate) use upgrade::FreezeSlot;

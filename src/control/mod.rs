//! The control channel: Circus's protocol over ZeroMQ, so `circusctl` and
//! Circus's client libraries drive Ringmaster unchanged.
//!
//! - [`transport`]: the ROUTER server (DEALER and REQ clients, tcp:// and ipc://);
//! - [`protocol`]: request parsing, replies and errno values;
//! - [`pubsub`]: the PUB socket for events;
//! - [`client`]: the client used by the `ringmaster` CLI and the tests;
//! - [`commands`]: one module per command.

pub mod client;
pub mod protocol;
pub mod pubsub;
pub mod transport;

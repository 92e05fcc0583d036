//! The HTTP endpoint (`[ringmaster] http_endpoint`, `run --http`): the web
//! dashboard and its JSON/SSE API, Prometheus `/metrics`, `/healthz` and
//! `/readyz`. Off unless configured.
//!
//! actix-web serves on its own worker thread; everything that reads the
//! registries or changes what runs goes through [`bridge::Bridge`], an actor
//! on the daemon's event loop that uses the same typed supervisor API as the
//! control commands.
//!
//! - `server.rs` — binding, routes, the runtime file `ringmaster dashboard` reads;
//! - `auth.rs` — the token, the session cookie, CSRF and Origin checks;
//! - `bridge.rs` — the actor on the daemon's loop: snapshots, actions, logs;
//! - `sampler.rs` — CPU and RSS from /proc (only while a dashboard is open);
//! - `metrics.rs`, `health.rs`, `api.rs` — the endpoints;
//! - `events/sse.rs` — the live stream the dashboard listens to;
//! - `assets/` — the page, embedded in the binary;
//! - `counters.rs` — counters the rest of the daemon increments.

mod api;
mod assets;
mod auth;
mod bridge;
pub(crate) mod counters;
mod events;
mod health;
mod metrics;
mod sampler;
mod server;

pub(crate) use auth::take_env_token;
pub(crate) use server::{prepare, HttpOptions, RUNTIME_FILE};

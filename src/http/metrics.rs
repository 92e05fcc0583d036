//! `GET /metrics`: the Prometheus exposition (OpenMetrics text), built fresh
//! for each scrape from a snapshot of the watchers, /proc and the counters.

use super::bridge::{Snapshot, STATES};
use super::counters::{self, ExitReason};
use super::sampler;
use crate::streams::StreamKind;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;
type IntGauge = Family<Labels, Gauge>;
type FloatGauge = Family<Labels, Gauge<f64, AtomicU64>>;
type IntCounter = Family<Labels, Counter>;
type FloatCounter = Family<Labels, Counter<f64, AtomicU64>>;

fn w(name: &str) -> Labels {
    vec![("watcher", name.to_string())]
}

fn wid(name: &str, wid: u32) -> Labels {
    vec![("watcher", name.to_string()), ("wid", wid.to_string())]
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Processes below which /proc is read on the calling thread alone.
const PARALLEL_FROM: usize = 128;

/// /proc figures of every `pid`, in order. Opening a /proc file costs tens
/// of microseconds: with many processes the reads are spread over the cores.
fn usages(pids: &[i32]) -> Vec<Option<sampler::ProcUsage>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    if pids.len() < PARALLEL_FROM || threads < 2 {
        return pids.iter().map(|&p| sampler::usage(p)).collect();
    }
    let chunk = pids.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = pids
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(|&p| sampler::usage(p)).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// The text a scrape returns.
pub(crate) fn render(snap: &Snapshot) -> String {
    let pids: Vec<i32> = snap
        .watchers
        .iter()
        .flat_map(|w| w.processes.iter().filter_map(|p| p.pid))
        .collect();
    let mut usage = usages(&pids).into_iter();
    let mut reg = Registry::default();

    let build = IntGauge::default();
    build
        .get_or_create(&vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            (
                "revision",
                option_env!("RINGMASTER_REVISION")
                    .unwrap_or("unknown")
                    .to_string(),
            ),
        ])
        .set(1);
    reg.register("ringmaster_build_info", "Ringmaster's version", build);
    let start = Gauge::<f64, AtomicU64>::default();
    start.set(snap.started);
    reg.register(
        "ringmaster_start_time_seconds",
        "When the daemon started, in seconds since the Unix epoch",
        start,
    );

    let state = IntGauge::default();
    let procs = IntGauge::default();
    let desired = IntGauge::default();
    let ready = IntGauge::default();
    let cpu = FloatCounter::default();
    let rss = IntGauge::default();
    let pstart = FloatGauge::default();
    for wa in &snap.watchers {
        for s in STATES {
            let mut l = w(&wa.name);
            l.push(("state", s.to_string()));
            state.get_or_create(&l).set(i64::from(wa.state == s));
        }
        procs.get_or_create(&w(&wa.name)).set(as_i64(wa.running()));
        desired.get_or_create(&w(&wa.name)).set(i64::from(wa.desired));
        ready.get_or_create(&w(&wa.name)).set(as_i64(wa.ready()));
        for p in &wa.processes {
            if p.pid.is_none() {
                continue;
            }
            // A process that exited since the snapshot has no series.
            let Some(u) = usage.next().flatten() else { continue };
            let l = wid(&wa.name, p.wid);
            cpu.get_or_create(&l).inc_by(u.cpu_seconds);
            rss.get_or_create(&l)
                .set(i64::try_from(u.rss_bytes).unwrap_or(i64::MAX));
            if let Some(t) = p.started {
                pstart.get_or_create(&l).set(t);
            }
        }
    }
    reg.register(
        "ringmaster_watcher_state",
        "1 for the watcher's current state, 0 for the others",
        state,
    );
    reg.register("ringmaster_watcher_processes", "Running processes", procs);
    reg.register(
        "ringmaster_watcher_processes_desired",
        "Processes the watcher should run (numprocesses)",
        desired,
    );
    reg.register(
        "ringmaster_watcher_ready_processes",
        "Running processes that passed their readiness check",
        ready,
    );

    let restarts = IntCounter::default();
    let exits = IntCounter::default();
    let lines = IntCounter::default();
    for (name, c) in counters::watchers() {
        restarts
            .get_or_create(&w(&name))
            .inc_by(c.restarts.load(std::sync::atomic::Ordering::Relaxed));
        for r in ExitReason::ALL {
            let mut l = w(&name);
            l.push(("reason", r.as_str().to_string()));
            exits.get_or_create(&l).inc_by(c.exits(r));
        }
        for s in [StreamKind::Stdout, StreamKind::Stderr] {
            let mut l = w(&name);
            l.push(("stream", s.as_str().to_string()));
            lines.get_or_create(&l).inc_by(c.lines(s));
        }
    }
    // Counters are named without `_total`: the encoder adds it.
    reg.register(
        "ringmaster_watcher_restarts",
        "Processes respawned after their previous one ended",
        restarts,
    );
    reg.register(
        "ringmaster_process_exits",
        "Process exits, by reason (stopped by the supervisor, exited 0, failed, signaled)",
        exits,
    );
    reg.register(
        "ringmaster_process_cpu_seconds",
        "User and system CPU time of the process",
        cpu,
    );
    reg.register(
        "ringmaster_process_resident_memory_bytes",
        "Resident memory of the process",
        rss,
    );
    reg.register(
        "ringmaster_process_start_time_seconds",
        "When the process started, in seconds since the Unix epoch",
        pstart,
    );
    reg.register("ringmaster_log_lines", "Output lines captured", lines);

    let requests = IntCounter::default();
    for ((command, status), n) in counters::requests() {
        requests
            .get_or_create(&vec![
                ("command", command.to_string()),
                ("status", status.as_str().to_string()),
            ])
            .inc_by(n);
    }
    reg.register(
        "ringmaster_control_requests",
        "Control channel requests, by command and status",
        requests,
    );

    let mut out = String::with_capacity(4096 + snap.watchers.len() * 1024);
    if let Err(e) = encode(&mut out, &reg) {
        tracing::error!("cannot encode the metrics: {e}");
    }
    out
}

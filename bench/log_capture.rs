//! Throughput of capture-to-file against `gen > file` and `gen | cat > file`,
//! in-process (the LogHub alone; `bench/run` measures the whole daemon).
//!
//! Run with: `cargo bench --bench log_capture` (1,000,000 lines, median of 5).
//! Under `cargo test` (no `--bench` argument) it runs once with 20,000 lines
//! as a smoke test: every line must arrive, timing is printed, not asserted.

use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};
use ringmaster::streams::{LogHub, StreamConfig, StreamKind};

fn gens(lines: usize) -> Vec<(&'static str, String)> {
    vec![
        // 1,000,000 lines of 100 bytes (99 digits + newline).
        (
            "yes|head",
            format!("yes \"$(printf '%099d' 0)\" | head -n {lines}"),
        ),
        // One write(2) per line, like a line-buffered logger.
        ("python -u (write per line)", py("python3 -u", lines)),
        // 8 KiB block-buffered writes.
        (
            "python (8 KiB writes)",
            py("env -u PYTHONUNBUFFERED python3", lines),
        ),
    ]
}

fn py(python: &str, lines: usize) -> String {
    format!(
        "{python} -c 'import sys\nw=sys.stdout.write\nfor i in range({lines}): w(\"%08d %s\\n\" % (i, \"x\"*90))'"
    )
}

/// CPU time of this process's log threads (the log thread and the sink
/// writers), from /proc: RUSAGE_SELF would also count the test harness.
fn log_threads_cpu() -> Duration {
    let mut ticks = 0u64;
    for e in std::fs::read_dir("/proc/self/task").expect("/proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        if !(name.starts_with("ringmaster-log") || name.starts_with("log:")) {
            continue;
        }
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        ticks += f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
    }
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

fn cpu(who: UsageWho) -> Duration {
    let u = getrusage(who).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    tv(u.user_time()) + tv(u.system_time())
}

struct Run {
    wall: Duration,
    children_cpu: Duration,
    self_cpu: Duration,
}

fn shell(cmd: &str) -> Run {
    let (c0, t0) = (cpu(UsageWho::RUSAGE_CHILDREN), Instant::now());
    let st = Command::new("sh").arg("-c").arg(cmd).status().expect("sh");
    assert!(st.success());
    Run {
        wall: t0.elapsed(),
        children_cpu: cpu(UsageWho::RUSAGE_CHILDREN) - c0,
        self_cpu: Duration::ZERO,
    }
}

/// Capture `gen` into `file`; `extra` is added to the stream table.
async fn captured(hub: &LogHub, gen: &str, lines: usize, file: &std::path::Path, extra: &str) -> Run {
    let _ = std::fs::remove_file(file);
    let cfg: StreamConfig =
        toml::from_str(&format!("filename = {:?}\n{extra}", file.display().to_string())).expect("config");
    let logs = hub
        .add_watcher("bench", &cfg, &StreamConfig::null(), 1000)
        .expect("watcher");
    let (c0, s0, t0) = (cpu(UsageWho::RUSAGE_CHILDREN), log_threads_cpu(), Instant::now());
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(gen)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let fd: OwnedFd = child.stdout.take().expect("stdout").into();
    let stats = logs
        .capture(fd, child.id(), 1, StreamKind::Stdout)
        .await
        .expect("capture");
    let st = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(st.success());
    let wall = t0.elapsed();
    let r = Run {
        wall,
        children_cpu: cpu(UsageWho::RUSAGE_CHILDREN) - c0,
        self_cpu: log_threads_cpu() - s0,
    };
    assert_eq!(stats.lines, lines as u64, "lines lost");
    logs.close().await;
    let len = std::fs::metadata(file).expect("file").len();
    assert!(len >= (lines * 100) as u64, "file shorter than the lines written");
    r
}

fn median(mut v: Vec<Run>) -> Run {
    v.sort_by_key(|r| r.wall);
    v.swap_remove(v.len() / 2)
}

fn show(label: &str, r: &Run, base: Duration) {
    println!(
        "{label:<28} wall {:>7.3} s ({:>4.2}x cat)  cpu children {:>6.3} s  cpu log threads {:>6.3} s",
        r.wall.as_secs_f64(),
        r.wall.as_secs_f64() / base.as_secs_f64(),
        r.children_cpu.as_secs_f64(),
        r.self_cpu.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not.
    let full = std::env::args().any(|a| a == "--bench");
    let (lines, rounds) = if full { (1_000_000, 5) } else { (20_000, 1) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(throughput_vs_cat(lines, rounds));
}

async fn throughput_vs_cat(lines: usize, rounds: usize) {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("out.log");
    let hub = LogHub::start(1000).expect("hub");
    for (name, gen) in gens(lines) {
        let direct = median(
            (0..rounds)
                .map(|_| shell(&format!("{gen} > {}", file.display())))
                .collect(),
        );
        let cat = median(
            (0..rounds)
                .map(|_| shell(&format!("{gen} | cat > {}", file.display())))
                .collect(),
        );
        println!("generator {name}: {lines} lines of 100 bytes, median of {rounds} (by wall time)");
        show("  gen > file", &direct, cat.wall);
        show("  gen | cat > file", &cat, cat.wall);
        let variants: &[(&str, &str)] = if name == "yes|head" {
            &[
                ("  gen | ringmaster capture", ""),
                ("    same, time_format", "time_format = \"%Y-%m-%d %H:%M:%S\""),
                ("    same, format = json", "format = \"json\""),
            ]
        } else {
            &[("  gen | ringmaster capture", "")]
        };
        for (label, extra) in variants {
            let mut caps = Vec::new();
            for _ in 0..rounds {
                caps.push(captured(&hub, &gen, lines, &file, extra).await);
            }
            show(label, &median(caps), cat.wall);
        }
    }
    hub.shutdown(Duration::from_secs(5)).await;
}

//! CPU and memory of a process from /proc, and the short history the
//! dashboard draws as sparklines.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Samples kept per process: 10 minutes at one every [`PERIOD`].
pub(crate) const KEEP: usize = 300;
pub(crate) const PERIOD: std::time::Duration = std::time::Duration::from_secs(2);

/// What /proc says about one process.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcUsage {
    /// User + system CPU time, in seconds.
    pub(crate) cpu_seconds: f64,
    pub(crate) rss_bytes: u64,
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).unwrap_or(4096)
}

/// Reads /proc/PID/stat; `None` when the process is gone.
pub(crate) fn usage(pid: i32) -> Option<ProcUsage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After the name: state is field 3 of the man page, so utime (14) is f[11].
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let rss_pages: u64 = f.get(21)?.parse().ok()?;
    Some(ProcUsage {
        cpu_seconds: (utime + stime) / ticks_per_second(),
        rss_bytes: rss_pages * page_size(),
    })
}

/// One point of a sparkline: CPU in percent of one core, RSS in bytes.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Point(pub(crate) f64, pub(crate) u64);

struct Series {
    last: (Instant, f64),
    points: VecDeque<Point>,
}

/// Histories by pid; a pid not seen in a sample is forgotten.
#[derive(Default)]
pub(crate) struct Histories(HashMap<i32, Series>);

impl Histories {
    /// Samples `pids` now; returns the new point of each.
    pub(crate) fn sample(&mut self, pids: &[i32]) -> Vec<(i32, Point)> {
        let now = Instant::now();
        let mut out = Vec::with_capacity(pids.len());
        let mut seen = HashMap::with_capacity(pids.len());
        for &pid in pids {
            let Some(u) = usage(pid) else { continue };
            let mut s = self.0.remove(&pid).unwrap_or(Series {
                last: (now, u.cpu_seconds),
                points: VecDeque::new(),
            });
            let dt = now.duration_since(s.last.0).as_secs_f64();
            let cpu = if dt > 0.0 {
                ((u.cpu_seconds - s.last.1) / dt * 100.0).max(0.0)
            } else {
                0.0
            };
            let p = Point((cpu * 10.0).round() / 10.0, u.rss_bytes);
            s.last = (now, u.cpu_seconds);
            if s.points.len() == KEEP {
                s.points.pop_front();
            }
            s.points.push_back(p);
            out.push((pid, p));
            seen.insert(pid, s);
        }
        self.0 = seen;
        out
    }

    /// Every kept history, for a dashboard that just connected.
    pub(crate) fn all(&self) -> HashMap<i32, Vec<Point>> {
        self.0
            .iter()
            .map(|(pid, s)| (*pid, s.points.iter().copied().collect()))
            .collect()
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_usage() {
        let u = usage(std::process::id() as i32).expect("our own /proc entry");
        assert!(u.rss_bytes > 0);
        assert!(u.cpu_seconds >= 0.0);
        assert!(usage(i32::MAX).is_none());
    }

    #[test]
    fn histories_forget_gone_pids_and_stay_bounded() {
        let me = std::process::id() as i32;
        let mut h = Histories::default();
        for _ in 0..KEEP + 5 {
            h.sample(&[me, i32::MAX]);
        }
        let all = h.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[&me].len(), KEEP);
        h.sample(&[]);
        assert!(h.all().is_empty());
    }
}

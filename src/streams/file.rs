//! A log file: append-only writes, size or time rotation (Python's
//! `RotatingFileHandler` / `TimedRotatingFileHandler` naming), gzip of rotated
//! files on a helper thread, and detection of external rotation (logrotate's
//! rename/create and copytruncate).
//!
//! External rotation is detected by comparing the path's dev/inode with the
//! open file's, and the file's size with what we believe we wrote. This
//! costs one `stat` + one `fstat` and is done before a write when at least
//! [`CHECK_EVERY`] has passed since the last check: an idle file costs
//! nothing, and a file renamed while idle is noticed before the next line is
//! written. Lines written to a renamed file in the window before the check
//! are not lost: they are in the renamed file. `reopen()` (SIGUSR1) forces the
//! check at once.
//!
//! The file is opened with O_APPEND, so after a copytruncate the next write
//! lands at the new end without a hole.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use chrono::{DateTime, Datelike, Days, Local, NaiveDate, TimeZone, Utc};

use super::config::{RotateWhen, Rotation};
use super::sink::{Target, WRITE_BUF};

/// Minimum interval between two external-rotation checks while writing.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// After a failed rotation (e.g. read-only directory), wait this long before
/// trying again instead of failing on every line.
const ROTATE_RETRY: Duration = Duration::from_secs(10);

pub(crate) struct FileTarget {
    path: PathBuf,
    file: File,
    /// dev/inode of the open file.
    id: (u64, u64),
    /// Our idea of the file's size, including `buf`.
    size: u64,
    /// Rotation and external-rotation checks only make sense on regular
    /// files (not /dev/null, a FIFO or a tty).
    regular: bool,
    buf: Vec<u8>,
    rotation: Rotation,
    gzip: bool,
    /// Time rotation: when the current period ends.
    rollover_at: Option<SystemTime>,
    last_check: Instant,
    rotate_failed_at: Option<Instant>,
    /// A raw line from capture `src` is open (its newline has not come yet).
    open_src: Option<u64>,
    compressor: Option<JoinHandle<()>>,
    write_failed: bool,
    dropped: u64,
}

fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO that nobody reads would otherwise hang the
    // caller (the core, in add_watcher); it fails with ENXIO instead.
    // O_NOCTTY: a tty given as filename must not become the daemon's
    // controlling terminal.
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    // Writes themselves block, so that a slow reader is back-pressure, not
    // an error.
    let flags = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_retain(flags) & !nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(f)
}

fn dev_ino(m: &fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

impl FileTarget {
    pub(crate) fn open(path: &Path, rotation: Rotation, gzip: bool) -> anyhow::Result<FileTarget> {
        let file = open_append(path).with_context(|| format!("cannot open log file {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot stat log file {}", path.display()))?;
        let regular = meta.file_type().is_file();
        let rotation = if regular { rotation } else { Rotation::None };
        let rollover_at = match &rotation {
            Rotation::Time {
                when, interval, utc, ..
            } => {
                // Like Python: the current period started when the file was
                // last written, so a daemon restarted after the period ended
                // rotates the old content on its first line.
                let base = if meta.len() > 0 {
                    meta.modified().unwrap_or_else(|_| SystemTime::now())
                } else {
                    SystemTime::now()
                };
                Some(next_rollover(*when, *interval, *utc, base))
            }
            _ => None,
        };
        Ok(FileTarget {
            path: path.to_path_buf(),
            id: dev_ino(&meta),
            size: meta.len(),
            regular,
            file,
            buf: Vec::with_capacity(WRITE_BUF),
            rotation,
            gzip,
            rollover_at,
            last_check: Instant::now(),
            rotate_failed_at: None,
            open_src: None,
            compressor: None,
            write_failed: false,
            dropped: 0,
        })
    }

    fn put(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        if self.buf.len() + data.len() > WRITE_BUF {
            self.flush_buf();
        }
        if data.len() >= WRITE_BUF {
            let r = self.file.write_all(data);
            self.record(r, data.len());
        } else {
            self.buf.extend_from_slice(data);
        }
    }

    fn flush_buf(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let r = self.file.write_all(&self.buf);
        let n = self.buf.len();
        self.buf.clear();
        self.record(r, n);
    }

    fn record(&mut self, r: io::Result<()>, n: usize) {
        match r {
            Ok(()) => {
                if self.write_failed {
                    self.write_failed = false;
                    tracing::warn!(
                        file = %self.path.display(),
                        dropped_bytes = self.dropped,
                        "log file writable again"
                    );
                    self.dropped = 0;
                }
            }
            Err(e) => {
                // Blocking the children until the disk has room could take
                // the service down; dropping log lines is the lesser evil.
                self.dropped += n as u64;
                if !self.write_failed {
                    self.write_failed = true;
                    tracing::error!(file = %self.path.display(), "cannot write log file, dropping lines: {e}");
                }
            }
        }
    }

    /// Detect logrotate (rename or delete) and copytruncate.
    fn check_external(&mut self) {
        self.last_check = Instant::now();
        if !self.regular {
            return;
        }
        match fs::metadata(&self.path) {
            Ok(m) if dev_ino(&m) == self.id => {
                self.flush_buf();
                if let Ok(fm) = self.file.metadata() {
                    // Shrunk: copytruncate; grown: someone else appends. Either
                    // way the kernel's size is the truth (O_APPEND writes there).
                    self.size = fm.len();
                }
            }
            Ok(_) | Err(_) => self.reopen_now(),
        }
    }

    fn reopen_now(&mut self) {
        self.flush_buf();
        self.last_check = Instant::now();
        match open_append(&self.path).and_then(|f| f.metadata().map(|m| (f, m))) {
            Ok((f, m)) => {
                // Make the rotated-away file durable before logrotate
                // compresses or ships it. A failure (vanished mount) leaves
                // nothing to do.
                let _ = self.file.sync_data();
                self.file = f;
                self.id = dev_ino(&m);
                self.size = m.len();
                self.regular = m.file_type().is_file();
            }
            Err(e) => tracing::error!(
                file = %self.path.display(),
                "cannot reopen log file, still writing to the old one: {e}"
            ),
        }
    }

    fn rotation_allowed(&self) -> bool {
        self.rotate_failed_at.is_none_or(|t| t.elapsed() >= ROTATE_RETRY)
    }

    fn wait_compressor(&mut self) {
        if let Some(h) = self.compressor.take() {
            let _ = h.join();
        }
    }

    fn compress_later(&mut self, src: PathBuf) {
        if !self.gzip {
            return;
        }
        self.wait_compressor();
        let spawned = std::thread::Builder::new()
            .name("log-gzip".into())
            .spawn(move || {
                if let Err(e) = gzip_file(&src) {
                    tracing::error!(file = %src.display(), "cannot gzip rotated log: {e:#}");
                }
            });
        match spawned {
            Ok(h) => self.compressor = Some(h),
            Err(e) => tracing::error!("cannot start gzip thread: {e}"),
        }
    }

    /// Replace the file after its content was moved away.
    fn start_new_file(&mut self) -> io::Result<()> {
        let f = open_append(&self.path)?;
        let m = f.metadata()?;
        let _ = self.file.sync_data();
        self.file = f;
        self.id = dev_ino(&m);
        self.size = m.len();
        Ok(())
    }

    fn rotate_size(&mut self, backup_count: u32) {
        self.flush_buf();
        self.wait_compressor();
        let r = (|| -> io::Result<()> {
            let name = |i: u32, gz: bool| numbered(&self.path, i, gz);
            for i in (1..backup_count).rev() {
                let (plain, gz) = (name(i, false), name(i, true));
                if plain.exists() || gz.exists() {
                    remove_if_exists(&name(i + 1, false))?;
                    remove_if_exists(&name(i + 1, true))?;
                    rename_if_exists(&plain, &name(i + 1, false))?;
                    rename_if_exists(&gz, &name(i + 1, true))?;
                }
            }
            remove_if_exists(&name(1, false))?;
            remove_if_exists(&name(1, true))?;
            fs::rename(&self.path, name(1, false))?;
            self.start_new_file()
        })();
        self.after_rotation(r, numbered(&self.path, 1, false));
    }

    fn rotate_time(&mut self, when: RotateWhen, interval: u32, utc: bool, backup_count: u32) {
        // Rename only the file we have open (see `write_size_rotated`).
        self.check_external();
        self.flush_buf();
        self.wait_compressor();
        let Some(at) = self.rollover_at else { return };
        let base = suffix_path(&self.path, &period_suffix(when, interval, utc, at));
        let mut dest = base.clone();
        let mut n = 1;
        // Never overwrite an earlier backup (a restart within one period).
        while dest.exists() || with_gz(&dest).exists() {
            dest = PathBuf::from(format!("{}.{n}", base.display()));
            n += 1;
        }
        let r = fs::rename(&self.path, &dest).and_then(|_| self.start_new_file());
        let now = SystemTime::now();
        let mut next = next_rollover(when, interval, utc, now);
        if next <= now {
            next = now + Duration::from_secs(1);
        }
        self.rollover_at = Some(next);
        self.after_rotation(r, dest);
        if backup_count > 0 {
            if let Err(e) = prune_timed(&self.path, when, backup_count as usize) {
                tracing::warn!(file = %self.path.display(), "cannot remove old log files: {e}");
            }
        }
    }

    fn after_rotation(&mut self, r: io::Result<()>, rotated: PathBuf) {
        match r {
            Ok(()) => {
                self.rotate_failed_at = None;
                self.compress_later(rotated);
            }
            Err(e) => {
                // Keep writing to the current file: lines are worth more than
                // the size limit.
                self.rotate_failed_at = Some(Instant::now());
                tracing::error!(file = %self.path.display(), "log rotation failed: {e}");
                // The rename may or may not have happened; resync with the path.
                self.check_external();
            }
        }
    }

    fn write_size_rotated(&mut self, data: &[u8], max_bytes: u64, backup_count: u32) {
        if self.size + (data.len() as u64) < max_bytes || !self.rotation_allowed() {
            self.put(data);
            return;
        }
        // Slow path: rotate between lines, never inside one.
        let mut mid_line = self.open_src.is_some();
        let mut rest = data;
        while !rest.is_empty() {
            let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
            let (seg, tail) = rest.split_at(end);
            let due = |t: &Self| t.size > 0 && t.size + seg.len() as u64 >= max_bytes;
            if !mid_line && due(self) && self.rotation_allowed() {
                // Rename only the file we have open: if logrotate moved it
                // meanwhile, follow the path first and decide again.
                self.check_external();
                if due(self) {
                    self.rotate_size(backup_count);
                }
            }
            self.put(seg);
            mid_line = !seg.ends_with(b"\n");
            rest = tail;
        }
    }
}

impl Target for FileTarget {
    fn write(&mut self, src: u64, data: &[u8], open: bool) {
        if self.last_check.elapsed() >= CHECK_EVERY {
            self.check_external();
        }
        if let Some(o) = self.open_src {
            if o != src {
                // Another process's line would land inside an unfinished
                // over-long line: end that line here (its rest follows on a
                // line of its own) rather than interleave bytes.
                self.put(b"\n");
                self.open_src = None;
            }
        }
        match self.rotation.clone() {
            Rotation::None => self.put(data),
            Rotation::Size {
                max_bytes,
                backup_count,
            } => self.write_size_rotated(data, max_bytes, backup_count),
            Rotation::Time {
                when,
                interval,
                utc,
                backup_count,
            } => {
                if self.open_src.is_none()
                    && self.rollover_at.is_some_and(|t| SystemTime::now() >= t)
                    && self.rotation_allowed()
                {
                    self.rotate_time(when, interval, utc, backup_count);
                }
                self.put(data);
            }
        }
        self.open_src = open.then_some(src);
    }

    fn flush(&mut self) {
        self.flush_buf();
    }

    fn sync(&mut self) {
        self.flush_buf();
        if let Err(e) = self.file.sync_data() {
            if self.regular {
                tracing::warn!(file = %self.path.display(), "fsync failed: {e}");
            }
        }
    }

    fn reopen(&mut self) {
        // Reopen even a file that is still in place: the admin may have
        // changed its permissions or the mount under it.
        self.reopen_now();
    }

    fn close(&mut self) {
        self.sync();
        self.wait_compressor();
    }
}

fn numbered(path: &Path, i: u32, gz: bool) -> PathBuf {
    PathBuf::from(format!("{}.{i}{}", path.display(), if gz { ".gz" } else { "" }))
}

fn with_gz(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}.gz", p.display()))
}

fn suffix_path(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}.{suffix}", path.display()))
}

fn remove_if_exists(p: &Path) -> io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Compress `src` to `src.gz` and remove `src`. The `.gz` appears only when
/// complete (written as `.gz.tmp` then renamed).
fn gzip_file(src: &Path) -> anyhow::Result<()> {
    let dst = with_gz(src);
    let tmp = PathBuf::from(format!("{}.tmp", dst.display()));
    let res = (|| -> anyhow::Result<()> {
        let mut input = File::open(src).context("open")?;
        let out = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
        let mut enc = flate2::write::GzEncoder::new(io::BufWriter::new(out), flate2::Compression::default());
        let mut chunk = vec![0u8; 256 << 10];
        loop {
            let n = input.read(&mut chunk).context("read")?;
            if n == 0 {
                break;
            }
            enc.write_all(&chunk[..n]).context("write")?;
        }
        let out = enc.finish().context("finish")?;
        let out = out.into_inner().map_err(|e| e.into_error()).context("flush")?;
        out.sync_all().context("fsync")?;
        fs::rename(&tmp, &dst).context("rename")?;
        fs::remove_file(src).context("remove uncompressed file")?;
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

// ---- time rotation -------------------------------------------------------

fn unit_secs(when: RotateWhen) -> u64 {
    match when {
        RotateWhen::Seconds => 1,
        RotateWhen::Minutes => 60,
        RotateWhen::Hours => 3600,
        RotateWhen::Days | RotateWhen::Midnight => 86_400,
        RotateWhen::Weekday(_) => 7 * 86_400,
    }
}

fn midnight<Tz: TimeZone>(tz: &Tz, date: NaiveDate) -> SystemTime {
    let naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    // A zone whose DST jump skips midnight has no 00:00 that day: use the
    // first instant after the gap (one hour later covers every real zone).
    match tz.from_local_datetime(&naive).earliest() {
        Some(t) => t.into(),
        None => match tz
            .from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
        {
            Some(t) => t.into(),
            None => Utc.from_utc_datetime(&naive).into(),
        },
    }
}

fn next_rollover_tz<Tz: TimeZone>(tz: &Tz, when: RotateWhen, interval: u32, from: SystemTime) -> SystemTime {
    let today = DateTime::<Utc>::from(from).with_timezone(tz).date_naive();
    match when {
        RotateWhen::Midnight => midnight(tz, today + Days::new(u64::from(interval))),
        RotateWhen::Weekday(w) => {
            let cur = today.weekday().num_days_from_monday() as u64;
            let mut ahead = (u64::from(w) + 7 - cur) % 7;
            if ahead == 0 {
                ahead = 7;
            }
            midnight(tz, today + Days::new(ahead + 7 * (u64::from(interval) - 1)))
        }
        _ => from + Duration::from_secs(unit_secs(when) * u64::from(interval)),
    }
}

pub(crate) fn next_rollover(when: RotateWhen, interval: u32, utc: bool, from: SystemTime) -> SystemTime {
    let interval = interval.max(1);
    if utc {
        next_rollover_tz(&Utc, when, interval, from)
    } else {
        next_rollover_tz(&Local, when, interval, from)
    }
}

fn suffix_format(when: RotateWhen) -> &'static str {
    match when {
        RotateWhen::Seconds => "%Y-%m-%d_%H-%M-%S",
        RotateWhen::Minutes => "%Y-%m-%d_%H-%M",
        RotateWhen::Hours => "%Y-%m-%d_%H",
        _ => "%Y-%m-%d",
    }
}

/// The suffix naming the period that ends at `rollover_at` (its start, as
/// Python does).
pub(crate) fn period_suffix(when: RotateWhen, interval: u32, utc: bool, rollover_at: SystemTime) -> String {
    let interval = u64::from(interval.max(1));
    let fmt = suffix_format(when);
    fn render<Tz: TimeZone>(tz: &Tz, when: RotateWhen, interval: u64, at: SystemTime, fmt: &str) -> String
    where
        Tz::Offset: std::fmt::Display,
    {
        let end = DateTime::<Utc>::from(at).with_timezone(tz);
        match when {
            // Calendar arithmetic: a DST change must not shift the date.
            RotateWhen::Midnight | RotateWhen::Weekday(_) => {
                let days = if matches!(when, RotateWhen::Midnight) {
                    interval
                } else {
                    7 * interval
                };
                let start = end.date_naive() - Days::new(days);
                start.format(fmt).to_string()
            }
            _ => {
                let start = at - Duration::from_secs(unit_secs(when) * interval);
                DateTime::<Utc>::from(start)
                    .with_timezone(tz)
                    .format(fmt)
                    .to_string()
            }
        }
    }
    if utc {
        render(&Utc, when, interval, rollover_at, fmt)
    } else {
        render(&Local, when, interval, rollover_at, fmt)
    }
}

/// Whether `s` is a rotation suffix for `when`, optionally followed by a
/// `.N` de-duplication number and/or `.gz`.
fn is_timed_suffix(when: RotateWhen, s: &str) -> bool {
    let shape: &[u8] = match when {
        RotateWhen::Seconds => b"dddd-dd-dd_dd-dd-dd",
        RotateWhen::Minutes => b"dddd-dd-dd_dd-dd",
        RotateWhen::Hours => b"dddd-dd-dd_dd",
        _ => b"dddd-dd-dd",
    };
    let s = s.strip_suffix(".gz").unwrap_or(s);
    let b = s.as_bytes();
    if b.len() < shape.len() {
        return false;
    }
    let head_ok = shape
        .iter()
        .zip(b)
        .all(|(p, c)| if *p == b'd' { c.is_ascii_digit() } else { p == c });
    let tail = &b[shape.len()..];
    head_ok
        && (tail.is_empty()
            || (tail.len() >= 2 && tail[0] == b'.' && tail[1..].iter().all(u8::is_ascii_digit)))
}

fn prune_timed(path: &Path, when: RotateWhen, keep: usize) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    let prefix = format!("{base}.");
    let mut found: Vec<(String, String)> = Vec::new();
    for e in fs::read_dir(&dir)? {
        let e = e?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if let Some(rest) = name.strip_prefix(&prefix) {
            if is_timed_suffix(when, rest) {
                // Sort key: the timestamp, then the de-dup number numerically.
                let core = rest.strip_suffix(".gz").unwrap_or(rest);
                let (ts, n) = core.split_once('.').unwrap_or((core, "0"));
                found.push((format!("{ts}.{:>10}", n), name));
            }
        }
    }
    if found.len() <= keep {
        return Ok(());
    }
    found.sort();
    for (_, name) in &found[..found.len() - keep] {
        remove_if_exists(&dir.join(name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    fn t(s: &str) -> SystemTime {
        DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&Utc)
            .into()
    }

    #[test]
    fn rollover_utc() {
        let from = t("2026-11-18T14:30:10Z"); // a Wednesday
        let r = next_rollover(RotateWhen::Midnight, 1, true, from);
        assert_eq!(r, t("2026-11-19T00:00:00Z"));
        assert_eq!(period_suffix(RotateWhen::Midnight, 1, true, r), "2026-11-18");
        let r = next_rollover(RotateWhen::Weekday(0), 1, true, from);
        assert_eq!(r, t("2026-11-23T00:00:00Z"));
        let r = next_rollover(RotateWhen::Weekday(2), 1, true, from);
        assert_eq!(r, t("2026-11-25T00:00:00Z"));
        let r = next_rollover(RotateWhen::Hours, 2, true, from);
        assert_eq!(r, t("2026-11-18T16:30:10Z"));
        assert_eq!(period_suffix(RotateWhen::Hours, 2, true, r), "2026-11-18_14");
        assert_eq!(
            period_suffix(RotateWhen::Seconds, 1, true, t("2026-11-18T14:30:11Z")),
            "2026-11-18_14-30-10"
        );
        let local = next_rollover(RotateWhen::Midnight, 1, false, SystemTime::now());
        let l: DateTime<Local> = local.into();
        assert_eq!((l.hour(), l.minute()), (0, 0));
    }

    #[test]
    fn suffix_shapes() {
        assert!(is_timed_suffix(RotateWhen::Midnight, "2026-11-18"));
        assert!(is_timed_suffix(RotateWhen::Midnight, "2026-11-18.gz"));
        assert!(is_timed_suffix(RotateWhen::Midnight, "2026-11-18.2.gz"));
        assert!(!is_timed_suffix(RotateWhen::Midnight, "2026-11-18.x"));
        assert!(!is_timed_suffix(RotateWhen::Hours, "2026-11-18"));
        assert!(is_timed_suffix(RotateWhen::Seconds, "2026-11-18_01-02-03"));
        assert!(!is_timed_suffix(RotateWhen::Seconds, "1"));
    }
}

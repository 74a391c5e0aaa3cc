//! Live implementations of the resource handles plugins compile against
//! (`tollgate_shared::runtime::Resources`): log files today. They are created
//! once at start-up and outlive every config swap; the shared registry keeps
//! one open file per path for as long as some compiled config names it, and
//! follows the path to a new file when log rotation renamed the old one.
//!
//! Lines are gathered per file and written in batches, as nginx's
//! `access_log … buffer= flush=` does: a request appends its line to the
//! file's buffer under the file's lock, and the buffer goes out in one
//! `write` when it reaches [`FLUSH_BYTES`], when the flusher thread finds
//! it older than [`FLUSH_INTERVAL`], when the file is dropped, and at
//! shutdown ([`FileSinks::flush_all`]). A `write` per request cost more
//! than the rest of the plugin. A crash loses at most the last
//! `FLUSH_INTERVAL` of lines.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};
use tollgate_shared::runtime::{LineSink, LogFiles, SharedSet};

/// A file's buffered lines are written once they reach this size.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// … or once they have waited this long.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// Opens log files for plugins, one per path.
#[derive(Debug)]
pub struct FileSinks {
    open: Arc<SharedSet<String, FileSink>>,
    /// Set once the flusher thread runs (started by the first open).
    flusher: OnceLock<()>,
    /// Lines that could not be written, over every file.
    pub write_failures: Arc<AtomicU64>,
    /// How often a write may look whether its path still names the open file.
    rotation_check: Duration,
}

impl Default for FileSinks {
    fn default() -> Self {
        FileSinks::with_rotation_check(Duration::from_secs(1))
    }
}

impl FileSinks {
    /// Sinks that look for a rotated file at most once per `interval`.
    pub fn with_rotation_check(interval: Duration) -> FileSinks {
        FileSinks {
            open: Arc::default(),
            flusher: OnceLock::new(),
            write_failures: Arc::default(),
            rotation_check: interval,
        }
    }

    /// How many files are open (named by some config).
    pub fn open_files(&self) -> usize {
        self.open.live()
    }

    /// Writes every buffered line now (at shutdown, once the log phases ran).
    pub fn flush_all(&self) {
        for sink in self.open.live_values() {
            sink.flush();
        }
    }

    /// Starts the thread that writes buffered lines every `FLUSH_INTERVAL`;
    /// it stops once these sinks are gone.
    fn start_flusher(&self) {
        self.flusher.get_or_init(|| {
            let open = Arc::downgrade(&self.open);
            let started = std::thread::Builder::new()
                .name("tollgate-file-log".into())
                .spawn(move || flush_periodically(&open));
            if let Err(error) = started {
                // Lines still go out when a buffer fills and at shutdown.
                tracing::error!(%error, "cannot start the log file flusher");
            }
        });
    }
}

fn flush_periodically(open: &Weak<SharedSet<String, FileSink>>) {
    loop {
        std::thread::sleep(FLUSH_INTERVAL);
        let Some(open) = open.upgrade() else {
            return;
        };
        for sink in open.live_values() {
            sink.flush();
        }
    }
}

impl LogFiles for FileSinks {
    fn open(&self, path: &str, reopen: bool) -> Result<Arc<dyn LineSink>, String> {
        let key = format!("{}{path}", if reopen { "r:" } else { "k:" });
        let sink = self.open.get_or_try_insert(&key, || {
            FileSink::open(
                path,
                reopen,
                self.rotation_check,
                Arc::clone(&self.write_failures),
            )
            .map(Arc::new)
        })?;
        self.start_flusher();
        Ok(sink)
    }
}

/// One log file. Whole lines are appended to its buffer under its lock
/// and the buffer is written with one `write` (the file is in append mode),
/// so lines from several workers never interleave.
///
/// Rotation without `reopen`: at most once per second a write compares the
/// path's inode with the open file's; when the file was renamed away or
/// deleted, the path is opened (created) again and later lines go there. A
/// truncated file (copytruncate) needs nothing: the file is in append mode,
/// so the next write lands at its new end.
#[derive(Debug)]
pub struct FileSink {
    path: String,
    /// `None` when `reopen` asks for a fresh open per line.
    file: Option<Mutex<OpenFile>>,
    rotation_check: Duration,
    failures: Arc<AtomicU64>,
}

#[derive(Debug)]
struct OpenFile {
    file: File,
    identity: FileIdentity,
    checked: Instant,
    /// Lines not written yet, each with its newline.
    pending: Vec<u8>,
    pending_lines: u64,
}

/// What tells two files apart: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    fn of(metadata: &std::fs::Metadata) -> FileIdentity {
        FileIdentity {
            dev: metadata.dev(),
            ino: metadata.ino(),
        }
    }
}

fn open_append(path: &str) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(path)
}

impl OpenFile {
    fn open(path: &str) -> std::io::Result<OpenFile> {
        let file = open_append(path)?;
        let identity = FileIdentity::of(&file.metadata()?);
        Ok(OpenFile {
            file,
            identity,
            checked: Instant::now(),
            pending: Vec::new(),
            pending_lines: 0,
        })
    }

    /// Writes the pending lines (to a new file at the path if the old one
    /// was rotated away); returns how many lines could not be written.
    fn flush(&mut self, path: &str, rotation_check: Duration) -> u64 {
        if self.pending.is_empty() {
            return 0;
        }
        self.follow_rotation(path, rotation_check);
        let lost = match self.file.write_all(&self.pending) {
            Ok(()) => 0,
            Err(_) => self.pending_lines,
        };
        self.pending.clear();
        self.pending_lines = 0;
        // A burst of huge lines should not pin its memory for good.
        if self.pending.capacity() > MAX_KEPT_BUFFER {
            self.pending = Vec::new();
        }
        lost
    }

    /// Reopens the path when it no longer names the open file.
    fn follow_rotation(&mut self, path: &str, interval: Duration) {
        let now = Instant::now();
        if now.duration_since(self.checked) < interval {
            return;
        }
        self.checked = now;
        let moved = match std::fs::metadata(path) {
            Ok(metadata) => FileIdentity::of(&metadata) != self.identity,
            Err(error) => error.kind() == std::io::ErrorKind::NotFound,
        };
        if !moved {
            return;
        }
        match OpenFile::open(path) {
            Ok(reopened) => {
                self.file = reopened.file;
                self.identity = reopened.identity;
            }
            // Keep writing to the old file rather than losing lines; the
            // next check tries again.
            Err(error) => tracing::warn!(path, %error, "cannot reopen a rotated log file"),
        }
    }
}

impl FileSink {
    fn open(
        path: &str,
        reopen: bool,
        rotation_check: Duration,
        failures: Arc<AtomicU64>,
    ) -> Result<FileSink, String> {
        // Opening now (even with `reopen`) turns a missing or unwritable
        // directory into a compile error that names the path, not a silent
        // loss at request time.
        let file = OpenFile::open(path).map_err(|e| format!("cannot open log file {path}: {e}"))?;
        Ok(FileSink {
            path: path.to_string(),
            file: (!reopen).then(|| Mutex::new(file)),
            rotation_check,
            failures,
        })
    }
}

impl FileSink {
    /// Writes the buffered lines now.
    pub fn flush(&self) {
        if let Some(file) = &self.file {
            let lost = file
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .flush(&self.path, self.rotation_check);
            self.count_lost(lost);
        }
    }

    fn count_lost(&self, lines: u64) {
        if lines > 0 {
            self.failures.fetch_add(lines, Ordering::Relaxed);
        }
    }
}

impl LineSink for FileSink {
    fn write_line(&self, line: &[u8]) {
        match &self.file {
            Some(file) => {
                let mut open = file.lock().unwrap_or_else(PoisonError::into_inner);
                open.pending.extend_from_slice(line);
                open.pending.push(b'\n');
                open.pending_lines += 1;
                if open.pending.len() >= FLUSH_BYTES {
                    let lost = open.flush(&self.path, self.rotation_check);
                    drop(open);
                    self.count_lost(lost);
                }
            }
            // `reopen`: every line opens the path, as in Kong.
            None => {
                let mut buffer = Vec::with_capacity(line.len() + 1);
                buffer.extend_from_slice(line);
                buffer.push(b'\n');
                let written = open_append(&self.path).and_then(|mut file| file.write_all(&buffer));
                self.count_lost(u64::from(written.is_err()));
            }
        }
    }
}

impl Drop for FileSink {
    /// No config names the file any more: its last lines go out now.
    fn drop(&mut self) {
        self.flush();
    }
}

/// The largest buffer a file keeps once its lines are written.
const MAX_KEPT_BUFFER: usize = 4 * FLUSH_BYTES;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn one_file_per_path_and_lines_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let path = path.to_str().unwrap();
        let sinks = FileSinks::default();
        let a = sinks.open(path, false).unwrap();
        let b = sinks.open(path, false).unwrap();
        assert_eq!(sinks.open_files(), 1);
        a.write_line(b"one");
        b.write_line(b"two");
        assert_eq!(std::fs::read_to_string(path).unwrap(), "", "buffered");
        sinks.flush_all();
        assert_eq!(std::fs::read_to_string(path).unwrap(), "one\ntwo\n");
        a.write_line(b"three");
        drop((a, b));
        assert_eq!(sinks.open_files(), 0);
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            "one\ntwo\nthree\n",
            "the last user's drop writes what is left"
        );
    }

    #[test]
    fn buffered_lines_go_out_when_the_buffer_fills_or_the_interval_passes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let sinks = FileSinks::default();
        let sink = sinks.open(path.to_str().unwrap(), false).unwrap();
        let line = vec![b'x'; 1000];
        let lines_to_fill = FLUSH_BYTES.div_ceil(line.len() + 1);
        for _ in 0..lines_to_fill {
            sink.write_line(&line);
        }
        // The line that filled the buffer wrote it, whole lines only.
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written.len(), lines_to_fill * (line.len() + 1));
        sink.write_line(b"tail");
        let flushed = || std::fs::read_to_string(&path).unwrap().ends_with("tail\n");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !flushed() {
            assert!(
                Instant::now() < deadline,
                "the flusher never wrote the tail"
            );
            std::thread::sleep(FLUSH_INTERVAL / 5);
        }
        assert_eq!(sinks.write_failures.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_unwritable_path_is_a_clear_error() {
        let sinks = FileSinks::default();
        let error = sinks.open("/nonexistent-dir/x.log", false).unwrap_err();
        assert!(error.contains("/nonexistent-dir/x.log"), "{error}");
    }

    #[test]
    fn a_renamed_file_is_followed_to_a_new_file_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let path_text = path.to_str().unwrap();
        let sinks = FileSinks::with_rotation_check(Duration::ZERO);
        let sink = sinks.open(path_text, false).unwrap();
        sink.write_line(b"before");
        sinks.flush_all();
        std::fs::rename(&path, &rotated).unwrap();
        sink.write_line(b"after");
        sink.write_line(b"later");
        sinks.flush_all();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "before\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\nlater\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o644, 0o644, "{mode:o}");
        assert_eq!(sinks.write_failures.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn rotation_is_looked_for_at_most_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let sinks = FileSinks::with_rotation_check(Duration::from_secs(3600));
        let sink = sinks.open(path.to_str().unwrap(), false).unwrap();
        sink.write_line(b"one");
        sinks.flush_all();
        std::fs::rename(&path, &rotated).unwrap();
        sink.write_line(b"two");
        sinks.flush_all();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\ntwo\n");
        assert!(!path.exists());
    }

    #[test]
    fn a_truncated_file_is_written_from_its_new_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let sinks = FileSinks::default();
        let sink = sinks.open(path.to_str().unwrap(), false).unwrap();
        sink.write_line(b"one");
        sinks.flush_all();
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        sink.write_line(b"two");
        sinks.flush_all();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
    }

    #[test]
    fn reopen_writes_every_line_to_whatever_file_the_path_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let sinks = FileSinks::default();
        let sink = sinks.open(path.to_str().unwrap(), true).unwrap();
        sink.write_line(b"one");
        std::fs::rename(&path, dir.path().join("old.log")).unwrap();
        sink.write_line(b"two");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
    }
}

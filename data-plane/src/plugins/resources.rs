//! Live implementations of the resource handles plugins compile against
//! (`tollgate_shared::runtime::Resources`): log files today. They are created
//! once at start-up and outlive every config swap; the shared registry keeps
//! one open file per path for as long as some compiled config names it, and
//! follows the path to a new file when log rotation renamed the old one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tollgate_shared::runtime::{LineSink, LogFiles, SharedSet};

/// Opens log files for plugins, one per path.
#[derive(Debug)]
pub struct FileSinks {
    open: SharedSet<String, FileSink>,
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
            open: SharedSet::default(),
            write_failures: Arc::default(),
            rotation_check: interval,
        }
    }

    /// How many files are open (named by some config).
    pub fn open_files(&self) -> usize {
        self.open.live()
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
        Ok(sink)
    }
}

/// One log file, appended to with one `write` per line so lines from several
/// workers never interleave.
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
    /// The line and its newline, assembled for a single `write`; kept to
    /// spare an allocation per line.
    buffer: Vec<u8>,
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
            buffer: Vec::new(),
        })
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

impl LineSink for FileSink {
    fn write_line(&self, line: &[u8]) {
        let fill = |buffer: &mut Vec<u8>| {
            buffer.clear();
            buffer.extend_from_slice(line);
            buffer.push(b'\n');
        };
        let result = match &self.file {
            Some(file) => {
                let mut open = file.lock().unwrap_or_else(PoisonError::into_inner);
                open.follow_rotation(&self.path, self.rotation_check);
                let OpenFile { file, buffer, .. } = &mut *open;
                fill(buffer);
                let written = file.write_all(buffer);
                // A rare huge line should not pin its memory for good.
                if buffer.capacity() > MAX_KEPT_BUFFER {
                    *buffer = Vec::new();
                }
                written
            }
            None => {
                let mut buffer = Vec::with_capacity(line.len() + 1);
                fill(&mut buffer);
                open_append(&self.path).and_then(|mut file| file.write_all(&buffer))
            }
        };
        if result.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The largest line buffer a file keeps between lines.
const MAX_KEPT_BUFFER: usize = 64 * 1024;

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
        assert_eq!(std::fs::read_to_string(path).unwrap(), "one\ntwo\n");
        drop((a, b));
        assert_eq!(sinks.open_files(), 0);
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
        std::fs::rename(&path, &rotated).unwrap();
        sink.write_line(b"after");
        sink.write_line(b"later");
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
        std::fs::rename(&path, &rotated).unwrap();
        sink.write_line(b"two");
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
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        sink.write_line(b"two");
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

//! Live implementations of the resource handles plugins compile against
//! (`tollgate_shared::runtime::Resources`): log files today. They are created
//! once at start-up and outlive every config swap; the shared registry keeps
//! one open file per path for as long as some compiled config names it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tollgate_shared::runtime::{LineSink, LogFiles, SharedSet};

/// Opens log files for plugins, one per path.
#[derive(Debug, Default)]
pub struct FileSinks {
    open: SharedSet<String, FileSink>,
    /// Lines that could not be written, over every file.
    pub write_failures: Arc<AtomicU64>,
}

impl FileSinks {
    /// How many files are open (named by some config).
    pub fn open_files(&self) -> usize {
        self.open.live()
    }
}

impl LogFiles for FileSinks {
    fn open(&self, path: &str, reopen: bool) -> Result<Arc<dyn LineSink>, String> {
        let key = format!("{}{path}", if reopen { "r:" } else { "k:" });
        let sink = self.open.get_or_try_insert(&key, || {
            FileSink::open(path, reopen, Arc::clone(&self.write_failures)).map(Arc::new)
        })?;
        Ok(sink)
    }
}

/// One log file, appended to with one `write` per line so lines from several
/// workers never interleave.
#[derive(Debug)]
pub struct FileSink {
    path: String,
    /// `None` when `reopen` asks for a fresh open per line.
    file: Option<Mutex<File>>,
    failures: Arc<AtomicU64>,
}

fn open_append(path: &str) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(path)
}

impl FileSink {
    fn open(path: &str, reopen: bool, failures: Arc<AtomicU64>) -> Result<FileSink, String> {
        // Opening now (even with `reopen`) turns a missing or unwritable
        // directory into a compile error that names the path, not a silent
        // loss at request time.
        let file = open_append(path).map_err(|e| format!("cannot open log file {path}: {e}"))?;
        Ok(FileSink {
            path: path.to_string(),
            file: (!reopen).then(|| Mutex::new(file)),
            failures,
        })
    }
}

impl LineSink for FileSink {
    fn write_line(&self, line: &[u8]) {
        let mut buffer = Vec::with_capacity(line.len() + 1);
        buffer.extend_from_slice(line);
        buffer.push(b'\n');
        let result = match &self.file {
            Some(file) => file
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .write_all(&buffer),
            None => open_append(&self.path).and_then(|mut file| file.write_all(&buffer)),
        };
        if result.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

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
}

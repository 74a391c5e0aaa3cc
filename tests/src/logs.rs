//! Log capture for one test: a thread-local tracing subscriber writing into
//! a buffer the test reads. The tests' runtime is one thread, so the default
//! set here sees everything an in-process data plane logs.

use std::sync::{Arc, Mutex, PoisonError};

/// Captured log output; capturing stops when this is dropped.
pub struct CapturedLogs {
    buffer: Arc<Mutex<Vec<u8>>>,
    _default: tracing::subscriber::DefaultGuard,
    _second: tracing::Dispatch,
}

#[derive(Clone)]
struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures what this thread logs at `level` and above, as plain text lines.
pub fn capture(level: tracing::Level) -> CapturedLogs {
    use tracing_subscriber::util::SubscriberInitExt as _;
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = Writer(Arc::clone(&buffer));
    let default = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish()
        .set_default();
    // With a single registered dispatcher tracing decides a callsite's interest
    // from the default of whichever thread reaches it first, so a test running
    // meanwhile would switch these callsites off for this one. A second
    // (silent) dispatcher makes every callsite ask each thread's default.
    let second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    tracing::callsite::rebuild_interest_cache();
    CapturedLogs {
        buffer,
        _default: default,
        _second: second,
    }
}

impl CapturedLogs {
    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }

    /// The captured lines containing `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.contains(needle))
            .map(ToString::to_string)
            .collect()
    }
}

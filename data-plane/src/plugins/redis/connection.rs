//! One pipelined connection to a Redis server, shared by every request that
//! counts there. A call appends its command to the connection's outgoing
//! buffer and queues a reply slot, both under one lock so replies (which
//! Redis sends in command order) find their callers; a writer task sends
//! whatever accumulated in one write, and a reader task parses replies in
//! place and hands each to the oldest slot. Under load, the calls of one
//! scheduler tick leave in one write and their replies come back in one
//! read.
//!
//! Each call has a deadline (`redis.timeout`), watched by one timer per
//! connection rather than one per call: arming a timer per call cost a
//! timer-wheel entry and, whenever the wheel was empty, a write to the
//! runtime's wake-up eventfd, on every request. The timer sleeps until the
//! earliest deadline noted since its last check; replies come back in order,
//! so when it fires, an unanswered oldest call means the server stalls (the
//! connection fails, every caller with it), and a later call that is overdue
//! (a shorter timeout of another instance) fails alone.

use super::resp::{self, Reply};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tollgate_shared::runtime::{bulk_string, RedisFailure, ScriptCall};

/// A Lua script, known by its SHA-1 so calls send the hash, not the source.
#[derive(Debug)]
pub struct Script {
    source: &'static str,
    sha1_hex: [u8; 40],
}

impl Script {
    pub fn new(source: &'static str) -> Script {
        use sha1::Digest;
        let mut sha1_hex = [0u8; 40];
        // Cannot fail: 20 bytes fill exactly 40 hex digits.
        let _ = hex::encode_to_slice(sha1::Sha1::digest(source.as_bytes()), &mut sha1_hex);
        Script { source, sha1_hex }
    }
}

/// What a connection sends first: credentials and the database.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: i64,
}

/// A live connection; dropping the last handle ends its tasks.
#[derive(Debug)]
pub struct Connection {
    shared: Arc<Shared>,
    _stop_tasks: DropGuard,
}

#[derive(Debug, Default)]
struct Shared {
    outgoing: Mutex<Outgoing>,
    /// Wakes the writer when the outgoing buffer stops being empty.
    wake_writer: Notify,
}

#[derive(Debug, Default)]
struct Outgoing {
    /// Commands not written yet.
    bytes: Vec<u8>,
    /// A slot per command sent or to send, oldest first.
    waiting: VecDeque<Slot>,
    /// The earliest deadline of the calls queued since the watchdog last
    /// looked (it may have been answered since: the watchdog then finds
    /// nothing overdue).
    earliest: Option<Instant>,
    /// Set when a task ended: no call is accepted any more.
    closed: Option<RedisFailure>,
}

/// Where a reply goes, and until when its caller waits.
#[derive(Debug)]
struct Slot {
    /// `None` once the caller was told it timed out: the reply, when it
    /// comes, is dropped.
    caller: Option<oneshot::Sender<Result<Reply, RedisFailure>>>,
    deadline: Instant,
    timeout: Duration,
}

fn failed(what: impl std::fmt::Display) -> RedisFailure {
    RedisFailure::Failed(what.to_string())
}

impl Connection {
    /// Sends the handshake over `stream`, then starts the connection's tasks.
    pub async fn open<S>(mut stream: S, handshake: &Handshake) -> Result<Connection, RedisFailure>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        handshake.run(&mut stream).await?;
        let (reader, writer) = tokio::io::split(stream);
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        tokio::spawn(read_replies(Arc::clone(&shared), reader, stop.clone()));
        tokio::spawn(write_commands(Arc::clone(&shared), writer, stop.clone()));
        Ok(Connection {
            shared,
            _stop_tasks: stop.drop_guard(),
        })
    }

    /// Whether the connection can take no more calls (the server closed it,
    /// or it failed).
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Runs `script` with the call's keys and arguments: one `EVALSHA`; if
    /// the server does not know the script yet, one `EVAL` with its source
    /// (which also caches it there).
    /// Fails with [`RedisFailure::Timeout`] when no reply came within
    /// `timeout` of each command.
    pub async fn eval(
        &self,
        script: &Script,
        call: &ScriptCall,
        timeout: Duration,
    ) -> Result<Vec<i64>, RedisFailure> {
        let reply = self
            .send(timeout, |out| {
                script_command(out, b"EVALSHA", &script.sha1_hex, call)
            })
            .await?;
        let reply = match reply {
            Reply::Error(message) if message.starts_with("NOSCRIPT") => {
                self.send(timeout, |out| {
                    script_command(out, b"EVAL", script.source.as_bytes(), call)
                })
                .await?
            }
            reply => reply,
        };
        reply.integers().map_err(RedisFailure::Failed)
    }

    /// Queues one command (written by `encode`) and waits for its reply.
    async fn send(
        &self,
        timeout: Duration,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Reply, RedisFailure> {
        let (caller, reply) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        {
            let mut outgoing = self.shared.lock();
            if let Some(failure) = &outgoing.closed {
                return Err(failure.clone());
            }
            let was_empty = outgoing.bytes.is_empty();
            encode(&mut outgoing.bytes);
            outgoing.waiting.push_back(Slot {
                caller: Some(caller),
                deadline,
                timeout,
            });
            let earlier = outgoing.earliest.is_none_or(|earliest| deadline < earliest);
            if earlier {
                outgoing.earliest = Some(deadline);
            }
            // The writer also re-arms the watchdog for an earlier deadline.
            if was_empty || earlier {
                self.shared.wake_writer.notify_one();
            }
        }
        match reply.await {
            Ok(reply) => reply,
            Err(_) => Err(self
                .shared
                .lock()
                .closed
                .clone()
                .unwrap_or_else(|| failed("connection closed"))),
        }
    }
}

/// `EVALSHA <sha> <numkeys> keys... args...` (or `EVAL <source> ...`).
fn script_command(out: &mut Vec<u8>, verb: &[u8], script: &[u8], call: &ScriptCall) {
    resp::array_header(out, 3 + call.strings());
    bulk_string(out, &[verb]);
    bulk_string(out, &[script]);
    bulk_string(
        out,
        &[itoa::Buffer::new().format(call.key_count()).as_bytes()],
    );
    for encoded in call.encoded() {
        out.extend_from_slice(encoded);
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outgoing> {
        self.outgoing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The watchdog fired: fails the calls past their deadline. `Err` when
    /// the oldest is among them (the server stalls: the connection is
    /// closed); otherwise the next deadline to watch, if any call waits.
    fn time_out_overdue(&self) -> Result<Option<Instant>, ()> {
        let now = Instant::now();
        let mut outgoing = self.lock();
        if let Some(oldest) = outgoing.waiting.front() {
            if oldest.deadline <= now {
                let failure = RedisFailure::Timeout(oldest.timeout);
                drop(outgoing);
                self.close(failure);
                return Err(());
            }
        }
        let mut earliest: Option<Instant> = None;
        for slot in outgoing
            .waiting
            .iter_mut()
            .filter(|slot| slot.caller.is_some())
        {
            if slot.deadline <= now {
                if let Some(caller) = slot.caller.take() {
                    let _ = caller.send(Err(RedisFailure::Timeout(slot.timeout)));
                }
            } else if earliest.is_none_or(|e| slot.deadline < e) {
                earliest = Some(slot.deadline);
            }
        }
        outgoing.earliest = earliest;
        Ok(earliest)
    }

    /// Ends the connection: every waiting call fails with `failure`, later
    /// calls too.
    fn close(&self, failure: RedisFailure) {
        let mut outgoing = self.lock();
        if outgoing.closed.is_none() {
            outgoing.closed = Some(failure);
        }
        outgoing.waiting.clear();
        outgoing.bytes = Vec::new();
        drop(outgoing);
        self.wake_writer.notify_one();
    }
}

/// The largest read buffer a connection keeps between bursts.
const KEPT_BUFFER: usize = 64 * 1024;

async fn read_replies<R: AsyncRead + Unpin>(
    shared: Arc<Shared>,
    mut reader: R,
    stop: CancellationToken,
) {
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    let failure = loop {
        let mut used = 0;
        let outcome = loop {
            match resp::decode(&buffer[used..]) {
                Ok(Some((reply, length))) => {
                    used += length;
                    let slot = shared.lock().waiting.pop_front();
                    match slot {
                        // The caller may have gone (it timed out, or its
                        // request went away): the reply is dropped.
                        Some(slot) => {
                            if let Some(caller) = slot.caller {
                                let _ = caller.send(Ok(reply));
                            }
                        }
                        None => break Err(failed("a reply nobody asked for")),
                    }
                }
                Ok(None) => break Ok(()),
                Err(error) => break Err(failed(error)),
            }
        };
        if let Err(failure) = outcome {
            break failure;
        }
        buffer.drain(..used);
        if buffer.is_empty() && buffer.capacity() > KEPT_BUFFER {
            buffer = Vec::with_capacity(4096);
        }
        if buffer.capacity() - buffer.len() < 1024 {
            buffer.reserve(4096);
        }
        tokio::select! {
            read = reader.read_buf(&mut buffer) => match read {
                Ok(0) => break failed("the server closed the connection"),
                Ok(_) => {}
                Err(error) => break failed(format!("reading: {error}")),
            },
            () = stop.cancelled() => break failed("connection closed"),
        }
    };
    shared.close(failure);
}

async fn write_commands<W: AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    mut writer: W,
    stop: CancellationToken,
) {
    let mut sending = Vec::with_capacity(4096);
    let watchdog = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(watchdog);
    let mut armed: Option<Instant> = None;
    loop {
        if let Some(deadline) = armed {
            if watchdog.deadline() != deadline {
                watchdog.as_mut().reset(deadline);
            }
        }
        tokio::select! {
            () = shared.wake_writer.notified() => {}
            () = &mut watchdog, if armed.is_some() => {
                match shared.time_out_overdue() {
                    Ok(next) => armed = next,
                    Err(()) => break,
                }
                continue;
            }
            () = stop.cancelled() => break,
        }
        {
            let mut outgoing = shared.lock();
            if outgoing.closed.is_some() {
                break;
            }
            std::mem::swap(&mut outgoing.bytes, &mut sending);
            if outgoing
                .earliest
                .is_some_and(|e| armed.is_none_or(|a| e < a))
            {
                armed = outgoing.earliest;
            }
        }
        if sending.is_empty() {
            continue;
        }
        let written = async {
            writer.write_all(&sending).await?;
            writer.flush().await
        };
        let written = tokio::select! {
            written = written => written,
            () = stop.cancelled() => break,
        };
        if let Err(error) = written {
            shared.close(failed(format!("writing: {error}")));
            break;
        }
        sending.clear();
        if sending.capacity() > KEPT_BUFFER {
            sending = Vec::with_capacity(4096);
        }
    }
    // Nothing to shut down: the socket closes when both tasks dropped
    // their halves, and a close_notify could wait on a stopped server.
}

impl Handshake {
    /// Authenticates and selects the database, one command after the other.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
    ) -> Result<(), RedisFailure> {
        let mut commands: Vec<(Vec<&[u8]>, &str)> = Vec::new();
        if let Some(password) = &self.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            auth.extend(self.username.as_deref().map(str::as_bytes));
            auth.push(password.as_bytes());
            commands.push((auth, "authentication"));
        }
        let database = itoa::Buffer::new().format(self.database).to_owned();
        if self.database != 0 {
            commands.push((
                vec![b"SELECT", database.as_bytes()],
                "selecting the database",
            ));
        }
        let mut buffer = Vec::new();
        for (arguments, what) in commands {
            let mut out = Vec::new();
            resp::command(&mut out, &arguments);
            stream
                .write_all(&out)
                .await
                .map_err(|e| failed(format!("{what}: {e}")))?;
            stream
                .flush()
                .await
                .map_err(|e| failed(format!("{what}: {e}")))?;
            match read_one(stream, &mut buffer).await? {
                Reply::Status(_) => {}
                Reply::Error(message) => return Err(failed(format!("{what} failed: {message}"))),
                other => return Err(failed(format!("{what}: unexpected {}", other.kind()))),
            }
        }
        Ok(())
    }
}

/// Reads one reply during the handshake (nothing else is in flight).
async fn read_one<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> Result<Reply, RedisFailure> {
    loop {
        if let Some((reply, used)) = resp::decode(buffer).map_err(failed)? {
            buffer.drain(..used);
            return Ok(reply);
        }
        match stream.read_buf(buffer).await {
            Ok(0) => return Err(failed("the server closed the connection")),
            Ok(_) => {}
            Err(error) => return Err(failed(format!("reading: {error}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn script_commands_carry_the_hash_and_the_call() {
        let script = Script::new("return {1}");
        // SHA-1 of "return {1}", as `sha1sum` prints it.
        assert_eq!(
            &script.sha1_hex,
            b"9c8545b8579e405965831fc6d1e3d0b3ac248d51"
        );
        let mut call = ScriptCall::default();
        call.key(&[b"k"]).arg(&[b"7"]);
        let mut out = Vec::new();
        script_command(&mut out, b"EVALSHA", &script.sha1_hex, &call);
        let expected = [
            &b"*5\r\n$7\r\nEVALSHA\r\n$40\r\n"[..],
            &script.sha1_hex,
            b"\r\n$1\r\n1\r\n$1\r\nk\r\n$1\r\n7\r\n",
        ]
        .concat();
        assert_eq!(out, expected);
    }
}

//! The socket under one upstream connection, with Kong's per-try read and
//! write timeouts enforced here, at the connection level: a wait is timed only
//! while it is pending, and the connection's single timer is re-armed only when
//! it fires early, so a request costs no timer registration of its own.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::client::TlsStream;

/// Shared between the pool (which knows the request's phase and the service's
/// timeouts) and the socket (which enforces them).
#[derive(Debug)]
pub struct ConnControl {
    /// The request was fully written; reads are now timed by `read_timeout`.
    awaiting_response: AtomicBool,
    read_timeout_ms: AtomicU64,
    write_timeout_ms: AtomicU64,
}

impl ConnControl {
    pub fn new(read_timeout: Duration, write_timeout: Duration) -> Self {
        let control = ConnControl {
            awaiting_response: AtomicBool::new(false),
            read_timeout_ms: AtomicU64::new(0),
            write_timeout_ms: AtomicU64::new(0),
        };
        control.configure(read_timeout, write_timeout);
        control
    }

    /// Sets the timeouts of the request about to be sent on this connection.
    pub fn configure(&self, read_timeout: Duration, write_timeout: Duration) {
        self.read_timeout_ms
            .store(duration_ms(read_timeout), Ordering::Relaxed);
        self.write_timeout_ms
            .store(duration_ms(write_timeout), Ordering::Relaxed);
    }

    pub fn set_awaiting_response(&self, awaiting: bool) {
        self.awaiting_response.store(awaiting, Ordering::Relaxed);
    }

    fn awaiting_response(&self) -> bool {
        self.awaiting_response.load(Ordering::Relaxed)
    }

    fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms.load(Ordering::Relaxed))
    }

    fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms.load(Ordering::Relaxed))
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A plain or TLS upstream socket.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

pub struct UpstreamIo {
    stream: Stream,
    control: Arc<ConnControl>,
    timer: Pin<Box<Sleep>>,
    /// Deadline the timer is registered for, while it has not fired.
    timer_deadline: Option<Instant>,
    read_wait_since: Option<Instant>,
    write_wait_since: Option<Instant>,
}

impl UpstreamIo {
    pub fn new(stream: Stream, control: Arc<ConnControl>) -> Self {
        Self {
            stream,
            control,
            timer: Box::pin(tokio::time::sleep_until(far_future())),
            timer_deadline: None,
            read_wait_since: None,
            write_wait_since: None,
        }
    }

    /// `Ready(Err)` when `deadline` passed; otherwise makes sure the timer
    /// wakes this task no later than `deadline`. `now` is the caller's clock read.
    fn poll_deadline(
        &mut self,
        cx: &mut Context<'_>,
        mut now: Instant,
        deadline: Instant,
    ) -> Poll<io::Error> {
        loop {
            if now >= deadline {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "upstream timed out",
                ));
            }
            match self.timer_deadline {
                // An earlier wake-up is fine: the wait is re-checked then.
                Some(armed) if armed <= deadline => {}
                _ => {
                    self.timer.as_mut().reset(deadline);
                    self.timer_deadline = Some(deadline);
                }
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    self.timer_deadline = None;
                    now = Instant::now();
                }
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

use std::future::Future;

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        match result {
            Poll::Ready(r) => {
                this.read_wait_since = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !this.control.awaiting_response() {
                    this.read_wait_since = None;
                    return Poll::Pending;
                }
                let now = Instant::now();
                let since = *this.read_wait_since.get_or_insert(now);
                let deadline = since + this.control.read_timeout();
                this.poll_deadline(cx, now, deadline).map(Err)
            }
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        this.after_write(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        };
        this.after_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        };
        this.after_write(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl UpstreamIo {
    fn after_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(r) => {
                self.write_wait_since = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let now = Instant::now();
                let since = *self.write_wait_since.get_or_insert(now);
                let deadline = since + self.control.write_timeout();
                self.poll_deadline(cx, now, deadline).map(Err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair(control: Arc<ConnControl>) -> (UpstreamIo, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (
            UpstreamIo::new(Stream::Plain(client.unwrap()), control),
            accepted.unwrap().0,
        )
    }

    #[tokio::test]
    async fn reads_time_out_only_while_awaiting_a_response() {
        let control = Arc::new(ConnControl::new(
            Duration::from_millis(200),
            Duration::from_secs(1),
        ));
        let (mut io, mut peer) = pair(Arc::clone(&control)).await;
        let mut buf = [0u8; 8];

        // Idle: no deadline applies.
        let idle = tokio::time::timeout(Duration::from_millis(400), io.read(&mut buf)).await;
        assert!(idle.is_err(), "idle read must stay pending");

        control.set_awaiting_response(true);
        peer.write_all(b"hi").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 2);
        let started = Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }
}

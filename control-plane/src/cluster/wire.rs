//! The control plane's side of the `Sync` stream on the wire: gRPC message
//! framing, the response body, and the snapshot frames all streams share.
//!
//! A published snapshot is encoded, and gzip-compressed when the data plane
//! accepts gzip, once per snapshot whatever the number of data planes: every
//! stream then sends the same reference-counted bytes, so a fan-out costs
//! neither a deep copy nor a protobuf encoding nor a compression per stream.
//! Small messages (heartbeats, refusals) are encoded per stream and sent
//! uncompressed; gRPC marks compression per message, so a data plane decodes
//! both. The protocol messages (`proto/`) are unchanged.

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use prost::Message;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::{mpsc, OnceCell};
use tollgate_proto::v1::{ControlPlaneMessage, Snapshot};
use tonic::Status;

/// The gRPC message prefix: compressed flag, then the length (big endian).
const HEADER_LEN: usize = 5;

/// The largest message the control plane sends.
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// The field number of `snapshot` in `ControlPlaneMessage.kind`.
const SNAPSHOT_FIELD: u32 = 1;

/// gzip level of shared snapshot frames. Compression now runs once per
/// snapshot rather than per stream, but it is still on the path from a write
/// to the data planes' acks: level 1 takes a fraction of the time of level 6
/// (tonic's) for a slightly larger frame.
const GZIP_LEVEL: u32 = 1;

/// One gRPC length-prefixed message.
fn frame(payload: &[u8], compressed: bool) -> Result<Bytes, Status> {
    if payload.len() > MAX_MESSAGE {
        return Err(Status::resource_exhausted(format!(
            "message of {} bytes exceeds the {MAX_MESSAGE}-byte limit",
            payload.len()
        )));
    }
    let length = u32::try_from(payload.len())
        .map_err(|_| Status::resource_exhausted("message longer than 4 GiB"))?;
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
    out.put_u8(u8::from(compressed));
    out.put_u32(length);
    out.put_slice(payload);
    Ok(out.freeze())
}

/// A small message framed for one stream, uncompressed.
pub fn message_frame(message: &ControlPlaneMessage) -> Result<Bytes, Status> {
    frame(&message.encode_to_vec(), false)
}

/// `ControlPlaneMessage { kind: Snapshot(snapshot) }` encoded from a borrowed
/// snapshot: the oneof field is written directly, so the snapshot is not
/// cloned into a message first.
pub fn encode_snapshot_message(snapshot: &Snapshot) -> Vec<u8> {
    let len = snapshot.encoded_len();
    let mut out = Vec::with_capacity(len + 16);
    prost::encoding::message::encode(SNAPSHOT_FIELD, snapshot, &mut out);
    out
}

fn gzip(payload: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(payload.len() / 3),
        flate2::Compression::new(GZIP_LEVEL),
    );
    encoder.write_all(payload)?;
    encoder.finish()
}

/// The frames of one snapshot, each built on first use.
struct Frames {
    snapshot: Arc<Snapshot>,
    plain: OnceCell<Bytes>,
    gzip: OnceCell<Bytes>,
}

impl Frames {
    async fn plain(&self) -> Result<Bytes, Status> {
        self.plain
            .get_or_try_init(|| {
                let snapshot = self.snapshot.clone();
                blocking(move || frame(&encode_snapshot_message(&snapshot), false))
            })
            .await
            .cloned()
    }

    async fn gzip(&self) -> Result<Bytes, Status> {
        self.gzip
            .get_or_try_init(|| async {
                let plain = self.plain().await?;
                blocking(move || {
                    let compressed = gzip(&plain[HEADER_LEN..])
                        .map_err(|e| Status::internal(format!("gzip: {e}")))?;
                    frame(&compressed, true)
                })
                .await
            })
            .await
            .cloned()
    }
}

/// Encoding and compression are CPU work: off the async workers.
async fn blocking(
    work: impl FnOnce() -> Result<Bytes, Status> + Send + 'static,
) -> Result<Bytes, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("snapshot encoding aborted: {e}")))?
}

/// The frames of the latest snapshot any stream asked for, shared by all
/// streams of a [`super::ClusterService`]; cheap to clone.
#[derive(Clone, Default)]
pub struct SnapshotFrames {
    latest: Arc<Mutex<Option<Arc<Frames>>>>,
}

impl SnapshotFrames {
    /// The frame carrying `snapshot`, gzip-compressed or not. Concurrent
    /// callers for the same snapshot wait for one encoding.
    pub async fn frame(&self, snapshot: &Arc<Snapshot>, gzip: bool) -> Result<Bytes, Status> {
        let frames = self.frames_of(snapshot);
        if gzip {
            frames.gzip().await
        } else {
            frames.plain().await
        }
    }

    fn frames_of(&self, snapshot: &Arc<Snapshot>) -> Arc<Frames> {
        let fresh = || {
            Arc::new(Frames {
                snapshot: snapshot.clone(),
                plain: OnceCell::new(),
                gzip: OnceCell::new(),
            })
        };
        // A poisoned lock only means a panic elsewhere mid-swap: encode
        // without the cache rather than fail the stream.
        let Ok(mut latest) = self.latest.lock() else {
            return fresh();
        };
        match latest.as_ref() {
            Some(cached) if Arc::ptr_eq(&cached.snapshot, snapshot) => cached.clone(),
            // A stream still sending an older snapshot does not evict the newer one.
            Some(cached) if cached.snapshot.version > snapshot.version => fresh(),
            _ => {
                let frames = fresh();
                *latest = Some(frames.clone());
                frames
            }
        }
    }
}

/// The response body of one stream: the frames its task queues, then the
/// `grpc-status: 0` trailers once the task is done.
pub struct OutBody {
    frames: mpsc::Receiver<Bytes>,
    finished: bool,
}

impl OutBody {
    pub fn new(frames: mpsc::Receiver<Bytes>) -> Self {
        Self {
            frames,
            finished: false,
        }
    }
}

impl http_body::Body for OutBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.frames.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(bytes)) => Poll::Ready(Some(Ok(http_body::Frame::data(bytes)))),
            Poll::Ready(None) => {
                self.finished = true;
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::io::Read as _;
    use tollgate_proto::v1::control_plane_message::Kind;

    fn snapshot(version: u64) -> Arc<Snapshot> {
        let config = tollgate_shared::declarative::parse(
            "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://127.0.0.1:3000\n    routes:\n      - paths: [\"/a\"]\n",
        )
        .unwrap();
        let snapshot = tollgate_shared::snapshot::Snapshot::new(version, config);
        Arc::new(snapshot.to_proto(1234))
    }

    /// Splits a frame into (compressed flag, payload) after checking its length prefix.
    fn unframe(frame: &[u8]) -> (bool, Vec<u8>) {
        let length = u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize;
        assert_eq!(length, frame.len() - HEADER_LEN);
        (frame[0] == 1, frame[HEADER_LEN..].to_vec())
    }

    fn decode(payload: &[u8]) -> Snapshot {
        match ControlPlaneMessage::decode(payload).unwrap().kind {
            Some(Kind::Snapshot(snapshot)) => snapshot,
            other => panic!("not a snapshot: {other:?}"),
        }
    }

    #[tokio::test]
    async fn shared_frames_decode_to_the_published_snapshot() {
        let frames = SnapshotFrames::default();
        let published = snapshot(7);

        let plain = frames.frame(&published, false).await.unwrap();
        let (compressed, payload) = unframe(&plain);
        assert!(!compressed);
        assert_eq!(decode(&payload), *published);
        // Byte for byte what encoding the wrapped message gives.
        let wrapped = ControlPlaneMessage {
            kind: Some(Kind::Snapshot((*published).clone())),
        };
        assert_eq!(payload, wrapped.encode_to_vec());

        let gz = frames.frame(&published, true).await.unwrap();
        let (compressed, payload) = unframe(&gz);
        assert!(compressed);
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(payload.as_slice())
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(decode(&inflated), *published);
    }

    #[tokio::test]
    async fn streams_share_one_encoding_per_snapshot() {
        let frames = SnapshotFrames::default();
        let first = snapshot(1);
        let a = frames.frame(&first, true).await.unwrap();
        let b = frames.frame(&first, true).await.unwrap();
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same buffer, not a copy");

        let second = snapshot(2);
        let c = frames.frame(&second, true).await.unwrap();
        assert_ne!(a.as_ptr(), c.as_ptr());
        // An older snapshot is still served, without evicting the newer one.
        let old = frames.frame(&first, true).await.unwrap();
        assert_eq!(unframe(&old), unframe(&a));
        let again = frames.frame(&second, true).await.unwrap();
        assert_eq!(c.as_ptr(), again.as_ptr());
    }

    #[test]
    fn small_messages_are_framed_uncompressed() {
        let msg = ControlPlaneMessage {
            kind: Some(Kind::Refusal(tollgate_proto::v1::Refusal {
                reason: "no".into(),
            })),
        };
        let (compressed, payload) = unframe(&message_frame(&msg).unwrap());
        assert!(!compressed);
        assert_eq!(
            ControlPlaneMessage::decode(payload.as_slice()).unwrap(),
            msg
        );
    }
}

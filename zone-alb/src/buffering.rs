//! The buffer knobs that change what a client or backend observes, on hyper's path:
//! `proxy-buffer-size` bounds the backend's response head, and `proxy-request-buffering: on`
//! reads the whole request body before the backend is contacted — in memory up to
//! `client-body-buffer-size`, in an unnamed temporary file beyond (nginx's
//! `client_body_temp_path`) — so a backend never sees part of a body its client stalled on.

use std::io::{Seek, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response};
use tokio::io::{AsyncRead, ReadBuf};

use crate::policy::ProxyError;
use crate::proxy::{Body, BoxError};
use crate::server::MAX_HEADER_BYTES;
use crate::upload::{Fault, Watch};

/// The size of a response head as the backend sent it (status line, fields, blank line),
/// give or take the whitespace hyper normalises.
pub(crate) fn head_size<B>(resp: &Response<B>) -> u64 {
    let reason = resp
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| r.as_bytes().len())
        .unwrap_or_else(|| resp.status().canonical_reason().map_or(0, str::len));
    let status_line = "HTTP/1.1 200 ".len() + reason + 2;
    let fields: usize = resp
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    (status_line + fields + 2) as u64
}

/// Whether the backend's response head fits `proxy-buffer-size`, or without it the bound the
/// fast path holds every head to ([`MAX_HEADER_BYTES`]), so both paths refuse the same heads
/// (hyper's client alone would take ~400 KiB).
pub(crate) fn head_fits<B>(resp: &Response<B>, limit: Option<u64>) -> bool {
    head_size(resp) <= limit.unwrap_or(MAX_HEADER_BYTES as u64)
}

/// Where a buffered body ended up.
pub(crate) enum Buffered {
    Memory(Bytes),
    File(std::fs::File, u64),
}

/// Reads `body` whole: in memory up to `in_memory` bytes, the rest spilled to a temporary file.
pub(crate) async fn read_whole<B>(body: B, in_memory: u64) -> Result<Buffered, BoxError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut body = body;
    let mut memory = BytesMut::new();
    let mut file: Option<(std::fs::File, u64)> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Into::into)?;
        let Ok(data) = frame.into_data() else { continue }; // trailers are not forwarded
        match &mut file {
            Some((f, len)) => {
                f.write_all(&data)?;
                *len += data.len() as u64;
            }
            None if (memory.len() + data.len()) as u64 > in_memory => {
                let mut f = tempfile::tempfile()?;
                f.write_all(&memory)?;
                f.write_all(&data)?;
                file = Some((f, (memory.len() + data.len()) as u64));
                memory = BytesMut::new();
            }
            None => memory.extend_from_slice(&data),
        }
    }
    Ok(match file {
        Some((mut f, len)) => {
            f.flush()?;
            f.rewind()?;
            Buffered::File(f, len)
        }
        None => Buffered::Memory(memory.freeze()),
    })
}

/// `proxy-request-buffering: on`: the request's body read whole (its limit and the client's
/// body timeout still apply as it is read), then sent with a Content-Length, as nginx does.
pub(crate) async fn buffer_request(
    req: Request<Body>,
    watch: &Watch,
    in_memory: u64,
) -> Result<Request<Body>, ProxyError> {
    if req.body().is_end_stream() {
        return Ok(req);
    }
    let (mut parts, body) = req.into_parts();
    let buffered = read_whole(body, in_memory).await.map_err(|_| match watch.fault() {
        Some(Fault::TooLarge) => ProxyError::TooLarge,
        Some(Fault::Stalled) => ProxyError::BodyTimeout,
        _ => ProxyError::BadRequest,
    })?;
    let (body, len) = match buffered {
        Buffered::Memory(bytes) => {
            let len = bytes.len() as u64;
            (crate::proxy::full(bytes), len)
        }
        Buffered::File(file, len) => {
            let body = FileBody {
                file: tokio::fs::File::from_std(file),
                left: len,
            };
            (body.boxed(), len)
        }
    };
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(Request::from_parts(parts, body))
}

/// A spilled body, read back from its temporary file (deleted when closed).
struct FileBody {
    file: tokio::fs::File,
    left: u64,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let mut chunk = vec![0u8; 64 << 10];
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut self.file).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err("temporary body file ended early".into())));
                }
                let n = n.min(usize::try_from(self.left).unwrap_or(usize::MAX));
                self.left -= n as u64;
                chunk.truncate(n);
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    fn chunks(parts: Vec<Vec<u8>>) -> impl hyper::body::Body<Data = Bytes, Error = BoxError> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> =
            parts.into_iter().map(|p| Ok(Frame::data(Bytes::from(p)))).collect();
        StreamBody::new(futures::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_small_body_stays_in_memory_and_a_big_one_spills_intact() {
        let small = read_whole(chunks(vec![b"hel".to_vec(), b"lo".to_vec()]), 8)
            .await
            .unwrap();
        assert!(matches!(small, Buffered::Memory(ref b) if &b[..] == b"hello"));
        let parts: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 10_000]).collect();
        let whole: Vec<u8> = parts.concat();
        let Buffered::File(file, len) = read_whole(chunks(parts), 8 << 10).await.unwrap() else {
            panic!("400 kB over an 8 KiB buffer spills to a file");
        };
        assert_eq!(len, whole.len() as u64);
        let back = FileBody {
            file: tokio::fs::File::from_std(file),
            left: len,
        }
        .collect()
        .await
        .unwrap()
        .to_bytes();
        assert_eq!(back.len(), whole.len());
        assert!(back[..] == whole[..], "read back byte for byte");
    }

    #[test]
    fn the_response_head_is_measured_as_sent() {
        let resp = Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .body(())
            .unwrap();
        // "HTTP/1.1 200 OK\r\n" + "content-type: text/plain\r\n" + "\r\n"
        assert_eq!(head_size(&resp), 17 + 26 + 2);
        assert!(head_fits(&resp, Some(45)) && !head_fits(&resp, Some(44)) && head_fits(&resp, None));
        let big = Response::builder()
            .status(200)
            .header("set-cookie", "a".repeat(5000))
            .body(())
            .unwrap();
        assert!(!head_fits(&big, Some(4 << 10)), "nginx's default 4k would refuse it");
        assert!(head_fits(&big, Some(8 << 10)));
        // Without the annotation, the fast path's bound; `proxy-buffer-size: 128k` lifts it.
        let huge = Response::builder()
            .status(200)
            .header("x-big", "a".repeat(70_000))
            .body(())
            .unwrap();
        assert!(!head_fits(&huge, None));
        assert!(head_fits(&huge, Some(128 << 10)));
    }
}

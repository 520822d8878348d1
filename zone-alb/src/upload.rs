//! A client's request body on its way upstream through hyper's path: streamed as it arrives,
//! never buffered. The body limit is enforced as bytes pass (a body of unknown length, chunked
//! or HTTP/2, cannot be judged by its head); a client that sends nothing of it for
//! [`CLIENT_BODY_TIMEOUT`] fails it (nginx's `client_body_timeout`); and the moment it has all
//! been read is signalled, so the read timeout starts then, as nginx's `proxy_read_timeout`
//! does, and a slow upload is governed by `proxy-send-timeout` alone.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use tokio::sync::oneshot;
use tokio::time::Sleep;

use crate::proxy::BoxError;

/// A client must send some of its body within this time.
pub(crate) const CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an upload failed, as the body's error (hyper's client aborts the exchange on it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum UploadError {
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    #[error("client sent nothing of its body for {0:?}")]
    Stalled(Duration),
}

pub(crate) struct Upload<B = Incoming> {
    body: B,
    limit: Option<u64>,
    passed: u64,
    stalled: Option<Pin<Box<Sleep>>>,
    /// Fired once the whole body has been read (dropped unfired if it fails).
    sent: Option<oneshot::Sender<()>>,
    /// Set when the limit was crossed, so the caller can answer 413 rather than 502.
    too_large: Arc<AtomicBool>,
}

/// What the caller keeps of an upload.
pub(crate) struct Watch {
    /// Resolves when the body has all been read (or has failed).
    pub sent: oneshot::Receiver<()>,
    pub too_large: Arc<AtomicBool>,
}

impl<B: hyper::body::Body> Upload<B> {
    pub(crate) fn new(body: B, limit: Option<u64>) -> (Self, Watch) {
        let (tx, rx) = oneshot::channel();
        let too_large = Arc::new(AtomicBool::new(false));
        let mut upload = Self {
            body,
            limit,
            passed: 0,
            stalled: None,
            sent: Some(tx),
            too_large: too_large.clone(),
        };
        if upload.body.is_end_stream() {
            upload.finished();
        }
        (upload, Watch { sent: rx, too_large })
    }

    fn finished(&mut self) {
        if let Some(sent) = self.sent.take() {
            let _ = sent.send(());
        }
    }
}

impl<B> hyper::body::Body for Upload<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.stalled = None;
                if let Some(data) = frame.data_ref() {
                    this.passed += data.len() as u64;
                    if let Some(limit) = this.limit
                        && this.passed > limit
                    {
                        this.too_large.store(true, Ordering::Relaxed);
                        this.sent = None;
                        return Poll::Ready(Some(Err(Box::new(UploadError::TooLarge(limit)))));
                    }
                }
                if this.body.is_end_stream() {
                    this.finished();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.sent = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.finished();
                Poll::Ready(None)
            }
            Poll::Pending => {
                let stalled = this
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(CLIENT_BODY_TIMEOUT)));
                ready!(stalled.as_mut().poll(cx));
                this.sent = None;
                Poll::Ready(Some(Err(Box::new(UploadError::Stalled(CLIENT_BODY_TIMEOUT)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn chunks(parts: &[&'static str]) -> impl hyper::body::Body<Data = Bytes, Error = BoxError> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_body_within_the_limit_passes_whole_and_says_when_it_is_sent() {
        let (upload, mut watch) = Upload::new(chunks(&["hel", "lo"]), Some(5));
        assert!(watch.sent.try_recv().is_err(), "not yet");
        let body = upload.collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
        watch.sent.await.expect("signalled at the end");
        assert!(!watch.too_large.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_fails_as_it_crosses_it() {
        let (upload, watch) = Upload::new(chunks(&["hel", "lo", "!"]), Some(5));
        let error = upload.collect().await.expect_err("over the limit");
        assert!(error.to_string().contains("larger than 5"), "{error}");
        assert!(watch.too_large.load(Ordering::Relaxed));
        assert!(watch.sent.await.is_err(), "never sent whole");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_sending_fails_the_upload() {
        let stream = futures::stream::pending::<Result<Frame<Bytes>, BoxError>>();
        let (upload, _watch) = Upload::new(StreamBody::new(stream), None);
        let error = upload.collect().await.expect_err("stalled");
        assert!(error.to_string().contains("sent nothing"), "{error}");
    }
}

//! A client's request body on its way upstream through hyper's path: streamed as it arrives,
//! never buffered. The body limit is enforced as bytes pass (a body of unknown length, chunked
//! or HTTP/2, cannot be judged by its head); a client that sends nothing of it for
//! [`CLIENT_BODY_TIMEOUT`] fails it (nginx's `client_body_timeout`); and the moment it has all
//! been read is signalled, so the read timeout starts then, as nginx's `proxy_read_timeout`
//! does, and a slow upload is governed by `proxy-send-timeout` alone.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
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
    /// Set when the client's side failed, so the caller answers 4xx rather than 502.
    fault: Arc<AtomicU8>,
}

/// How the client's side of an upload failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Over the body limit (413).
    TooLarge = 1,
    /// A body that breaks HTTP (a malformed chunk), or a client gone mid-body (400).
    Malformed = 2,
    /// Nothing of it for the client body timeout (408, as nginx).
    Stalled = 3,
}

/// What the caller keeps of an upload.
pub(crate) struct Watch {
    /// Resolves when the body has all been read (or has failed); taken by the exchange.
    pub sent: Option<oneshot::Receiver<()>>,
    fault: Arc<AtomicU8>,
}

impl Watch {
    /// Whether (and how) the upload failed on the client's side.
    pub(crate) fn fault(&self) -> Option<Fault> {
        match self.fault.load(Ordering::Relaxed) {
            1 => Some(Fault::TooLarge),
            2 => Some(Fault::Malformed),
            3 => Some(Fault::Stalled),
            _ => None,
        }
    }
}

impl<B: hyper::body::Body> Upload<B> {
    pub(crate) fn new(body: B, limit: Option<u64>) -> (Self, Watch) {
        let (tx, rx) = oneshot::channel();
        let fault = Arc::new(AtomicU8::new(0));
        let mut upload = Self {
            body,
            limit,
            passed: 0,
            stalled: None,
            sent: Some(tx),
            fault: fault.clone(),
        };
        if upload.body.is_end_stream() {
            upload.finished();
        }
        let watch = Watch { sent: Some(rx), fault };
        (upload, watch)
    }

    fn failed(&mut self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::Relaxed);
        self.sent = None;
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
                        this.failed(Fault::TooLarge);
                        return Poll::Ready(Some(Err(Box::new(UploadError::TooLarge(limit)))));
                    }
                }
                if this.body.is_end_stream() {
                    this.finished();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.failed(Fault::Malformed);
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
                this.failed(Fault::Stalled);
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
        assert!(watch.sent.as_mut().unwrap().try_recv().is_err(), "not yet");
        let body = upload.collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
        watch.sent.take().unwrap().await.expect("signalled at the end");
        assert_eq!(watch.fault(), None);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_fails_as_it_crosses_it() {
        let (upload, mut watch) = Upload::new(chunks(&["hel", "lo", "!"]), Some(5));
        let error = upload.collect().await.expect_err("over the limit");
        assert!(error.to_string().contains("larger than 5"), "{error}");
        assert_eq!(watch.fault(), Some(Fault::TooLarge));
        assert!(watch.sent.take().unwrap().await.is_err(), "never sent whole");
    }

    #[tokio::test]
    async fn a_broken_body_is_the_clients_fault() {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Err("invalid chunk size".into()),
        ];
        let (upload, watch) = Upload::new(StreamBody::new(futures::stream::iter(frames)), None);
        upload.collect().await.expect_err("malformed");
        assert_eq!(watch.fault(), Some(Fault::Malformed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_sending_fails_the_upload() {
        let stream = futures::stream::pending::<Result<Frame<Bytes>, BoxError>>();
        let (upload, watch) = Upload::new(StreamBody::new(stream), None);
        let error = upload.collect().await.expect_err("stalled");
        assert!(error.to_string().contains("sent nothing"), "{error}");
        assert_eq!(watch.fault(), Some(Fault::Stalled));
    }
}

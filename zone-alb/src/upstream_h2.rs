//! HTTP/2 to backends, for `backend-protocol: GRPC` (h2c, prior knowledge) and `GRPCS` (h2
//! over TLS, ALPN `h2`, no certificate check, as ingress-nginx's `grpc_pass grpcs://`; a
//! Gateway API backend's BackendTLSPolicy is verified). One
//! multiplexed connection per endpoint carries every request to it, as nginx's gRPC proxy
//! keeps one; trailers (`grpc-status`) pass through as body frames.
//!
//! Timeouts as for HTTP/1.1: `connect` bounds TCP, TLS and the HTTP/2 handshake; `read` the
//! wait for the response head. A stream's later messages may be far apart (gRPC streaming),
//! so no timeout runs between them, as with `grpc_read_timeout` only between two reads of a
//! unary call.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

use crate::proxy::Body;
use crate::upstream::{Key, Timeouts, UpstreamError, connect_tcp};

/// The HTTP/2 connections of one zone ALB's worker, one per endpoint and protocol.
pub(crate) struct H2Upstreams {
    source_ip: Option<IpAddr>,
    tls: TlsConnector,
    /// Held only to clone or replace a sender, never across an await.
    conns: Mutex<HashMap<Key, SendRequest<Body>>>,
}

impl H2Upstreams {
    pub(crate) fn new(source_ip: Option<IpAddr>) -> Self {
        let mut config = crate::upstream::insecure_client_config();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self {
            source_ip,
            tls: TlsConnector::from(Arc::new(config)),
            conns: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `req` (absolute URI: HTTP/2 carries scheme and authority) to `key`.
    pub(crate) async fn send(
        &self,
        key: Key,
        req: Request<Body>,
        t: Timeouts,
        verified: Option<&Arc<crate::backend_tls::BackendTls>>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut sender = match self.open_sender(key) {
            Some(sender) => sender,
            None => {
                let sender = Box::pin(self.connect(key, t, verified)).await?;
                self.conns
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, sender.clone());
                sender
            }
        };
        // A connection at its stream limit makes this wait, bounded by the read timeout.
        let exchange = async {
            sender.ready().await?;
            sender.send_request(req).await
        };
        match tokio::time::timeout(t.read, exchange).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(UpstreamError::Http(e)),
            Err(_) => Err(UpstreamError::ReadTimeout(t.read)),
        }
    }

    /// The endpoint's connection if it is still open (a closed one is forgotten).
    fn open_sender(&self, key: Key) -> Option<SendRequest<Body>> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        match conns.get(&key) {
            Some(sender) if !sender.is_closed() => Some(sender.clone()),
            Some(_) => {
                conns.remove(&key);
                None
            }
            None => None,
        }
    }

    async fn connect(
        &self,
        key: Key,
        t: Timeouts,
        verified: Option<&Arc<crate::backend_tls::BackendTls>>,
    ) -> Result<SendRequest<Body>, UpstreamError> {
        let handshake = async {
            let stream = connect_tcp(key.addr, self.source_ip)
                .await
                .map_err(UpstreamError::Connect)?;
            let stream = if let Some(tls) = verified {
                let name = tls
                    .name
                    .clone()
                    .unwrap_or_else(|| ServerName::IpAddress(key.addr.ip().into()));
                let connector = TlsConnector::from(tls.config_h2.clone());
                Either::Right(connector.connect(name, stream).await.map_err(UpstreamError::Tls)?)
            } else if key.tls.is_some() {
                let name = ServerName::IpAddress(key.addr.ip().into());
                Either::Right(self.tls.connect(name, stream).await.map_err(UpstreamError::Tls)?)
            } else {
                Either::Left(stream)
            };
            http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake::<_, Body>(TokioIo::new(stream))
                .await
                .map_err(UpstreamError::Http)
        };
        let (sender, conn) = tokio::time::timeout(t.connect, handshake)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(t.connect))??;
        let addr: SocketAddr = key.addr;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%addr, %error, "HTTP/2 upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

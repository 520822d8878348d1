//! An upgraded connection (WebSocket) spliced to its backend: bytes copied both ways until
//! both sides have closed, or until nothing has passed either way for the idle timeout (the
//! route's `proxy-read-timeout`, as nginx applies it to WebSocket connections). Without it a
//! silent peer would hold two sockets, and its in-flight slot, for ever.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

const BUFFER: usize = 16 * 1024;

/// Copies until both directions have ended; `TimedOut` after `idle` without a byte either way
/// (or when one side accepts nothing for that long).
pub(crate) async fn splice<A, B>(mut client: A, mut upstream: B, idle: Duration) -> std::io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut from_client = vec![0u8; BUFFER];
    let mut from_upstream = vec![0u8; BUFFER];
    let (mut client_open, mut upstream_open) = (true, true);
    let timed_out = || std::io::Error::from(std::io::ErrorKind::TimedOut);
    // An absurd timeout (an annotation's) must not overflow the clock: a day is for ever here.
    let idle = idle.min(Duration::from_secs(86_400));
    let mut deadline = Instant::now() + idle;
    while client_open || upstream_open {
        tokio::select! {
            read = client.read(&mut from_client), if client_open => match read? {
                0 => {
                    client_open = false;
                    // Bounded too: on TLS a shutdown writes, to a peer that may not read.
                    let _ = tokio::time::timeout(idle, upstream.shutdown()).await;
                }
                n => tokio::time::timeout(idle, upstream.write_all(&from_client[..n]))
                    .await
                    .map_err(|_| timed_out())??,
            },
            read = upstream.read(&mut from_upstream), if upstream_open => match read? {
                0 => {
                    upstream_open = false;
                    let _ = tokio::time::timeout(idle, client.shutdown()).await;
                }
                n => tokio::time::timeout(idle, client.write_all(&from_upstream[..n]))
                    .await
                    .map_err(|_| timed_out())??,
            },
            () = tokio::time::sleep_until(deadline) => return Err(timed_out()),
        }
        deadline = Instant::now() + idle;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bytes_flow_both_ways_and_silence_ends_it() {
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (upstream, mut upstream_peer) = tokio::io::duplex(64);
        let spliced = tokio::spawn(splice(client, upstream, Duration::from_secs(5)));
        client_peer.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        upstream_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        upstream_peer.write_all(b"pong").await.unwrap();
        client_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        // Then nothing either way: the clock runs out (paused time advances by itself).
        let error = spliced.await.unwrap().expect_err("idle");
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn it_ends_when_both_sides_close() {
        let (client, client_peer) = tokio::io::duplex(64);
        let (upstream, upstream_peer) = tokio::io::duplex(64);
        let spliced = tokio::spawn(splice(client, upstream, Duration::from_secs(5)));
        drop((client_peer, upstream_peer));
        spliced.await.unwrap().expect("closed cleanly");
    }
}

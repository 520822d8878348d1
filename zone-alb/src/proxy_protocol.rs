//! PROXY protocol v1 and v2 (`--proxy-protocol`), for when an L4 load balancer in front
//! passes the client's address in a header at the start of each connection. Parsing is ppp's;
//! here we only wait for a whole header and consume exactly its bytes.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::{HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// v1 headers are at most 107 bytes; v2 at most 16 + 65535, but an L4 balancer's are small.
const MAX_HEADER: usize = 536;
/// How long to wait between looks at a header that has only partly arrived.
const RETRY: Duration = Duration::from_millis(2);

/// What a header says about the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    /// The client as the balancer saw it.
    Client(SocketAddr),
    /// A LOCAL or UNKNOWN header (health checks of the balancer): use the peer address.
    Peer,
}

/// Reads the PROXY header off `stream` (the caller bounds the wait with a timeout).
pub async fn read_header(stream: &mut TcpStream) -> Result<Source, String> {
    let mut buf = [0u8; MAX_HEADER];
    loop {
        let n = stream.peek(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before a PROXY header".into());
        }
        let (len, source) = match parse(&buf[..n])? {
            Some(parsed) => parsed,
            None if n == MAX_HEADER => return Err("PROXY header too long".into()),
            None => {
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut header = vec![0u8; len];
        stream.read_exact(&mut header).await.map_err(|e| e.to_string())?;
        return Ok(source);
    }
}

/// The header's length and source, `None` while it is incomplete.
fn parse(bytes: &[u8]) -> Result<Option<(usize, Source)>, String> {
    let result = HeaderResult::parse(bytes);
    if !result.is_complete() {
        return Ok(None);
    }
    let ip = |ip: IpAddr, port: u16| Source::Client(SocketAddr::new(ip, port));
    match result {
        HeaderResult::V1(Ok(h)) => {
            let source = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => ip(a.source_address.into(), a.source_port),
                ppp::v1::Addresses::Tcp6(a) => ip(a.source_address.into(), a.source_port),
                ppp::v1::Addresses::Unknown => Source::Peer,
            };
            Ok(Some((h.header.len(), source)))
        }
        HeaderResult::V2(Ok(h)) => {
            let source = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => Source::Peer,
                (_, ppp::v2::Addresses::IPv4(a)) => ip(a.source_address.into(), a.source_port),
                (_, ppp::v2::Addresses::IPv6(a)) => ip(a.source_address.into(), a.source_port),
                _ => Source::Peer,
            };
            Ok(Some((h.header.len(), source)))
        }
        HeaderResult::V1(Err(e)) => Err(format!("bad PROXY v1 header: {e}")),
        HeaderResult::V2(Err(e)) => Err(format!("bad PROXY v2 header: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_headers_give_the_client_and_their_length() {
        let v1 = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\nGET / HTTP/1.1\r\n";
        let (len, source) = parse(v1).unwrap().unwrap();
        assert_eq!(&v1[len..len + 3], b"GET");
        assert_eq!(source, Source::Client("203.0.113.9:5555".parse().unwrap()));
        assert_eq!(parse(b"PROXY TCP4 203.0.113.9").unwrap(), None, "incomplete");
        assert!(parse(b"GET / HTTP/1.1\r\n\r\n").is_err(), "no header");

        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2.extend([0x21, 0x11, 0, 12, 198, 51, 100, 7, 127, 0, 0, 1, 0x1f, 0x90, 0, 80]);
        v2.extend(b"GET");
        let (len, source) = parse(&v2).unwrap().unwrap();
        assert_eq!(&v2[len..], b"GET");
        assert_eq!(source, Source::Client("198.51.100.7:8080".parse().unwrap()));
    }
}

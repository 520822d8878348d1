//! `ssl-passthrough`: TLS connections whose ClientHello names a pass-through host are not
//! terminated here; the raw connection is spliced to one of the host's backend endpoints, so
//! the client talks TLS with the backend and sees its certificate.
//!
//! As ingress-nginx's `tcpproxy`: the ClientHello is read (and replayed to whichever side takes
//! the connection), its SNI looked up among the exact hosts of Ingresses with
//! `ssl-passthrough: "true"` (wildcards never match there either), and anything else goes on
//! to termination. Unlike ingress-nginx, a ClientHello split over several TLS records is
//! reassembled (up to [`MAX_HELLO`] bytes), and the connection goes to the Service's endpoints
//! directly, from the ALB's address, rather than to its ClusterIP. A ClientHello we cannot
//! read is terminated as usual, and the certificate resolver refuses pass-through names, so
//! such a connection fails its handshake instead of getting the ALB's certificate.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::router::Backend;

/// The largest ClientHello (the handshake message) read for its SNI. Real ones, post-quantum
/// key shares included, are a few KiB; larger ones are left to the TLS stack.
pub const MAX_HELLO: usize = 16 * 1024;
/// The bytes read while looking for it: the message and its records' headers (a hello in
/// one-byte records is not worth reading).
const MAX_READ: usize = MAX_HELLO + 1024;
/// A spliced connection with nothing passing either way for this long is closed (nginx's
/// stream `proxy_timeout` default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Where a pass-through host's connections go.
#[derive(Clone, Debug)]
pub struct Target {
    /// The backend of the host's `/` rule (ingress-nginx's root location), or the Ingress's
    /// default backend; `None`: neither exists, and connections for the host are closed.
    pub backend: Option<Arc<Backend>>,
    /// The Ingress's `proxy-connect-timeout`.
    pub connect_timeout: Duration,
    /// `namespace/name` of the Ingress, for logs.
    pub ingress: Arc<str>,
}

/// What the bytes read so far say.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// A ClientHello, and the host name it asks for (lower case, no trailing dot).
    Sni(Option<String>),
    /// Not complete yet: read more.
    Incomplete,
    /// Not a ClientHello we can read (another protocol, an SSLv2-style hello, lengths that do
    /// not add up, or larger than [`MAX_HELLO`]): left to the TLS stack.
    Unreadable,
}

/// Parses the start of a TLS connection: one or more handshake records carrying a ClientHello.
pub fn parse(buf: &[u8]) -> Hello {
    Reassembly::default().advance(buf)
}

/// A ClientHello put together from the handshake records read so far. Each record is looked
/// at and copied once, however the bytes arrive: a hello sent a byte at a time, in one-byte
/// records, costs no more than one sent whole.
#[derive(Default)]
struct Reassembly {
    /// The handshake message's bytes from the complete records so far.
    message: Vec<u8>,
    /// How many of the connection's bytes those records took.
    consumed: usize,
}

impl Reassembly {
    /// What the connection's bytes so far say; each call with the same bytes and more.
    fn advance(&mut self, buf: &[u8]) -> Hello {
        debug_assert!(self.consumed <= buf.len(), "the same bytes and more on every call");
        loop {
            // The handshake message's own length, once its header has arrived.
            if self.message.len() >= 4 {
                let message = &self.message;
                if message[0] != 1 {
                    return Hello::Unreadable;
                }
                let len = u32::from_be_bytes([0, message[1], message[2], message[3]]) as usize;
                if len > MAX_HELLO {
                    return Hello::Unreadable;
                }
                if message.len() >= 4 + len {
                    // Bytes past the message in its last record would be another message,
                    // which a client may not send before the server's answer.
                    if message.len() > 4 + len {
                        return Hello::Unreadable;
                    }
                    return client_hello(&message[4..]).map_or(Hello::Unreadable, Hello::Sni);
                }
            }
            let rest = &buf[self.consumed..];
            // Records past the read bound are not read, however they arrive.
            if rest.len() < 5 {
                return if self.consumed + 5 > MAX_READ {
                    Hello::Unreadable
                } else {
                    Hello::Incomplete
                };
            }
            // A handshake record of TLS 1.0 to 1.3 (the record version says 3.1 at most, 3.0
            // in old clients' first record), at most 2^14 bytes and never empty.
            let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
            if rest[0] != 22 || rest[1] != 3 || rest[2] > 4 || len == 0 || len > 16384 {
                return Hello::Unreadable;
            }
            if self.consumed + 5 + len > MAX_READ {
                return Hello::Unreadable;
            }
            if rest.len() < 5 + len {
                return Hello::Incomplete;
            }
            self.message.extend_from_slice(&rest[5..5 + len]);
            self.consumed += 5 + len;
        }
    }
}

/// A cursor over a ClientHello's bytes; every read checks its length.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<usize> {
        Some(self.take(1)?[0] as usize)
    }
    fn u16(&mut self) -> Option<usize> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// The SNI of a ClientHello body; `None` when it is malformed.
fn client_hello(body: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    let session = r.vec8()?;
    let suites = r.vec16()?;
    let compression = r.vec8()?;
    if session.len() > 32 || suites.is_empty() || suites.len() % 2 != 0 || compression.is_empty() {
        return None;
    }
    if r.0.is_empty() {
        return Some(None); // no extensions at all
    }
    let extensions = r.vec16()?;
    if !r.0.is_empty() {
        return None;
    }
    let mut r = Reader(extensions);
    let mut sni = None;
    let mut seen_sni = false;
    while !r.0.is_empty() {
        let kind = r.u16()?;
        let data = r.vec16()?;
        if kind != 0 {
            continue;
        }
        // One server_name extension (RFC 8446 4.2), holding at most one host_name (RFC 6066 3).
        if seen_sni {
            return None;
        }
        seen_sni = true;
        let mut ext = Reader(data);
        let list = ext.vec16()?;
        if !ext.0.is_empty() || list.is_empty() {
            return None;
        }
        let mut list = Reader(list);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?;
            if name_type != 0 {
                continue; // other name types: not a host name, skipped as TLS stacks do
            }
            if sni.is_some() {
                return None;
            }
            sni = Some(host_name(name)?);
        }
    }
    Some(sni)
}

/// A DNS host name as SNI carries it, lower-cased and without a trailing dot.
fn host_name(name: &[u8]) -> Option<String> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !name.starts_with(b".")
        && !name.windows(2).any(|w| w == b"..");
    valid.then(|| String::from_utf8_lossy(name).to_ascii_lowercase())
}

/// Reads from `stream` into `read` until the ClientHello's SNI is known (the caller bounds the
/// time). Every byte read stays in `read`, to be replayed to whoever takes the connection.
pub async fn read_hello(stream: &mut TcpStream, read: &mut BytesMut) -> std::io::Result<Hello> {
    let mut hello = Reassembly::default();
    loop {
        match hello.advance(read) {
            Hello::Incomplete => {}
            done => return Ok(done),
        }
        read.reserve(4096);
        if stream.read_buf(read).await? == 0 {
            return Ok(Hello::Unreadable);
        }
    }
}

/// Splices `client` (whose first bytes, `read`, were already taken from it) to one of the
/// target's endpoints, from `source_ip`.
pub async fn splice(
    client: TcpStream,
    read: BytesMut,
    target: &Target,
    source_ip: Option<std::net::IpAddr>,
) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    let backend = target
        .backend
        .as_ref()
        .ok_or_else(|| Error::new(ErrorKind::NotFound, "no backend for the pass-through host"))?;
    let index = backend
        .pick()
        .ok_or_else(|| Error::new(ErrorKind::NotFound, "no ready endpoint"))?;
    let addr = backend.endpoints[index];
    let started = std::time::Instant::now();
    let connected = tokio::time::timeout(target.connect_timeout, crate::upstream::connect_tcp(addr, source_ip))
        .await
        .unwrap_or_else(|_| Err(ErrorKind::TimedOut.into()));
    let upstream = match connected {
        Ok(upstream) => {
            backend.finished(index, Some(started.elapsed()));
            upstream
        }
        Err(error) => {
            backend.finished(index, None);
            return Err(error);
        }
    };
    let client = crate::fastpath::Rewound::new(BytesMut::new(), client);
    let mut upstream = crate::fastpath::Rewound::new(BytesMut::new(), upstream);
    tokio::time::timeout(IDLE_TIMEOUT, tokio::io::AsyncWriteExt::write_all(&mut upstream, &read))
        .await
        .map_err(|_| Error::from(ErrorKind::TimedOut))??;
    crate::splice::splice(client, upstream, IDLE_TIMEOUT).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello body with these extensions.
    fn body(extensions: Option<&[u8]>) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend([7u8; 32]);
        b.push(0); // session id
        b.extend([0, 2, 0x13, 0x01]); // one cipher suite
        b.extend([1, 0]); // null compression
        if let Some(ext) = extensions {
            b.extend((ext.len() as u16).to_be_bytes());
            b.extend(ext);
        }
        b
    }

    fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut e = kind.to_be_bytes().to_vec();
        e.extend((data.len() as u16).to_be_bytes());
        e.extend(data);
        e
    }

    /// A server_name extension listing (type, name) entries.
    fn sni_ext(names: &[(u8, &[u8])]) -> Vec<u8> {
        let mut list = Vec::new();
        for (t, n) in names {
            list.push(*t);
            list.extend((n.len() as u16).to_be_bytes());
            list.extend(*n);
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend(list);
        ext(0, &data)
    }

    fn handshake(body: &[u8]) -> Vec<u8> {
        let mut m = vec![1];
        m.extend(&(body.len() as u32).to_be_bytes()[1..]);
        m.extend(body);
        m
    }

    /// The message in records of at most `size` bytes.
    fn records(message: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in message.chunks(size) {
            out.extend([22, 3, 1]);
            out.extend((chunk.len() as u16).to_be_bytes());
            out.extend(chunk);
        }
        out
    }

    fn hello(extensions: &[u8]) -> Vec<u8> {
        records(&handshake(&body(Some(extensions))), 16384)
    }

    fn sni(name: &str) -> Hello {
        Hello::Sni(Some(name.into()))
    }

    #[test]
    fn a_real_client_hello_names_its_host() {
        // rustls's own ClientHello, as a client would send it.
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("Pass.Example.com").unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut bytes = Vec::new();
        conn.write_tls(&mut bytes).unwrap();
        assert_eq!(parse(&bytes), sni("pass.example.com"));
        // Every shorter prefix is incomplete, never a wrong answer.
        for cut in 0..bytes.len() {
            assert_eq!(parse(&bytes[..cut]), Hello::Incomplete, "cut at {cut}");
        }
    }

    /// Each row: the bytes a client sends first → what is decided.
    #[test]
    fn malformed_and_adversarial_hellos() {
        let good = sni_ext(&[(0, b"a.test")]);
        let message = handshake(&body(Some(&good)));
        let mut long_record = hello(&good);
        long_record[3..5].copy_from_slice(&16385u16.to_be_bytes());
        let mut overrun_ext = body(Some(&good));
        let n = overrun_ext.len();
        overrun_ext[n - good.len() + 2..n - good.len() + 4].copy_from_slice(&200u16.to_be_bytes());
        let mut short_ext_total = body(Some(&good));
        let at = short_ext_total.len() - good.len() - 2;
        short_ext_total[at..at + 2].copy_from_slice(&((good.len() + 5) as u16).to_be_bytes());
        let mut trailing = body(Some(&good));
        trailing.push(0);
        let two_messages = {
            let mut m = message.clone();
            m.extend(&message);
            records(&m, 16384)
        };
        let huge = handshake(&body(Some(&ext(0xff01, &vec![0u8; MAX_HELLO]))));
        let rows: Vec<(&str, Vec<u8>, Hello)> = vec![
            ("one record", hello(&good), sni("a.test")),
            ("SNI split over two records", records(&message, 50), sni("a.test")),
            ("one byte per record", records(&message, 1), sni("a.test")),
            (
                "no extensions",
                records(&handshake(&body(None)), 16384),
                Hello::Sni(None),
            ),
            ("no server_name", hello(&ext(10, &[0, 2, 0, 29])), Hello::Sni(None)),
            (
                "other extensions around it",
                hello(&[ext(10, &[0, 2, 0, 29]), good.clone(), ext(16, &[0, 3, 2, b'h', b'2'])].concat()),
                sni("a.test"),
            ),
            (
                "upper case, trailing dot",
                hello(&sni_ext(&[(0, b"A.Test.")])),
                sni("a.test"),
            ),
            (
                "only a non-host_name type",
                hello(&sni_ext(&[(7, b"a.test")])),
                Hello::Sni(None),
            ),
            (
                "a non-host_name type first",
                hello(&sni_ext(&[(7, b"x"), (0, b"b.test")])),
                sni("b.test"),
            ),
            (
                "two host_names",
                hello(&sni_ext(&[(0, b"a.test"), (0, b"b.test")])),
                Hello::Unreadable,
            ),
            (
                "two server_name extensions",
                hello(&[good.clone(), sni_ext(&[(0, b"b.test")])].concat()),
                Hello::Unreadable,
            ),
            ("empty name", hello(&sni_ext(&[(0, b"")])), Hello::Unreadable),
            ("empty name list", hello(&ext(0, &[0, 0])), Hello::Unreadable),
            (
                "name with a NUL",
                hello(&sni_ext(&[(0, b"a.test\0.evil")])),
                Hello::Unreadable,
            ),
            (
                "name with a slash",
                hello(&sni_ext(&[(0, b"a.test/x")])),
                Hello::Unreadable,
            ),
            ("name with ..", hello(&sni_ext(&[(0, b"a..test")])), Hello::Unreadable),
            (
                "name list longer than its extension",
                hello(&ext(0, &[0, 9, 0, 0, 1, b'a'])),
                Hello::Unreadable,
            ),
            (
                "name longer than its list",
                hello(&ext(0, &[0, 4, 0, 0, 9, b'a'])),
                Hello::Unreadable,
            ),
            (
                "extension overrunning the block",
                records(&handshake(&overrun_ext), 16384),
                Hello::Unreadable,
            ),
            (
                "block longer than the hello",
                records(&handshake(&short_ext_total), 16384),
                Hello::Unreadable,
            ),
            (
                "bytes after the extensions",
                records(&handshake(&trailing), 16384),
                Hello::Unreadable,
            ),
            ("two handshake messages", two_messages, Hello::Unreadable),
            ("record over 2^14", long_record, Hello::Unreadable),
            ("empty record", vec![22, 3, 1, 0, 0], Hello::Unreadable),
            ("alert record", vec![21, 3, 1, 0, 2, 2, 40], Hello::Unreadable),
            (
                "record version 2.0",
                vec![22, 2, 0, 0, 4, 1, 0, 0, 0],
                Hello::Unreadable,
            ),
            ("ServerHello type", records(&[2, 0, 0, 1, 0], 16384), Hello::Unreadable),
            ("hello over MAX_HELLO", records(&huge, 16384), Hello::Unreadable),
            (
                "records past the read bound, all at once",
                records(&handshake(&body(Some(&ext(0xff01, &vec![0u8; 3000])))), 1),
                Hello::Unreadable,
            ),
            (
                "SSLv2-style hello",
                vec![0x80, 0x2e, 1, 3, 1, 0, 0x15, 0, 0, 0, 16],
                Hello::Unreadable,
            ),
            (
                "plain HTTP",
                b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n".to_vec(),
                Hello::Unreadable,
            ),
            (
                "PROXY header",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                Hello::Unreadable,
            ),
            ("nothing yet", vec![], Hello::Incomplete),
            ("a record header only", vec![22, 3, 1, 0, 200], Hello::Incomplete),
            ("a truncated body", hello(&good)[..60].to_vec(), Hello::Incomplete),
            (
                "session id over 32",
                records(
                    &handshake(&{
                        let mut b = body(None);
                        b[34] = 33;
                        b.splice(35..35, [0u8; 33]);
                        b
                    }),
                    16384,
                ),
                Hello::Unreadable,
            ),
            (
                "no cipher suites",
                records(
                    &handshake(&{
                        let mut b = body(None);
                        b.splice(35..39, [0, 0]);
                        b
                    }),
                    16384,
                ),
                Hello::Unreadable,
            ),
            (
                "truncated inside random",
                records(&handshake(&[3, 3, 1, 2]), 16384),
                Hello::Unreadable,
            ),
        ];
        for (what, bytes, expected) in rows {
            assert_eq!(parse(&bytes), expected, "{what}");
        }
        // An endless trickle of tiny records ends at the read bound.
        let trickle = records(&handshake(&body(Some(&ext(0xff01, &vec![0u8; 8000])))), 1);
        assert_eq!(parse(&trickle[..MAX_READ + 10]), Hello::Unreadable);
    }

    /// Fed the connection's bytes as they come, a few at a time, the reassembly (which keeps
    /// the records it has taken) gives what one look at all of them gives.
    #[test]
    fn a_hello_read_piece_by_piece_reads_as_a_whole_one() {
        let good = handshake(&body(Some(&sni_ext(&[(0, b"a.test")]))));
        let big = handshake(&body(Some(&ext(0xff01, &vec![0u8; 8000]))));
        let cases = [
            ("one record", records(&good, 16384)),
            ("one-byte records", records(&good, 1)),
            ("7-byte records", records(&good, 7)),
            ("a large hello in one-byte records", records(&big, 1)),
        ];
        for (what, bytes) in cases {
            let whole = parse(&bytes);
            for step in [1, 3, 64, 4096] {
                let mut hello = Reassembly::default();
                let mut got = Hello::Incomplete;
                for end in (step..bytes.len() + step).step_by(step) {
                    got = hello.advance(&bytes[..end.min(bytes.len())]);
                    if got != Hello::Incomplete {
                        break;
                    }
                }
                assert_eq!(got, whole, "{what}, {step} bytes at a time");
            }
        }
        assert_eq!(parse(&records(&good, 1)), sni("a.test"));
    }
}

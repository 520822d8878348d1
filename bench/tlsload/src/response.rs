//! Reading one HTTP/1.1 response to its end: the head, then a body of Content-Length bytes or,
//! without one, everything up to EOF (the request says `Connection: close`).

use std::fmt;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// A response's head: what the load client looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The minor version of `HTTP/1.x`.
    pub minor_version: u8,
    pub status: u16,
    pub content_length: Option<u64>,
    /// Bytes up to and including the blank line.
    pub len: usize,
}

/// A response read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub head: Head,
    pub body_len: u64,
}

impl Response {
    /// What the bench counts as a success.
    pub fn is_ok(&self) -> bool {
        self.head.minor_version == 1 && self.head.status == 200
    }
}

#[derive(Debug)]
pub enum Error {
    /// The connection closed before any byte of a response.
    Empty,
    /// The connection closed inside the head.
    TruncatedHead,
    HeadTooLarge,
    /// The first line is not `HTTP/1.x NNN[ reason]`.
    BadStatusLine(String),
    /// A header line without a colon, or with a bad name.
    BadHeader(String),
    BadContentLength(String),
    /// The connection closed before Content-Length bytes of body.
    EarlyEof {
        expected: u64,
        got: u64,
    },
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Empty => write!(f, "connection closed without a response"),
            Error::TruncatedHead => write!(f, "connection closed inside the response head"),
            Error::HeadTooLarge => write!(f, "response head longer than {MAX_HEAD} bytes"),
            Error::BadStatusLine(line) => write!(f, "bad status line {line:?}"),
            Error::BadHeader(line) => write!(f, "bad header line {line:?}"),
            Error::BadContentLength(value) => write!(f, "bad Content-Length {value:?}"),
            Error::EarlyEof { expected, got } => {
                write!(f, "connection closed after {got} of {expected} body bytes")
            }
            Error::Io(error) => write!(f, "reading the response: {error}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(error) => Some(error),
            _ => None,
        }
    }
}

/// Parses the head at the start of `buf`: `Ok(None)` while the blank line has not arrived.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, Error> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(Error::HeadTooLarge);
        }
        // A first line that already cannot be a status line need not wait for the rest.
        if let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") {
            parse_status_line(&buf[..line_end])?;
        }
        return Ok(None);
    };
    if end + 4 > MAX_HEAD {
        return Err(Error::HeadTooLarge);
    }
    let mut lines = buf[..end]
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let (minor_version, status) = parse_status_line(lines.next().unwrap_or_default())?;
    let mut content_length = None;
    for line in lines {
        let text = || String::from_utf8_lossy(line).into_owned();
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(Error::BadHeader(text()));
        };
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| b.is_ascii_graphic()) {
            return Err(Error::BadHeader(text()));
        }
        if !name.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        let bad = || Error::BadContentLength(String::from_utf8_lossy(value).into_owned());
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let length: u64 = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(bad)?;
        // Repeated Content-Length headers must agree (RFC 9110, section 8.6).
        if content_length.is_some_and(|previous| previous != length) {
            return Err(bad());
        }
        content_length = Some(length);
    }
    Ok(Some(Head {
        minor_version,
        status,
        content_length,
        len: end + 4,
    }))
}

/// `HTTP/1.x NNN[ reason]` → (x, NNN).
fn parse_status_line(line: &[u8]) -> Result<(u8, u16), Error> {
    let bad = || Error::BadStatusLine(String::from_utf8_lossy(line).into_owned());
    let rest = line.strip_prefix(b"HTTP/1.").ok_or_else(bad)?;
    let [minor @ b'0'..=b'9', b' ', a, b, c, reason @ ..] = rest else {
        return Err(bad());
    };
    if ![a, b, c].iter().all(|d| d.is_ascii_digit()) || !(reason.is_empty() || reason[0] == b' ') {
        return Err(bad());
    }
    let status = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    Ok((minor - b'0', status))
}

/// Reads one response from `reader` to its end, using `buf` (cleared first) for its bytes. An
/// `UnexpectedEof` error counts as EOF: rustls reports so a peer closing without close_notify,
/// which many servers do after `Connection: close`.
pub async fn read_response<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> Result<Response, Error> {
    buf.clear();
    let mut head: Option<Head> = None;
    loop {
        if let Some(head) = &head
            && let Some(length) = head.content_length
            && (buf.len() - head.len) as u64 >= length
        {
            return Ok(Response {
                head: head.clone(),
                body_len: length,
            });
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let n = match reader.read_buf(buf).await {
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(error) => return Err(Error::Io(error)),
        };
        if head.is_none() {
            head = parse_head(buf)?;
        }
        if n > 0 {
            continue;
        }
        // EOF
        return match head {
            None if buf.is_empty() => Err(Error::Empty),
            None => Err(Error::TruncatedHead),
            Some(head) => {
                let got = (buf.len() - head.len) as u64;
                match head.content_length {
                    Some(expected) if got < expected => Err(Error::EarlyEof { expected, got }),
                    _ => Ok(Response { head, body_len: got }),
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::ReadBuf;

    use super::*;

    /// Gives its bytes `chunk` at a time, then EOF, or an `UnexpectedEof` error as rustls does
    /// when the peer closed without close_notify.
    struct Chunks {
        data: Vec<u8>,
        at: usize,
        chunk: usize,
        unexpected_eof: bool,
    }

    impl AsyncRead for Chunks {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let this = &mut *self;
            if this.at == this.data.len() {
                if this.unexpected_eof {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                return Poll::Ready(Ok(()));
            }
            let n = this.chunk.min(this.data.len() - this.at).min(out.remaining());
            out.put_slice(&this.data[this.at..this.at + n]);
            this.at += n;
            Poll::Ready(Ok(()))
        }
    }

    async fn read(data: &[u8], chunk: usize, unexpected_eof: bool) -> Result<Response, Error> {
        let mut reader = Chunks {
            data: data.to_vec(),
            at: 0,
            chunk,
            unexpected_eof,
        };
        read_response(&mut reader, &mut Vec::new()).await
    }

    /// Every response read whole, a byte at a time, and with or without close_notify.
    async fn read_all_ways(data: &[u8]) -> Vec<Result<Response, Error>> {
        let mut results = Vec::new();
        for chunk in [1, 7, 1 << 20] {
            for unexpected_eof in [false, true] {
                results.push(read(data, chunk, unexpected_eof).await);
            }
        }
        results
    }

    #[tokio::test]
    async fn good_responses() {
        // name, response, status, Content-Length, body length
        type Case = (&'static str, &'static [u8], u16, Option<u64>, u64);
        let cases: &[Case] = &[
            (
                "content-length",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                200,
                Some(5),
                5,
            ),
            (
                "no reason phrase",
                b"HTTP/1.1 200\r\ncontent-length:0\r\n\r\n",
                200,
                Some(0),
                0,
            ),
            (
                "empty reason phrase",
                b"HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\nx",
                200,
                Some(1),
                1,
            ),
            (
                "to eof",
                b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nhello world",
                200,
                None,
                11,
            ),
            ("no headers, to eof", b"HTTP/1.1 200 OK\r\n\r\n", 200, None, 0),
            (
                "chunked, to eof",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                200,
                None,
                12,
            ),
            (
                "same content-length twice",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length:  2 \r\n\r\nok",
                200,
                Some(2),
                2,
            ),
            (
                "not found",
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                404,
                Some(0),
                0,
            ),
            // Bytes after Content-Length are not read as body.
            (
                "trailing bytes",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
                200,
                Some(2),
                2,
            ),
        ];
        for &(name, data, status, content_length, body_len) in cases {
            for result in read_all_ways(data).await {
                let response = result.unwrap_or_else(|error| panic!("{name}: {error}"));
                assert_eq!(response.head.status, status, "{name}");
                assert_eq!(response.head.content_length, content_length, "{name}");
                assert_eq!(response.body_len, body_len, "{name}");
                assert_eq!(response.is_ok(), status == 200, "{name}");
            }
        }
    }

    #[tokio::test]
    async fn http_1_0_is_not_ok() {
        let response = read(b"HTTP/1.0 200 OK\r\n\r\n", 100, false).await.unwrap();
        assert_eq!(response.head.minor_version, 0);
        assert!(!response.is_ok());
    }

    #[tokio::test]
    async fn malformed_responses() {
        type Check = fn(&Error) -> bool;
        let cases: &[(&str, &[u8], Check)] = &[
            ("nothing", b"", |e| matches!(e, Error::Empty)),
            ("truncated status line", b"HTTP/1.1 20", |e| {
                matches!(e, Error::TruncatedHead)
            }),
            ("truncated head", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", |e| {
                matches!(e, Error::TruncatedHead)
            }),
            ("head without blank line", b"HTTP/1.1 200 OK\r\n", |e| {
                matches!(e, Error::TruncatedHead)
            }),
            ("no status line", b"Content-Length: 0\r\n\r\n", |e| {
                matches!(e, Error::BadStatusLine(_))
            }),
            ("blank status line", b"\r\n\r\n", |e| {
                matches!(e, Error::BadStatusLine(_))
            }),
            ("not http", b"SSH-2.0-OpenSSH_9.2\r\n", |e| {
                matches!(e, Error::BadStatusLine(_))
            }),
            ("http/2 status line", b"HTTP/2 200\r\n\r\n", |e| {
                matches!(e, Error::BadStatusLine(_))
            }),
            ("short status", b"HTTP/1.1 20 OK\r\n\r\n", |e| {
                matches!(e, Error::BadStatusLine(_))
            }),
            ("status not digits", b"HTTP/1.1 2x0 OK\r\n\r\n", |e| {
                matches!(e, Error::BadStatusLine(_))
            }),
            ("status too long", b"HTTP/1.1 2000 OK\r\n\r\n", |e| {
                matches!(e, Error::BadStatusLine(_))
            }),
            (
                "header without colon",
                b"HTTP/1.1 200 OK\r\nContent-Length 5\r\n\r\nhello",
                |e| matches!(e, Error::BadHeader(_)),
            ),
            ("header with empty name", b"HTTP/1.1 200 OK\r\n: x\r\n\r\n", |e| {
                matches!(e, Error::BadHeader(_))
            }),
            (
                "content-length not a number",
                b"HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\nhello",
                |e| matches!(e, Error::BadContentLength(_)),
            ),
            (
                "content-length negative",
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                |e| matches!(e, Error::BadContentLength(_)),
            ),
            (
                "content-length empty",
                b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
                |e| matches!(e, Error::BadContentLength(_)),
            ),
            (
                "content-length list",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
                |e| matches!(e, Error::BadContentLength(_)),
            ),
            (
                "content-length overflow",
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                |e| matches!(e, Error::BadContentLength(_)),
            ),
            (
                "content-lengths differ",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
                |e| matches!(e, Error::BadContentLength(_)),
            ),
            (
                "early eof",
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
                |e| matches!(e, Error::EarlyEof { expected: 10, got: 5 }),
            ),
            (
                "early eof, no body",
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
                |e| matches!(e, Error::EarlyEof { expected: 10, got: 0 }),
            ),
        ];
        for &(name, data, check) in cases {
            for result in read_all_ways(data).await {
                match result {
                    Ok(response) => panic!("{name}: read as {response:?}"),
                    Err(error) => assert!(check(&error), "{name}: {error:?}"),
                }
            }
        }
    }

    #[tokio::test]
    async fn head_too_large() {
        let mut data = b"HTTP/1.1 200 OK\r\n".to_vec();
        while data.len() <= MAX_HEAD {
            data.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let complete = [data.as_slice(), b"\r\n"].concat();
        for data in [data, complete] {
            let result = read(&data, 1 << 20, false).await;
            assert!(matches!(result, Err(Error::HeadTooLarge)), "{result:?}");
        }
    }

    #[tokio::test]
    async fn io_errors_are_errors() {
        struct Broken;
        impl AsyncRead for Broken {
            fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
            }
        }
        let result = read_response(&mut Broken, &mut Vec::new()).await;
        assert!(
            matches!(&result, Err(Error::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset),
            "{result:?}"
        );
    }

    #[test]
    fn head_waits_for_the_blank_line() {
        assert_eq!(parse_head(b"").unwrap(), None);
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap(), None);
        // A bad status line is an error as soon as its line ends.
        assert!(matches!(parse_head(b"HTTP/9 200\r\n"), Err(Error::BadStatusLine(_))));
        let head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
            .unwrap()
            .unwrap();
        assert_eq!(
            head,
            Head {
                minor_version: 1,
                status: 200,
                content_length: Some(3),
                len: 38
            }
        );
    }
}

//! Where a response body ends. The fast path relays body bytes as they come (chunked
//! encoding included, untouched) and only needs to know when the message is over, so the
//! connection can carry the next one.

use std::fmt;

/// How the body of a response is delimited (RFC 9112 §6.3).
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: a response to HEAD, 1xx, 204, 304, or `Content-Length: 0`.
    Empty,
    Length(u64),
    Chunked(Chunks),
    /// Until the backend closes the connection.
    UntilClose,
}

/// A body the backend framed in a way that cannot be relayed safely.
#[derive(Debug, PartialEq, Eq)]
pub struct BadChunk(&'static str);

impl fmt::Display for BadChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad chunked encoding: {}", self.0)
    }
}

/// Follows a chunked body byte by byte. Strict, as the bytes are passed on verbatim: a size
/// that is not hex or overflows, or data not followed by CRLF, is an error.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Chunks {
    state: State,
    size: u64,
    digits: u8,
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
enum State {
    #[default]
    Size,
    /// `;name=value` after the size, up to CRLF.
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// After the last chunk: trailer fields, each up to CRLF, then an empty line.
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

impl Chunks {
    /// Consumes bytes of the body; returns how many belong to it (all of `bytes` unless the
    /// body ended inside them).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let digit = (b as char).to_digit(16).unwrap_or(0);
                        if self.digits == 15 {
                            return Err(BadChunk("chunk size too large"));
                        }
                        self.size = self.size * 16 + u64::from(digit);
                        self.digits += 1;
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => self.state = State::Extension,
                    b'\r' if self.digits > 0 => self.state = State::SizeLf,
                    _ => return Err(BadChunk("chunk size is not hexadecimal")),
                },
                State::Extension => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => return Err(BadChunk("bare LF")),
                    _ => {}
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(BadChunk("chunk size line not ended by CRLF"));
                    }
                    self.digits = 0;
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    let take = (bytes.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    self.size -= take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(BadChunk("chunk data not followed by CRLF"));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(BadChunk("chunk data not followed by CRLF"));
                    }
                    self.state = State::Size;
                }
                State::TrailerStart => {
                    self.state = if b == b'\r' { State::EndLf } else { State::Trailer };
                }
                State::Trailer => {
                    if b == b'\r' {
                        self.state = State::TrailerLf;
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(BadChunk("trailer line not ended by CRLF"));
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(BadChunk("last chunk not ended by CRLF"));
                    }
                    self.state = State::Done;
                    return Ok(i + 1);
                }
                State::Done => return Ok(i),
            }
            i += 1;
        }
        Ok(i)
    }

    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// After the last chunk: the trailer section (fields, then the empty line) is due.
    pub fn in_trailers(&self) -> bool {
        matches!(
            self.state,
            State::TrailerStart | State::Trailer | State::TrailerLf | State::EndLf
        )
    }

    /// Bytes of chunk data due next, which can be taken as they are; 0 while the framing
    /// (sizes, CRLFs, trailers) is due.
    pub fn data_due(&self) -> u64 {
        if self.state == State::Data { self.size } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(body: &[u8]) -> Result<usize, BadChunk> {
        let mut c = Chunks::default();
        let n = c.feed(body)?;
        assert!(c.done(), "not done after {n} bytes");
        Ok(n)
    }

    #[test]
    fn a_chunked_body_ends_after_the_last_chunk_and_trailers() {
        assert_eq!(whole(b"5\r\nhello\r\n0\r\n\r\n"), Ok(15));
        assert_eq!(whole(b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\nNEXT"), Ok(36));
        assert_eq!(whole(b"0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n"), Ok(25));
    }

    #[test]
    fn a_body_split_anywhere_is_followed_the_same() {
        let body = b"5\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n";
        for split in 0..body.len() {
            let mut c = Chunks::default();
            let a = c.feed(&body[..split]).unwrap();
            assert_eq!(a, split);
            assert!(!c.done());
            assert_eq!(c.feed(&body[split..]).unwrap(), body.len() - split);
            assert!(c.done(), "split at {split}");
        }
        // One byte at a time.
        let mut c = Chunks::default();
        for b in body {
            c.feed(std::slice::from_ref(b)).unwrap();
        }
        assert!(c.done());
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello",
            b"5\r\nhelloX\r\n",
            b"1000000000000000\r\n",
            b"0\r\n\rX",
        ] {
            assert!(
                Chunks::default().feed(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

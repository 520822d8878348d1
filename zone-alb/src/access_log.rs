//! The access log: a line per request on stderr, in the shape of the other log lines
//! (`<time>  INFO access: peer=… method=… host=… path=… status=… ms=… ingress=… upstream=…
//! error=…`), switched by `RUST_LOG` as they are (target `access`).
//!
//! Written here rather than through `tracing`'s formatter, which cost more per request than
//! proxying it (`bench/proxy.sh`, the `mzlb up` row): a worker formats each line into its own
//! buffer and writes whole lines in one `write` of at most `PIPE_BUF` bytes (so lines from
//! different workers never interleave, on a pipe as in a file), and at least once a second, as
//! nginx's `access_log … buffer= flush=1s`. A thread that is not a worker writes each line at
//! once. Values a client chose (method, host, path) are escaped: a line can never be split or
//! forged, nor carry terminal escapes.

use std::cell::RefCell;
use std::fmt::Display;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whole lines are written in pieces of at most this many bytes: writes to a pipe up to
/// `PIPE_BUF` are atomic, so lines from different workers never interleave.
const BATCH_BYTES: usize = 4096;
/// How long a line may wait in a worker's buffer.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// One request's line.
pub(crate) struct Line<'a> {
    pub peer: SocketAddr,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub elapsed: Duration,
    pub ingress: &'a str,
    pub upstream: Option<SocketAddr>,
    pub error: Option<&'a dyn Display>,
}

/// Whether access lines are wanted at all (`RUST_LOG`, as for any other target).
pub(crate) fn enabled() -> bool {
    tracing::enabled!(target: "access", tracing::Level::INFO)
}

thread_local! {
    static BUFFER: RefCell<Buffer> = RefCell::new(Buffer::default());
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    /// Set on worker threads, which flush every second; elsewhere each line is written at once.
    batching: bool,
    /// `YYYY-MM-DDTHH:MM:SS.` of `second`: formatted once a second, not once a line.
    second: u64,
    stamp: String,
}

/// Logs one request.
pub(crate) fn write(line: &Line<'_>) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    BUFFER.with(|cell| {
        let Ok(mut buffer) = cell.try_borrow_mut() else {
            return; // only if formatting itself logged a request: never
        };
        let buffer = &mut *buffer;
        let start = buffer.bytes.len();
        if buffer.stamp.is_empty() || buffer.second != now.as_secs() {
            buffer.second = now.as_secs();
            buffer.stamp = stamp(now.as_secs());
        }
        format(&mut buffer.bytes, &buffer.stamp, now.subsec_micros(), line);
        if !buffer.batching {
            emit(&buffer.bytes);
            buffer.bytes.clear();
        } else if buffer.bytes.len() > BATCH_BYTES {
            // The lines before this one fit in a batch; this one starts the next.
            if start > 0 {
                emit(&buffer.bytes[..start]);
                buffer.bytes.drain(..start);
            }
            if buffer.bytes.len() > BATCH_BYTES {
                emit(&buffer.bytes);
                buffer.bytes.clear();
            }
        }
    });
}

/// Writes what this thread's buffer holds.
pub(crate) fn flush() {
    BUFFER.with(|cell| {
        if let Ok(mut buffer) = cell.try_borrow_mut()
            && !buffer.bytes.is_empty()
        {
            emit(&buffer.bytes);
            buffer.bytes.clear();
        }
    });
}

/// Run by each worker on its own thread: batches that thread's lines, writes them at least
/// once a second, and writes the rest when `stop` fires.
pub(crate) async fn batch_on_this_thread(stop: tokio_util::sync::CancellationToken) {
    BUFFER.with(|cell| cell.borrow_mut().batching = true);
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => flush(),
            () = stop.cancelled() => break,
        }
    }
    BUFFER.with(|cell| cell.borrow_mut().batching = false);
    flush();
}

fn emit(bytes: &[u8]) {
    // As tracing's writer: a log that cannot be written is not worth failing a request for.
    let _ = std::io::stderr().lock().write_all(bytes);
}

/// `YYYY-MM-DDTHH:MM:SS.` (UTC) of a Unix second.
fn stamp(second: u64) -> String {
    let at = i64::try_from(second)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    at.strftime("%Y-%m-%dT%H:%M:%S.").to_string()
}

fn format(out: &mut Vec<u8>, stamp: &str, micros: u32, line: &Line<'_>) {
    let ms = line.elapsed.as_micros();
    let _ = write!(out, "{stamp}{micros:06}Z  INFO access: peer={} method=", line.peer);
    escaped(out, line.method.as_bytes());
    out.extend_from_slice(b" host=");
    escaped(out, line.host.as_bytes());
    out.extend_from_slice(b" path=");
    escaped(out, line.path.as_bytes());
    let _ = write!(
        out,
        " status={} ms={}.{:03} ingress=",
        line.status,
        ms / 1000,
        ms % 1000
    );
    escaped(out, line.ingress.as_bytes());
    out.extend_from_slice(b" upstream=");
    if let Some(upstream) = line.upstream {
        let _ = write!(out, "{upstream}");
    }
    out.extend_from_slice(b" error=");
    if let Some(error) = line.error {
        // Ours, but it may quote what a client or backend sent: escaped, in quotes, where its
        // spaces are left as they are.
        let text = error.to_string();
        out.push(b'"');
        escape(out, text.as_bytes(), true);
        out.push(b'"');
    }
    out.push(b'\n');
}

/// Printable ASCII as it is; anything else (controls, escapes, non-ASCII, spaces, quotes,
/// backslashes) as `\xNN`, so a value cannot end its line, open a terminal escape or pass for
/// another field.
fn escaped(out: &mut Vec<u8>, value: &[u8]) {
    escape(out, value, false);
}

/// As [`escaped`]; with `spaces`, a space is kept (inside quotes it cannot end the field).
fn escape(out: &mut Vec<u8>, value: &[u8], spaces: bool) {
    for &b in value {
        if (b.is_ascii_graphic() || (spaces && b == b' ')) && b != b'"' && b != b'\\' {
            out.push(b);
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(method: &'a str, host: &'a str, path: &'a str, error: Option<&'a dyn Display>) -> Line<'a> {
        Line {
            peer: "10.0.0.1:40000".parse().unwrap(),
            method,
            host,
            path,
            status: 200,
            elapsed: Duration::from_micros(5_608),
            ingress: "default/web",
            upstream: Some("127.0.20.11:9080".parse().unwrap()),
            error,
        }
    }

    fn formatted(line: &Line<'_>) -> String {
        let mut out = Vec::new();
        format(&mut out, &stamp(1_796_295_712), 415_957, line);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_line_has_the_shape_of_the_other_log_lines() {
        assert_eq!(
            formatted(&line("GET", "demo.mzlb.test", "/a?b=c", None)),
            "2026-12-03T11:01:52.415957Z  INFO access: peer=10.0.0.1:40000 method=GET host=demo.mzlb.test \
             path=/a?b=c status=200 ms=5.608 ingress=default/web upstream=127.0.20.11:9080 error=\n"
        );
        let error = "upstream timed out (read)";
        let text = formatted(&line("GET", "h", "/", Some(&error)));
        assert!(text.ends_with(" error=\"upstream timed out (read)\"\n"), "{text}");
        // An error quoting what a backend sent cannot end its quotes or its line.
        let error = "bad field \"x\"\nforged=1";
        let text = formatted(&line("GET", "h", "/", Some(&error)));
        assert!(
            text.ends_with(" error=\"bad field \\x22x\\x22\\x0aforged=1\"\n"),
            "{text}"
        );
        let mut none = line("GET", "h", "/", None);
        none.upstream = None;
        assert!(formatted(&none).ends_with(" upstream= error=\n"));
    }

    #[test]
    fn hostile_values_stay_on_their_line_and_in_their_field() {
        let table: &[(&str, &str, &str)] = &[
            ("newline in the path", "/a\nfake line", "/a\\x0afake\\x20line"),
            ("carriage return", "/a\r\n", "/a\\x0d\\x0a"),
            ("terminal escape", "/\x1b[31mred", "/\\x1b[31mred"),
            ("a forged field", "/ status=500", "/\\x20status=500"),
            ("quote and backslash", "/\"\\", "/\\x22\\x5c"),
            ("non-ASCII", "/é", "/\\xc3\\xa9"),
            ("NUL and DEL", "/\0\x7f", "/\\x00\\x7f"),
        ];
        for (what, path, shown) in table {
            let text = formatted(&line("GET", "h", path, None));
            assert_eq!(text.matches('\n').count(), 1, "{what}: {text:?}");
            assert!(text.contains(&format!(" path={shown} status=200 ")), "{what}: {text:?}");
            assert!(!text.contains('\x1b') && !text.contains('\r'), "{what}: {text:?}");
        }
        let text = formatted(&line("GE T", "a b\n", "/", None));
        assert!(text.contains("method=GE\\x20T host=a\\x20b\\x0a path=/ "), "{text:?}");
    }

    #[test]
    fn the_time_is_utc_to_the_microsecond() {
        let mut out = Vec::new();
        format(&mut out, &stamp(0), 7, &line("GET", "h", "/", None));
        assert!(
            String::from_utf8(out)
                .unwrap()
                .starts_with("1970-01-01T00:00:00.000007Z  INFO access: ")
        );
    }
}

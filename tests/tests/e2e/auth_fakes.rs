//! Fakes for the authentication tests: a tiny HTTP/1.1 server on a thread (one request per
//! connection), recording every request it gets, with handlers that behave as the services
//! people put behind `auth-url`: oauth2-proxy (`/oauth2/auth` answers 202 with
//! `X-Auth-Request-*` for a valid session cookie, 401 otherwise), Authelia
//! (`/api/authz/auth-request` and the legacy `/api/verify`: they read `X-Original-URL` and
//! `X-Original-Method`, answer 200 with `Remote-*` for a session, 401 without, 403 where the
//! policy denies the user), a scripted one, and a backend that echoes the request fields.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A request as a fake received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.all("cookie")
            .into_iter()
            .flat_map(|v| v.split(';'))
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// What a fake answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A running fake; its listener thread lives as long as the test process, its requests are
/// recorded.
pub struct Fake {
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    pub fn start(addr: &str, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (handler, recorded) = (handler.clone(), recorded.clone());
                thread::spawn(move || serve(stream, &*handler, &recorded));
            }
        });
        Fake { seen }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the fake got a request")
    }
}

fn serve(mut stream: TcpStream, handler: &Handler, recorded: &Mutex<Vec<Seen>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 1 << 20 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (first.next().unwrap_or_default(), first.next().unwrap_or_default());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let seen = Seen {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        body,
    };
    let reply = handler(&seen);
    recorded.lock().unwrap().push(seen);
    let mut out = format!("HTTP/1.1 {} X\r\n", reply.status);
    for (n, v) in &reply.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.body.len(),
        reply.body
    ));
    let _ = stream.write_all(out.as_bytes());
}

/// A backend that answers 200 with every request field as `name: value` lines, after
/// `REQUEST: METHOD target`.
pub fn backend(addr: &str) -> Fake {
    Fake::start(addr, |req| {
        let mut body = format!("REQUEST: {} {}\n", req.method, req.target);
        for (n, v) in &req.headers {
            body.push_str(&format!("{n}: {v}\n"));
        }
        Reply {
            body,
            ..Reply::new(200)
        }
    })
}

/// The fields of a [`backend`] page, by lower-case name.
pub fn fields(page: &str, name: &str) -> Vec<String> {
    page.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
        .collect()
}

/// oauth2-proxy's auth endpoint as deployed behind ingress-nginx: `GET /oauth2/auth` answers
/// 202 Accepted with `X-Auth-Request-User`/`-Email` (with `--set-xauthrequest`) for a session
/// cookie `_oauth2_proxy`, 401 Unauthorized without one.
pub fn oauth2_proxy(addr: &str) -> Fake {
    Fake::start(addr, |req| {
        if !req.target.starts_with("/oauth2/auth") {
            return Reply::new(404);
        }
        match req.cookie("_oauth2_proxy") {
            Some("valid-session") => Reply::new(202)
                .with("X-Auth-Request-User", "alice")
                .with("X-Auth-Request-Email", "alice@example.com"),
            _ => Reply::new(401),
        }
    })
}

/// Authelia's `/api/authz/auth-request` (and legacy `/api/verify`): the protected URL comes from
/// `X-Original-URL` (with `X-Original-Method`); without them it cannot decide (400 here, an
/// error either way). A session cookie `authelia_session=good` is user `john` in group `admins`;
/// `/admin` on the protected site needs group `root` (403). No session: 401.
pub fn authelia(addr: &str) -> Fake {
    Fake::start(addr, |req| {
        let path = req.target.split('?').next().unwrap_or_default();
        if path != "/api/authz/auth-request" && path != "/api/verify" {
            return Reply::new(404);
        }
        let (Some(url), Some(_method)) = (req.header("x-original-url"), req.header("x-original-method")) else {
            return Reply::new(400);
        };
        if req.cookie("authelia_session") != Some("good") {
            return Reply::new(401);
        }
        let protected_path = url.splitn(4, '/').nth(3).unwrap_or_default();
        if protected_path.starts_with("admin") {
            return Reply::new(403);
        }
        Reply::new(200)
            .with("Remote-User", "john")
            .with("Remote-Groups", "admins,dev")
            .with("Remote-Name", "John Doe")
            .with("Remote-Email", "john@example.com")
    })
}

/// An auth service scripted by the client's `X-Test-Answer` field (which ingress-nginx passes
/// on): `200` (with `X-User: alice` and a cookie), `200-bare`, `401`, `401-bare`, `403`, `500`, `302`.
pub fn scripted(addr: &str) -> Fake {
    Fake::start(addr, |req| match req.header("x-test-answer").unwrap_or("200") {
        "200" => Reply::new(200)
            .with("X-User", "alice")
            .with("X-Groups", "a")
            .with("X-Groups", "b")
            .with("Set-Cookie", "authed=1; Path=/; HttpOnly"),
        "200-bare" => Reply::new(200),
        "401" => Reply::new(401)
            .with("WWW-Authenticate", "Bearer realm=\"api\"")
            .with("Set-Cookie", "tried=1"),
        "401-bare" => Reply::new(401),
        "403" => Reply::new(403),
        "302" => Reply::new(302).with("Location", "https://elsewhere.example/"),
        _ => Reply::new(500),
    })
}

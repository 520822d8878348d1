//! Headless Chromium driven over WebDriver (the Debian `chromium` and `chromium-driver`
//! packages; `.ci/run` installs them). WebDriver is JSON over HTTP, so a few lines over a
//! `TcpStream` drive it: no client crate, no browser download.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Proc, poll};

/// The key WebDriver names element references by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session; quits the browser (then chromedriver) when dropped.
pub struct Browser {
    port: u16,
    session: String,
    // Killed when the session is dropped, after the browser was told to quit.
    _driver: Proc,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium session of
    /// `width` × `height` pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().unwrap().port()
        };
        let driver = Proc::start(
            "chromedriver",
            Command::new(which("chromedriver")).arg(format!("--port={port}")),
        );
        poll(Duration::from_secs(20), || {
            request(port, "GET", "/status", None)
                .ok()
                .filter(|v| v["value"]["ready"] == true)
        })
        .unwrap_or_else(|| panic!("chromedriver did not come up:\n{}", driver.output()));
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": which("chromium"),
                // As root (CI, this machine) Chromium's sandbox cannot start.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--no-proxy-server", "--hide-scrollbars",
                         format!("--window-size={width},{height}"),
                         format!("--user-data-dir={}", profile.path().display())],
            }
        }}});
        let created = request(port, "POST", "/session", Some(&capabilities))
            .unwrap_or_else(|e| panic!("new session: {e}\n{}", driver.output()));
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        Browser {
            port,
            session,
            _driver: driver,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let path = format!("/session/{}{path}", self.session);
        let reply = request(self.port, method, &path, body)?;
        match reply["value"].get("error") {
            Some(error) => Err(format!("{error}: {}", reply["value"]["message"])),
            None => Ok(reply["value"].clone()),
        }
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({ "url": url }))).unwrap();
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(&json!({"script": script, "args": []})))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    fn find(&self, css: &str) -> Result<String, String> {
        let found = self.call(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        )?;
        found[ELEMENT]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no element reference in {found}"))
    }

    /// Clicks the element `css` selects as a user would (WebDriver moves the pointer there).
    /// The page redraws as it updates, so a reference may go stale between finding and
    /// clicking: retried until `within`.
    pub fn click(&self, css: &str, within: Duration) {
        let mut last = String::new();
        poll(within, || {
            let clicked = self
                .find(css)
                .and_then(|e| self.call("POST", &format!("/element/{e}/click"), Some(&json!({}))));
            clicked.map_err(|e| last = e).ok()
        })
        .unwrap_or_else(|| panic!("could not click {css}: {last}"));
    }

    /// Types `text` into the element `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).unwrap();
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(&json!({ "text": text })),
        )
        .unwrap();
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.call("POST", "/window/rect", Some(&json!({"width": width, "height": height})))
            .unwrap();
    }

    /// A PNG of the viewport, written to `path`; returns its size in bytes.
    pub fn screenshot(&self, path: &Path) -> usize {
        use base64::Engine;
        let data = self.call("GET", "/screenshot", None).unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64 text"))
            .expect("base64 PNG");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, &png).unwrap();
        png.len()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Quits Chromium; chromedriver itself is killed when `driver` drops.
        let _ = self.call("DELETE", "", None);
    }
}

fn which(name: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path.display().to_string();
        }
    }
    panic!("{name} not found (.ci/run installs the Debian packages chromium and chromium-driver)")
}

/// One WebDriver call: HTTP/1.1 with `Connection: close`, the reply read to its end.
fn request(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    // chromedriver keeps the connection open whatever we ask: read the head, then exactly
    // Content-Length bytes.
    let mut reply = Vec::new();
    let mut buf = [0u8; 8192];
    let (head_end, length) = loop {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("connection closed: {}", String::from_utf8_lossy(&reply)));
        }
        reply.extend_from_slice(&buf[..n]);
        if let Some(end) = reply.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&reply[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("no Content-Length in {head}"))?;
            break (end + 4, length);
        }
    };
    while reply.len() < head_end + length {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed in the body".into());
        }
        reply.extend_from_slice(&buf[..n]);
    }
    let body = &reply[head_end..head_end + length];
    serde_json::from_slice(body).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(body)))
}

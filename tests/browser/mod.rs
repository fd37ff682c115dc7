//! A minimal W3C WebDriver client over plain HTTP/1.1 to a local `chromedriver`, blocking, with
//! no dependency beyond `serde_json`: enough to open pages, fill and click, read text and
//! attributes, and take screenshots.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running `chromedriver`, killed on drop.
pub struct Driver {
    port: u16,
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Res<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Res<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    // chromedriver keeps the connection open: read the header, then Content-Length bytes
    // (or chunks up to the last one).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let split = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err("connection closed before the HTTP header ended".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    loop {
        let have = buf.len() - (split + 4);
        let done = match length {
            Some(n) => have >= n,
            None => buf.ends_with(b"0\r\n\r\n"),
        };
        if done {
            break;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut payload = buf[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &payload[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").ok_or("chunk")?;
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..nl]).trim(), 16)?;
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + size]);
            rest = &rest[nl + 2 + size + 2..];
        }
        payload = out;
    }
    let v: Value = serde_json::from_slice(&payload)?;
    if let Some(err) = v["value"]["error"].as_str() {
        return Err(format!(
            "webdriver {method} {path}: {err}: {}",
            v["value"]["message"]
        )
        .into());
    }
    Ok(v)
}

impl Driver {
    /// Starts `chromedriver` on a free port and waits until it is ready.
    pub fn start() -> Res<Driver> {
        let port = free_port()?;
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot run chromedriver ({e}); install Debian's chromium and chromium-driver (cargo xtask test does)")
            })?;
        let d = Driver { port, child };
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(v) = http(port, "GET", "/status", None)
                && v["value"]["ready"] == true
            {
                return Ok(d);
            }
            if Instant::now() > until {
                return Err("chromedriver did not become ready".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A fresh headless Chromium (its own profile: no cookies).
    pub fn session(&self) -> Res<Session> {
        let v = http(
            self.port,
            "POST",
            "/session",
            Some(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--disable-background-networking",
                             "--window-size=1400,1000"]
                }
            }}})),
        )?;
        let id = v["value"]["sessionId"]
            .as_str()
            .ok_or("no session id")?
            .to_string();
        Ok(Session {
            port: self.port,
            id,
        })
    }
}

/// One browser.
pub struct Session {
    port: u16,
    id: String,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = http(self.port, "DELETE", &format!("/session/{}", self.id), None);
    }
}

/// An element of the current page.
pub struct Element<'a> {
    s: &'a Session,
    id: String,
}

impl Session {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Res<Value> {
        Ok(http(
            self.port,
            method,
            &format!("/session/{}{path}", self.id),
            body.as_ref(),
        )?["value"]
            .take())
    }

    pub fn goto(&self, url: &str) -> Res<()> {
        self.call("POST", "/url", Some(json!({ "url": url })))?;
        Ok(())
    }

    pub fn url(&self) -> Res<String> {
        Ok(self
            .call("GET", "/url", None)?
            .as_str()
            .ok_or("url")?
            .to_string())
    }

    /// Waits until an element matching `css` is on the page: a click on a submit button
    /// returns before the browser has loaded the answer. On time-out, says where the browser is.
    pub fn wait_for(&self, css: &str) -> Res<Element<'_>> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            match self.find(css) {
                Ok(e) => return Ok(e),
                Err(e) if std::time::Instant::now() > deadline => {
                    return Err(format!("no {css} at {}: {e}", self.url()?).into());
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
    }

    /// Waits until the page's URL ends with `suffix`: a click on a submit button returns
    /// before the browser has followed the server's redirect. On time-out, says where the
    /// browser is and what error the page shows.
    pub fn wait_for_url(&self, suffix: &str) -> Res<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let url = self.url()?;
            if url.ends_with(suffix) {
                return Ok(url);
            }
            if std::time::Instant::now() > deadline {
                let error = self
                    .find("#error")
                    .and_then(|e| e.text())
                    .unwrap_or_default();
                return Err(format!("still at {url}, not …{suffix}; page error: {error:?}").into());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn find(&self, css: &str) -> Res<Element<'_>> {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        Ok(Element {
            s: self,
            id: v[ELEMENT].as_str().ok_or("element id")?.to_string(),
        })
    }

    pub fn count(&self, css: &str) -> Res<usize> {
        let v = self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        Ok(v.as_array().map(Vec::len).unwrap_or(0))
    }

    pub fn source(&self) -> Res<String> {
        Ok(self
            .call("GET", "/source", None)?
            .as_str()
            .ok_or("source")?
            .to_string())
    }

    /// Saves a PNG screenshot of the viewport.
    pub fn screenshot(&self, path: &Path) -> Res<()> {
        let v = self.call("GET", "/screenshot", None)?;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().ok_or("png")?)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }
}

impl Element<'_> {
    fn path(&self, rest: &str) -> String {
        format!("/element/{}{rest}", self.id)
    }

    pub fn text(&self) -> Res<String> {
        Ok(self
            .s
            .call("GET", &self.path("/text"), None)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    pub fn attr(&self, name: &str) -> Res<Option<String>> {
        Ok(self
            .s
            .call("GET", &self.path(&format!("/attribute/{name}")), None)?
            .as_str()
            .map(str::to_string))
    }

    pub fn type_text(&self, text: &str) -> Res<()> {
        self.s.call("POST", &self.path("/clear"), Some(json!({})))?;
        self.s
            .call("POST", &self.path("/value"), Some(json!({ "text": text })))?;
        Ok(())
    }

    pub fn click(&self) -> Res<()> {
        self.s.call("POST", &self.path("/click"), Some(json!({})))?;
        Ok(())
    }
}

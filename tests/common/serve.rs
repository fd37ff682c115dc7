//! `rekey serve` as a child process for tests: started on a free port, its stderr read line by
//! line (the address it listens on is taken from its own announcement, in text or JSON), plain
//! HTTP/1.1 requests to it, and a stop by SIGTERM that collects the rest of its log.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::BoxError;

/// A running `rekey serve`.
pub struct Served {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    /// `host:port` it listens on.
    pub addr: String,
    /// Its stderr so far, one entry a line.
    pub log: Vec<String>,
}

/// Spawns `cmd` (a `rekey … serve …` command) and waits up to a minute for it to say where it
/// listens.
pub fn start(mut cmd: Command) -> Result<Served, BoxError> {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().ok_or("stderr")?;
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    const ANNOUNCED: &str = "listening on http://";
    let addr = loop {
        let line = match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                return Err(
                    format!("rekey serve did not say where it listens ({e}): {log:?}").into(),
                );
            }
        };
        log.push(line.clone());
        if let Some(i) = line.find(ANNOUNCED) {
            let rest = &line[i + ANNOUNCED.len()..];
            break rest
                .split(|c: char| c.is_whitespace() || c == '"')
                .next()
                .ok_or("address")?
                .to_string();
        }
    };
    Ok(Served {
        child,
        lines,
        addr,
        log,
    })
}

impl Served {
    /// The server's process id.
    #[allow(dead_code)] // for the benchmark that reads its memory
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and reaps it.
    #[allow(dead_code)] // not every test binary kills its server
    pub fn kill(mut self) -> Result<ExitStatus, BoxError> {
        self.child.kill()?;
        Ok(self.child.wait()?)
    }

    /// Sends SIGTERM and waits up to 30 seconds for the exit; returns the exit status with the
    /// whole log.
    pub fn stop(mut self) -> Result<(ExitStatus, Vec<String>), BoxError> {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !kill.success() {
            return Err("kill -TERM failed".into());
        }
        let until = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                return Err("rekey serve did not stop within 30 s of SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        // Everything it wrote: the reader ends at end of file, once the process has exited.
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            match self.lines.recv_timeout(Duration::from_secs(1)) {
                Ok(line) => self.log.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > until => {
                    return Err("rekey serve's stderr did not close".into());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        Ok((status, self.log))
    }
}

/// An HTTP answer.
pub struct Answer {
    /// `HTTP/1.1 200 OK`.
    pub status_line: String,
    /// The status code.
    pub status: u16,
    /// Header lines as (lower-case name, value).
    pub headers: Vec<(String, String)>,
    /// The body (the server answers `Connection: close` requests unchunked or chunked; tests
    /// only search it).
    pub body: String,
}

impl Answer {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `method path` on `addr` with `headers` and, if given, a form-encoded `body`.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Answer, BoxError> {
    send(
        addr,
        method,
        path,
        headers,
        body.map(|b| ("application/x-www-form-urlencoded", b)),
    )
}

/// `method path` on `addr` with `headers` and, if given, a JSON `body`.
#[allow(dead_code)] // not every test binary sends JSON
pub fn json_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Answer, BoxError> {
    send(
        addr,
        method,
        path,
        headers,
        body.map(|b| ("application/json", b)),
    )
}

fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &str)>,
) -> Result<Answer, BoxError> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some((kind, b)) = body {
        head.push_str(&format!(
            "Content-Type: {kind}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    if let Some((_, b)) = body {
        s.write_all(b.as_bytes())?;
    }
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default().to_string();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("status code")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Answer {
        status_line,
        status,
        headers,
        body: body.to_string(),
    })
}

/// A binary-safe answer: status, header lines as (lower-case name, value), body bytes.
pub struct RawAnswer {
    /// The status code.
    pub status: u16,
    /// Header lines as (lower-case name, value).
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body read as JSON (`Null` when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// `POST path` on `addr` with a JSON `body` and `Authorization: Bearer token`; the answer's
/// body kept as bytes (a SignedData is binary).
pub fn post_json(addr: &str, path: &str, token: &str, body: &[u8]) -> Result<RawAnswer, BoxError> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = String::from_utf8(raw[..end].to_vec())?;
    let mut rest = raw[end + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("status code")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let nl = rest[at..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("chunk size")?;
            let size = usize::from_str_radix(std::str::from_utf8(&rest[at..at + nl])?.trim(), 16)?;
            at += nl + 2;
            if size == 0 {
                break;
            }
            body.extend_from_slice(rest.get(at..at + size).ok_or("short chunk")?);
            at += size + 2;
        }
        rest = body;
    }
    Ok(RawAnswer {
        status,
        headers,
        body: rest,
    })
}

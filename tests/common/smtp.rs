//! An SMTP server for tests: mailin-embedded on a thread, recording every message it accepts.
//! It refuses recipients `nobody@…` (a permanent failure) and, where the server offers AUTH
//! PLAIN, accepts only [`USER`] / [`PASSWORD`].

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use mailin_embedded::{Handler, Response, Server, SslConfig, response};

/// The only user name the sink accepts.
pub const USER: &str = "rekey";
/// The only password the sink accepts.
pub const PASSWORD: &str = "s3cret";

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

/// The server's handler; clones share what was received.
#[derive(Clone, Default)]
pub struct Sink {
    got: Arc<Mutex<Vec<Received>>>,
    from: String,
    to: Vec<String>,
    buf: Vec<u8>,
}

impl Handler for Sink {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        self.from = from.to_string();
        self.to.clear();
        response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        if to.starts_with("nobody@") {
            return response::NO_MAILBOX;
        }
        self.to.push(to.to_string());
        response::OK
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _8bit: bool, _to: &[String]) -> Response {
        self.buf.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let r = Received {
            from: self.from.clone(),
            to: std::mem::take(&mut self.to),
            data: std::mem::take(&mut self.buf),
        };
        if let Ok(mut g) = self.got.lock() {
            g.push(r);
        }
        response::OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        if user == USER && password == PASSWORD {
            response::AUTH_OK
        } else {
            response::INVALID_CREDENTIALS
        }
    }
}

impl Sink {
    /// Every message received so far.
    pub fn messages(&self) -> Vec<Received> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// How many messages were received so far.
    pub fn count(&self) -> usize {
        self.got.lock().map(|g| g.len()).unwrap_or(0)
    }
}

/// Starts a plain (no TLS) server named `name` on 127.0.0.1:<free port>; it runs until the
/// test process ends.
pub fn start_server(name: &str) -> (Sink, SocketAddr) {
    let sink = Sink::default();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut server = Server::new(sink.clone());
    server
        .with_name(name)
        .with_ssl(SslConfig::None)
        .expect("ssl config")
        .with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    (sink, addr)
}

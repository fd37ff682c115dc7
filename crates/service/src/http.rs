//! rekey's one outbound HTTP client: a single HTTP/1.1 request over hyper (already in the tree
//! through axum), plain or over rustls with the ring provider and the Web PKI roots (already in
//! the tree through lettre), so no second TLS stack or HTTP library is built. Used for AS2 test
//! messages and for the SAP Cloud Integration connector ([`crate::sapci`]).
//!
//! One connection per request, no pool: these calls are rare (a test message per step), and a
//! fresh connection never carries state from an earlier answer. Every call has a deadline
//! covering connect, TLS, request and the whole answer, and answers are capped in size.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The largest answer read (an MDN is a few kilobytes).
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// Header fields, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request got no answer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL is not an `http://` or `https://` URL with a host.
    #[error("URL {url:?}: {reason}")]
    Url {
        /// As given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Connecting, TLS or the exchange failed.
    #[error("{0}")]
    Transport(String),
    /// The deadline passed.
    #[error("no answer within {0} s")]
    Timeout(u64),
}

/// A parsed target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Whether TLS is used.
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

/// Parses an `http://` or `https://` URL.
pub fn parse_url(url: &str) -> Result<Target, HttpError> {
    let bad = |reason: &str| HttpError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: hyper::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(bad("only http:// and https:// are supported")),
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(bad("credentials in the URL are not accepted"));
    }
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    Ok(Target {
        tls,
        host,
        port,
        path,
    })
}

/// POSTs `body` to `url` with `headers`, waiting at most `timeout` for the whole exchange.
pub async fn post(
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<HttpAnswer, HttpError> {
    request(Method::Post, url, headers, body, timeout).await
}

/// The methods rekey sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET (sent without a body).
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
}

impl Method {
    fn as_hyper(self) -> hyper::Method {
        match self {
            Method::Get => hyper::Method::GET,
            Method::Post => hyper::Method::POST,
            Method::Put => hyper::Method::PUT,
            Method::Delete => hyper::Method::DELETE,
        }
    }
}

/// Sends one request to `url` with `headers` and `body`, waiting at most `timeout` for the
/// whole exchange.
pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<HttpAnswer, HttpError> {
    let target = parse_url(url)?;
    tokio::time::timeout(timeout, exchange(method, &target, headers, body))
        .await
        .map_err(|_| HttpError::Timeout(timeout.as_secs()))?
}

async fn exchange(
    method: Method,
    target: &Target,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<HttpAnswer, HttpError> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| {
            HttpError::Transport(format!(
                "cannot connect to {}:{}: {e}",
                target.host, target.port
            ))
        })?;
    if target.tls {
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|e| HttpError::Transport(format!("server name {}: {e}", target.host)))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| HttpError::Transport(format!("TLS with {}: {e}", target.host)))?;
        send(tls, method, target, headers, body).await
    } else {
        send(tcp, method, target, headers, body).await
    }
}

async fn send<S>(
    stream: S,
    method: Method,
    target: &Target,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<HttpAnswer, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let transport = |e: hyper::Error| HttpError::Transport(format!("HTTP: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(transport)?;
    // The connection is driven by its own task, ended when this exchange ends however it
    // ends (answered, failed, or dropped at its deadline).
    let _driver = AbortOnDrop(tokio::spawn(conn));
    let default_port = if target.tls { 443 } else { 80 };
    let host = if target.port == default_port {
        target.host.clone()
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let mut request = Request::builder()
        .method(method.as_hyper())
        .uri(target.path.as_str())
        .header("host", host);
    for (k, v) in headers {
        request = request.header(*k, v.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| HttpError::Transport(format!("request: {e}")))?;
    let answer = sender.send_request(request).await.map_err(transport)?;
    let status = answer.status().as_u16();
    let headers = answer
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| HttpError::Transport(format!("reading the answer: {e}")))?
        .to_bytes()
        .to_vec();
    Ok(HttpAnswer {
        status,
        headers,
        body,
    })
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Client TLS: the Web PKI roots, ring as the provider (the one the tree already builds).
/// Built per request: requests are rare, and nothing global can be left half set up.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, HttpError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| HttpError::Transport(format!("TLS set-up: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_or_refused_by_name() {
        let t = parse_url("http://127.0.0.1:8080/as2?x=1").expect("parsed");
        assert_eq!(
            t,
            Target {
                tls: false,
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/as2?x=1".into()
            }
        );
        assert_eq!(parse_url("https://as2.example").expect("ok").port, 443);
        for bad in ["ftp://x/", "as2.example/path", "http://user:pw@x/", ""] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    /// HTTPS goes through rustls with the Web PKI roots: a server whose certificate no public
    /// authority issued is refused during the handshake, before anything is sent.
    #[tokio::test]
    async fn https_refuses_a_certificate_from_an_unknown_issuer() {
        use rekey_crypto::{KeyBits, KeyPair, self_signed};
        let key = KeyPair::generate(KeyBits::B2048).expect("key");
        let cert = self_signed(&key, "CN=127.0.0.1", chrono::Utc::now(), 1).expect("cert");
        let der = key.to_pkcs8_der().expect("pkcs8");
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(
                cert.to_der().to_vec(),
            )],
            rustls::pki_types::PrivateKeyDer::Pkcs8(der.to_vec().into()),
        )
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            if let Ok((tcp, _)) = listener.accept().await {
                let _ = acceptor.accept(tcp).await;
            }
        });
        let e = post(
            &format!("https://127.0.0.1:{port}/as2"),
            &[],
            b"never sent".to_vec(),
            Duration::from_secs(10),
        )
        .await
        .expect_err("refused");
        let text = e.to_string();
        assert!(matches!(e, HttpError::Transport(_)), "{text}");
        assert!(
            text.contains("TLS with 127.0.0.1") && text.contains("UnknownIssuer"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_endpoint_that_is_down_is_a_transport_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let e = post(
            &format!("http://127.0.0.1:{port}/"),
            &[],
            Vec::new(),
            Duration::from_secs(5),
        )
        .await
        .expect_err("down");
        assert!(matches!(e, HttpError::Transport(_)), "{e}");
    }
}

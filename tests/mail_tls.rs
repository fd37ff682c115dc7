//! SMTP with STARTTLS (and AUTH PLAIN) and with implicit TLS against loopback servers that
//! present a test certificate made with OpenSSL in the test: the certificate is verified (an
//! untrusted one is refused and retried), wrong credentials are a retryable configuration
//! fault, right ones deliver.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;

use chrono::Duration;
use common::openssl::openssl;
use common::smtp::{self, Received, Sink};
use common::{t0, tenant_with_admin};
use mailin_embedded::{AuthMechanism, Server, SslConfig};
use rekey_notifier::dispatch::{Dispatcher, Outcome};
use rekey_notifier::{SmtpSettings, TlsMode, Transport};
use rekey_store::testing::{self, RawOutbox};
use rekey_testdb::{TestDb, TestResult, on_both};
use uuid::Uuid;

/// A test CA and a server certificate it issued for 127.0.0.1; returns the CA's PEM.
fn certificates(dir: &Path) -> String {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=rekey test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    std::fs::read_to_string(dir.join("ca.pem")).expect("ca pem")
}

fn start_tls_server(dir: &Path) -> (Sink, SocketAddr) {
    // mailin's rustls is built with both ring and aws-lc-rs here; pick one for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sink = Sink::default();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut server = Server::new(sink.clone());
    server
        .with_name("127.0.0.1")
        .with_ssl(SslConfig::SelfSigned {
            cert_path: dir.join("server.pem").display().to_string(),
            key_path: dir.join("server.key").display().to_string(),
        })
        .expect("tls config")
        .with_auth(AuthMechanism::Plain)
        .with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    (sink, addr)
}

async fn queue_one(db: &TestDb) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let (tenant, _) = tenant_with_admin(db, "admin@acme.example").await?;
    let id = Uuid::new_v4();
    let message_id = format!("<{}@rekey>", id.simple());
    let state = serde_json::json!({
        "mail": "notice",
        "notice": {"to": "tenant_admin", "kind": "inform", "step": "x", "attach_certificate": null,
            "test_message": null, "due_at": null},
        "renewal": Uuid::nil(), "procedure": "dual-trust",
        "alias": "orders", "receiver": "acme-bank", "recipient": "admin@acme.example",
        "step": {"id": "x", "title": "Receiver switched", "seed": "7", "role": "receiver_admin",
            "with_role": null, "told": "The receiver switched"},
        "access": {"access": "informed"}, "new_certificate_fingerprint": null, "attachments": {},
    });
    let row = RawOutbox {
        id,
        tenant,
        renewal: None,
        message_id: message_id.clone(),
        recipients: "admin@acme.example".into(),
        subject: "[rekey] over TLS".into(),
        state: state.to_string(),
        at: t0(),
    };
    testing::queue_raw(db.store.db(), row).await?;
    Ok(message_id)
}

fn dispatcher(db: &TestDb, addr: SocketAddr, ca: Option<&str>, password: &str) -> Dispatcher {
    let mut s = SmtpSettings::new("127.0.0.1", addr.port(), TlsMode::Starttls);
    s.username = Some(smtp::USER.into());
    s.password = Some(password.into());
    s.root_certificates_pem = ca.map(|c| vec![c.to_string()]).unwrap_or_default();
    s.timeout = std::time::Duration::from_secs(10);
    Dispatcher::new(
        db.store.db().clone(),
        Transport::smtp(&s).expect("transport"),
        "rekey@rekey.test",
        "https://rekey.test",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_a_verified_test_certificate_and_auth_plain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = certificates(dir.path());
    let (sink, addr) = start_tls_server(dir.path());
    on_both(async |db: &TestDb| -> TestResult {
        let before = sink.count();
        let message_id = queue_one(db).await?;
        let mut now = t0();

        // Not trusting the server's CA: refused, retried later (a configuration problem).
        let r = dispatcher(db, addr, None, smtp::PASSWORD)
            .run_once(now)
            .await?;
        match &r.items[..] {
            [d] => match &d.outcome {
                Outcome::Retry { at, error } => {
                    assert!(error.to_lowercase().contains("certificate"), "{error}");
                    now = *at;
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }

        // Trusting it, with the wrong password: 535, retried.
        let r = dispatcher(db, addr, Some(&ca), "wrong")
            .run_once(now)
            .await?;
        match &r.items[..] {
            [d] => match &d.outcome {
                Outcome::Retry { at, error } => {
                    assert!(error.contains("535"), "{error}");
                    now = *at;
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }

        // Right password: delivered over STARTTLS.
        let r = dispatcher(db, addr, Some(&ca), smtp::PASSWORD)
            .run_once(now + Duration::seconds(1))
            .await?;
        assert_eq!(r.sent(), 1, "{r:?}");
        let got = sink.messages();
        assert_eq!(got.len(), before + 1);
        let Received { to, data, .. } = &got[before];
        assert_eq!(to, &vec!["admin@acme.example".to_string()]);
        assert!(String::from_utf8_lossy(data).contains(&format!("Message-ID: {message_id}")));
        Ok(())
    })
    .await;
}

/// Implicit TLS (port-465 style): a TLS listener with the test certificate in front of a plain
/// server, as a TLS-terminating relay would be.
async fn start_implicit_tls(dir: &Path, upstream: SocketAddr) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .expect("server.pem")
        .collect::<Result<_, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("server.key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_with_a_verified_test_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = certificates(dir.path());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sink = Sink::default();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let plain = listener.local_addr().expect("addr");
    let mut server = Server::new(sink.clone());
    server
        .with_ssl(SslConfig::None)
        .expect("ssl")
        .with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    let addr = start_implicit_tls(dir.path(), plain).await;
    on_both(async |db: &TestDb| -> TestResult {
        let before = sink.count();
        let message_id = queue_one(db).await?;
        let transport = |ca: Option<&str>| {
            let mut s = SmtpSettings::new("127.0.0.1", addr.port(), TlsMode::Tls);
            s.root_certificates_pem = ca.map(|c| vec![c.to_string()]).unwrap_or_default();
            s.timeout = std::time::Duration::from_secs(10);
            Transport::smtp(&s).expect("transport")
        };
        let d = |t| Dispatcher::new(db.store.db().clone(), t, "rekey@rekey.test", "https://x");
        // Untrusted: refused and retried.
        let r = d(transport(None)).run_once(t0()).await?;
        assert_eq!(r.retried(), 1, "{r:?}");
        // Trusted: delivered through TLS from the first byte.
        let r = d(transport(Some(&ca)))
            .run_once(t0() + Duration::minutes(5))
            .await?;
        assert_eq!(r.sent(), 1, "{r:?}");
        let got = sink.messages();
        assert_eq!(got.len(), before + 1);
        assert!(String::from_utf8_lossy(&got[before].data).contains(&message_id));
        Ok(())
    })
    .await;
}

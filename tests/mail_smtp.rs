//! Mail end to end against a real SMTP server over loopback (mailin-embedded): every email of a
//! full renewal of each procedure arrives once, at the right address, with the right
//! attachments and a working action link; an SMTP outage delays mail and never loses or
//! duplicates it; CR/LF in names, subjects and bodies cannot change the SMTP conversation.

mod common;

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use chrono::Duration;
use common::smtp::{Received, Sink, start_server};
use common::{t0, tenant_with_admin};
use rekey_engine::{Catalog, ProcedureId};
use rekey_model::OutboxStatus;
use rekey_notifier::dispatch::{self, Dispatcher, RetryPolicy};
use rekey_notifier::render;
use rekey_notifier::{SmtpSettings, TlsMode, Transport, links};
use rekey_service::Service;
use rekey_service::demo::{self, DemoOptions};
use rekey_store::mail::OutboxMail;
use rekey_store::outbox::OutboxRow;
use rekey_store::testing::{self, RawOutbox};
use rekey_testdb::{TestDb, TestResult, on_both};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use uuid::Uuid;

const BASE_URL: &str = "https://rekey.test";

// ---------------------------------------------------------------------------------------------
// A loopback forwarder in front of the server that can be stopped (connections cut, port
// closed: connection refused) and started again on the same port.

struct Proxy {
    port: u16,
    upstream: SocketAddr,
    stop: Option<watch::Sender<bool>>,
}

/// Cut everything once the server has accepted `after` messages.
#[derive(Clone)]
struct Trip {
    sink: Sink,
    after: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(upstream: SocketAddr, trip: Trip) -> Proxy {
        let mut p = Proxy {
            port: 0,
            upstream,
            stop: None,
        };
        p.listen(trip).await;
        p
    }

    async fn listen(&mut self, trip: Trip) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], self.port)))
            .expect("bind proxy");
        let listener = socket.listen(16).expect("listen");
        self.port = listener.local_addr().expect("addr").port();
        let (tx, rx) = watch::channel(false);
        let upstream = self.upstream;
        let tx2 = tx.clone();
        tokio::spawn(async move {
            let mut stop = rx.clone();
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    acc = listener.accept() => {
                        let Ok((client, _)) = acc else { return };
                        tokio::spawn(pipe(client, upstream, rx.clone(), tx2.clone(), trip.clone()));
                    }
                }
            }
        });
        self.stop = Some(tx);
    }

    fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
    }

    async fn restart(&mut self, trip: Trip) {
        self.stop();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        self.listen(trip).await;
    }
}

async fn pipe(
    client: tokio::net::TcpStream,
    upstream: SocketAddr,
    mut stop: watch::Receiver<bool>,
    stopper: watch::Sender<bool>,
    trip: Trip,
) {
    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = [0u8; 8192];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if trip.sink.count() >= trip.after.load(Ordering::SeqCst) {
                // The server "goes down" between two messages: nothing half-sent.
                let _ = stopper.send(true);
                break;
            }
            sw.write_all(&buf[..n]).await?;
        }
        Ok::<_, io::Error>(())
    };
    let down = tokio::io::copy(&mut sr, &mut cw);
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = stop.changed() => {}
    }
}

// ---------------------------------------------------------------------------------------------
// A small MIME reader for what lettre writes.

#[derive(Debug, Clone)]
struct Part {
    headers: String,
    body: Vec<u8>,
}

impl Part {
    fn header(&self, name: &str) -> Option<String> {
        header(&self.headers, name)
    }

    fn filename(&self) -> Option<String> {
        let cd = self.header("content-disposition")?;
        let i = cd.find("filename=")?;
        Some(
            cd[i + 9..]
                .trim_matches(|c| c == '"' || c == ' ')
                .to_string(),
        )
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn header(headers: &str, name: &str) -> Option<String> {
    let unfolded = headers.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn split_head(raw: &[u8]) -> (String, Vec<u8>) {
    let s = raw;
    match s.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (
            String::from_utf8_lossy(&s[..i]).into_owned(),
            s[i + 4..].to_vec(),
        ),
        None => (String::from_utf8_lossy(s).into_owned(), Vec::new()),
    }
}

fn qp_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'=' {
            if s[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if let Some(h) = s.get(i + 1..i + 3)
                && let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(h), 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Leaf parts of a message, bodies decoded.
fn leaves(raw: &[u8]) -> Vec<Part> {
    let (headers, body) = split_head(raw);
    let ct = header(&headers, "content-type").unwrap_or_default();
    if ct.to_ascii_lowercase().starts_with("multipart/") {
        let Some(i) = ct.find("boundary=") else {
            return Vec::new();
        };
        let boundary = ct[i + 9..]
            .split(';')
            .next()
            .unwrap_or("")
            .trim_matches('"')
            .to_string();
        let delim = format!("\r\n--{boundary}");
        let text = format!("\r\n{}", String::from_utf8_lossy(&body));
        return text
            .split(&delim)
            .skip(1)
            .filter(|p| !p.starts_with("--"))
            .flat_map(|p| leaves(p.trim_start_matches("\r\n").as_bytes()))
            .collect();
    }
    let cte = header(&headers, "content-transfer-encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let body = match cte.as_str() {
        "base64" => {
            let clean: Vec<u8> = body
                .iter()
                .copied()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(clean)
                .expect("base64 part")
        }
        "quoted-printable" => qp_decode(&body),
        _ => body,
    };
    vec![Part { headers, body }]
}

// ---------------------------------------------------------------------------------------------

fn service(db: &TestDb) -> Service {
    Service::new(
        db.store.clone(),
        Catalog::builtin().expect("built-in workflows"),
    )
}

fn smtp(addr: SocketAddr) -> Transport {
    let mut s = SmtpSettings::new("127.0.0.1", addr.port(), TlsMode::None);
    s.timeout = std::time::Duration::from_secs(10);
    Transport::smtp(&s).expect("smtp transport")
}

fn dispatcher(db: &TestDb, transport: Transport) -> Dispatcher {
    Dispatcher::new(
        db.store.db().clone(),
        transport,
        "rekey <rekey@rekey.test>",
        BASE_URL,
    )
}

async fn rows(db: &TestDb) -> Result<Vec<OutboxRow>, rekey_store::StoreError> {
    rekey_store::outbox::list(db.store.db(), None, None).await
}

/// Message-ID → messages received with it.
fn by_message_id(msgs: &[Received]) -> BTreeMap<String, Vec<Received>> {
    let mut out: BTreeMap<String, Vec<Received>> = BTreeMap::new();
    for m in msgs {
        let (h, _) = split_head(&m.data);
        let id = header(&h, "message-id").unwrap_or_default();
        out.entry(id).or_default().push(m.clone());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_email_of_every_procedure_arrives_once_with_its_attachments_and_link() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db);
        let runs = demo::run(
            &s,
            &DemoOptions {
                procedures: ProcedureId::ALL.to_vec(),
                bits: 2048,
                start: t0(),
            },
        )
        .await?;
        let end = runs
            .iter()
            .filter_map(|r| r.probes.last().map(|p| p.at))
            .max()
            .unwrap_or_else(t0)
            + Duration::minutes(5);
        let queued = rows(db).await?;
        assert!(
            queued.len() >= 20,
            "a full run queues mail: {}",
            queued.len()
        );

        let (sink, addr) = start_server("mx.rekey.test");
        let report = dispatcher(db, smtp(addr)).run_once(end).await?;
        assert_eq!(report.sent(), queued.len(), "{report:?}");
        assert_eq!(report.failed() + report.retried(), 0, "{report:?}");

        let got = by_message_id(&sink.messages());
        let mut with_certificate: BTreeMap<String, usize> = BTreeMap::new();
        let mut with_test_message: BTreeMap<String, usize> = BTreeMap::new();
        for row in rows(db).await? {
            assert_eq!(row.status, OutboxStatus::Sent, "{}", row.message_id);
            assert!(row.sent_at.is_some());
            let msgs = got.get(&row.message_id).cloned().unwrap_or_default();
            assert_eq!(msgs.len(), 1, "exactly once: {}", row.message_id);
            let m = &msgs[0];
            assert_eq!(m.to, vec![row.recipients.clone()], "envelope recipient");
            assert_eq!(m.from, "rekey@rekey.test");
            let (h, _) = split_head(&m.data);
            assert_eq!(header(&h, "to").as_deref(), Some(row.recipients.as_str()));
            assert_eq!(header(&h, "subject").as_deref(), Some(row.subject.as_str()));

            let mail = render::parse(row.id, &row.state)?;
            let OutboxMail::Notice(state) = &mail else {
                return Err(format!("a renewal queues notices: {mail:?}").into());
            };
            let parts = leaves(&m.data);
            let text = parts
                .iter()
                .find(|p| {
                    p.header("content-type")
                        .is_some_and(|c| c.starts_with("text/plain"))
                })
                .map(Part::text)
                .unwrap_or_default();
            let html = parts
                .iter()
                .find(|p| {
                    p.header("content-type")
                        .is_some_and(|c| c.starts_with("text/html"))
                })
                .map(Part::text)
                .unwrap_or_default();
            assert!(!html.is_empty(), "HTML alternative");
            assert!(text.contains(&state.alias), "{text}");
            if let Some(step) = &state.step {
                assert!(text.contains(&step.title), "{text}");
            }
            if let Some(due) = state.notice.due_at {
                assert!(
                    text.contains(&due.format("%Y-%m-%d %H:%M UTC").to_string()),
                    "{text}"
                );
            }
            assert!(text.contains("Why it matters") || state.notice.kind.is_final());
            assert!(text.contains("What to do: "), "{text}");

            // The action link: present exactly when the notice asks to act on a step, bound to
            // this recipient and step, usable.
            let link = text
                .split_whitespace()
                .find(|w| w.starts_with(&format!("{BASE_URL}/tasks/")))
                .map(str::to_string);
            let wants_link = render::link_target(&mail).is_some();
            assert_eq!(
                link.is_some(),
                wants_link,
                "{:?}: {text}",
                state.notice.kind
            );
            if let Some(link) = link {
                let token = link.trim_start_matches(&format!("{BASE_URL}/tasks/"));
                assert_eq!(token.len(), 43, "256 bits, URL-safe Base64");
                let info = links::lookup(db.store.db(), token, end).await?;
                assert_eq!(info.recipient, row.recipients);
                assert_eq!(Some(info.step), state.notice.step.clone());
                assert_eq!(info.renewal, state.renewal);
                assert!(html.contains(token));
            }

            // The email that hands the receiver administrator the new certificate.
            let files: Vec<String> = parts.iter().filter_map(Part::filename).collect();
            if let Some(pem) = &state.attachments.certificate_chain_pem {
                let cert_part = parts
                    .iter()
                    .find(|p| p.filename().as_deref() == Some("certificate.pem"))
                    .ok_or("certificate.pem attached")?;
                assert_eq!(
                    cert_part.text().replace("\r\n", "\n").trim(),
                    pem.replace("\r\n", "\n").trim()
                );
                let cert = rekey_crypto::Certificate::from_pem(&cert_part.text())?;
                let fp = cert.fingerprint().to_string();
                assert!(text.contains(&fp), "fingerprint in the body: {text}");
                assert!(html.contains(&fp));
                if state.notice.to == rekey_engine::Role::ReceiverAdmin {
                    *with_certificate
                        .entry(state.procedure.to_string())
                        .or_default() += 1;
                }
            } else {
                assert!(!files.contains(&"certificate.pem".to_string()));
            }
            if let Some(b64) = &state.attachments.test_message_base64 {
                let p7m = parts
                    .iter()
                    .find(|p| p.filename().as_deref() == Some("test-message.p7m"))
                    .ok_or("test-message.p7m attached")?;
                let expected = base64::engine::general_purpose::STANDARD.decode(b64)?;
                assert_eq!(p7m.body, expected, "the DER survives byte for byte");
                let v = rekey_crypto::verify(
                    &p7m.body,
                    None,
                    &[],
                    rekey_crypto::CertSource::EmbeddedAndSupplied,
                )?;
                assert!(
                    !v.signers.is_empty() && v.signers.iter().all(|s| s.is_valid()),
                    "{v:?}"
                );
                if let Some(fp) = &state.new_certificate_fingerprint {
                    assert!(
                        v.signers.iter().any(|s| s
                            .certificate
                            .as_ref()
                            .map(|c| c.to_string())
                            .as_ref()
                            == Some(fp)),
                        "the test message is signed by the new key: {v:?}"
                    );
                }
                *with_test_message
                    .entry(state.procedure.to_string())
                    .or_default() += 1;
            } else {
                assert!(!files.contains(&"test-message.p7m".to_string()));
            }
        }
        for p in ProcedureId::ALL {
            assert!(
                with_certificate.get(&p.to_string()).copied().unwrap_or(0) >= 1,
                "{p}: the receiver administrator got the new certificate: {with_certificate:?}"
            );
            assert!(
                with_test_message.get(&p.to_string()).copied().unwrap_or(0) >= 1,
                "{p}: a test message was sent: {with_test_message:?}"
            );
        }
        // A second pass sends nothing again.
        let again = dispatcher(db, smtp(addr))
            .run_once(end + Duration::days(1))
            .await?;
        assert!(again.items.is_empty(), "{again:?}");
        assert_eq!(sink.count(), queued.len());
        Ok(())
    })
    .await;
}

trait FinalKind {
    fn is_final(&self) -> bool;
}

impl FinalKind for rekey_engine::NoticeKind {
    fn is_final(&self) -> bool {
        use rekey_engine::NoticeKind::*;
        matches!(self, Completed | Cancelled | RolledBack)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_delays_mail_and_every_email_is_delivered_exactly_once() {
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db);
        demo::run_procedure(&s, ProcedureId::DualSignature, 2048, t0()).await?;
        let total = rows(db).await?.len();
        assert!(total > 6, "{total}");

        let (sink, addr) = start_server("mx.rekey.test");
        let trip = Trip {
            sink: sink.clone(),
            after: Arc::new(AtomicUsize::new(3)),
        };
        let mut proxy = Proxy::start(addr, trip.clone()).await;
        let d = dispatcher(db, smtp(SocketAddr::from(([127, 0, 0, 1], proxy.port))));
        let now = t0() + Duration::days(1);

        // The server goes down after three messages, in the middle of the pass.
        let first = d.run_once(now).await?;
        assert_eq!(first.sent(), 3, "{first:?}");
        assert_eq!(first.retried(), total - 3, "{first:?}");
        assert_eq!(first.failed(), 0);
        for r in rows(db)
            .await?
            .iter()
            .filter(|r| r.status == OutboxStatus::Queued)
        {
            assert_eq!(r.attempts, 1);
            let wait = r.next_attempt_at - now;
            assert!(
                wait >= Duration::seconds(48) && wait <= Duration::seconds(72),
                "about a minute, with jitter: {wait}"
            );
            assert!(r.last_error.is_some());
            assert!(r.lease_owner.is_none());
        }

        // Still down a little later: nothing is due yet, then another failure doubles the wait.
        assert!(
            d.run_once(now + Duration::seconds(30))
                .await?
                .items
                .is_empty()
        );
        let second = d.run_once(now + Duration::minutes(2)).await?;
        assert_eq!(second.retried(), total - 3, "{second:?}");
        for r in rows(db)
            .await?
            .iter()
            .filter(|r| r.status == OutboxStatus::Queued)
        {
            assert_eq!(r.attempts, 2);
            let wait = r.next_attempt_at - (now + Duration::minutes(2));
            assert!(
                wait >= Duration::seconds(96) && wait <= Duration::seconds(144),
                "{wait}"
            );
        }

        // Back up.
        trip.after.store(usize::MAX, Ordering::SeqCst);
        proxy.restart(trip.clone()).await;
        let third = d.run_once(now + Duration::minutes(10)).await?;
        assert_eq!(third.sent(), total - 3, "{third:?}");

        let got = by_message_id(&sink.messages());
        let all = rows(db).await?;
        assert_eq!(sink.count(), total);
        // Links issued for attempts that failed were withdrawn: one per delivered action mail.
        let mut asking = 0;
        for r in &all {
            if render::link_target(&render::parse(r.id, &r.state)?).is_some() {
                asking += 1;
            }
        }
        let tokens = rekey_store::link_tokens::all(db.store.db()).await?;
        assert_eq!(tokens.len(), asking, "{asking} action mails");
        for r in &all {
            assert_eq!(r.status, OutboxStatus::Sent);
            assert_eq!(
                got.get(&r.message_id).map(Vec::len),
                Some(1),
                "{} exactly once",
                r.message_id
            );
        }
        proxy.stop();
        Ok(())
    })
    .await;
}

async fn queue_row(
    db: &TestDb,
    tenant: Uuid,
    to: &str,
    subject: &str,
    state: serde_json::Value,
) -> Result<String, rekey_store::StoreError> {
    let id = Uuid::new_v4();
    let message_id = format!("<{}@rekey>", id.simple());
    let row = RawOutbox {
        id,
        tenant,
        renewal: None,
        message_id: message_id.clone(),
        recipients: to.into(),
        subject: subject.into(),
        state: state.to_string(),
        at: t0(),
    };
    testing::queue_raw(db.store.db(), row).await?;
    Ok(message_id)
}

/// An inform mail to a tenant administrator about step `x` of a made-up renewal.
fn inform(alias: &str, receiver: &str, title: &str) -> serde_json::Value {
    serde_json::json!({
        "mail": "notice",
        "notice": {"to": "tenant_admin", "kind": "inform", "step": "x", "attach_certificate": null,
            "test_message": null, "due_at": null},
        "renewal": Uuid::nil(),
        "procedure": "dual-trust",
        "alias": alias,
        "receiver": receiver,
        "recipient": "admin@acme.example",
        "step": {"id": "x", "title": title, "seed": "3", "role": "receiver_admin", "with_role": null,
            "told": title},
        "access": {"access": "informed"},
        "new_certificate_fingerprint": null,
        "attachments": {},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cr_lf_and_lone_lf_dots_cannot_change_the_smtp_conversation() {
    on_both(async |db: &TestDb| -> TestResult {
        let tenant = tenant_with_admin(db, "admin@acme.example").await?.0;
        let evil =
            "x\n.\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<evil@attacker.example>\n.\r\nDATA";
        // Bodies: CR/LF and lone-LF dots in names and titles become text.
        let body_row = queue_row(
            db,
            tenant,
            "dev@acme.example",
            "[rekey] ordinary subject",
            inform(evil, &format!("recv\r\n.\r\n{evil}"), evil),
        )
        .await?;
        // Headers: refused, nothing sent, the tenant administrator told.
        let subject_row = queue_row(
            db,
            tenant,
            "dev@acme.example",
            "[rekey] hi\r\nBcc: evil@attacker.example",
            inform("a", "r", "t"),
        )
        .await?;
        let to_row = queue_row(
            db,
            tenant,
            "dev@acme.example\r\nRCPT TO:<evil@attacker.example>",
            "[rekey] to",
            inform("a", "r", "t"),
        )
        .await?;
        let lf_to_row = queue_row(
            db,
            tenant,
            "dev@acme.example\n",
            "[rekey] lf",
            inform("a", "r", "t"),
        )
        .await?;
        // A rejected address (550): failed at once, reported.
        let rejected_row = queue_row(
            db,
            tenant,
            "nobody@acme.example",
            "[rekey] rejected",
            inform("a", "r", "t"),
        )
        .await?;
        let after_row = queue_row(
            db,
            tenant,
            "dev@acme.example",
            "[rekey] after",
            inform("a", "r", "t"),
        )
        .await?;

        let (sink, addr) = start_server("mx.rekey.test");
        let d = dispatcher(db, smtp(addr)).with_batch(1);
        let report = d.run_once(t0() + Duration::minutes(1)).await?;
        let status: BTreeMap<String, OutboxStatus> = rows(db)
            .await?
            .into_iter()
            .map(|r| (r.message_id, r.status))
            .collect();
        assert_eq!(status[&body_row], OutboxStatus::Sent);
        assert_eq!(status[&after_row], OutboxStatus::Sent);
        for id in [&subject_row, &to_row, &lf_to_row, &rejected_row] {
            assert_eq!(status[id], OutboxStatus::Failed, "{id}: {report:?}");
        }
        let errors: Vec<String> = rows(db)
            .await?
            .into_iter()
            .filter(|r| r.status == OutboxStatus::Failed)
            .filter_map(|r| r.last_error)
            .collect();
        assert_eq!(
            errors.iter().filter(|e| e.contains("CR or LF")).count(),
            3,
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.contains("550")), "{errors:?}");

        // Every message the server saw went to its one intended recipient; nobody else got
        // anything, and the conversation stayed in step (the rows after it arrived intact).
        let msgs = sink.messages();
        for m in &msgs {
            assert!(!m.to.iter().any(|t| t.contains("attacker")), "{:?}", m.to);
            assert_eq!(m.to.len(), 1);
        }
        let got = by_message_id(&msgs);
        assert_eq!(got.get(&body_row).map(Vec::len), Some(1));
        assert_eq!(got.get(&after_row).map(Vec::len), Some(1));
        let body = &got[&body_row][0];
        let text = leaves(&body.data)
            .into_iter()
            .find(|p| {
                p.header("content-type")
                    .is_some_and(|c| c.starts_with("text/plain"))
            })
            .map(|p| p.text())
            .unwrap_or_default();
        assert!(
            text.contains("\r\n.\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:"),
            "the lone-LF dot line arrives as text: {text:?}"
        );
        assert!(
            !text.replace("\r\n", "").contains(['\r', '\n']),
            "CRLF only"
        );

        // Four failures, four reports to the tenant administrator, delivered in the same pass.
        let reports: Vec<&Received> = msgs
            .iter()
            .filter(|m| m.to == ["admin@acme.example"])
            .collect();
        assert_eq!(
            reports.len(),
            4,
            "{:?}",
            msgs.iter().map(|m| &m.to).collect::<Vec<_>>()
        );
        for r in reports {
            let (h, _) = split_head(&r.data);
            let subject = header(&h, "subject").unwrap_or_default();
            assert!(subject.contains("Undeliverable"), "{subject}");
        }
        assert_eq!(msgs.len(), 6);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_on_one_database_never_send_a_row_twice() {
    on_both(async |db: &TestDb| -> TestResult {
        let tenant = tenant_with_admin(db, "admin@acme.example").await?.0;
        let mut ids = Vec::new();
        for i in 0..30 {
            ids.push(
                queue_row(
                    db,
                    tenant,
                    &format!("dev{i}@acme.example"),
                    &format!("[rekey] n{i}"),
                    inform("a", "r", "t"),
                )
                .await?,
            );
        }
        let (sink, addr) = start_server("mx.rekey.test");
        let other = db.reopen().await?;
        let a = dispatcher(db, smtp(addr)).with_batch(3).with_owner("a");
        let b = Dispatcher::new(other.db().clone(), smtp(addr), "rekey@rekey.test", BASE_URL)
            .with_batch(3)
            .with_owner("b");
        let now = t0() + Duration::minutes(1);
        let (ra, rb) = tokio::join!(a.run_once(now), b.run_once(now));
        let (ra, rb) = (ra?, rb?);
        assert_eq!(ra.sent() + rb.sent(), 30, "{ra:?} {rb:?}");
        let got = by_message_id(&sink.messages());
        for id in &ids {
            assert_eq!(got.get(id).map(Vec::len), Some(1), "{id}");
        }
        // A claim leaves nothing for a second claimer while the lease holds.
        queue_row(
            db,
            tenant,
            "late@acme.example",
            "[rekey] late",
            inform("a", "r", "t"),
        )
        .await?;
        let claimed = a.claim(now, 10).await?;
        assert_eq!(claimed.len(), 1);
        assert!(b.claim(now, 10).await?.is_empty());
        // The claimer died: its lease is short (30 s), so the other dispatcher sends the row
        // as soon as it has run out, and only once.
        assert!(b.claim(now + Duration::seconds(29), 10).await?.is_empty());
        let rb = b.run_once(now + Duration::seconds(30)).await?;
        assert_eq!(rb.sent(), 1, "{rb:?}");
        let late = by_message_id(&sink.messages())
            .into_iter()
            .filter(|(id, _)| !ids.contains(id))
            .map(|(_, m)| m.len())
            .collect::<Vec<_>>();
        assert_eq!(late, vec![1]);
        let _ = other.close().await;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_give_up_after_five_days_and_retry_requeues() {
    on_both(async |db: &TestDb| -> TestResult {
        let tenant = tenant_with_admin(db, "admin@acme.example").await?.0;
        let id = queue_row(
            db,
            tenant,
            "dev@acme.example",
            "[rekey] x",
            inform("a", "r", "t"),
        )
        .await?;
        // Nothing listens on this port.
        let port = StdListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let d = dispatcher(db, smtp(SocketAddr::from(([127, 0, 0, 1], port)))).with_policy(
            RetryPolicy {
                jitter: 0.0,
                ..RetryPolicy::default()
            },
        );
        let mut now = t0();
        let mut passes = 0;
        loop {
            let r = d.run_once(now).await?;
            passes += 1;
            let row = rows(db)
                .await?
                .into_iter()
                .find(|r| r.message_id == id)
                .ok_or("row")?;
            if row.status == OutboxStatus::Failed {
                assert!(
                    row.last_error.as_deref().unwrap_or("").contains("gave up"),
                    "{r:?}"
                );
                break;
            }
            now = row.next_attempt_at;
            assert!(passes < 1000);
        }
        let waited = now - t0();
        assert!(
            waited >= Duration::days(5) - Duration::minutes(30)
                && waited <= Duration::days(5) + Duration::minutes(30),
            "gave up after {waited}"
        );
        // The tenant administrator was told (queued; the server is still down).
        let report = rows(db)
            .await?
            .into_iter()
            .find(|r| r.recipients == "admin@acme.example")
            .ok_or("failure report queued")?;
        assert!(report.subject.contains("Undeliverable"));

        // `rekey mail retry`: queued again with a fresh retry period.
        let row = rows(db)
            .await?
            .into_iter()
            .find(|r| r.message_id == id)
            .ok_or("row")?;
        let again = dispatch::retry(db.store.db(), row.id, now).await?;
        assert_eq!(again.status, OutboxStatus::Queued);
        assert_eq!(again.attempts, 0);
        let (sink, addr) = start_server("mx.rekey.test");
        // The report itself was tried in the failing pass and waits for its own retry.
        let ok = dispatcher(db, smtp(addr))
            .run_once(now + Duration::minutes(2))
            .await?;
        assert_eq!(ok.sent(), 2, "{ok:?}");
        assert_eq!(sink.count(), 2);
        let sent = dispatch::retry(db.store.db(), row.id, now).await;
        assert!(sent.is_err(), "a sent row is not sent twice");
        Ok(())
    })
    .await;
}

/// Issue 11 §2: the test message a receiver administrator got showed the signatures of the
/// first affected signer step only. Here the renewed alias is listed by two signer steps that
/// sign differently (the second also signs with another key): the switch-receiver email arrives
/// with one verifiable test message per step, each carrying that step's signatures, and says
/// which step each one stands for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_administrator_gets_a_test_message_per_affected_signer_step() {
    use rekey_crypto::{KeyBits, KeyPair, self_signed};
    use rekey_model::{Alias, StepName};
    use rekey_store::{KeyMaterial, SignerParams, StepOptions};
    on_both(async |db: &TestDb| -> TestResult {
        let s = service(db);
        let p = ProcedureId::DualSignature;
        let setup = demo::prepare(&s, p, 2048, t0()).await?;
        let store = s.store();
        // A second step of the same flow lists the alias and then another keyed alias.
        let other = Alias::parse(&format!("{}-other", setup.alias))?;
        let key = KeyPair::generate(KeyBits::try_from(2048u32)?)?;
        let cert = self_signed(
            &key,
            "CN=other,O=rekey test",
            t0() - Duration::days(10),
            365,
        )?;
        store
            .add_key(
                setup.tenant,
                &other,
                &KeyMaterial::new(&other, key, vec![cert])?,
                "test",
            )
            .await?;
        let twice = StepName::parse("sign-twice")?;
        store
            .add_step(
                setup.tenant,
                &setup.flow,
                &twice,
                StepOptions::default(),
                "test",
            )
            .await?;
        for alias in [setup.alias.clone(), other.clone()] {
            let params = SignerParams {
                alias,
                digest: rekey_crypto::DigestAlg::Sha256,
                include_certs: true,
                include_signing_time: true,
            };
            store
                .add_row(setup.tenant, &setup.flow, &twice, &params, "test")
                .await?;
        }
        s.start(
            rekey_service::StartRequest {
                procedure: None,
                auto_approve: true,
                ..setup.start_request(2048)
            },
            demo::TENANT_ADMIN,
            t0(),
        )
        .await?;

        let (sink, addr) = start_server("mx.rekey.test");
        let report = dispatcher(db, smtp(addr))
            .run_once(t0() + Duration::minutes(5))
            .await?;
        assert_eq!(report.failed() + report.retried(), 0, "{report:?}");
        let ops = demo::receiver_admin(p);
        let msg = sink
            .messages()
            .into_iter()
            .find(|m| {
                let (h, _) = split_head(&m.data);
                m.to == vec![ops.clone()]
                    && header(&h, "subject").is_some_and(|s| s.contains("Your step is due"))
            })
            .ok_or("the receiver administrator's switch email")?;
        let parts = leaves(&msg.data);
        let mut tests: Vec<(String, usize)> = Vec::new();
        for part in &parts {
            let Some(name) = part.filename().filter(|f| f.starts_with("test-message")) else {
                continue;
            };
            let v = rekey_crypto::verify(
                &part.body,
                None,
                &[],
                rekey_crypto::CertSource::EmbeddedAndSupplied,
            )?;
            assert!(v.signers.iter().all(|s| s.is_valid()), "{name}: {v:?}");
            tests.push((name, v.signers.len()));
        }
        tests.sort();
        assert_eq!(
            tests,
            vec![
                ("test-message-1.p7m".to_string(), 2),
                ("test-message-2.p7m".to_string(), 3)
            ],
            "one test message per signer step: old and new; old, new and the other key"
        );
        let text = parts
            .iter()
            .find(|p| {
                p.header("content-type")
                    .is_some_and(|c| c.starts_with("text/plain"))
            })
            .map(Part::text)
            .ok_or("text part")?
            .replace("=\r\n", "")
            .replace("\r\n", " ");
        for step in ["sign", "sign-twice"] {
            assert!(
                text.contains(&format!("{}/{step} ", setup.flow)),
                "the email names signer step {step}: {text}"
            );
        }
        Ok(())
    })
    .await;
}

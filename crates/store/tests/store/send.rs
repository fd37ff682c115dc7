//! Compile-time check: the futures of `Store` methods are `Send`, so a multi-threaded server
//! (axum, tokio::spawn) can await them.

use chrono::Utc;
use rekey_crypto::{Certificate, Fingerprint};
use rekey_model::{
    Alias, Email, EntryId, FlowName, Grant, ReceiverName, StepName, TenantId, TenantName, TokenId,
    UserId,
};
use rekey_store::{KeyMaterial, ReceiverProfile, SignerParams, StepOptions, Store};

fn send<T: Send>(_: T) {}

#[allow(dead_code, clippy::too_many_arguments)]
fn store_futures_are_send(
    s: &Store,
    t: TenantId,
    a: &Alias,
    m: &KeyMaterial,
    e: EntryId,
    f: &FlowName,
    st: &StepName,
    p: &SignerParams,
    r: &ReceiverName,
    c: &Certificate,
    fp: &Fingerprint,
    em: &Email,
    u: UserId,
    tok: TokenId,
    tn: &TenantName,
) {
    send(s.create_tenant(tn, "x"));
    send(s.add_key(t, a, m, "x"));
    send(s.exchange_key(t, a, m, "x"));
    send(s.remove_key(t, a, "x"));
    send(s.restore_key(t, a, e, "x"));
    send(s.private_key(t, a));
    send(s.add_flow(t, f, "x"));
    send(s.add_step(t, f, st, StepOptions::default(), "x"));
    send(s.add_row(t, f, st, p, "x"));
    send(s.add_row_like(t, f, st, a, a, "x"));
    send(s.remove_row(t, f, st, a, "x"));
    send(s.alias_usage(t, a));
    send(s.sign_for_step(t, f, st, b"x", Utc::now()));
    send(s.add_receiver(t, r, ReceiverProfile::default(), "x"));
    send(s.trust_certificate(t, r, c, "x"));
    send(s.untrust_certificate(t, r, fp, "x"));
    send(s.add_user(em, "x"));
    send(s.grant(u, Grant::TenantAdmin { tenant: t }, "x"));
    send(s.create_token(u, "x", "x"));
    send(s.user_for_token("x"));
    send(s.revoke_token(tok, "x"));
    send(s.verify_audit());
}

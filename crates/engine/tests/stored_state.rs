//! A renewal's state is stored as JSON (the `renewals.state` column, and `rekey renewal show
//! --json`). The fixture was written by the engine before it spoke typed ids, aliases and
//! fingerprints: it must still load, and serialise back to exactly the same JSON.

use rekey_engine::*;

const BEFORE_TYPED_IDS: &str = include_str!("fixtures/renewal-before-typed-ids.json");

#[test]
fn a_renewal_stored_before_typed_ids_loads_and_serialises_unchanged() {
    let stored: serde_json::Value = serde_json::from_str(BEFORE_TYPED_IDS).expect("valid JSON");
    let r: Renewal = serde_json::from_str(BEFORE_TYPED_IDS).expect("the old shape loads");
    assert_eq!(
        r.tenant,
        "6f1c1c52-3b8e-4d0a-9a4e-0b7f6f0a1c2d"
            .parse::<TenantId>()
            .expect("uuid")
    );
    assert_eq!(
        r.receiver,
        "0d3a5b9e-7c41-4f2a-8e6b-5a9c2d1e4f70"
            .parse::<ReceiverId>()
            .expect("uuid")
    );
    assert_eq!(r.alias.as_str(), "signing");
    assert_eq!(
        r.new_alias.as_ref().map(Alias::as_str),
        Some("signing-20261102")
    );
    let new: Fingerprint = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
        .parse()
        .expect("hex");
    assert_eq!(r.new_cert, Some(new));
    assert_eq!(r.status, RenewalStatus::Running);
    assert!(matches!(
        &r.applied[0],
        Change::AddKey { alias, cert } if alias.as_str() == "signing-20261102" && *cert == new
    ));
    assert_eq!(
        serde_json::to_value(&r).expect("serialises"),
        stored,
        "the stored form changed"
    );
}

#[test]
fn a_stored_renewal_with_a_malformed_id_alias_or_fingerprint_is_refused_by_name() {
    let stored: serde_json::Value = serde_json::from_str(BEFORE_TYPED_IDS).expect("valid JSON");
    for (field, bad, says) in [
        ("tenant", "tenant-1", "UUID"),
        ("alias", "has space", "invalid alias"),
        ("new_cert", "new-cert", "not a hex digit"),
    ] {
        let mut v = stored.clone();
        v[field] = serde_json::Value::from(bad);
        let err = serde_json::from_value::<Renewal>(v)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            err.as_ref().is_err_and(|e| e.contains(says)),
            "{field} = {bad:?}: {err:?}"
        );
    }
}

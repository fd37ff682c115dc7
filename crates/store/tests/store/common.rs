//! Test harness: runs one async test body against a fresh SQLite file and, when
//! `REKEY_TEST_POSTGRES_URL` is set, against a fresh PostgreSQL database; loads fixtures.

pub use rekey_testdb::{TestDb, on_both};

use rekey_crypto::{Certificate, KeyPair};
use rekey_model::{Alias, TenantId, TenantName};
use rekey_store::KeyMaterial;

/// A fixture file's text.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => panic!("fixture {path}: {e}"),
    }
}

/// A fixture file's bytes.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    match std::fs::read(&path) {
        Ok(s) => s,
        Err(e) => panic!("fixture {path}: {e}"),
    }
}

/// Key material of fixture `name` (`alpha`, `beta`, `gamma`) for `alias`.
pub fn material(alias: &Alias, name: &str) -> Result<KeyMaterial, rekey_store::StoreError> {
    KeyMaterial::from_pem(
        alias,
        &fixture(&format!("{name}.key.pem")),
        &fixture(&format!("{name}.cert.pem")),
    )
}

/// Fixture `name`'s key.
pub fn key(name: &str) -> Result<KeyPair, rekey_crypto::CryptoError> {
    KeyPair::from_pem(&fixture(&format!("{name}.key.pem")))
}

/// Fixture `name`'s certificate.
pub fn cert(name: &str) -> Result<Certificate, rekey_crypto::CryptoError> {
    Certificate::from_pem(&fixture(&format!("{name}.cert.pem")))
}

/// Shorthand for a valid alias.
pub fn alias(s: &str) -> Alias {
    match Alias::parse(s) {
        Ok(a) => a,
        Err(e) => panic!("test alias: {e}"),
    }
}

/// Creates tenant `name`.
pub async fn tenant(db: &TestDb, name: &str) -> Result<TenantId, rekey_store::StoreError> {
    let t = db
        .store
        .create_tenant(&TenantName::parse(name)?, "test")
        .await?;
    Ok(t.id)
}

//! The keystore contract, kept by the embedded backend and by a PKCS#11 token (SoftHSM2).

mod common;

use common::{contract, on_softhsm};
use rekey_crypto::Embedded;

#[test]
fn embedded_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    contract(&Embedded, dir.path());
}

#[test]
fn pkcs11_keeps_the_contract() {
    on_softhsm("pkcs11_keeps_the_contract", |hsm| {
        let store = hsm.token("contract");
        contract(&store, &hsm.dir);
    });
}

//! A rekey keystore whose private keys never leave a PKCS#11 token.
//!
//! [`Pkcs11Keystore`] implements [`rekey_crypto::KeyBackend`] on a token reached through its
//! PKCS#11 module (SoftHSM2 for trying it, an HSM in production): keys are generated inside the
//! token as sensitive, non-extractable objects, found again by their `CKA_ID` (see [`ids`]),
//! and every signature is made by the token (`CKM_SHA256_RSA_PKCS` and its SHA-384/512
//! siblings). The user PIN is read from a file or an environment variable when the keystore is
//! opened and is never stored, logged or shown by `Debug`.
//!
//! A module is loaded and `C_Initialize`d once per process ([`registry`]) and never finalised,
//! so several tenants on one module, and parallel tests, share it safely.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod error;
pub mod ids;
mod keystore;
pub mod registry;
mod setup;

pub use config::{PinSource, Pkcs11Config};
pub use error::Pkcs11Error;
pub use ids::{ID_PREFIX, fresh_key_id};
pub use keystore::{KeyAttributes, Pkcs11Keystore};
pub use setup::{init_token, softhsm_conf};

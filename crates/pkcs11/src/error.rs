//! The PKCS#11 keystore's error type: each message names the module, token, file, variable or
//! key id that was wrong, and never a PIN.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong opening or using a token.
#[derive(Debug, Error)]
pub enum Pkcs11Error {
    /// The module could not be loaded or initialised.
    #[error("PKCS#11 module {path} cannot be loaded: {reason}")]
    Module {
        /// The module path as configured.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No initialised token carries the configured label.
    #[error("no token labelled {label:?} in PKCS#11 module {module}; tokens found: {}", found_list(.found))]
    NoToken {
        /// The label looked for.
        label: String,
        /// The module.
        module: PathBuf,
        /// The labels of the initialised tokens the module offers.
        found: Vec<String>,
    },
    /// Two initialised tokens carry the configured label.
    #[error("two tokens are labelled {label:?} in PKCS#11 module {module}: relabel one")]
    AmbiguousToken {
        /// The label.
        label: String,
        /// The module.
        module: PathBuf,
    },
    /// The PIN file is missing, unreadable or empty.
    #[error("PIN file {path} {reason}")]
    PinFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The PIN variable is unset or empty.
    #[error("PIN environment variable {var} {reason}")]
    PinEnv {
        /// The variable's name.
        var: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token refused the PIN.
    #[error("token {token:?} refused the user PIN: wrong PIN")]
    WrongPin {
        /// The token's label.
        token: String,
    },
    /// The token's user PIN is locked after too many wrong tries.
    #[error("token {token:?}: the user PIN is locked; its security officer must reset it")]
    PinLocked {
        /// The token's label.
        token: String,
    },
    /// No key object with this id on the token.
    #[error("no private key with id {id} on token {token:?}")]
    NoKey {
        /// The id, in hex.
        id: String,
        /// The token's label.
        token: String,
    },
    /// A key to import could not be read.
    #[error("key to import: {0}")]
    Key(String),
    /// A token call failed.
    #[error("token {token:?}: {op} failed: {reason}")]
    Token {
        /// The token's label.
        token: String,
        /// What was being done.
        op: &'static str,
        /// The module's answer.
        reason: String,
    },
    /// Setting up a throw-away token (tests, demo) failed.
    #[error("token set-up: {0}")]
    Setup(String),
}

fn found_list(found: &[String]) -> String {
    if found.is_empty() {
        "none".into()
    } else {
        found
            .iter()
            .map(|l| format!("{l:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl From<Pkcs11Error> for rekey_crypto::CryptoError {
    fn from(e: Pkcs11Error) -> Self {
        rekey_crypto::CryptoError::Backend(e.to_string())
    }
}

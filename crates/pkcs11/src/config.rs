//! Where a tenant's token is and how its user PIN is found; the PIN itself is read only when
//! the keystore is opened, so it is never part of the configuration, the database or a log.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::Pkcs11Error;

/// How to reach one tenant's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (a shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token's label (`CKA_LABEL` of the token, as `pkcs11-tool --list-tokens` shows it).
    pub token_label: String,
    /// Where the user PIN comes from.
    pub pin: PinSource,
}

/// Where the user PIN is read from. Names only the place, so `Debug` shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub enum PinSource {
    /// A file holding the PIN; surrounding whitespace (a final newline) is ignored.
    File(PathBuf),
    /// An environment variable holding the PIN.
    Env(String),
}

impl fmt::Debug for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinSource::File(p) => write!(f, "PinSource::File({})", p.display()),
            PinSource::Env(v) => write!(f, "PinSource::Env({v})"),
        }
    }
}

impl PinSource {
    /// Reads the PIN, refusing a missing or empty file and an unset or empty variable.
    pub(crate) fn read(&self) -> Result<String, Pkcs11Error> {
        let pin = match self {
            PinSource::File(path) => read_file(path)?,
            PinSource::Env(var) => std::env::var(var).map_err(|e| Pkcs11Error::PinEnv {
                var: var.clone(),
                reason: match e {
                    std::env::VarError::NotPresent => "is not set".into(),
                    std::env::VarError::NotUnicode(_) => "is not valid UTF-8".into(),
                },
            })?,
        };
        let pin = pin.trim().to_owned();
        if pin.is_empty() {
            return Err(match self {
                PinSource::File(path) => Pkcs11Error::PinFile {
                    path: path.clone(),
                    reason: "is empty".into(),
                },
                PinSource::Env(var) => Pkcs11Error::PinEnv {
                    var: var.clone(),
                    reason: "is empty".into(),
                },
            });
        }
        Ok(pin)
    }
}

fn read_file(path: &Path) -> Result<String, Pkcs11Error> {
    std::fs::read_to_string(path).map_err(|e| Pkcs11Error::PinFile {
        path: path.to_owned(),
        reason: match e.kind() {
            std::io::ErrorKind::NotFound => "does not exist".into(),
            _ => format!("cannot be read: {e}"),
        },
    })
}

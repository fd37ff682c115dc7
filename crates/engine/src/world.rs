//! The engine's model of tenant and receiver state: which key sits under which alias, which
//! aliases each signer step lists, and which certificates the receiver trusts.
//!
//! The shell loads it from the database; the engine computes what the signer would produce and
//! whether the receiver would accept it — the invariant — without any cryptography: real CMS
//! verification of the same situations is the reference receiver's job.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// A certificate (and so a key pair), named by its SHA-256 fingerprint in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CertId(pub String);

impl fmt::Display for CertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A keystore alias.
pub type Alias = String;

/// One CMS signer step, reduced to what decides who signs: its aliases in table order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignerStepModel {
    /// Integration flow name.
    pub flow: String,
    /// Signer step name within the flow.
    pub step: String,
    /// The Signer Parameters table's aliases, in order.
    pub aliases: Vec<Alias>,
}

/// What a receiver can do (mirrors the receiver's stored profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Profile {
    /// It can trust several certificates at once.
    pub verifies_multiple_keys: bool,
    /// It accepts SignedData with several SignerInfos.
    pub accepts_multiple_signatures: bool,
}

/// Everything the invariant depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct World {
    /// Current keystore entries: alias → certificate.
    pub keystore: BTreeMap<Alias, CertId>,
    /// Every signer step the renewal touches.
    pub signer_steps: Vec<SignerStepModel>,
    /// Certificates the receiver trusts, as confirmed by its administrator.
    pub trust: BTreeSet<CertId>,
    /// The receiver's profile.
    pub profile: Profile,
}

/// A change to the world, as rekey or a receiver administrator makes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// A key goes under an alias that has none.
    AddKey {
        /// Alias.
        alias: Alias,
        /// The key's certificate.
        cert: CertId,
    },
    /// The key under an alias is replaced; the old entry moves to history.
    ExchangeKey {
        /// Alias.
        alias: Alias,
        /// The new certificate.
        cert: CertId,
    },
    /// The key under an alias is removed (to history).
    RemoveKey {
        /// Alias.
        alias: Alias,
    },
    /// The previous entry under an alias comes back from history.
    RestoreKey {
        /// Alias.
        alias: Alias,
        /// The certificate restored.
        cert: CertId,
    },
    /// Every signer step listing `copy_from` gets a row for `alias` right after it, with the
    /// same parameters.
    AddSignerAlias {
        /// New alias.
        alias: Alias,
        /// The row whose parameters are copied.
        copy_from: Alias,
    },
    /// Every signer step's row for `alias` is removed.
    RemoveSignerAlias {
        /// Alias.
        alias: Alias,
    },
    /// The receiver starts trusting a certificate.
    Trust {
        /// Certificate.
        cert: CertId,
    },
    /// The receiver stops trusting a certificate.
    Distrust {
        /// Certificate.
        cert: CertId,
    },
}

/// What one signer step would produce next, and what the receiver would make of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// `flow/step`.
    pub signer_step: String,
    /// Certificates whose keys would sign, in table order.
    pub signers: Vec<CertId>,
    /// Whether the receiver would accept the message.
    pub accepted: bool,
    /// Why not, when rejected.
    pub reason: Option<String>,
}

impl World {
    /// Applies a change; errors say why it cannot apply (alias missing, already present, …).
    pub fn apply(&mut self, change: &Change) -> Result<(), String> {
        match change {
            Change::AddKey { alias, cert } => {
                if self.keystore.contains_key(alias) {
                    return Err(format!("alias {alias:?} already holds a key"));
                }
                self.keystore.insert(alias.clone(), cert.clone());
            }
            Change::ExchangeKey { alias, cert } | Change::RestoreKey { alias, cert } => {
                if !self.keystore.contains_key(alias) {
                    return Err(format!("alias {alias:?} holds no key"));
                }
                self.keystore.insert(alias.clone(), cert.clone());
            }
            Change::RemoveKey { alias } => {
                if self.keystore.remove(alias).is_none() {
                    return Err(format!("alias {alias:?} holds no key"));
                }
            }
            Change::AddSignerAlias { alias, copy_from } => {
                let mut touched = false;
                for s in &mut self.signer_steps {
                    if s.aliases.contains(alias) {
                        continue;
                    }
                    if let Some(pos) = s.aliases.iter().position(|a| a == copy_from) {
                        s.aliases.insert(pos + 1, alias.clone());
                        touched = true;
                    }
                }
                if !touched {
                    return Err(format!(
                        "no signer step lists {copy_from:?} without {alias:?}"
                    ));
                }
            }
            Change::RemoveSignerAlias { alias } => {
                let mut touched = false;
                for s in &mut self.signer_steps {
                    let before = s.aliases.len();
                    s.aliases.retain(|a| a != alias);
                    touched |= s.aliases.len() != before;
                }
                if !touched {
                    return Err(format!("no signer step lists {alias:?}"));
                }
            }
            Change::Trust { cert } => {
                self.trust.insert(cert.clone());
            }
            Change::Distrust { cert } => {
                self.trust.remove(cert);
            }
        }
        Ok(())
    }

    /// What every signer step would produce now, judged by the receiver rule: accepted when the
    /// message carries one signature (or the receiver accepts several) and at least one signer
    /// is trusted.
    pub fn probes(&self) -> Vec<Probe> {
        self.signer_steps
            .iter()
            .map(|s| {
                let mut signers: Vec<CertId> = Vec::new();
                for a in &s.aliases {
                    if let Some(c) = self.keystore.get(a)
                        && !signers.contains(c)
                    {
                        signers.push(c.clone());
                    }
                }
                let reason = if signers.is_empty() {
                    Some("no alias of the signer step holds a key: signing would fail".to_string())
                } else if signers.len() > 1 && !self.profile.accepts_multiple_signatures {
                    Some(format!(
                        "messages would carry {} signatures and the receiver accepts exactly one",
                        signers.len()
                    ))
                } else if !signers.iter().any(|c| self.trust.contains(c)) {
                    Some(
                        "no signature would come from a certificate the receiver trusts"
                            .to_string(),
                    )
                } else {
                    None
                };
                Probe {
                    signer_step: format!("{}/{}", s.flow, s.step),
                    signers,
                    accepted: reason.is_none(),
                    reason,
                }
            })
            .collect()
    }

    /// The first reason the receiver would reject a message, if any; also refuses trusting
    /// several certificates at a receiver that cannot.
    pub fn violation(&self) -> Option<String> {
        if self.trust.len() > 1 && !self.profile.verifies_multiple_keys {
            return Some(format!(
                "the receiver would have to trust {} certificates at once and it trusts one at a time",
                self.trust.len()
            ));
        }
        self.probes().into_iter().find_map(|p| {
            p.reason
                .map(|r| format!("signer step {}: {r}", p.signer_step))
        })
    }

    /// Aliases listed by a signer step that hold no key (candidates for a prepared alias).
    pub fn free_aliases(&self, besides: &str) -> Vec<Alias> {
        let mut out: Vec<Alias> = Vec::new();
        for s in self
            .signer_steps
            .iter()
            .filter(|s| s.aliases.iter().any(|a| a == besides))
        {
            for a in &s.aliases {
                if a != besides && !self.keystore.contains_key(a) && !out.contains(a) {
                    out.push(a.clone());
                }
            }
        }
        out
    }
}

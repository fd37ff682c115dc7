//! The engine's model of tenant and receiver state: which key sits under which alias, which
//! aliases each signer step lists, and which certificates the receiver trusts.
//!
//! The shell loads it from the database; the engine computes what the signer would produce and
//! whether the receiver would accept it — the invariant — without any cryptography: real CMS
//! verification of the same situations is the reference receiver's job.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A keystore alias (validated: see [`rekey_model::Alias`]).
pub use rekey_model::Alias;
/// A certificate, and so its key pair, named by its SHA-256 fingerprint (serialised as 64
/// lower-case hex digits, as the renewal state has always held it).
pub use rekey_model::Fingerprint;
use rekey_model::ReceiverId;

/// One CMS signer step, reduced to what decides who signs and who verifies: its aliases in
/// table order and the receivers its messages reach.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignerStepModel {
    /// Integration flow name.
    pub flow: String,
    /// Signer step name within the flow.
    pub step: String,
    /// The Signer Parameters table's aliases, in order.
    pub aliases: Vec<Alias>,
    /// Whether the renewal's receiver gets this step's messages.
    #[serde(default = "yes")]
    pub reaches_receiver: bool,
    /// Other receivers (keys of [`World::others`]) that get this step's messages.
    #[serde(default)]
    pub others: Vec<ReceiverId>,
}

fn yes() -> bool {
    true
}

impl SignerStepModel {
    /// A step listing `aliases` whose messages reach the renewal's receiver only.
    pub fn new(flow: &str, step: &str, aliases: Vec<Alias>) -> Self {
        SignerStepModel {
            flow: flow.into(),
            step: step.into(),
            aliases,
            reaches_receiver: true,
            others: Vec::new(),
        }
    }

    /// `flow/step`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.flow, self.step)
    }
}

/// A receiver other than the renewal's own that some signer step's messages reach. The
/// renewal changes nothing it trusts, so every step must keep it verifying as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OtherReceiver {
    /// Its name.
    pub name: String,
    /// Certificates it trusts.
    pub trust: BTreeSet<Fingerprint>,
    /// Its profile.
    pub profile: Profile,
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
    pub keystore: BTreeMap<Alias, Fingerprint>,
    /// Every signer step the renewal touches.
    pub signer_steps: Vec<SignerStepModel>,
    /// Certificates the receiver trusts, as confirmed by its administrator.
    pub trust: BTreeSet<Fingerprint>,
    /// The receiver's profile.
    pub profile: Profile,
    /// Other receivers reached by a signer step, by id.
    #[serde(default)]
    pub others: BTreeMap<ReceiverId, OtherReceiver>,
    /// Certificates whose validity has not begun at the event's `now` (a CA whose clock runs
    /// ahead): a strict receiver rejects their signatures, so none of them counts as trusted by
    /// any receiver.
    #[serde(default)]
    pub not_yet_valid: BTreeSet<Fingerprint>,
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
        cert: Fingerprint,
    },
    /// The key under an alias is replaced; the old entry moves to history.
    ExchangeKey {
        /// Alias.
        alias: Alias,
        /// The new certificate.
        cert: Fingerprint,
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
        cert: Fingerprint,
    },
    /// Every signer step listing `copy_from` gets a row for `alias` right after it, with the
    /// same parameters.
    AddSignerAlias {
        /// New alias.
        alias: Alias,
        /// The row whose parameters are copied.
        copy_from: Alias,
    },
    /// Every signer step's row for `alias` is removed, except in the steps named in `keep`.
    RemoveSignerAlias {
        /// Alias.
        alias: Alias,
        /// Steps (`flow/step`) whose row stays: they listed the alias before the renewal.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        keep: Vec<String>,
    },
    /// The receiver starts trusting a certificate.
    Trust {
        /// Certificate.
        cert: Fingerprint,
    },
    /// The receiver stops trusting a certificate.
    Distrust {
        /// Certificate.
        cert: Fingerprint,
    },
}

/// What one signer step would produce next, and what one receiver it reaches would make of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// `flow/step`.
    pub signer_step: String,
    /// The receiver judging: `None` for the renewal's own, else another receiver's name.
    pub receiver: Option<String>,
    /// Certificates whose keys would sign, in table order.
    pub signers: Vec<Fingerprint>,
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
                self.keystore.insert(alias.clone(), *cert);
            }
            Change::ExchangeKey { alias, cert } | Change::RestoreKey { alias, cert } => {
                if !self.keystore.contains_key(alias) {
                    return Err(format!("alias {alias:?} holds no key"));
                }
                self.keystore.insert(alias.clone(), *cert);
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
            Change::RemoveSignerAlias { alias, keep } => {
                let mut touched = false;
                for s in &mut self.signer_steps {
                    if keep.contains(&s.name()) {
                        continue;
                    }
                    let before = s.aliases.len();
                    s.aliases.retain(|a| a != alias);
                    touched |= s.aliases.len() != before;
                }
                if !touched {
                    return Err(format!("no signer step lists {alias:?}"));
                }
            }
            Change::Trust { cert } => {
                self.trust.insert(*cert);
            }
            Change::Distrust { cert } => {
                self.trust.remove(cert);
            }
        }
        Ok(())
    }

    /// What every signer step would produce now, judged by every receiver it reaches with the
    /// receiver rule: accepted when the message carries one signature (or the receiver accepts
    /// several) and at least one signer is trusted and already valid.
    pub fn probes(&self) -> Vec<Probe> {
        let mut out = Vec::new();
        for s in &self.signer_steps {
            let signers = self.signers(s);
            let judges = s
                .reaches_receiver
                .then_some((None, &self.trust, self.profile))
                .into_iter()
                .chain(s.others.iter().filter_map(|id| {
                    self.others
                        .get(id)
                        .map(|o| (Some(o.name.clone()), &o.trust, o.profile))
                }));
            for (receiver, trust, profile) in judges {
                let reason = judge(&signers, trust, &self.not_yet_valid, profile);
                out.push(Probe {
                    signer_step: s.name(),
                    receiver,
                    signers: signers.clone(),
                    accepted: reason.is_none(),
                    reason,
                });
            }
        }
        out
    }

    /// Certificates whose keys a step would sign with, in table order (rows without a key are
    /// skipped).
    pub fn signers(&self, s: &SignerStepModel) -> Vec<Fingerprint> {
        let mut signers: Vec<Fingerprint> = Vec::new();
        for a in &s.aliases {
            if let Some(c) = self.keystore.get(a)
                && !signers.contains(c)
            {
                signers.push(*c);
            }
        }
        signers
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
        if let Some(o) = self
            .others
            .values()
            .find(|o| o.trust.len() > 1 && !o.profile.verifies_multiple_keys)
        {
            return Some(format!(
                "receiver {} would have to trust {} certificates at once and it trusts one at a time",
                o.name,
                o.trust.len()
            ));
        }
        self.probes().into_iter().find_map(|p| {
            p.reason.map(|r| match p.receiver {
                Some(name) => format!("signer step {} (to receiver {name}): {r}", p.signer_step),
                None => format!("signer step {}: {r}", p.signer_step),
            })
        })
    }

    /// Signer steps (`flow/step`) that list `alias` but not `other`.
    pub fn steps_lacking(&self, alias: &Alias, other: &Alias) -> Vec<String> {
        self.signer_steps
            .iter()
            .filter(|s| s.aliases.contains(alias) && !s.aliases.contains(other))
            .map(SignerStepModel::name)
            .collect()
    }

    /// Signer steps (`flow/step`) that list both `alias` and `other`.
    pub fn steps_listing_both(&self, alias: &Alias, other: &Alias) -> Vec<String> {
        self.signer_steps
            .iter()
            .filter(|s| s.aliases.contains(alias) && s.aliases.contains(other))
            .map(SignerStepModel::name)
            .collect()
    }

    /// Aliases without a key that some signer step listing `besides` also lists (candidates for
    /// a prepared alias). Whether each step has one is decided per step: see
    /// [`World::steps_lacking`].
    pub fn free_aliases(&self, besides: &Alias) -> Vec<Alias> {
        let mut out: Vec<Alias> = Vec::new();
        for s in self
            .signer_steps
            .iter()
            .filter(|s| s.aliases.contains(besides))
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

/// Why a receiver with `trust` and `profile` would reject a message signed by `signers`; a
/// certificate in `not_yet_valid` counts as untrusted (a strict receiver rejects it until its
/// notBefore).
fn judge(
    signers: &[Fingerprint],
    trust: &BTreeSet<Fingerprint>,
    not_yet_valid: &BTreeSet<Fingerprint>,
    profile: Profile,
) -> Option<String> {
    if signers.is_empty() {
        Some("no alias of the signer step holds a key: signing would fail".to_string())
    } else if signers.len() > 1 && !profile.accepts_multiple_signatures {
        Some(format!(
            "messages would carry {} signatures and the receiver accepts exactly one",
            signers.len()
        ))
    } else if !signers.iter().any(|c| trust.contains(c)) {
        Some("no signature would come from a certificate the receiver trusts".to_string())
    } else if !signers
        .iter()
        .any(|c| trust.contains(c) && !not_yet_valid.contains(c))
    {
        Some(
            "every trusted signature would come from a certificate whose validity has not \
             begun yet (notBefore is in the future)"
                .to_string(),
        )
    } else {
        None
    }
}

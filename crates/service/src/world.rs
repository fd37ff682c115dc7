//! Loading the engine's [`World`] from the store.

use std::collections::{BTreeMap, BTreeSet};

use rekey_engine::{CertId, Profile, SignerStepModel, World};
use rekey_store::{Alias, ConnectionTrait, ReceiverId, TenantId, flows, keystore, receivers};

use crate::Result;

/// The world of a renewal: the tenant's current keystore, every signer step listing `alias` or
/// `new_alias`, and the receiver's profile and confirmed trust.
pub async fn load_world(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    receiver: ReceiverId,
    alias: &str,
    new_alias: Option<&str>,
) -> Result<World> {
    let keystore: BTreeMap<String, CertId> = keystore::list(conn, tenant)
        .await?
        .into_iter()
        .filter(|e| e.current)
        .map(|e| (e.alias.to_string(), CertId(e.fingerprint.to_string())))
        .collect();
    let mut signer_steps = Vec::new();
    for flow in flows::flows(conn, tenant).await? {
        for step in flow.steps {
            let aliases: Vec<String> = step
                .rows
                .iter()
                .map(|r| r.params.alias.to_string())
                .collect();
            if aliases
                .iter()
                .any(|a| a == alias || Some(a.as_str()) == new_alias)
            {
                signer_steps.push(SignerStepModel {
                    flow: flow.name.to_string(),
                    step: step.name.to_string(),
                    aliases,
                });
            }
        }
    }
    signer_steps.sort_by(|a, b| (&a.flow, &a.step).cmp(&(&b.flow, &b.step)));
    let r = receivers::by_id(conn, receiver).await?;
    let trust: BTreeSet<CertId> = r
        .trusted
        .iter()
        .map(|t| CertId(t.fingerprint.to_string()))
        .collect();
    Ok(World {
        keystore,
        signer_steps,
        trust,
        profile: Profile {
            verifies_multiple_keys: r.profile.verifies_multiple_keys,
            accepts_multiple_signatures: r.profile.accepts_multiple_signatures,
        },
    })
}

/// Parses an alias the engine produced.
pub(crate) fn alias(s: &str) -> Result<Alias> {
    Alias::parse(s).map_err(|e| crate::ServiceError::Corrupt(e.to_string()))
}

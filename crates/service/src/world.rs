//! Loading the engine's [`World`] from the store.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rekey_engine::{CertId, OtherReceiver, Profile, SignerStepModel, World};
use rekey_store::{Alias, ConnectionTrait, ReceiverId, TenantId, flows, keystore, receivers};

use crate::Result;

/// The world of a renewal: the tenant's current keystore, every signer step listing `alias` or
/// `new_alias` with the receivers its messages reach, the profile and confirmed trust of the
/// renewal's receiver and of every other receiver those steps reach, and which of those
/// certificates are not valid yet at `now` (the event's time), as a strict receiver would judge
/// them. A step that records no receiver is taken to reach the renewal's.
pub async fn load_world(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    receiver: ReceiverId,
    alias: &str,
    new_alias: Option<&str>,
    now: DateTime<Utc>,
) -> Result<World> {
    let mut not_yet_valid = BTreeSet::new();
    let keystore: BTreeMap<String, CertId> = keystore::list(conn, tenant)
        .await?
        .into_iter()
        .filter(|e| e.current)
        .map(|e| {
            let id = CertId(e.fingerprint.to_string());
            if e.not_before > now {
                not_yet_valid.insert(id.clone());
            }
            (e.alias.to_string(), id)
        })
        .collect();
    let mut signer_steps = Vec::new();
    let mut others = BTreeMap::new();
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
                let reached = flows::step_receivers(conn, step.id).await?;
                let mut model =
                    SignerStepModel::new(flow.name.as_str(), step.name.as_str(), aliases);
                if !reached.is_empty() {
                    model.reaches_receiver = reached.contains(&receiver);
                    for id in reached.into_iter().filter(|id| *id != receiver) {
                        let key = id.as_uuid().to_string();
                        if !others.contains_key(&key) {
                            let o = receivers::by_id(conn, id).await?;
                            others.insert(
                                key.clone(),
                                OtherReceiver {
                                    name: o.name.to_string(),
                                    trust: o
                                        .trusted
                                        .iter()
                                        .map(|t| {
                                            let id = CertId(t.fingerprint.to_string());
                                            if t.certificate.not_before() > now {
                                                not_yet_valid.insert(id.clone());
                                            }
                                            id
                                        })
                                        .collect(),
                                    profile: Profile {
                                        verifies_multiple_keys: o.profile.verifies_multiple_keys,
                                        accepts_multiple_signatures: o
                                            .profile
                                            .accepts_multiple_signatures,
                                    },
                                },
                            );
                        }
                        model.others.push(key);
                    }
                }
                signer_steps.push(model);
            }
        }
    }
    signer_steps.sort_by(|a, b| (&a.flow, &a.step).cmp(&(&b.flow, &b.step)));
    let r = receivers::by_id(conn, receiver).await?;
    let trust: BTreeSet<CertId> = r
        .trusted
        .iter()
        .map(|t| {
            let id = CertId(t.fingerprint.to_string());
            if t.certificate.not_before() > now {
                not_yet_valid.insert(id.clone());
            }
            id
        })
        .collect();
    Ok(World {
        keystore,
        signer_steps,
        trust,
        profile: Profile {
            verifies_multiple_keys: r.profile.verifies_multiple_keys,
            accepts_multiple_signatures: r.profile.accepts_multiple_signatures,
        },
        others,
        not_yet_valid,
    })
}

/// Parses an alias the engine produced.
pub(crate) fn alias(s: &str) -> Result<Alias> {
    Alias::parse(s).map_err(|e| crate::ServiceError::Corrupt(e.to_string()))
}

//! Loading the engine's [`World`] from the store.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rekey_engine::{OtherReceiver, Profile, SignerStepModel, World};
use rekey_model::{Alias, Fingerprint, ReceiverId, TenantId};
use rekey_store::{ConnectionTrait, flows, keystore, receivers};

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
    alias: &Alias,
    new_alias: Option<&Alias>,
    now: DateTime<Utc>,
) -> Result<World> {
    let mut not_yet_valid = BTreeSet::new();
    let keystore: BTreeMap<Alias, Fingerprint> = keystore::list(conn, tenant)
        .await?
        .into_iter()
        .filter(|e| e.current)
        .map(|e| {
            if e.not_before > now {
                not_yet_valid.insert(e.fingerprint);
            }
            (e.alias, e.fingerprint)
        })
        .collect();
    let mut signer_steps = Vec::new();
    let mut others = BTreeMap::new();
    for flow in flows::flows(conn, tenant).await? {
        for step in flow.steps {
            let aliases: Vec<Alias> = step.rows.iter().map(|r| r.params.alias.clone()).collect();
            if aliases.iter().any(|a| a == alias || Some(a) == new_alias) {
                let reached = flows::step_receivers(conn, step.id).await?;
                let mut model =
                    SignerStepModel::new(flow.name.as_str(), step.name.as_str(), aliases);
                if !reached.is_empty() {
                    model.reaches_receiver = reached.contains(&receiver);
                    for id in reached.into_iter().filter(|id| *id != receiver) {
                        if let Entry::Vacant(slot) = others.entry(id) {
                            let o = receivers::by_id(conn, id).await?;
                            slot.insert(OtherReceiver {
                                name: o.name.to_string(),
                                trust: o
                                    .trusted
                                    .iter()
                                    .map(|t| {
                                        if t.certificate.not_before() > now {
                                            not_yet_valid.insert(t.fingerprint);
                                        }
                                        t.fingerprint
                                    })
                                    .collect(),
                                profile: Profile {
                                    verifies_multiple_keys: o.profile.verifies_multiple_keys,
                                    accepts_multiple_signatures: o
                                        .profile
                                        .accepts_multiple_signatures,
                                },
                            });
                        }
                        model.others.push(id);
                    }
                }
                signer_steps.push(model);
            }
        }
    }
    signer_steps.sort_by(|a, b| (&a.flow, &a.step).cmp(&(&b.flow, &b.step)));
    let r = receivers::by_id(conn, receiver).await?;
    let trust: BTreeSet<Fingerprint> = r
        .trusted
        .iter()
        .map(|t| {
            if t.certificate.not_before() > now {
                not_yet_valid.insert(t.fingerprint);
            }
            t.fingerprint
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

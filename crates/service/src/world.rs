//! Loading the engine's [`World`] from the store.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rekey_engine::{OtherReceiver, Profile, SignerStepModel, World};
use rekey_model::{Alias, Fingerprint, ReceiverId, TenantId};
use rekey_store::{ConnectionTrait, flows, keystore, receivers};

use crate::Result;

/// The world of a renewal: every signer step listing `alias` or `new_alias` with the receivers
/// its messages reach, the current keystore entries of the aliases those steps list (and of
/// `alias`, `new_alias` and the names a new alias may be derived as), the profile and
/// confirmed trust of the renewal's receiver and of every other receiver those steps reach,
/// and which of those certificates are not valid yet at `now` (the event's time), as a strict
/// receiver would judge them. A step that records no receiver is taken to reach the renewal's.
///
/// It reads what the renewal touches and nothing else — not the tenant's other flows or keys —
/// so a step costs the same in a keystore of ten entries or ten thousand.
pub async fn load_world(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    receiver: ReceiverId,
    alias: &Alias,
    new_alias: Option<&Alias>,
    now: DateTime<Utc>,
) -> Result<World> {
    let mut not_yet_valid = BTreeSet::new();
    let mut refs = flows::alias_usage(conn, tenant, alias).await?;
    if let Some(n) = new_alias {
        refs.extend(flows::alias_usage(conn, tenant, n).await?);
    }
    refs.sort();
    refs.dedup();
    let mut wanted: Vec<Alias> = vec![alias.clone()];
    wanted.extend(new_alias.cloned());
    let mut signer_steps = Vec::new();
    let mut others = BTreeMap::new();
    for r in &refs {
        let step = flows::step(conn, tenant, &r.flow, &r.step).await?;
        let aliases = step.aliases();
        wanted.extend(aliases.iter().cloned());
        let reached = flows::step_receivers(conn, step.id).await?;
        let mut model = SignerStepModel::new(r.flow.as_str(), r.step.as_str(), aliases);
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
                            accepts_multiple_signatures: o.profile.accepts_multiple_signatures,
                        },
                    });
                }
                model.others.push(id);
            }
        }
        signer_steps.push(model);
    }
    signer_steps.sort_by(|a, b| (&a.flow, &a.step).cmp(&(&b.flow, &b.step)));
    wanted.sort();
    wanted.dedup();
    // A new alias the engine derives is `<stem>-…`: the aliases with that prefix decide which.
    let prefix = format!("{}-", rekey_engine::machine::alias_stem(alias.as_str()));
    let keystore: BTreeMap<Alias, Fingerprint> =
        keystore::current_certificates(conn, tenant, &wanted, Some(&prefix))
            .await?
            .into_iter()
            .map(|(a, fp, not_before)| {
                if not_before > now {
                    not_yet_valid.insert(fp);
                }
                (a, fp)
            })
            .collect();
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

//! Choosing the procedure from the receiver's profile and the signer steps (PRODUCT.md §2).

use crate::Refusal;
use crate::definition::ProcedureId;
use crate::world::World;

/// The procedures a receiver allows, best first, with the reason each other one is not.
pub fn allowed(world: &World) -> Vec<ProcedureId> {
    allowed_by(world.profile)
}

/// The procedures a receiver with `p` allows, best first.
pub fn allowed_by(p: crate::world::Profile) -> Vec<ProcedureId> {
    let mut out = Vec::new();
    if p.verifies_multiple_keys {
        out.push(ProcedureId::DualTrust);
    }
    if p.accepts_multiple_signatures {
        out.push(ProcedureId::PreparedSecondAlias);
        out.push(ProcedureId::DualSignature);
    }
    if out.is_empty() {
        out.push(ProcedureId::DowntimeWindow);
    }
    out
}

fn why_not(world: &World, id: ProcedureId) -> String {
    let p = world.profile;
    match id {
        ProcedureId::DualTrust => {
            "the receiver cannot trust the old and the new certificate at the same time".into()
        }
        ProcedureId::DualSignature | ProcedureId::PreparedSecondAlias => {
            "the receiver accepts exactly one signature per message".into()
        }
        ProcedureId::DowntimeWindow => format!(
            "the receiver can be switched without downtime ({}), so rekey will not plan one",
            if p.verifies_multiple_keys {
                "it trusts old and new together"
            } else {
                "it accepts two signatures"
            }
        ),
    }
}

/// The procedure to run: the one named, if the profile allows it, else the best allowed.
/// `prepared-second-alias` is preferred over `dual-signature` when a signer step already lists
/// an alias without a key.
pub fn choose(
    world: &World,
    alias: &rekey_model::Alias,
    explicit: Option<ProcedureId>,
) -> Result<ProcedureId, Refusal> {
    let allowed = allowed(world);
    match explicit {
        Some(id) if allowed.contains(&id) => Ok(id),
        Some(id) => Err(Refusal::ProcedureNotAllowed {
            procedure: id,
            reason: why_not(world, id),
        }),
        None => {
            let has_prepared = !world.free_aliases(alias).is_empty();
            Ok(allowed
                .into_iter()
                .find(|id| *id != ProcedureId::PreparedSecondAlias || has_prepared)
                .unwrap_or(ProcedureId::DowntimeWindow))
        }
    }
}

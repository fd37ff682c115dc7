//! Procedure definitions: the `workflows/*.toml` files, parsed and validated into types.
//!
//! A definition is data: which steps, in which order, who owns each, what rekey does for it and
//! how long it may take. Every step records the number it has in the seed procedure so the two
//! can be read side by side.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::Duration;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use rekey_model::{ProcedureId, Role};

/// What kind of step (PRODUCT.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// rekey changes tenant state, after the owner's approval unless auto-approved.
    Action,
    /// A person changes something outside rekey and confirms it.
    Task,
    /// rekey emails the person the seed says is informed; no click needed.
    Inform,
    /// Both parties accept the same downtime window.
    Agreement,
    /// An action or task that becomes due when the agreed window opens.
    Window,
}

/// What rekey does for an action step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Generate the new key pair (and certificate or CSR); nothing the signer uses yet.
    GenerateKey,
    /// Put the new key under a new alias no signer step lists yet.
    AddKeyNewAlias,
    /// Put the new key under the alias a signer step lists without a key.
    AddKeyPreparedAlias,
    /// Replace the key under the renewal's alias with the new one; the old goes to history.
    ExchangeKeyKeepAlias,
    /// Add the new alias to every signer step listing the old one, copying its parameters.
    AddSignerAlias,
    /// Add an alias with no key to every signer step listing the old one.
    AddPreparedAlias,
    /// Remove the old alias from every signer step listing it.
    RemoveOldSignerAlias,
    /// Remove the old key pair from the keystore (to history).
    RemoveOldKey,
}

/// What a receiver administrator's task changes in what the receiver trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Trust the new certificate as well as the old one.
    TrustNewKeepOld,
    /// Stop trusting the old certificate.
    DistrustOld,
    /// Trust the new certificate instead of the old one.
    SwitchToNew,
}

/// When a conditional step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Only when a signer step listing the renewed alias lacks the prepared alias (decided per
    /// step: the action adds it to those steps only).
    NoPreparedAlias,
}

/// One step of a procedure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepDef {
    /// Stable id, unique within the procedure.
    pub id: String,
    /// The step's number in the seed section (`"4"`, `"4.1"`, or `"assumption"`).
    pub seed: String,
    /// Who owns it.
    pub role: Role,
    /// The other party of an agreement.
    pub with_role: Option<Role>,
    /// Its kind.
    pub kind: StepKind,
    /// For actions (and window actions): what rekey does.
    pub action: Option<ActionKind>,
    /// For tasks (and window tasks): what the receiver changes.
    pub task: Option<TaskKind>,
    /// For informs: who is told.
    pub notify: Option<Role>,
    /// For informs: what the person told learns, written for them (the title is the
    /// sender's view: "Inform the integration developer").
    pub told: Option<String>,
    /// Whether the inform email carries the new certificate.
    pub attach_certificate: bool,
    /// For receiver tasks: the step after which the signer signs as the test message shows.
    pub test_message_after: Option<String>,
    /// Steps that must be done first (default: the previous step).
    pub after: Vec<String>,
    /// Runs only under this condition.
    pub only_when: Option<Condition>,
    /// Human title.
    pub title: String,
    /// Time from becoming due to its due date.
    pub due: Duration,
    /// Time from becoming due to the first reminder.
    pub remind: Duration,
    /// Time from becoming due to escalation.
    pub escalate: Duration,
}

impl StepDef {
    /// Whether completing this step needs a person (approval, confirmation or agreement).
    pub fn needs_person(&self) -> bool {
        !matches!(self.kind, StepKind::Inform)
    }
}

/// A validated procedure definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Procedure {
    /// Which procedure.
    pub id: ProcedureId,
    /// Human title.
    pub title: String,
    /// The seed section's heading.
    pub seed_section: String,
    /// The step after which cancel no longer applies (rollback does).
    pub point_of_no_return: String,
    /// Steps in seed order.
    pub steps: Vec<StepDef>,
}

impl Procedure {
    /// A step by id.
    pub fn step(&self, id: &str) -> Option<&StepDef> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Position of a step.
    pub fn index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }
}

/// A definition file that cannot be used; start-up stops with this.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{file}: {}{reason}", step.as_ref().map(|s| format!("step {s:?}: ")).unwrap_or_default())]
pub struct DefinitionError {
    /// The file.
    pub file: String,
    /// The step, when the problem is in one.
    pub step: Option<String>,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcedure {
    id: String,
    title: String,
    seed_section: String,
    point_of_no_return: String,
    steps: Vec<RawStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: String,
    seed: String,
    role: Role,
    with_role: Option<Role>,
    kind: StepKind,
    action: Option<ActionKind>,
    task: Option<TaskKind>,
    notify: Option<Role>,
    told: Option<String>,
    #[serde(default)]
    attach_certificate: bool,
    test_message_after: Option<String>,
    after: Option<Vec<String>>,
    only_when: Option<Condition>,
    title: String,
    due: Option<String>,
    remind: Option<String>,
    escalate: Option<String>,
}

/// Parses durations such as `30s`, `90m`, `36h`, `5d`, `2w` (seconds for tests and drills).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected a number and s, m, h, d or w"))?;
    let d = match unit {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        "w" => Duration::try_weeks(n),
        _ => None,
    };
    d.ok_or_else(|| format!("invalid duration {s:?}: expected a number and s, m, h, d or w"))
}

/// Parses and validates one definition file's text.
pub fn parse(file: &str, text: &str) -> Result<Procedure, DefinitionError> {
    let err = |step: Option<&str>, reason: String| DefinitionError {
        file: file.to_string(),
        step: step.map(str::to_string),
        reason,
    };
    let raw: RawProcedure = toml::from_str(text).map_err(|e| err(None, e.to_string()))?;
    let id = ProcedureId::from_str(&raw.id).map_err(|e| err(None, e.to_string()))?;
    if raw.steps.is_empty() {
        return Err(err(None, "a procedure needs at least one step".into()));
    }
    let mut seen = BTreeSet::new();
    let mut steps = Vec::with_capacity(raw.steps.len());
    for r in raw.steps {
        let at = Some(r.id.as_str());
        if r.id.is_empty()
            || !r
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(err(
                at,
                "id must be lower-case letters, digits and dashes".into(),
            ));
        }
        if !seen.insert(r.id.clone()) {
            return Err(err(at, "duplicate step id".into()));
        }
        if r.seed.trim().is_empty() {
            return Err(err(at, "every step needs its seed step number".into()));
        }
        let needs_timing = !matches!(r.kind, StepKind::Inform | StepKind::Window);
        let dur = |v: &Option<String>, name: &str| -> Result<Duration, DefinitionError> {
            match v {
                Some(v) => parse_duration(v).map_err(|e| err(at, format!("{name}: {e}"))),
                None if needs_timing => {
                    Err(err(at, format!("{name} is required for this kind of step")))
                }
                None => Ok(Duration::zero()),
            }
        };
        let (due, remind, escalate) = (
            dur(&r.due, "due")?,
            dur(&r.remind, "remind")?,
            dur(&r.escalate, "escalate")?,
        );
        if needs_timing && !(remind <= due && due <= escalate) {
            return Err(err(
                at,
                "timing must satisfy remind <= due <= escalate".into(),
            ));
        }
        match r.kind {
            StepKind::Action if r.action.is_none() => {
                return Err(err(at, "an action step needs `action`".into()));
            }
            StepKind::Task if r.task.is_none() => {
                return Err(err(at, "a task step needs `task`".into()));
            }
            StepKind::Window if r.action.is_some() == r.task.is_some() => {
                return Err(err(
                    at,
                    "a window step needs exactly one of `action` or `task`".into(),
                ));
            }
            StepKind::Inform if r.notify.is_none() => {
                return Err(err(at, "an inform step needs `notify`".into()));
            }
            StepKind::Inform if r.told.as_deref().is_none_or(|t| t.trim().is_empty()) => {
                return Err(err(
                    at,
                    "an inform step needs `told`: what the person told learns".into(),
                ));
            }
            StepKind::Agreement if r.with_role.is_none_or(|w| w == r.role) => {
                return Err(err(
                    at,
                    "an agreement needs `with_role`, another role than `role`".into(),
                ));
            }
            _ => {}
        }
        // `signer` signs as a flow and is no person of a renewal: no step is theirs.
        if let Some(role) = [Some(r.role), r.with_role, r.notify]
            .into_iter()
            .flatten()
            .find(|role| !role.is_person())
        {
            return Err(err(
                at,
                format!(
                    "{role} is not one of a renewal's people (tenant_admin, integration_developer, receiver_admin)"
                ),
            ));
        }
        if r.task.is_some() && r.role != Role::ReceiverAdmin {
            return Err(err(at, "receiver tasks belong to receiver_admin".into()));
        }
        let after = match r.after {
            Some(list) => {
                for a in &list {
                    if !seen.contains(a) || a == &r.id {
                        return Err(err(
                            at,
                            format!("`after` names {a:?}, which is not an earlier step"),
                        ));
                    }
                }
                list
            }
            None => steps
                .last()
                .map(|p: &StepDef| vec![p.id.clone()])
                .unwrap_or_default(),
        };
        steps.push(StepDef {
            id: r.id,
            seed: r.seed,
            role: r.role,
            with_role: r.with_role,
            kind: r.kind,
            action: r.action,
            task: r.task,
            notify: r.notify,
            told: r.told,
            attach_certificate: r.attach_certificate,
            test_message_after: r.test_message_after,
            after,
            only_when: r.only_when,
            title: r.title,
            due,
            remind,
            escalate,
        });
    }
    for s in &steps {
        if let Some(t) = &s.test_message_after
            && !steps.iter().any(|o| &o.id == t)
        {
            return Err(err(
                Some(&s.id),
                format!("test_message_after names unknown step {t:?}"),
            ));
        }
    }
    if !steps.iter().any(|s| s.id == raw.point_of_no_return) {
        return Err(err(
            None,
            format!(
                "point_of_no_return names unknown step {:?}",
                raw.point_of_no_return
            ),
        ));
    }
    if steps
        .iter()
        .filter(|s| s.action == Some(ActionKind::GenerateKey))
        .count()
        != 1
    {
        return Err(err(
            None,
            "a procedure generates exactly one key pair".into(),
        ));
    }
    Ok(Procedure {
        id,
        title: raw.title,
        seed_section: raw.seed_section,
        point_of_no_return: raw.point_of_no_return,
        steps,
    })
}

/// The four procedures, as `(file name, text)`, compiled into the binary from `workflows/`.
pub const BUILTIN: [(&str, &str); 4] = [
    (
        "workflows/dual-trust.toml",
        include_str!("../../../workflows/dual-trust.toml"),
    ),
    (
        "workflows/dual-signature.toml",
        include_str!("../../../workflows/dual-signature.toml"),
    ),
    (
        "workflows/prepared-second-alias.toml",
        include_str!("../../../workflows/prepared-second-alias.toml"),
    ),
    (
        "workflows/downtime-window.toml",
        include_str!("../../../workflows/downtime-window.toml"),
    ),
];

/// Every procedure a deployment can run, each id exactly once.
#[derive(Debug, Clone)]
pub struct Catalog {
    procedures: Vec<Procedure>,
}

impl Catalog {
    /// Parses a set of definition files; all four procedures must be present once.
    pub fn from_texts<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, DefinitionError> {
        let mut procedures: Vec<Procedure> = Vec::new();
        for (file, text) in files {
            let p = parse(file, text)?;
            if procedures.iter().any(|q| q.id == p.id) {
                return Err(DefinitionError {
                    file: file.into(),
                    step: None,
                    reason: format!("procedure {} is defined twice", p.id),
                });
            }
            procedures.push(p);
        }
        for id in ProcedureId::ALL {
            if !procedures.iter().any(|p| p.id == id) {
                return Err(DefinitionError {
                    file: "workflows/".into(),
                    step: None,
                    reason: format!("procedure {id} is missing"),
                });
            }
        }
        procedures.sort_by_key(|p| p.id);
        Ok(Catalog { procedures })
    }

    /// The definitions compiled into the binary.
    pub fn builtin() -> Result<Self, DefinitionError> {
        Self::from_texts(BUILTIN)
    }

    /// A procedure by id.
    pub fn get(&self, id: ProcedureId) -> &Procedure {
        // from_texts keeps exactly one procedure per id, sorted in declaration order.
        &self.procedures[id as usize]
    }

    /// All procedures.
    pub fn all(&self) -> &[Procedure] {
        &self.procedures
    }

    /// This catalog with other reminder and escalation times (a deployment's or a tenant's
    /// configuration): on every timed step (actions, tasks, approvals, agreements), or only on
    /// those of `procedure`, or only on its step `step`. Each changed step must still satisfy
    /// `remind <= due <= escalate`; the error names the procedure and step where it does not,
    /// or the step that does not exist or has no times.
    pub fn with_timing(
        mut self,
        procedure: Option<ProcedureId>,
        step: Option<&str>,
        remind: Option<Duration>,
        escalate: Option<Duration>,
    ) -> Result<Catalog, DefinitionError> {
        let mut found = false;
        for p in &mut self.procedures {
            if procedure.is_some_and(|id| id != p.id) {
                continue;
            }
            for s in &mut p.steps {
                if step.is_some_and(|id| id != s.id) {
                    continue;
                }
                let timed = !matches!(s.kind, StepKind::Inform | StepKind::Window);
                let err = |reason: String| DefinitionError {
                    file: p.id.to_string(),
                    step: Some(s.id.clone()),
                    reason,
                };
                if !timed {
                    if step.is_some() {
                        return Err(err("this step has no reminders or escalation".into()));
                    }
                    continue;
                }
                found = true;
                if let Some(r) = remind {
                    s.remind = r;
                }
                if let Some(e) = escalate {
                    s.escalate = e;
                }
                if !(s.remind <= s.due && s.due <= s.escalate) {
                    return Err(err(format!(
                        "timing must satisfy remind ({}) <= due ({}) <= escalate ({})",
                        show(s.remind),
                        show(s.due),
                        show(s.escalate)
                    )));
                }
            }
        }
        if !found && let Some(id) = step {
            return Err(DefinitionError {
                file: procedure.map_or_else(|| "workflows/".into(), |p| p.to_string()),
                step: Some(id.to_string()),
                reason: "no such step".into(),
            });
        }
        Ok(self)
    }
}

/// A duration as the definitions write it (the largest unit that divides it).
fn show(d: Duration) -> String {
    let m = d.num_minutes();
    if m != 0 && m % (7 * 24 * 60) == 0 {
        format!("{}w", m / (7 * 24 * 60))
    } else if m != 0 && m % (24 * 60) == 0 {
        format!("{}d", m / (24 * 60))
    } else if m != 0 && m % 60 == 0 {
        format!("{}h", m / 60)
    } else {
        format!("{m}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_changes_every_timed_step_or_one_and_keeps_the_order() {
        let base = Catalog::builtin().expect("builtin");
        let c = base
            .clone()
            .with_timing(None, None, Some(Duration::hours(1)), None)
            .expect("every step");
        for p in c.all() {
            for s in p.steps.iter().filter(|s| s.due > Duration::zero()) {
                assert_eq!(s.remind, Duration::hours(1), "{} {}", p.id, s.id);
            }
        }
        let one = base
            .clone()
            .with_timing(
                Some(ProcedureId::DualTrust),
                Some("create-key-pair"),
                Some(Duration::minutes(30)),
                Some(Duration::days(4)),
            )
            .expect("one step");
        let s = one
            .get(ProcedureId::DualTrust)
            .step("create-key-pair")
            .expect("step");
        assert_eq!(
            (s.remind, s.escalate),
            (Duration::minutes(30), Duration::days(4))
        );
        let other = one
            .get(ProcedureId::DualSignature)
            .step("create-key-pair")
            .expect("step");
        assert_eq!(
            other.remind,
            Duration::days(1),
            "other procedures keep theirs"
        );

        let e = base
            .clone()
            .with_timing(None, None, Some(Duration::days(9)), None)
            .expect_err("remind after due");
        assert!(e.to_string().contains("timing must satisfy"), "{e}");
        let e = base
            .with_timing(Some(ProcedureId::DualTrust), Some("nope"), None, None)
            .expect_err("unknown step");
        assert_eq!(e.to_string(), "dual-trust: step \"nope\": no such step");
    }
}

//! [`InvalidInput`]: the one refusal of a typed value, naming what it was meant to be, the
//! input and why it was refused.

/// A value typed by a person or another program was refused: what it was meant to be, the
/// input, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct InvalidInput {
    /// What the value was meant to be ("alias", "email address", ...).
    pub what: &'static str,
    /// The input as given.
    pub input: String,
    /// Why it was refused.
    pub reason: String,
}

impl InvalidInput {
    /// A refusal of `input` as a `what`, because `reason`.
    pub fn new(what: &'static str, input: &str, reason: impl Into<String>) -> Self {
        InvalidInput {
            what,
            input: input.to_string(),
            reason: reason.into(),
        }
    }
}

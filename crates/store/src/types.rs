//! Identifiers and validated values that cross the store's API: ids are UUIDs wrapped per kind
//! so that a flow id cannot be passed where a tenant id is expected, and every string that a
//! person types (alias, names, email) is parsed once into a type that cannot hold an invalid
//! value.
//!
//! This module knows nothing of the database.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    fn new(what: &'static str, input: &str, reason: impl Into<String>) -> Self {
        InvalidInput {
            what,
            input: input.to_string(),
            reason: reason.into(),
        }
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random (v4) id.
            pub(crate) fn random() -> Self {
                $name(Uuid::new_v4())
            }

            /// Wraps an existing UUID (as read from the database or an API path).
            pub fn from_uuid(id: Uuid) -> Self {
                $name(id)
            }

            /// The UUID inside.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidInput;
            fn from_str(s: &str) -> Result<Self, InvalidInput> {
                Uuid::parse_str(s.trim())
                    .map($name)
                    .map_err(|e| InvalidInput::new($what, s, e.to_string()))
            }
        }
    };
}

uuid_id!(
    /// Identifies a tenant.
    TenantId,
    "tenant id"
);
uuid_id!(
    /// Identifies one keystore entry (current or in history).
    EntryId,
    "keystore entry id"
);
uuid_id!(
    /// Identifies an integration flow.
    FlowId,
    "flow id"
);
uuid_id!(
    /// Identifies a signer step of a flow.
    StepId,
    "signer step id"
);
uuid_id!(
    /// Identifies a receiver.
    ReceiverId,
    "receiver id"
);
uuid_id!(
    /// Identifies a user.
    UserId,
    "user id"
);
uuid_id!(
    /// Identifies an API token (not the secret itself).
    TokenId,
    "API token id"
);

/// A keystore alias: 1–64 characters of `[A-Za-z0-9._-]`.
///
/// `Debug` prints the quoted text (as for a `String`), so error messages read `alias "x"`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Alias(String);

impl Alias {
    /// Parses and validates an alias.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let n = s.chars().count();
        if n == 0 || n > 64 {
            return Err(InvalidInput::new(
                "alias",
                s,
                "must be 1 to 64 characters long",
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(InvalidInput::new(
                "alias",
                s,
                format!("character {c:?} is not allowed: use A-Z, a-z, 0-9, '.', '_' or '-'"),
            ));
        }
        Ok(Alias(s.to_string()))
    }

    /// The alias as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Alias {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        Alias::parse(s)
    }
}

impl TryFrom<String> for Alias {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, InvalidInput> {
        Alias::parse(&s)
    }
}

impl From<Alias> for String {
    fn from(a: Alias) -> String {
        a.0
    }
}

fn check_name(what: &'static str, s: &str) -> Result<(), InvalidInput> {
    let n = s.chars().count();
    if n == 0 || n > 128 {
        return Err(InvalidInput::new(
            what,
            s,
            "must be 1 to 128 characters long",
        ));
    }
    if s.trim() != s {
        return Err(InvalidInput::new(
            what,
            s,
            "must not start or end with white space",
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(InvalidInput::new(
            what,
            s,
            "must not contain control characters",
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        ///
        /// 1–128 characters, no control characters, no leading or trailing white space.
        /// `Debug` prints the quoted text.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates the name.
            pub fn parse(s: &str) -> Result<Self, InvalidInput> {
                check_name($what, s)?;
                Ok($name(s.to_string()))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidInput;
            fn from_str(s: &str) -> Result<Self, InvalidInput> {
                $name::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidInput;
            fn try_from(s: String) -> Result<Self, InvalidInput> {
                $name::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }
    };
}

name_type!(
    /// A tenant's name, unique in the deployment.
    TenantName,
    "tenant name"
);
name_type!(
    /// An integration flow's name, unique per tenant.
    FlowName,
    "flow name"
);
name_type!(
    /// A signer step's name, unique per flow.
    StepName,
    "step name"
);
name_type!(
    /// A receiver's name, unique per tenant.
    ReceiverName,
    "receiver name"
);

/// An email address, parsed: a bare `local@domain.tld` address (no display name, no IP
/// literal), stored lower-case so that one person cannot be registered twice by case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Parses and validates an address.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let trimmed = s.trim();
        let options = email_address::Options::default()
            .with_required_tld()
            .without_domain_literal()
            .without_display_text();
        match email_address::EmailAddress::parse_with_options(trimmed, options) {
            Ok(addr) => Ok(Email(addr.as_str().to_lowercase())),
            Err(e) => Err(InvalidInput::new("email address", s, e.to_string())),
        }
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Email {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        Email::parse(s)
    }
}

impl TryFrom<String> for Email {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, InvalidInput> {
        Email::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

/// The roles a user can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Administers a tenant's keystore and starts renewals.
    TenantAdmin,
    /// Changes a tenant's integration flows.
    IntegrationDeveloper,
    /// Administers one receiver.
    ReceiverAdmin,
}

impl Role {
    /// The role's name as stored and shown: `tenant_admin`, `integration_developer`,
    /// `receiver_admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::TenantAdmin => "tenant_admin",
            Role::IntegrationDeveloper => "integration_developer",
            Role::ReceiverAdmin => "receiver_admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        match s {
            "tenant_admin" => Ok(Role::TenantAdmin),
            "integration_developer" => Ok(Role::IntegrationDeveloper),
            "receiver_admin" => Ok(Role::ReceiverAdmin),
            _ => Err(InvalidInput::new(
                "role",
                s,
                "use tenant_admin, integration_developer or receiver_admin",
            )),
        }
    }
}

/// A role together with the scope it is held in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Grant {
    /// `tenant_admin` of a tenant.
    TenantAdmin {
        /// The tenant.
        tenant: TenantId,
    },
    /// `integration_developer` of a tenant.
    IntegrationDeveloper {
        /// The tenant.
        tenant: TenantId,
    },
    /// `receiver_admin` of a receiver.
    ReceiverAdmin {
        /// The receiver.
        receiver: ReceiverId,
    },
}

impl Grant {
    /// The role granted.
    pub fn role(&self) -> Role {
        match self {
            Grant::TenantAdmin { .. } => Role::TenantAdmin,
            Grant::IntegrationDeveloper { .. } => Role::IntegrationDeveloper,
            Grant::ReceiverAdmin { .. } => Role::ReceiverAdmin,
        }
    }

    /// The id of the scope (tenant or receiver).
    pub fn scope_id(&self) -> uuid::Uuid {
        match self {
            Grant::TenantAdmin { tenant } | Grant::IntegrationDeveloper { tenant } => {
                tenant.as_uuid()
            }
            Grant::ReceiverAdmin { receiver } => receiver.as_uuid(),
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::TenantAdmin { tenant } | Grant::IntegrationDeveloper { tenant } => {
                write!(f, "{} of tenant {tenant}", self.role())
            }
            Grant::ReceiverAdmin { receiver } => {
                write!(f, "{} of receiver {receiver}", self.role())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_rules() {
        assert!(Alias::parse("signer-2026.a_b").is_ok());
        assert!(Alias::parse(&"a".repeat(64)).is_ok());
        assert!(Alias::parse(&"a".repeat(65)).is_err());
        assert!(Alias::parse("").is_err());
        let err = Alias::parse("has space").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "invalid alias \"has space\": character ' ' is not allowed: use A-Z, a-z, 0-9, '.', '_' or '-'"
            )
        );
        assert!(Alias::parse("ümlaut").is_err());
        assert!(Alias::parse("a/b").is_err());
    }

    #[test]
    fn email_rules() {
        assert_eq!(
            Email::parse(" Alice@Example.COM ").ok().map(String::from),
            Some("alice@example.com".to_string())
        );
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "alice@localhost",
            "Alice <alice@example.com>",
            "alice@[127.0.0.1]",
            "a b@example.com",
            "alice@@example.com",
        ] {
            let err = Email::parse(bad);
            assert!(err.is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn names_refuse_blank_and_control() {
        assert!(FlowName::parse("Orders to ACME").is_ok());
        assert!(FlowName::parse(" padded").is_err());
        assert!(FlowName::parse("").is_err());
        assert!(StepName::parse("a\nb").is_err());
    }

    #[test]
    fn ids_round_trip() {
        let id = TenantId::random();
        assert_eq!(id.to_string().parse::<TenantId>().ok(), Some(id));
        assert!("not-a-uuid".parse::<TenantId>().is_err());
    }

    #[test]
    fn roles_round_trip() {
        for r in [
            Role::TenantAdmin,
            Role::IntegrationDeveloper,
            Role::ReceiverAdmin,
        ] {
            assert_eq!(r.as_str().parse::<Role>().ok(), Some(r));
        }
        assert!("admin".parse::<Role>().is_err());
    }
}

//! Names people type: keystore aliases, tenant, flow, step and receiver names, and email
//! addresses, each parsed once into a type that cannot hold an invalid value. Each serialises
//! as its text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::InvalidInput;

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

/// An AS2 identifier (`AS2-From` / `AS2-To`, RFC 4130 §6.2): 1–128 printable ASCII
/// characters. Spaces, quotes and backslashes are refused, so the identifier never needs
/// quoting in a header and is compared exactly as the receiver's system writes it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct As2Id(String);

impl As2Id {
    /// Parses and validates an AS2 identifier.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let n = s.chars().count();
        if n == 0 || n > 128 {
            return Err(InvalidInput::new(
                "AS2 identifier",
                s,
                "must be 1 to 128 characters long",
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !c.is_ascii_graphic() || matches!(c, '"' | '\\'))
        {
            return Err(InvalidInput::new(
                "AS2 identifier",
                s,
                format!(
                    "character {c:?} is not allowed: use printable ASCII without spaces, quotes or backslashes"
                ),
            ));
        }
        Ok(As2Id(s.to_string()))
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for As2Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for As2Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for As2Id {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        As2Id::parse(s)
    }
}

impl TryFrom<String> for As2Id {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, InvalidInput> {
        As2Id::parse(&s)
    }
}

impl From<As2Id> for String {
    fn from(a: As2Id) -> String {
        a.0
    }
}

#[cfg(test)]
mod as2_id_tests {
    use super::As2Id;

    #[test]
    fn as2_ids_are_printable_ascii_without_quoting() {
        assert_eq!(
            As2Id::parse("ERP_PROD-01").expect("valid").as_str(),
            "ERP_PROD-01"
        );
        for bad in ["", "two words", "quo\"te", "back\\slash", "tab\t", "ümlaut"] {
            let e = As2Id::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("AS2 identifier"), "{e}");
        }
        assert!(As2Id::parse(&"x".repeat(129)).is_err());
    }
}

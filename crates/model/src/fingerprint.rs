//! [`Fingerprint`]: a certificate (and so its key pair) named by the SHA-256 of its DER
//! encoding, and the one parser for fingerprints people type or paste.
//!
//! Computing a fingerprint is `rekey_crypto`'s job; this module only holds, prints and parses
//! the 32 bytes, so that the engine can name certificates without any cryptography.

use std::fmt;
use std::str::FromStr;

/// SHA-256 over a certificate's DER encoding: how people compare certificates by eye, and how
/// the engine names a certificate. Prints (and serialises) as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint with these 32 bytes (as `rekey_crypto` computes them).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Fingerprint(bytes)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Colon-separated upper-case hex, as `openssl x509 -fingerprint -sha256` prints it.
    pub fn to_colon_hex(&self) -> String {
        self.0
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Why a typed fingerprint was refused. Positions count characters of the value as given,
/// from 1, so a person can find the offending character even when it is invisible. The message
/// says what was wrong and which forms are accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{}; a SHA-256 fingerprint is 64 hex digits, plain or with one ':' or space between bytes, as `openssl x509 -noout -fingerprint -sha256` prints it",
    self.reason()
)]
pub enum FingerprintError {
    /// Nothing but whitespace was given.
    Empty,
    /// A character that is neither a hex digit nor an allowed separator.
    NotHex {
        /// The character.
        ch: char,
        /// Its position in the value given.
        at: usize,
    },
    /// A separator that does not sit alone between two two-digit bytes.
    Separator {
        /// The separator.
        ch: char,
        /// Its position in the value given.
        at: usize,
    },
    /// The hex digits were fine but not 64 of them.
    Length {
        /// How many hex digits were given.
        digits: usize,
    },
}

impl FingerprintError {
    /// What was wrong, without the reminder of the accepted forms.
    pub fn reason(&self) -> String {
        match self {
            FingerprintError::Empty => "empty".to_string(),
            FingerprintError::NotHex { ch, at } => format!(
                "character {at} ({}, U+{:04X}) is not a hex digit",
                ch.escape_debug(),
                u32::from(*ch)
            ),
            FingerprintError::Separator { ch, at } => format!(
                "separator {ch:?} at character {at} does not stand alone between two-digit bytes"
            ),
            FingerprintError::Length { digits } => format!("{digits} hex digits, not 64"),
        }
    }
}

/// The prefix `openssl x509 -noout -fingerprint -sha256` prints (OpenSSL 3; 1.1 writes
/// `SHA256`), so its whole output line can be pasted.
const OPENSSL_PREFIX: &str = "sha256 fingerprint=";

impl FromStr for Fingerprint {
    type Err = FingerprintError;
    /// The one parser for fingerprints people type or paste: 64 hex digits in any case, either
    /// unseparated or with exactly one `:` or one space between every two digits, optionally
    /// after OpenSSL's `sha256 Fingerprint=` prefix; surrounding whitespace is ignored. Anything
    /// else is refused rather than filtered out: a value padded with invisible characters or
    /// markup is not what the person read off the certificate.
    fn from_str(s: &str) -> Result<Self, FingerprintError> {
        let lead = s.chars().take_while(|c| c.is_whitespace()).count();
        let mut body = s.trim();
        let mut offset = lead;
        if body.is_empty() {
            return Err(FingerprintError::Empty);
        }
        if body
            .get(..OPENSSL_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(OPENSSL_PREFIX))
        {
            body = &body[OPENSSL_PREFIX.len()..];
            offset += OPENSSL_PREFIX.len();
        }
        let mut digits: Vec<u8> = Vec::with_capacity(64);
        // Digits since the last separator; a separator is only allowed after exactly two.
        let mut run = 0usize;
        let mut last_sep: Option<(char, usize)> = None;
        for (i, ch) in body.chars().enumerate() {
            let at = offset + i + 1;
            if let Some(d) = ch.to_digit(16) {
                if let Some((ch, at)) = last_sep.filter(|_| run == 2) {
                    // A third digit after a separator: the bytes are misaligned.
                    return Err(FingerprintError::Separator { ch, at });
                }
                digits.push(d as u8);
                run += 1;
            } else if ch == ':' || ch == ' ' {
                if run != 2 || (last_sep.is_none() && digits.len() != 2) {
                    return Err(FingerprintError::Separator { ch, at });
                }
                last_sep = Some((ch, at));
                run = 0;
            } else {
                return Err(FingerprintError::NotHex { ch, at });
            }
        }
        if let Some((ch, at)) = last_sep.filter(|_| run == 0) {
            // A trailing separator.
            return Err(FingerprintError::Separator { ch, at });
        }
        if digits.len() != 64 {
            return Err(FingerprintError::Length {
                digits: digits.len(),
            });
        }
        let mut out = [0u8; 32];
        for (b, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            *b = (pair[0] << 4) | pair[1];
        }
        Ok(Fingerprint(out))
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = FingerprintError;
    fn try_from(s: String) -> Result<Self, FingerprintError> {
        s.parse()
    }
}

impl From<Fingerprint> for String {
    fn from(f: Fingerprint) -> String {
        f.to_string()
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

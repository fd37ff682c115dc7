//! The key-encryption key (KEK) and the encryption of private keys at rest.
//!
//! The KEK is 32 bytes for AES-256-GCM. It never enters the database: it comes from a key file
//! (which must not be readable by group or others) or from the `REKEY_KEK` environment variable
//! (base64). Every private key is encrypted under it with a fresh random 96-bit nonce, and the
//! associated data binds the ciphertext to its tenant, alias and entry id, so a ciphertext
//! copied into another row does not decrypt.
//!
//! This module owns the KEK bytes; they live in [`Zeroizing`] buffers and are never printed.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use rekey_model::{Alias, EntryId, TenantId};

/// Name of the environment variable that may hold the KEK (base64 of 32 bytes).
pub const KEK_ENV_VAR: &str = "REKEY_KEK";

/// Length of the nonce stored next to each ciphertext.
pub(crate) const NONCE_LEN: usize = 12;

/// Why a KEK could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    /// The key file is readable or writable by group or others.
    #[error(
        "key file {path} has mode {mode:04o}; it must be readable by its owner only (chmod 600 {path})"
    )]
    InsecureMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file or variable does not hold 32 bytes.
    #[error(
        "{source_name} does not hold a 32-byte key (expected 32 raw bytes or base64 of 32 bytes)"
    )]
    BadLength {
        /// Where the key came from (file path or variable name).
        source_name: String,
    },
    /// `generate_file` found a file already there.
    #[error("key file {0} already exists; refusing to overwrite it")]
    AlreadyExists(PathBuf),
    /// Reading or writing the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Neither a key file nor the environment variable was given.
    #[error("no key-encryption key: give a key file or set {KEK_ENV_VAR}")]
    Missing,
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(String),
}

/// The 32-byte key-encryption key.
pub struct Kek {
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek(id {})", self.id())
    }
}

impl Kek {
    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Kek {
        Kek {
            key: Zeroizing::new(bytes),
        }
    }

    /// Decodes base64 (standard alphabet, padding optional) of exactly 32 bytes.
    pub fn from_base64(text: &str, source_name: &str) -> Result<Kek, KekError> {
        let bad = || KekError::BadLength {
            source_name: source_name.to_string(),
        };
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(text.trim().trim_end_matches('='))
                .map_err(|_| bad())?,
        );
        let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| bad())?;
        Ok(Kek::from_bytes(bytes))
    }

    /// Generates a fresh random KEK (not stored anywhere).
    pub fn generate() -> Result<Kek, KekError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).map_err(|e| KekError::Random(e.to_string()))?;
        Ok(Kek { key: bytes })
    }

    /// Reads the KEK from `REKEY_KEK`, if the variable is set.
    pub fn from_env() -> Result<Option<Kek>, KekError> {
        match std::env::var(KEK_ENV_VAR) {
            Ok(v) => {
                let v = Zeroizing::new(v);
                Kek::from_base64(&v, KEK_ENV_VAR).map(Some)
            }
            Err(_) => Ok(None),
        }
    }

    /// Loads the KEK from a key file that holds base64 of 32 bytes (or the 32 raw bytes).
    ///
    /// On Unix the file must not be accessible by group or others (mode 0600 or 0400);
    /// otherwise it is refused with [`KekError::InsecureMode`].
    pub fn from_file(path: &Path) -> Result<Kek, KekError> {
        let io = |source| KekError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        // Check the mode of the file we actually opened, not of whatever the path names now.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file.metadata().map_err(io)?.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(KekError::InsecureMode {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let mut content = Zeroizing::new(Vec::new());
        file.read_to_end(&mut content).map_err(io)?;
        let source_name = path.display().to_string();
        if let Ok(raw) = <[u8; 32]>::try_from(content.as_slice()) {
            return Ok(Kek::from_bytes(raw));
        }
        let text = std::str::from_utf8(&content).map_err(|_| KekError::BadLength {
            source_name: source_name.clone(),
        })?;
        Kek::from_base64(text, &source_name)
    }

    /// The KEK from `file` if given, else from `REKEY_KEK`, else [`KekError::Missing`].
    pub fn load(file: Option<&Path>) -> Result<Kek, KekError> {
        match file {
            Some(p) => Kek::from_file(p),
            None => Kek::from_env()?.ok_or(KekError::Missing),
        }
    }

    /// Generates a fresh KEK and writes it (base64, one line) to a new file with mode 0600.
    ///
    /// Never overwrites: if `path` exists, fails with [`KekError::AlreadyExists`].
    pub fn generate_file(path: &Path) -> Result<Kek, KekError> {
        let kek = Kek::generate()?;
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KekError::AlreadyExists(path.to_path_buf())
            } else {
                KekError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let mut line = Zeroizing::new(STANDARD.encode(kek.key.as_ref()));
        line.push('\n');
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| KekError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(kek)
    }

    /// The KEK as base64, for putting into `REKEY_KEK`. Handle with care.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.key.as_ref()))
    }

    /// A short public identifier of this KEK (first 8 bytes of a SHA-256 over a label and the
    /// key, hex): stored next to each ciphertext so that a wrong KEK is reported as such.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"rekey kek id v1\0");
        h.update(self.key.as_ref());
        hex::encode(&h.finalize()[..8])
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&*self.key).into())
    }

    /// Encrypts a private key for the given row. Returns (nonce, ciphertext with tag).
    pub(crate) fn seal(
        &self,
        aad: &EntryAad<'_>,
        plaintext: &[u8],
    ) -> Result<([u8; NONCE_LEN], Vec<u8>), KekError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| KekError::Random(e.to_string()))?;
        let aad = aad.bytes();
        let ct = self
            .cipher()
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            // AES-GCM encryption fails only for inputs of gigabytes.
            .map_err(|_| KekError::Random("AES-GCM encryption failed".into()))?;
        Ok((nonce, ct))
    }

    /// Decrypts a private key of the given row; `None` if the tag does not verify (wrong KEK,
    /// or the ciphertext, nonce or row identity was changed).
    pub(crate) fn open(
        &self,
        aad: &EntryAad<'_>,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().ok()?;
        let aad = aad.bytes();
        self.cipher()
            .decrypt(
                nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

/// The row identity a private-key ciphertext is bound to.
pub(crate) struct EntryAad<'a> {
    pub tenant: TenantId,
    pub alias: &'a Alias,
    pub entry: EntryId,
}

impl EntryAad<'_> {
    fn bytes(&self) -> Vec<u8> {
        let alias = self.alias.as_str().as_bytes();
        let mut out = Vec::with_capacity(64 + alias.len());
        out.extend_from_slice(b"rekey keystore v1\0");
        out.extend_from_slice(self.tenant.as_uuid().as_bytes());
        out.extend_from_slice(self.entry.as_uuid().as_bytes());
        // Length-prefixed so that no two (alias, ...) combinations share an encoding.
        out.extend_from_slice(&(alias.len() as u32).to_be_bytes());
        out.extend_from_slice(alias);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aad_for(alias: &Alias, entry: EntryId) -> EntryAad<'_> {
        EntryAad {
            tenant: TenantId::from_uuid(uuid::Uuid::nil()),
            alias,
            entry,
        }
    }

    #[test]
    fn seal_open_round_trip_and_binding() -> Result<(), Box<dyn std::error::Error>> {
        let kek = Kek::generate()?;
        let alias = Alias::parse("a")?;
        let other_alias = Alias::parse("b")?;
        let entry = EntryId::random();
        let (nonce, ct) = kek.seal(&aad_for(&alias, entry), b"secret key bytes")?;
        assert!(!ct.windows(6).any(|w| w == b"secret"));
        let pt = kek.open(&aad_for(&alias, entry), &nonce, &ct);
        assert_eq!(
            pt.as_deref().map(Vec::as_slice),
            Some(&b"secret key bytes"[..])
        );
        // Another alias, another entry id, another KEK, or a changed byte: no plaintext.
        assert!(
            kek.open(&aad_for(&other_alias, entry), &nonce, &ct)
                .is_none()
        );
        assert!(
            kek.open(&aad_for(&alias, EntryId::random()), &nonce, &ct)
                .is_none()
        );
        assert!(
            Kek::generate()?
                .open(&aad_for(&alias, entry), &nonce, &ct)
                .is_none()
        );
        let mut tampered = ct.clone();
        tampered[0] ^= 1;
        assert!(
            kek.open(&aad_for(&alias, entry), &nonce, &tampered)
                .is_none()
        );
        Ok(())
    }

    #[test]
    fn nonces_differ() -> Result<(), Box<dyn std::error::Error>> {
        let kek = Kek::generate()?;
        let alias = Alias::parse("a")?;
        let entry = EntryId::random();
        let (n1, c1) = kek.seal(&aad_for(&alias, entry), b"same")?;
        let (n2, c2) = kek.seal(&aad_for(&alias, entry), b"same")?;
        assert_ne!(n1, n2);
        assert_ne!(c1, c2);
        Ok(())
    }

    #[test]
    fn base64_round_trip_and_length() -> Result<(), Box<dyn std::error::Error>> {
        let kek = Kek::generate()?;
        let again = Kek::from_base64(&kek.to_base64(), "test")?;
        assert_eq!(kek.id(), again.id());
        assert!(matches!(
            Kek::from_base64("c2hvcnQ=", "test"),
            Err(KekError::BadLength { .. })
        ));
        assert!(matches!(
            Kek::from_base64("***", "test"),
            Err(KekError::BadLength { .. })
        ));
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn key_file_mode_and_no_overwrite() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kek");
        let kek = Kek::generate_file(&path)?;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Kek::from_file(&path)?.id(), kek.id());

        let before = std::fs::read(&path)?;
        let err = Kek::generate_file(&path).err();
        assert!(matches!(err, Some(KekError::AlreadyExists(_))), "{err:?}");
        assert_eq!(
            std::fs::read(&path)?,
            before,
            "existing key file was changed"
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        let err = Kek::from_file(&path).err();
        let msg = err.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(
            matches!(err, Some(KekError::InsecureMode { mode: 0o644, .. })),
            "{err:?}"
        );
        assert!(msg.contains("0644") && msg.contains("chmod 600"), "{msg}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))?;
        assert_eq!(Kek::from_file(&path)?.id(), kek.id());
        Ok(())
    }

    #[test]
    fn raw_32_byte_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("raw");
        std::fs::write(&path, [7u8; 32])?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        assert_eq!(Kek::from_file(&path)?.id(), Kek::from_bytes([7u8; 32]).id());
        Ok(())
    }

    #[test]
    fn debug_does_not_print_key() {
        let kek = Kek::from_bytes([0xAB; 32]);
        let shown = format!("{kek:?}");
        assert!(shown.starts_with("Kek(id "), "{shown}");
        assert!(!shown.contains(&"ab".repeat(4)));
    }
}

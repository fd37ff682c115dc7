//! `rekey keygen`, `rekey sign` and `rekey verify` on files: the crypto crate from the shell.

//! Throw-away tokens for the demo and the tests: a SoftHSM2 configuration in a directory of
//! their own, and a token initialised with a label and PINs. Not for production tokens, whose
//! security officer initialises them.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

use crate::{Pkcs11Error, registry};

/// Serialises token initialisation: two callers must not pick the same free slot.
static INIT: Mutex<()> = Mutex::new(());

/// Writes `<dir>/softhsm2.conf` keeping tokens in `<dir>/tokens` (created) with the file
/// object store, and returns its path. Export it as `SOFTHSM2_CONF` before SoftHSM2 is first
/// loaded in the process that uses it (SoftHSM reads it in `C_Initialize`).
pub fn softhsm_conf(dir: &Path) -> std::io::Result<PathBuf> {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )?;
    Ok(conf)
}

/// Initialises a new token labelled `label` in the first slot whose token is not initialised
/// yet (SoftHSM2 always offers one), with security-officer PIN `so_pin` and user PIN
/// `user_pin`. Refuses a label another token already has.
pub fn init_token(
    module: &Path,
    so_pin: &str,
    user_pin: &str,
    label: &str,
) -> Result<(), Pkcs11Error> {
    let _one_at_a_time = INIT.lock().unwrap_or_else(PoisonError::into_inner);
    let p11 = registry::module(module)?;
    let setup = |what: &str, e: cryptoki::error::Error| {
        Pkcs11Error::Setup(format!("token {label:?}: {what}: {e}"))
    };
    let slots = p11
        .get_slots_with_token()
        .map_err(|e| setup("listing slots", e))?;
    let mut free = None;
    for slot in slots {
        let info = p11
            .get_token_info(slot)
            .map_err(|e| setup("reading token info", e))?;
        if info.token_initialized() {
            if info.label().trim_end() == label {
                return Err(Pkcs11Error::Setup(format!(
                    "a token labelled {label:?} already exists in {}",
                    module.display()
                )));
            }
        } else if free.is_none() {
            free = Some(slot);
        }
    }
    let slot = free.ok_or_else(|| {
        Pkcs11Error::Setup(format!(
            "no slot with an uninitialised token in {}",
            module.display()
        ))
    })?;
    let so = AuthPin::new(so_pin.into());
    p11.init_token(slot, &so, label)
        .map_err(|e| setup("C_InitToken", e))?;
    // SoftHSM2 moves an initialised token to a slot of its own: find it again by label.
    let slot = p11
        .get_slots_with_initialized_token()
        .map_err(|e| setup("listing slots", e))?
        .into_iter()
        .find(|s| {
            p11.get_token_info(*s)
                .is_ok_and(|i| i.label().trim_end() == label)
        })
        .ok_or_else(|| Pkcs11Error::Setup(format!("token {label:?} vanished after C_InitToken")))?;
    let session = p11
        .open_rw_session(slot)
        .map_err(|e| setup("opening a session", e))?;
    session
        .login(UserType::So, Some(&so))
        .map_err(|e| setup("security officer login", e))?;
    session
        .init_pin(&AuthPin::new(user_pin.into()))
        .map_err(|e| setup("C_InitPIN", e))?;
    session.logout().map_err(|e| setup("logout", e))?;
    Ok(())
}

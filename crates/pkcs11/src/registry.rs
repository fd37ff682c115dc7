//! The PKCS#11 modules loaded in this process, one per canonical path.
//!
//! `C_Initialize` is process-wide state inside the module: calling it from several places (two
//! tenants on one module, tests running in parallel) fails or, with some modules, crashes. So
//! each module is loaded and initialised once here and shared; an initialisation someone else
//! already made (`CKR_CRYPTOKI_ALREADY_INITIALIZED`) is adopted. Nothing finalises a module:
//! another keystore may still be using it, and the process's exit ends it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};

use crate::Pkcs11Error;

static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();

/// The module at `path`, loaded and initialised on first use and shared afterwards.
///
/// Environment the module reads at initialisation (SoftHSM2's `SOFTHSM2_CONF`) must be set
/// before the first call for that module.
pub fn module(path: &Path) -> Result<Pkcs11, Pkcs11Error> {
    let failed = |reason: String| Pkcs11Error::Module {
        path: path.to_owned(),
        reason,
    };
    let canonical = path.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => failed("no such file".into()),
        _ => failed(e.to_string()),
    })?;
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(loaded) = modules.get(&canonical) {
        return Ok(loaded.clone());
    }
    let loaded = Pkcs11::new(&canonical).map_err(|e| failed(e.to_string()))?;
    match loaded.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(failed(format!("C_Initialize: {e}"))),
    }
    modules.insert(canonical, loaded.clone());
    Ok(loaded)
}

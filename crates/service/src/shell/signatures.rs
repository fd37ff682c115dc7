//! Test messages signed with no write transaction open. RSA signing takes milliseconds of CPU;
//! done inside an event's transaction it would hold the database's write lock (all of it, on
//! SQLite) that long. So an event whose transition attaches test messages runs twice: the
//! first run only learns which messages it needs ([`TestSignatures::want`]) and is rolled
//! back, the messages are signed outside any transaction ([`TestSignatures::sign_outside`]),
//! and the second run uses them. A test message is a pure function of what it signs (payload,
//! keys by certificate, row parameters, signing time), so a message signed outside is the one
//! the transaction would have made; a second run that needs another one (the renewal changed
//! in between) asks again, and after [`ATTEMPTS`] runs signs inside.
//!
//! A run that generates a key signs its test messages inside: the new key exists only in that
//! run (key generation itself stays in the transaction, where the token intent is recorded).
//!
//! The counters ([`crate::Service::crypto_counts`]) say how many RSA operations ran inside a
//! write transaction and how many outside, for the transitions benchmark.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use rekey_crypto::{Certificate, DigestAlg, KeyHandle, SignOptions, SignerSpec, sign};
use rekey_model::{Fingerprint, TenantId};

use crate::Result;
use crate::shell::TEST_PAYLOAD;

/// Runs of one event before its test messages are signed inside the transaction.
pub(crate) const ATTEMPTS: usize = 3;

/// RSA operations of a [`crate::Service`]'s transitions since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CryptoCounts {
    /// Test messages signed while a write transaction was open.
    pub signed_inside: u64,
    /// Test messages signed with no transaction open.
    pub signed_outside: u64,
    /// Keys generated (with their self-signed certificate or request) inside a transaction.
    pub keys_inside: u64,
}

/// The counters behind [`CryptoCounts`], shared by a service's clones.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    inside: AtomicU64,
    outside: AtomicU64,
    keys_inside: AtomicU64,
}

impl Counters {
    /// The counts so far (they only grow; subtract two readings for an interval).
    pub fn read(&self) -> CryptoCounts {
        CryptoCounts {
            signed_inside: self.inside.load(Ordering::Relaxed),
            signed_outside: self.outside.load(Ordering::Relaxed),
            keys_inside: self.keys_inside.load(Ordering::Relaxed),
        }
    }

    pub fn key_inside(&self) {
        self.keys_inside.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one test message signs: everything its bytes depend on besides the fixed payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Wanted {
    pub tenant: TenantId,
    pub certs: Vec<Fingerprint>,
    pub digest: DigestAlg,
    pub include_certs: bool,
    pub include_signing_time: bool,
    pub at: DateTime<Utc>,
}

/// A test message to sign: what, and the keys with their certificates (in `certs` order).
pub(crate) struct Job {
    pub wanted: Wanted,
    pub material: Vec<(KeyHandle, [Certificate; 1])>,
}

/// The test messages of one event: those signed outside, and those its run asked for.
pub(crate) struct TestSignatures {
    signed: HashMap<Wanted, String>,
    /// Whether a run may ask instead of signing (false: sign inside, as before this event
    /// learnt better).
    defer: bool,
    state: Mutex<RunState>,
}

#[derive(Default)]
struct RunState {
    wanted: Vec<Job>,
    /// The run generated a key: its messages are signed inside.
    generated: bool,
}

impl TestSignatures {
    /// Signs every test message inside the transaction (callers that cannot run twice).
    pub fn inside() -> Self {
        TestSignatures {
            signed: HashMap::new(),
            defer: false,
            state: Mutex::default(),
        }
    }

    /// Asks for test messages instead of signing them, to sign them outside.
    pub fn deferring() -> Self {
        TestSignatures {
            defer: true,
            ..Self::inside()
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, RunState> {
        // The state is plain data: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The message signed outside for `w`, if there is one.
    pub fn get(&self, w: &Wanted) -> Option<String> {
        self.signed.get(w).cloned()
    }

    /// Whether this run asks for `w` instead of signing it.
    pub fn defers(&self) -> bool {
        self.defer && !self.state().generated
    }

    /// Notes that this run needs `job` signed; the run's answer is then discarded.
    pub fn want(&self, job: Job) {
        let mut s = self.state();
        if !s.wanted.iter().any(|j| j.wanted == job.wanted) {
            s.wanted.push(job);
        }
    }

    /// Notes that this run generated a key.
    pub fn generated(&self) {
        self.state().generated = true;
    }

    /// Ends run `run` (0-based) and takes out the messages it asked for, to sign them. The
    /// next run signs inside after [`ATTEMPTS`] runs, or when this one generated a key (the
    /// next makes another).
    pub fn next_run(&mut self, run: usize) -> Vec<Job> {
        let s = std::mem::take(&mut *self.state());
        if run + 1 >= ATTEMPTS - 1 || s.generated {
            self.defer = false;
        }
        s.wanted
    }

    /// Signs `jobs` with no transaction open, on the blocking pool, and keeps them for the
    /// next run.
    pub async fn sign_outside(
        &mut self,
        backend: std::sync::Arc<dyn rekey_crypto::KeyBackend>,
        jobs: Vec<Job>,
        counters: &Counters,
    ) -> Result<()> {
        for job in jobs {
            let wanted = job.wanted.clone();
            let b64 = sign_test(backend.clone(), job).await?;
            counters.outside.fetch_add(1, Ordering::Relaxed);
            self.signed.insert(wanted, b64);
        }
        Ok(())
    }
}

/// Signs `job` inside the caller's transaction (counted as such).
pub(crate) async fn sign_inside(
    backend: std::sync::Arc<dyn rekey_crypto::KeyBackend>,
    job: Job,
    counters: &Counters,
) -> Result<String> {
    let b64 = sign_test(backend, job).await?;
    counters.inside.fetch_add(1, Ordering::Relaxed);
    Ok(b64)
}

/// A SignedData over [`TEST_PAYLOAD`] by exactly `job`'s keys, Base64.
async fn sign_test(
    backend: std::sync::Arc<dyn rekey_crypto::KeyBackend>,
    job: Job,
) -> Result<String> {
    let Job { wanted, material } = job;
    let der = crate::cpu::blocking(move || {
        let signers = material
            .iter()
            .map(|(key, _)| backend.signer(key))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let specs: Vec<SignerSpec<'_>> = material
            .iter()
            .zip(&signers)
            .map(|((_, chain), key)| SignerSpec {
                key: &**key,
                chain,
                digest: wanted.digest,
                include_certs: wanted.include_certs,
                include_signing_time: wanted.include_signing_time,
            })
            .collect();
        sign(
            TEST_PAYLOAD,
            &specs,
            &SignOptions {
                detached: false,
                signing_time: wanted.at,
            },
        )
    })
    .await??;
    Ok(rekey_crypto::to_base64(&der))
}

//! Property: whatever the payload and the signer set, sign → verify gives every signer valid and
//! the content back; flipping one content byte makes every signer fail.

mod common;

use std::sync::OnceLock;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use rekey_crypto::{
    CertSource, Certificate, DigestAlg, KeyPair, SignOptions, SignerSpec, SignerStatus, sign,
    verify,
};

fn signers() -> &'static [(KeyPair, Vec<Certificate>); 3] {
    static S: OnceLock<[(KeyPair, Vec<Certificate>); 3]> = OnceLock::new();
    S.get_or_init(|| {
        [1, 2, 3].map(|n| {
            let (k, c) = common::signer(n, &format!("prop {n}"));
            (k, vec![c])
        })
    })
}

#[derive(Debug, Clone)]
struct Row {
    key: usize,
    digest: DigestAlg,
    include_certs: bool,
    include_signing_time: bool,
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    // 1–3 distinct fixture keys, in random order, each with its own parameters.
    (
        Just(vec![0usize, 1, 2]).prop_shuffle(),
        1usize..=3,
        proptest::collection::vec(
            (
                prop::sample::select(DigestAlg::ALL.to_vec()),
                any::<bool>(),
                any::<bool>(),
            ),
            3,
        ),
    )
        .prop_map(|(order, n, params)| {
            order
                .into_iter()
                .take(n)
                .zip(params)
                .map(|(key, (digest, include_certs, include_signing_time))| Row {
                    key,
                    digest,
                    include_certs,
                    include_signing_time,
                })
                .collect()
        })
}

/// Offset of the eContent bytes inside an attached message: after id-data and the `[0]` and
/// OCTET STRING headers that follow it (the first id-data in the encoding is eContentType).
fn econtent_offset(der: &[u8]) -> Option<usize> {
    const ID_DATA: [u8; 11] = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01,
    ];
    let mut at = der.windows(ID_DATA.len()).position(|w| w == ID_DATA)? + ID_DATA.len();
    for expected_tag in [0xa0u8, 0x04] {
        if *der.get(at)? != expected_tag {
            return None;
        }
        let first = *der.get(at + 1)?;
        at += 2;
        if first & 0x80 != 0 {
            at += usize::from(first & 0x7f);
        }
    }
    Some(at)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn sign_verify_round_trip(
        payload in proptest::collection::vec(any::<u8>(), 0..4096),
        rows in rows(),
        detached in any::<bool>(),
        flip in any::<prop::sample::Index>(),
        flip_mask in 1u8..=255,
    ) {
        let all = signers();
        let specs: Vec<SignerSpec<'_>> = rows
            .iter()
            .map(|r| SignerSpec {
                key: &all[r.key].0,
                chain: &all[r.key].1,
                digest: r.digest,
                include_certs: r.include_certs,
                include_signing_time: r.include_signing_time,
            })
            .collect();
        let when = Utc.with_ymd_and_hms(2027, 3, 4, 5, 6, 7).single().expect("date");
        let der = sign(&payload, &specs, &SignOptions { detached, signing_time: when })
            .expect("signs");
        // Certificates not embedded must be supplied; supply every one to be sure each signer
        // can be found either way.
        let supplied: Vec<Certificate> = all.iter().map(|(_, c)| c[0].clone()).collect();
        let content = detached.then_some(payload.as_slice());
        let v = verify(&der, content, &supplied, CertSource::EmbeddedAndSupplied)
            .expect("parses");
        prop_assert_eq!(&v.content, &payload);
        prop_assert_eq!(v.attached, !detached);
        prop_assert_eq!(v.signers.len(), rows.len());
        for s in &v.signers {
            prop_assert_eq!(&s.status, &SignerStatus::Valid, "{:?}", s);
        }
        let mut fps: Vec<_> = v.signers.iter().filter_map(|s| s.certificate).collect();
        let mut want: Vec<_> = rows.iter().map(|r| all[r.key].1[0].fingerprint()).collect();
        fps.sort();
        want.sort();
        prop_assert_eq!(fps, want);
        let with_time = v.signers.iter().filter(|s| s.signing_time.is_some()).count();
        prop_assert_eq!(with_time, rows.iter().filter(|r| r.include_signing_time).count());
        prop_assert!(v.signers.iter().flat_map(|s| s.signing_time).all(|t| t == when));
        // Embedded certificates: exactly those of the rows that asked for them.
        let embedded = rows.iter().filter(|r| r.include_certs).count();
        prop_assert_eq!(v.embedded_certificates.len(), embedded);

        if !payload.is_empty() {
            let i = flip.index(payload.len());
            let tampered = if detached {
                let mut p = payload.clone();
                p[i] ^= flip_mask;
                verify(&der, Some(&p), &supplied, CertSource::EmbeddedAndSupplied)
            } else {
                let at = econtent_offset(&der).expect("eContent found");
                let mut d = der.clone();
                prop_assert_eq!(&d[at..at + payload.len()], payload.as_slice());
                d[at + i] ^= flip_mask;
                verify(&d, None, &supplied, CertSource::EmbeddedAndSupplied)
            }
            .expect("still parses");
            prop_assert_eq!(tampered.signers.len(), rows.len());
            for s in &tampered.signers {
                prop_assert_eq!(&s.status, &SignerStatus::DigestMismatch, "{:?}", s);
            }
        }
    }
}

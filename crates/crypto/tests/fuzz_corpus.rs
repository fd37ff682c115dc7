//! Replays every file of the fuzz target's committed corpus (`fuzz/corpus/parse_inputs/`)
//! through the target's own entry point, so that the target and its seeds cannot rot unnoticed.
//! The seeds must also still reach deep: messages that verify, a PKCS#12 file that imports.

use std::path::Path;

use rekey_crypto::fuzzing::{Reached, parse_untrusted};

#[test]
fn committed_fuzz_corpus_replays_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/parse_inputs");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    assert!(entries.len() >= 8, "seed corpus shrank: {entries:?}");
    let mut total = Reached::default();
    for path in &entries {
        let data = std::fs::read(path).expect("corpus file");
        let r = parse_untrusted(&data);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        // Each seed still exercises what its name says.
        if name.ends_with(".der") || name.ends_with(".b64") || name.ends_with("noattr.pem") {
            if name.contains("zero-signers") {
                assert_eq!(r.signers, 0, "{name}");
            } else {
                assert!(r.signers > 0, "{name}: {r:?}");
            }
        }
        if name.contains("openssl3-default") {
            assert!(r.pkcs12_key, "{name}: {r:?}");
        }
        total.signers += r.signers;
        total.valid_signers += r.valid_signers;
        total.pkcs12_key |= r.pkcs12_key;
        total.certificates += r.certificates;
    }
    assert!(total.valid_signers >= 4, "{total:?}");
    assert!(total.pkcs12_key && total.certificates >= 1, "{total:?}");
}

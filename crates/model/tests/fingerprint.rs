//! The one fingerprint parser: the accepted forms, and a precise refusal of everything else.

use rekey_model::{Fingerprint, FingerprintError};

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn colon_upper() -> String {
    HEX.to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|p| std::str::from_utf8(p).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(":")
}

fn refusal(s: &str) -> FingerprintError {
    match s.parse::<Fingerprint>() {
        Err(e) => e,
        Ok(f) => panic!("{s:?} was not refused as a fingerprint: {f:?}"),
    }
}

#[test]
fn accepted_forms_all_parse_to_the_same_fingerprint() {
    let want: Fingerprint = HEX.parse().expect("plain lower case");
    let spaced = colon_upper().replace(':', " ");
    for s in [
        HEX.to_string(),
        HEX.to_uppercase(),
        colon_upper(),
        colon_upper().to_lowercase(),
        spaced,
        format!("  {}\n", colon_upper()),
        format!("sha256 Fingerprint={}", colon_upper()),
        format!("SHA256 Fingerprint={HEX}\n"),
    ] {
        assert_eq!(s.parse::<Fingerprint>().expect(&s), want, "{s:?}");
    }
    assert_eq!(want.to_colon_hex().parse::<Fingerprint>().ok(), Some(want));
}

#[test]
fn junk_padded_fingerprint_is_refused_naming_the_character_and_where() {
    assert_eq!(
        refusal(&format!("{HEX}\0")),
        FingerprintError::NotHex { ch: '\0', at: 65 }
    );
    assert_eq!(
        refusal(&format!("{}\u{200B}", colon_upper())),
        FingerprintError::NotHex {
            ch: '\u{200B}',
            at: 96
        }
    );
    assert_eq!(
        refusal(&format!("<b>{HEX}</b>")),
        FingerprintError::NotHex { ch: '<', at: 1 }
    );
    assert_eq!(
        refusal(&format!(" \u{200B}{HEX}")),
        FingerprintError::NotHex {
            ch: '\u{200B}',
            at: 2
        }
    );
    let msg = format!("{HEX}\u{200B}")
        .parse::<Fingerprint>()
        .map_err(|e| e.to_string());
    let msg = msg.expect_err("refused");
    assert!(
        msg.contains("character 65") && msg.contains("U+200B"),
        "{msg}"
    );
    // The refusal also says what would have been accepted.
    assert!(msg.contains("64 hex digits"), "{msg}");
}

#[test]
fn serialises_as_lower_case_hex_and_reads_back_strictly() {
    let fp: Fingerprint = HEX.to_uppercase().parse().expect("upper case");
    let json = serde_json::to_string(&fp).expect("serialise");
    assert_eq!(json, format!("\"{HEX}\""));
    assert_eq!(serde_json::from_str::<Fingerprint>(&json).ok(), Some(fp));
    // A stored value is parsed like a typed one: junk is an error, not filtered out.
    let junk = serde_json::from_str::<Fingerprint>("\"old-cert\"").map_err(|e| e.to_string());
    assert!(junk.is_err_and(|e| e.contains("not a hex digit")));
}

#[test]
fn empty_wrong_length_and_misplaced_separators_are_refused() {
    assert_eq!(refusal(""), FingerprintError::Empty);
    assert_eq!(refusal(" \t\n"), FingerprintError::Empty);
    assert_eq!(refusal("ab:cd"), FingerprintError::Length { digits: 4 });
    assert_eq!(refusal(&HEX[..62]), FingerprintError::Length { digits: 62 });
    assert_eq!(
        refusal(&format!("{HEX}ab")),
        FingerprintError::Length { digits: 66 }
    );
    assert_eq!(
        refusal("sha256 Fingerprint="),
        FingerprintError::Length { digits: 0 }
    );
    // Separators only ever between two-digit bytes, one at a time.
    let c = colon_upper();
    assert_eq!(
        refusal(&c.replacen(':', "::", 1)),
        FingerprintError::Separator { ch: ':', at: 4 }
    );
    assert_eq!(
        refusal(&format!("{c}:")),
        FingerprintError::Separator { ch: ':', at: 96 }
    );
    assert_eq!(
        refusal(&format!(":{c}")),
        FingerprintError::Separator { ch: ':', at: 1 }
    );
    assert_eq!(
        refusal(&format!("{}:{}", &HEX[..4], &HEX[4..])),
        FingerprintError::Separator { ch: ':', at: 5 }
    );
    assert_eq!(
        refusal(&c.replacen(':', "", 1)),
        FingerprintError::Separator { ch: ':', at: 5 }
    );
    assert_eq!(
        refusal(&c.replacen(':', "  ", 1)),
        FingerprintError::Separator { ch: ' ', at: 4 }
    );
}

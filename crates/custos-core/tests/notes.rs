//! C2SP signed notes and tlog checkpoints: known answers from golang.org/x/mod/sumdb/note,
//! round trips, tamper resistance (every single-bit flip), strict parsing, and hostile input.

use base64::{Engine, engine::general_purpose::STANDARD};
use custos_core::merkle::{EMPTY_ROOT, Hash, leaf_hash};
use custos_core::note::{
    Checkpoint, MAX_SIGNATURES, NoteError, Signer, Verifier, open, open_checkpoint, sign_checkpoint,
};
use proptest::prelude::*;
use proptest::sample::Index;
use sha2::{Digest, Sha256};

/// The example key and note from the golang.org/x/mod/sumdb/note package documentation.
const GO_PRIVATE_KEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VERIFIER_KEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const GO_SIGNATURE_LINE: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const GO_COSIGNATURE_LINE: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn go_note() -> String {
    format!("{GO_TEXT}\n{GO_SIGNATURE_LINE}")
}

fn make_signer(name: &str, seed_byte: u8) -> Signer {
    Signer::from_seed(name, [seed_byte; 32]).expect("valid signer")
}

fn log_signer() -> Signer {
    make_signer("example.com/log", 7)
}

fn checkpoint() -> Checkpoint {
    Checkpoint {
        origin: "example.com/log".into(),
        size: 20_852_163,
        root: leaf_hash(b"root"),
        extensions: vec![],
    }
}

/// The key id computed here, independently of the crate: SHA-256(name ‖ "\n" ‖ 0x01 ‖ key)[:4].
fn expected_key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let digest = Sha256::digest([name.as_bytes(), b"\n", &[0x01], public_key].concat());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

#[test]
fn go_reference_keys_and_signature() {
    let signer = Signer::parse(GO_PRIVATE_KEY).expect("Go private key");
    assert_eq!(signer.name(), "PeterNeumann");
    assert_eq!(signer.key_id(), 0xc74f20a3);
    assert_eq!(signer.to_private_key_text(), GO_PRIVATE_KEY);
    assert_eq!(signer.verifier().to_string(), GO_VERIFIER_KEY);

    let verifier = Verifier::parse(GO_VERIFIER_KEY).expect("Go verifier key");
    assert_eq!(verifier, signer.verifier());
    assert_eq!(verifier.key_id(), 0xc74f20a3);
    assert_eq!(
        verifier.key_id(),
        expected_key_id("PeterNeumann", &verifier.public_key())
    );

    // Ed25519 is deterministic: we must produce Go's note byte for byte.
    assert_eq!(signer.sign(GO_TEXT).expect("sign"), go_note());
    assert_eq!(open(&go_note(), &verifier), Ok(GO_TEXT));
    // Go's doubly signed example: the unknown cosigner's line is ignored.
    let cosigned = format!("{GO_TEXT}\n{GO_SIGNATURE_LINE}{GO_COSIGNATURE_LINE}");
    assert_eq!(open(&cosigned, &verifier), Ok(GO_TEXT));
}

#[test]
fn verifier_key_text_format() {
    let signer = log_signer();
    let verifier = signer.verifier();
    let public_key = verifier.public_key();
    let id = expected_key_id("example.com/log", &public_key);
    assert_eq!(signer.key_id(), id);
    assert_eq!(verifier.key_id(), id);
    assert_eq!(verifier.name(), "example.com/log");
    let text = format!(
        "example.com/log+{id:08x}+{}",
        STANDARD.encode([&[0x01][..], &public_key].concat())
    );
    assert_eq!(verifier.to_string(), text);
    assert_eq!(Verifier::parse(&text), Ok(verifier.clone()));
    assert_eq!(
        Verifier::from_public_key("example.com/log", public_key),
        Ok(verifier)
    );

    let private = signer.to_private_key_text();
    assert_eq!(
        private,
        format!(
            "PRIVATE+KEY+example.com/log+{id:08x}+{}",
            STANDARD.encode([&[0x01][..], &[7u8; 32]].concat())
        )
    );
    let reparsed = Signer::parse(&private).expect("round trip");
    assert_eq!(reparsed.verifier(), signer.verifier());
    assert_eq!(reparsed.sign("x\n"), signer.sign("x\n"));
}

#[test]
fn signer_debug_hides_the_seed() {
    let signer = log_signer();
    let debug = format!("{signer:?}");
    assert!(debug.contains("example.com/log"), "{debug}");
    let seed_b64 = STANDARD.encode([&[0x01][..], &[7u8; 32]].concat());
    assert!(
        !debug.contains(&seed_b64) && !debug.contains("7, 7"),
        "{debug}"
    );
}

#[test]
fn key_names() {
    let check = |name: &str, ok: bool| {
        let result = Signer::from_seed(name, [1; 32]);
        assert_eq!(result.is_ok(), ok, "{name:?}: {result:?}");
        if !ok {
            assert_eq!(
                result.expect_err("invalid"),
                NoteError::InvalidName { name: name.into() }
            );
        }
    };
    check("example.com/log", true);
    check("PeterNeumann", true);
    check("ünïcode/ok", true);
    check("", false);
    check("a b", false);
    check("a+b", false);
    check("a\tb", false);
    check("a\u{a0}b", false);
    check("a\u{2003}b", false);
    check("a\u{1}b", false);
    check("trailing\n", false);
}

#[test]
fn verifier_key_parse_errors() {
    let good = log_signer().verifier().to_string();
    let (name_id, key_b64) = good.rsplit_once('+').expect("three parts");
    let id = log_signer().key_id();
    let public_key = log_signer().verifier().public_key();
    let with_alg = |alg: u8, key: &[u8]| {
        format!(
            "example.com/log+{id:08x}+{}",
            STANDARD.encode([&[alg][..], key].concat())
        )
    };
    let check = |input: &str, want: NoteError| {
        assert_eq!(Verifier::parse(input), Err(want), "{input:?}");
    };
    let malformed = |reason| NoteError::MalformedVerifierKey { reason };
    check("", malformed("missing '+' after the name"));
    check("example.com/log", malformed("missing '+' after the name"));
    check(
        &format!("{good}\n"),
        malformed("has leading or trailing whitespace"),
    );
    check(
        &format!(" {good}"),
        malformed("has leading or trailing whitespace"),
    );
    check(
        "example.com/log+c74f20a3",
        malformed("missing '+' after the key id"),
    );
    check(
        &format!("example.com/log+{}+{key_b64}", &format!("{id:08x}")[..7]),
        malformed("key id is not 8 hex digits"),
    );
    check(
        &format!("example.com/log++{id:08x}+{key_b64}"),
        malformed("key id is not 8 hex digits"),
    );
    check(
        &format!(
            "example.com/log+{id:08x}+{}!",
            &key_b64[..key_b64.len() - 1]
        ),
        malformed("key is not valid base64"),
    );
    check(&format!("{name_id}+"), malformed("key is empty"));
    check(
        &with_alg(0x02, &public_key),
        NoteError::UnsupportedAlgorithm { alg: 2 },
    );
    check(
        &with_alg(0x01, &public_key[..31]),
        malformed("Ed25519 key is not 32 bytes"),
    );
    check(
        &format!("other.example/log+{id:08x}+{key_b64}"),
        NoteError::KeyIdMismatch {
            stated: id,
            computed: expected_key_id("other.example/log", &public_key),
        },
    );
    check(
        &format!("a+b+{id:08x}+{key_b64}"),
        malformed("key id is not 8 hex digits"),
    );
    // Upper-case hex is what Go's ParseUint accepts too.
    assert!(Verifier::parse(&format!("example.com/log+{id:08X}+{key_b64}")).is_ok());
}

#[test]
fn private_key_parse_errors_never_echo_the_key() {
    let good = log_signer().to_private_key_text();
    let secret = good.rsplit_once('+').expect("parts").1.to_owned();
    let check = |input: String, want: NoteError| {
        let got = Signer::parse(&input).expect_err("must fail");
        assert_eq!(got, want, "{input:?}");
        assert!(!got.to_string().contains(&secret[..20]), "{got}");
    };
    let malformed = |reason| NoteError::MalformedPrivateKey { reason };
    check(
        good.replacen("PRIVATE+KEY+", "PUBLIC+KEY+", 1),
        malformed("does not start with PRIVATE+KEY+"),
    );
    check(
        good.replacen("PRIVATE+KEY+", "", 1),
        malformed("does not start with PRIVATE+KEY+"),
    );
    check(
        format!("{good}\n"),
        malformed("has leading or trailing whitespace"),
    );
    check(format!("{good}!"), malformed("key is not valid base64"));
    let wrong_id = format!("{:08x}", log_signer().key_id() ^ 1);
    let bad_id = good.replacen(&format!("{:08x}", log_signer().key_id()), &wrong_id, 1);
    check(
        bad_id,
        NoteError::KeyIdMismatch {
            stated: log_signer().key_id() ^ 1,
            computed: log_signer().key_id(),
        },
    );
    let other_alg = format!(
        "PRIVATE+KEY+example.com/log+{:08x}+{}",
        log_signer().key_id(),
        STANDARD.encode([&[0x04][..], &[7u8; 32]].concat())
    );
    check(other_alg, NoteError::UnsupportedAlgorithm { alg: 4 });
    // A verifier key is not a private key, and vice versa.
    check(
        log_signer().verifier().to_string(),
        malformed("does not start with PRIVATE+KEY+"),
    );
    assert!(Verifier::parse(&good).is_err());
}

#[test]
fn sign_refuses_unsignable_text() {
    let signer = log_signer();
    let check = |text: &str, reason: &'static str| {
        assert_eq!(
            signer.sign(text),
            Err(NoteError::InvalidText { reason }),
            "{text:?}"
        );
    };
    check("", "text is empty");
    check("no newline", "text does not end in a newline");
    check(
        "tab\there\n",
        "text contains a control character other than newline",
    );
    check(
        "cr\r\n",
        "text contains a control character other than newline",
    );
    // Empty lines inside the text are allowed: the signatures follow the last blank line.
    for text in ["\n", "a\n\nb\n", "a\n\n", "— looks like a signature\n"] {
        let note = signer.sign(text).expect("signable");
        assert_eq!(open(&note, &signer.verifier()), Ok(text), "{text:?}");
    }
}

#[test]
fn round_trip_and_wrong_keys() {
    let signer = log_signer();
    let text = "line one\nline two\n";
    let note = signer.sign(text).expect("sign");
    assert_eq!(open(&note, &signer.verifier()), Ok(text));

    let stranger = make_signer("other.example/log", 9);
    assert_eq!(
        open(&note, &stranger.verifier()),
        Err(NoteError::NoTrustedSignature {
            name: "other.example/log".into(),
            key_id: stranger.key_id(),
        })
    );
    // Same name, different key: a different key id, so the line is not ours.
    let impostor = make_signer("example.com/log", 8);
    assert_ne!(impostor.key_id(), signer.key_id());
    assert_eq!(
        open(&note, &impostor.verifier()),
        Err(NoteError::NoTrustedSignature {
            name: "example.com/log".into(),
            key_id: impostor.key_id(),
        })
    );
    // Our name and key id over someone else's signature: a known key that fails is an error.
    let forged = with_key_id(&impostor.sign(text).expect("sign"), signer.key_id());
    assert_eq!(
        open(&forged, &signer.verifier()),
        Err(NoteError::InvalidSignature {
            name: "example.com/log".into(),
            key_id: signer.key_id(),
        })
    );
    // … even when a valid signature of ours is also present.
    let both = format!("{note}{}", signature_lines(&forged));
    assert!(matches!(
        open(&both, &signer.verifier()),
        Err(NoteError::InvalidSignature { .. })
    ));
    // A signature over another text does not carry over.
    let other = signer.sign("line one\nline 2\n").expect("sign");
    let spliced = format!("{text}\n{}", signature_lines(&other));
    assert!(matches!(
        open(&spliced, &signer.verifier()),
        Err(NoteError::InvalidSignature { .. })
    ));
}

/// The signature lines of a note (everything after its last blank line).
fn signature_lines(note: &str) -> &str {
    let split = note.rfind("\n\n").expect("blank line");
    &note[split + 2..]
}

/// Rewrites the key id inside every signature line of `note`.
fn with_key_id(note: &str, id: u32) -> String {
    let split = note.rfind("\n\n").expect("blank line");
    let mut out = note[..split + 2].to_owned();
    for line in signature_lines(note).lines() {
        let (name, sig) = line.rsplit_once(' ').expect("name and signature");
        let mut raw = STANDARD.decode(sig).expect("base64");
        raw[..4].copy_from_slice(&id.to_be_bytes());
        out.push_str(&format!("{name} {}\n", STANDARD.encode(raw)));
    }
    out
}

#[test]
fn unknown_signature_lines_are_ignored() {
    let signer = log_signer();
    let text = "hello\n";
    let note = signer.sign(text).expect("sign");
    let witness = make_signer("witness.example/w1", 3);
    let cosig = signature_lines(&witness.sign(text).expect("sign")).to_owned();
    // A line with our name but another key id, carrying garbage: not ours, so ignored.
    let other_id = format!(
        "— example.com/log {}\n",
        STANDARD.encode([&(signer.key_id() ^ 1).to_be_bytes()[..], &[0xaa; 64]].concat())
    );
    let check = |note: String| {
        assert_eq!(open(&note, &signer.verifier()), Ok(text), "{note}");
    };
    check(format!("{note}{cosig}"));
    check(format!("{text}\n{cosig}{}", signature_lines(&note)));
    check(format!("{note}{other_id}"));
    check(format!("{note}{GO_COSIGNATURE_LINE}{GO_SIGNATURE_LINE}"));
    // Only unknown signers: rejected.
    assert!(matches!(
        open(&format!("{text}\n{cosig}"), &signer.verifier()),
        Err(NoteError::NoTrustedSignature { .. })
    ));
}

#[test]
fn malformed_notes() {
    let signer = log_signer();
    let verifier = signer.verifier();
    let note = signer.sign("hello\n").expect("sign");
    let sig = signature_lines(&note).to_owned();
    let check = |input: String, want: &str| {
        let got = open(&input, &verifier).expect_err("must fail").to_string();
        assert_eq!(got, want, "{input:?}");
    };
    check(
        String::new(),
        "malformed note: no blank line before the signatures",
    );
    check(
        "hello\n".into(),
        "malformed note: no blank line before the signatures",
    );
    check(
        format!("hello\n{sig}"),
        "malformed note: no blank line before the signatures",
    );
    check(
        "hello\n\n".into(),
        "malformed note: signature block is empty or does not end in a newline",
    );
    check(
        note.trim_end().to_owned(),
        "malformed note: signature block is empty or does not end in a newline",
    );
    check(
        format!("{note}\n"),
        "malformed note: signature block is empty or does not end in a newline",
    );
    check(
        format!("hello\n\n{}", sig.replacen('—', "-", 1)),
        "malformed note: signature line 1: does not start with an em dash and a space",
    );
    check(
        format!("{note}— nospace\n"),
        "malformed note: signature line 2: no space between key name and signature",
    );
    check(
        format!("{note}— a+b AAAAAAA=\n"),
        "malformed note: signature line 2: invalid key name",
    );
    check(
        format!("{note}— name not-base64\n"),
        "malformed note: signature line 2: signature is not valid base64",
    );
    check(
        format!("{note}— name AAAA\n"),
        "malformed note: signature line 2: signature is shorter than a key id and one byte",
    );
    check(
        format!("hello\r\n\n{sig}"),
        "malformed note: contains control character U+000D",
    );
    check(
        format!("hel\0lo\n\n{sig}"),
        "malformed note: contains control character U+0000",
    );
    // Our key id with a signature of the wrong length is our line failing to verify.
    let short = format!(
        "hello\n\n— example.com/log {}\n",
        STANDARD.encode([&signer.key_id().to_be_bytes()[..], &[1; 63]].concat())
    );
    let want = format!(
        "signature by example.com/log+{:08x} does not verify",
        signer.key_id()
    );
    check(short, &want);
}

#[test]
fn signature_count_is_limited() {
    let signer = log_signer();
    let note = signer.sign("hello\n").expect("sign");
    let unknown = "— someone.else AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n";
    let at_limit = format!("{note}{}", unknown.repeat(MAX_SIGNATURES - 1));
    assert_eq!(open(&at_limit, &signer.verifier()), Ok("hello\n"));
    let over = format!("{note}{}", unknown.repeat(MAX_SIGNATURES));
    assert_eq!(
        open(&over, &signer.verifier()),
        Err(NoteError::TooManySignatures {
            max: MAX_SIGNATURES
        })
    );
    // The spec requires accepting at least 16 signatures.
    let sixteen = format!("{note}{}", unknown.repeat(15));
    assert_eq!(open(&sixteen, &signer.verifier()), Ok("hello\n"));
}

/// Every single-bit flip of `note` that is still UTF-8 is passed to `opened`.
fn for_each_bit_flip(note: &str, mut opened: impl FnMut(&str, usize)) -> usize {
    let mut tried = 0;
    for i in 0..note.len() {
        for bit in 0..8 {
            let mut bytes = note.as_bytes().to_vec();
            bytes[i] ^= 1 << bit;
            if let Ok(flipped) = String::from_utf8(bytes) {
                opened(&flipped, i);
                tried += 1;
            }
        }
    }
    tried
}

#[test]
fn every_bit_flip_is_rejected() {
    let signer = log_signer();
    let verifier = signer.verifier();
    let text = "line one\n\nline three\n";
    let note = signer.sign(text).expect("sign");
    let tried = for_each_bit_flip(&note, |flipped, i| {
        assert!(
            open(flipped, &verifier).is_err(),
            "flip at byte {i} accepted: {flipped:?}"
        );
    });
    assert!(tried > note.len() * 6, "only {tried} flips tried");

    let signed = sign_checkpoint(&signer, &checkpoint()).expect("sign");
    for_each_bit_flip(&signed, |flipped, i| {
        assert!(
            open_checkpoint(flipped, &verifier).is_err(),
            "flip at byte {i} accepted: {flipped:?}"
        );
    });
}

#[test]
fn bit_flips_in_a_cosigned_note_never_alter_the_text() {
    let signer = log_signer();
    let verifier = signer.verifier();
    let text = "origin\n5\n";
    let witness = make_signer("witness.example/w1", 3);
    let note = format!(
        "{}{}",
        signer.sign(text).expect("sign"),
        signature_lines(&witness.sign(text).expect("sign"))
    );
    let mut accepted = 0;
    for_each_bit_flip(&note, |flipped, i| {
        if let Ok(opened) = open(flipped, &verifier) {
            assert_eq!(opened, text, "flip at byte {i} changed the text");
            accepted += 1;
        }
    });
    // Flips inside the unknown witness's name or key id leave our signature standing.
    assert!(accepted > 0, "no flip in the witness line was tolerated");
}

#[test]
fn checkpoint_round_trip() {
    let signer = log_signer();
    let check = |cp: Checkpoint, text: &str| {
        assert_eq!(cp.to_text(), text);
        assert_eq!(Checkpoint::parse(text), Ok(cp.clone()));
        let note = sign_checkpoint(&signer, &cp).expect("sign");
        assert!(
            note.starts_with(&format!("{text}\n— example.com/log ")),
            "{note}"
        );
        assert_eq!(open_checkpoint(&note, &signer.verifier()), Ok(cp));
    };
    let root_b64 = STANDARD.encode(leaf_hash(b"root"));
    check(
        checkpoint(),
        &format!("example.com/log\n20852163\n{root_b64}\n"),
    );
    check(
        Checkpoint {
            origin: "example.com/log".into(),
            size: 0,
            root: EMPTY_ROOT,
            extensions: vec!["ext one".into(), "ext two".into()],
        },
        "example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\next two\n",
    );
    check(
        Checkpoint {
            size: u64::MAX,
            ..checkpoint()
        },
        &format!("example.com/log\n18446744073709551615\n{root_b64}\n"),
    );
}

#[test]
fn sign_checkpoint_refuses_unrepresentable_checkpoints() {
    let signer = log_signer();
    let check = |cp: Checkpoint, want: &str| {
        let got = sign_checkpoint(&signer, &cp)
            .expect_err("must fail")
            .to_string();
        assert_eq!(got, want);
    };
    check(
        Checkpoint {
            origin: String::new(),
            ..checkpoint()
        },
        "malformed checkpoint: origin must be one non-empty line",
    );
    check(
        Checkpoint {
            origin: "a\n5".into(),
            ..checkpoint()
        },
        "malformed checkpoint: origin must be one non-empty line",
    );
    check(
        Checkpoint {
            extensions: vec![String::new()],
            ..checkpoint()
        },
        "malformed checkpoint: every extension must be one non-empty line",
    );
    check(
        Checkpoint {
            extensions: vec!["two\nlines".into()],
            ..checkpoint()
        },
        "malformed checkpoint: every extension must be one non-empty line",
    );
    check(
        Checkpoint {
            origin: "tab\there".into(),
            ..checkpoint()
        },
        "text cannot be signed: text contains a control character other than newline",
    );
}

#[test]
fn checkpoint_parsing_is_strict() {
    let root: Hash = leaf_hash(b"root");
    let r = STANDARD.encode(root);
    let zero_root = STANDARD.encode([0u8; 32]);
    let check = |text: String, want: Result<u64, &str>| {
        let got = Checkpoint::parse(&text)
            .map(|cp| cp.size)
            .map_err(|e| e.to_string());
        assert_eq!(
            got,
            want.map_err(|w| format!("malformed checkpoint: {w}")),
            "{text:?}"
        );
    };
    check(format!("o\n0\n{r}\n"), Ok(0));
    check(format!("o\n10\n{r}\n"), Ok(10));
    check(format!("o\n10\n{r}\next\n"), Ok(10));
    check(
        format!("o\n01\n{r}\n"),
        Err("tree size \"01\" has a leading zero"),
    );
    check(
        format!("o\n00\n{r}\n"),
        Err("tree size \"00\" has a leading zero"),
    );
    check(
        format!("o\n+1\n{r}\n"),
        Err("tree size \"+1\" is not a decimal number"),
    );
    check(
        format!("o\n-1\n{r}\n"),
        Err("tree size \"-1\" is not a decimal number"),
    );
    check(
        format!("o\n 1\n{r}\n"),
        Err("tree size \" 1\" is not a decimal number"),
    );
    check(
        format!("o\n1 \n{r}\n"),
        Err("tree size \"1 \" is not a decimal number"),
    );
    check(
        format!("o\n1e3\n{r}\n"),
        Err("tree size \"1e3\" is not a decimal number"),
    );
    check(
        format!("o\n\n{r}\n"),
        Err("tree size \"\" is not a decimal number"),
    );
    check(
        format!("o\n١\n{r}\n"),
        Err("tree size \"١\" is not a decimal number"),
    );
    check(
        format!("o\n18446744073709551616\n{r}\n"),
        Err("tree size \"18446744073709551616\" does not fit in 64 bits"),
    );
    check(format!("o\n1\n{r}"), Err("does not end in a newline"));
    check(String::new(), Err("does not end in a newline"));
    check("\n".into(), Err("origin line is empty"));
    check(format!("\n1\n{r}\n"), Err("origin line is empty"));
    check("o\n".into(), Err("missing tree size line"));
    check("o\n1\n".into(), Err("missing root hash line"));
    check(
        "o\n1\n!!!!\n".into(),
        Err("root hash \"!!!!\" is not valid base64"),
    );
    let unpadded = r.trim_end_matches('=').to_owned();
    check(
        format!("o\n1\n{unpadded}\n"),
        Err(&format!("root hash {unpadded:?} is not valid base64")),
    );
    // Non-zero padding bits: a second spelling of the same bytes.
    let sloppy = format!("{}B=", &zero_root[..42]);
    check(
        format!("o\n1\n{sloppy}\n"),
        Err(&format!("root hash {sloppy:?} is not valid base64")),
    );
    let urlsafe = STANDARD
        .encode([0xfb; 32])
        .replace('+', "-")
        .replace('/', "_");
    check(
        format!("o\n1\n{urlsafe}\n"),
        Err(&format!("root hash {urlsafe:?} is not valid base64")),
    );
    check(
        format!("o\n1\n{}\n", STANDARD.encode([0u8; 31])),
        Err("root hash is 31 bytes, not 32"),
    );
    check(
        format!("o\n1\n{}\n", STANDARD.encode([0u8; 33])),
        Err("root hash is 33 bytes, not 32"),
    );
    check(format!("o\n1\n{r}\n\n"), Err("extension line 1 is empty"));
    check(
        format!("o\n1\n{r}\na\n\nb\n"),
        Err("extension line 2 is empty"),
    );
    check(
        format!("o\r\n1\n{r}\n"),
        Err("contains a control character"),
    );
    // The sloppy root really is another spelling of the zero root, so refusing it matters.
    assert_eq!(
        base64::engine::general_purpose::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::general_purpose::PAD.with_decode_allow_trailing_bits(true),
        )
        .decode(&sloppy)
        .expect("lenient decode"),
        vec![0u8; 32]
    );
}

#[test]
fn open_checkpoint_rejects_non_checkpoint_notes() {
    let signer = log_signer();
    let note = signer.sign("just a note\n").expect("sign");
    assert_eq!(
        open_checkpoint(&note, &signer.verifier()),
        Err(NoteError::MalformedCheckpoint(
            "missing tree size line".into()
        ))
    );
}

/// Applies `edits` (position, replacement) to `s`, each replacing one character; `None` deletes.
fn mutate(s: &str, edits: &[(Index, Option<char>)]) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    for (at, replacement) in edits {
        if chars.is_empty() {
            break;
        }
        let i = at.index(chars.len());
        match replacement {
            Some(c) => chars[i] = *c,
            None => {
                chars.remove(i);
            }
        }
    }
    chars.into_iter().collect()
}

fn noteish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9+/=.\u{2014} \n]{0,200}",
        "(PRIVATE\\+KEY\\+)?[a-z.]{0,8}\\+[0-9a-fA-F]{0,9}\\+[A-Za-z0-9+/=]{0,50}",
        "[a-z]{1,5}\n[0-9]{0,3}\n[A-Za-z0-9+/=]{0,46}\n[a-z\n]{0,10}",
    ]
}

proptest! {
    #[test]
    fn hostile_strings_never_panic(s in noteish()) {
        let verifier = log_signer().verifier();
        let _ = Verifier::parse(&s);
        let _ = Signer::parse(&s);
        let _ = Checkpoint::parse(&s);
        let _ = open(&s, &verifier);
        let _ = open_checkpoint(&s, &verifier);
        let _ = log_signer().sign(&s);
    }

    #[test]
    fn mutated_notes_never_panic_nor_alter_the_text(
        edits in proptest::collection::vec(
            (any::<Index>(), proptest::option::of(prop_oneof![
                any::<char>(),
                Just('\n'),
                Just('\u{2014}'),
                Just(' '),
                Just('+'),
                Just('='),
            ])),
            1..4,
        ),
    ) {
        let signer = log_signer();
        let verifier = signer.verifier();
        let note = sign_checkpoint(&signer, &checkpoint()).expect("sign");
        let mutated = mutate(&note, &edits);
        if let Ok(text) = open(&mutated, &verifier) {
            prop_assert_eq!(text, checkpoint().to_text());
        }
        if let Ok(cp) = open_checkpoint(&mutated, &verifier) {
            prop_assert_eq!(cp, checkpoint());
        }
        let _ = Verifier::parse(&mutated);
        let _ = Signer::parse(&mutated);
    }

    #[test]
    fn mutated_keys_never_panic(
        edits in proptest::collection::vec((any::<Index>(), proptest::option::of(any::<char>())), 1..4),
    ) {
        let signer = log_signer();
        let private = mutate(&signer.to_private_key_text(), &edits);
        if let Ok(parsed) = Signer::parse(&private) {
            prop_assert_eq!(parsed.key_id(), expected_key_id(parsed.name(), &parsed.verifier().public_key()));
        }
        let public = mutate(&signer.verifier().to_string(), &edits);
        if let Ok(parsed) = Verifier::parse(&public) {
            prop_assert_eq!(parsed.key_id(), expected_key_id(parsed.name(), &parsed.public_key()));
        }
    }
}

//! The transparency-dev/merkle RFC 6962 proof vectors (shared/testdata/rfc6962-vectors): every
//! inclusion and consistency case verifies or is rejected as the vector says, and our proof
//! generation reproduces the happy-path proofs.

use std::fs;
use std::path::{Path, PathBuf};

use base64::{Engine, engine::general_purpose::STANDARD};
use custos_core::merkle::{
    EMPTY_ROOT, Hash, MemoryTree, consistency_proof, inclusion_proof, leaf_hash, root,
    verify_consistency, verify_inclusion,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The leaf inputs behind the vectors' trees (README).
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

fn vectors_dir() -> PathBuf {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/rfc6962-vectors");
    assert!(
        dir.is_dir(),
        "RFC 6962 test vectors missing at {} — they are required, not optional",
        dir.display()
    );
    dir
}

/// Every JSON file below `dir`, in sorted order, skipping `subtree*` directories.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !name.starts_with("subtree") {
                out.extend(json_files(&path));
            }
        } else if name.ends_with(".json") {
            out.push(path);
        }
    }
    out
}

fn tree() -> MemoryTree {
    let mut tree = MemoryTree::new();
    for index in 0..LEAVES.len() as u64 {
        tree.push(input_leaf(index));
    }
    tree
}

fn b64(s: &str) -> Vec<u8> {
    STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("vector base64 {s:?}: {e}"))
}

/// A leaf or proof hash: `None` if it is not 32 bytes, which our typed API cannot even express
/// (such a case counts as rejected).
fn strict_hash(s: &str) -> Option<Hash> {
    Hash::try_from(b64(s).as_slice()).ok()
}

/// A root as the vectors' verifier sees it: an opaque value compared for equality. Roots that
/// are not 32 bytes (e.g. "don't care") become a stand-in hash that is equal exactly when the
/// raw bytes are equal and matches no real root.
fn root_value(s: &str) -> Hash {
    let raw = b64(s);
    Hash::try_from(raw.as_slice()).unwrap_or_else(|_| {
        Sha256::digest([b"not a 32-byte root:".as_slice(), &raw].concat()).into()
    })
}

fn strict_proof(proof: &Option<Vec<String>>) -> Option<Vec<Hash>> {
    proof.iter().flatten().map(|s| strict_hash(s)).collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InclusionCase {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsistencyCase {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

/// How a case came out, and whether our verifier itself (not the typed decoding) decided it.
struct Outcome {
    accepted: bool,
    by_verifier: bool,
}

fn run_inclusion(c: &InclusionCase) -> Outcome {
    let (Some(leaf), Some(proof)) = (strict_hash(&c.leaf_hash), strict_proof(&c.proof)) else {
        return Outcome {
            accepted: false,
            by_verifier: false,
        };
    };
    let result = verify_inclusion(&leaf, c.leaf_idx, c.tree_size, &proof, &root_value(&c.root));
    Outcome {
        accepted: result.is_ok(),
        by_verifier: true,
    }
}

fn run_consistency(c: &ConsistencyCase) -> Outcome {
    let Some(proof) = strict_proof(&c.proof) else {
        return Outcome {
            accepted: false,
            by_verifier: false,
        };
    };
    let result = verify_consistency(
        c.size1,
        c.size2,
        &root_value(&c.root1),
        &root_value(&c.root2),
        &proof,
    );
    Outcome {
        accepted: result.is_ok(),
        by_verifier: true,
    }
}

/// Runs every case of one kind; returns (cases, cases decided by the verifier itself).
fn check_all<C: for<'de> Deserialize<'de>>(
    kind: &str,
    run: fn(&C) -> Outcome,
    want_err: fn(&C) -> bool,
    desc: fn(&C) -> &str,
) -> (usize, usize) {
    let files = json_files(&vectors_dir().join(kind));
    let mut by_verifier = 0;
    let mut failures = Vec::new();
    for path in &files {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let case: C =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = run(&case);
        if outcome.accepted == want_err(&case) {
            failures.push(format!(
                "{} ({}): want {}, got {}",
                path.display(),
                desc(&case),
                if want_err(&case) {
                    "rejected"
                } else {
                    "accepted"
                },
                if outcome.accepted {
                    "accepted"
                } else {
                    "rejected"
                },
            ));
        }
        if !outcome.by_verifier && !want_err(&case) {
            failures.push(format!(
                "{}: a positive case did not decode",
                path.display()
            ));
        }
        by_verifier += usize::from(outcome.by_verifier);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    (files.len(), by_verifier)
}

#[test]
fn inclusion_vectors() {
    let (seen, by_verifier) =
        check_all::<InclusionCase>("inclusion", run_inclusion, |c| c.want_err, |c| &c.desc);
    assert!(seen >= 98, "only {seen} inclusion vectors found");
    assert!(
        by_verifier >= 77,
        "only {by_verifier} inclusion vectors reached the verifier"
    );
}

#[test]
fn consistency_vectors() {
    let (seen, by_verifier) =
        check_all::<ConsistencyCase>("consistency", run_consistency, |c| c.want_err, |c| &c.desc);
    assert!(seen >= 98, "only {seen} consistency vectors found");
    assert!(
        by_verifier >= 90,
        "only {by_verifier} consistency vectors reached the verifier"
    );
}

#[test]
fn roots_from_readme() {
    let tree = tree();
    assert_eq!(
        hex::encode(MemoryTree::new().root()),
        hex::encode(EMPTY_ROOT)
    );
    assert_eq!(
        hex::encode(EMPTY_ROOT),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex::encode(tree.root()),
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    );
    assert_eq!(root(&tree, 8).expect("root"), tree.root());
}

/// The happy-path case of every numbered directory.
fn happy_paths<C: for<'de> Deserialize<'de>>(kind: &str) -> Vec<(PathBuf, C)> {
    let dir = vectors_dir().join(kind);
    let mut out = Vec::new();
    for n in 0..5 {
        let path = dir.join(n.to_string()).join("happy-path.json");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let case =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push((path, case));
    }
    out
}

#[test]
fn generated_inclusion_proofs_match_vectors() {
    let tree = tree();
    for (path, c) in happy_paths::<InclusionCase>("inclusion") {
        let leaf = input_leaf(c.leaf_idx);
        assert_eq!(
            Some(leaf),
            strict_hash(&c.leaf_hash),
            "{}: leaf",
            path.display()
        );
        let want_root = root_value(&c.root);
        assert_eq!(
            root(&tree, c.tree_size).expect("root"),
            want_root,
            "{}",
            path.display()
        );
        let got = inclusion_proof(&tree, c.leaf_idx, c.tree_size).expect("proof");
        assert_eq!(
            Some(got),
            strict_proof(&c.proof),
            "{}: proof",
            path.display()
        );
    }
}

#[test]
fn generated_consistency_proofs_match_vectors() {
    let tree = tree();
    for (path, c) in happy_paths::<ConsistencyCase>("consistency") {
        assert_eq!(
            root(&tree, c.size1).expect("root"),
            root_value(&c.root1),
            "{}",
            path.display()
        );
        assert_eq!(
            root(&tree, c.size2).expect("root"),
            root_value(&c.root2),
            "{}",
            path.display()
        );
        let got = consistency_proof(&tree, c.size1, c.size2).expect("proof");
        assert_eq!(
            Some(got),
            strict_proof(&c.proof),
            "{}: proof",
            path.display()
        );
    }
}

/// The leaf hash of README input `index`.
fn input_leaf(index: u64) -> Hash {
    let input = LEAVES[usize::try_from(index).expect("small index")];
    leaf_hash(&hex::decode(input).expect("README leaf hex"))
}

//! Properties of Merkle roots, proofs and the frontier over random trees of up to ~300 leaves,
//! checked against a naive recursive Merkle Tree Hash; plus the JSON and hex forms of proofs.

use std::cell::Cell;
use std::collections::BTreeMap;

use custos_core::merkle::{
    ConsistencyProof, EMPTY_ROOT, Frontier, Hash, InclusionProof, MemoryTree, ProofError,
    SubtreeReader, VerifyError, consistency_proof, hash_from_hex, hash_to_hex, inclusion_proof,
    leaf_hash, node_hash, root, verify_consistency, verify_inclusion,
};
use proptest::prelude::*;
use proptest::sample::Index;

const MAX_LEAVES: u64 = 300;

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

fn memory_tree(leaves: &[Hash]) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for leaf in leaves {
        tree.push(*leaf);
    }
    tree
}

/// RFC 9162 §2.1.1 MTH, straight from the definition.
fn naive_mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => EMPTY_ROOT,
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            node_hash(&naive_mth(&leaves[..k]), &naive_mth(&leaves[k..]))
        }
    }
}

fn flip(hash: &Hash, bit: usize) -> Hash {
    let mut out = *hash;
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

/// Counts the reads a proof costs.
struct CountingReader<'a> {
    tree: &'a MemoryTree,
    reads: Cell<u32>,
}

impl SubtreeReader for CountingReader<'_> {
    type Error = std::convert::Infallible;
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        self.reads.set(self.reads.get() + 1);
        self.tree.subtree(level, index)
    }
}

/// O(log n): a few reads per level of the tree.
fn read_budget(size: u64) -> u32 {
    3 * (64 - size.leading_zeros())
}

/// (tree of n leaves, a size <= n, an index < size)
fn tree_size_index() -> impl Strategy<Value = (u64, u64, u64)> {
    (1..=MAX_LEAVES)
        .prop_flat_map(|n| (Just(n), 1..=n))
        .prop_flat_map(|(n, size)| (Just(n), Just(size), 0..size))
}

/// (tree of n leaves, 0 < old <= new <= n)
fn tree_old_new() -> impl Strategy<Value = (u64, u64, u64)> {
    (1..=MAX_LEAVES)
        .prop_flat_map(|n| (Just(n), 1..=n))
        .prop_flat_map(|(n, new)| (Just(n), 1..=new, Just(new)))
}

proptest! {
    #[test]
    fn roots_match_naive_mth((n, size, _) in tree_size_index()) {
        let leaves = leaves(n);
        let tree = memory_tree(&leaves);
        let want = naive_mth(&leaves[..size as usize]);
        prop_assert_eq!(root(&tree, size).expect("root"), want);
        prop_assert_eq!(tree.root(), naive_mth(&leaves));
        let reader = CountingReader { tree: &tree, reads: Cell::new(0) };
        root(&reader, size).expect("root");
        prop_assert_eq!(reader.reads.get(), size.count_ones());
    }

    #[test]
    fn inclusion_proofs_verify_and_resist_tampering(
        (n, size, index) in tree_size_index(),
        other_index in any::<Index>(),
        other_size in any::<Index>(),
        element in any::<Index>(),
        bit in 0..256usize,
    ) {
        let leaves = leaves(n);
        let tree = memory_tree(&leaves);
        let leaf = leaves[index as usize];
        let reader = CountingReader { tree: &tree, reads: Cell::new(0) };
        let proof = inclusion_proof(&reader, index, size).expect("proof");
        prop_assert!(reader.reads.get() <= read_budget(size), "{} reads", reader.reads.get());
        let root = root(&tree, size).expect("root");
        prop_assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));

        prop_assert!(verify_inclusion(&flip(&leaf, bit), index, size, &proof, &root).is_err());
        prop_assert_eq!(
            verify_inclusion(&leaf, index, size, &proof, &flip(&root, bit)),
            Err(VerifyError::RootMismatch)
        );
        if !proof.is_empty() {
            let mut tampered = proof.clone();
            let i = element.index(proof.len());
            tampered[i] = flip(&tampered[i], bit);
            prop_assert_eq!(
                verify_inclusion(&leaf, index, size, &tampered, &root),
                Err(VerifyError::RootMismatch)
            );
            prop_assert_eq!(
                verify_inclusion(&leaf, index, size, &proof[1..], &root),
                Err(VerifyError::WrongProofLength { expected: proof.len(), got: proof.len() - 1 })
            );
        }
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert_eq!(
            verify_inclusion(&leaf, index, size, &longer, &root),
            Err(VerifyError::WrongProofLength { expected: proof.len(), got: proof.len() + 1 })
        );

        // Another index, even with that index's own leaf, fails.
        let wrong_index = other_index.index(size as usize) as u64;
        if wrong_index != index {
            let wrong_leaf = leaves[wrong_index as usize];
            prop_assert!(verify_inclusion(&leaf, wrong_index, size, &proof, &root).is_err());
            prop_assert!(verify_inclusion(&wrong_leaf, wrong_index, size, &proof, &root).is_err());
        }
        // Another size fails against that size's root. (Against the original root a different
        // size can describe the very same path — RFC 9162 binds the size through the root.)
        let wrong_size = other_size.index(n as usize) as u64 + 1;
        if wrong_size != size {
            let wrong_root = tree_root(&tree, wrong_size);
            prop_assert!(verify_inclusion(&leaf, index, wrong_size, &proof, &wrong_root).is_err());
        }
        prop_assert_eq!(
            verify_inclusion(&leaf, size, size, &proof, &root),
            Err(VerifyError::IndexOutOfRange { index: size, size })
        );
    }

    #[test]
    fn consistency_proofs_verify_and_resist_tampering(
        (n, old, new) in tree_old_new(),
        other_old in any::<Index>(),
        other_new in any::<Index>(),
        element in any::<Index>(),
        bit in 0..256usize,
    ) {
        let leaves = leaves(n);
        let tree = memory_tree(&leaves);
        let reader = CountingReader { tree: &tree, reads: Cell::new(0) };
        let proof = consistency_proof(&reader, old, new).expect("proof");
        prop_assert!(reader.reads.get() <= read_budget(new), "{} reads", reader.reads.get());
        let old_root = tree_root(&tree, old);
        let new_root = tree_root(&tree, new);
        prop_assert_eq!(verify_consistency(old, new, &old_root, &new_root, &proof), Ok(()));

        prop_assert!(verify_consistency(old, new, &flip(&old_root, bit), &new_root, &proof).is_err());
        prop_assert!(verify_consistency(old, new, &old_root, &flip(&new_root, bit), &proof).is_err());
        if proof.is_empty() {
            prop_assert_eq!(old, new);
        } else {
            let mut tampered = proof.clone();
            let i = element.index(proof.len());
            tampered[i] = flip(&tampered[i], bit);
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &tampered).is_err());
            prop_assert_eq!(
                verify_consistency(old, new, &old_root, &new_root, &proof[1..]),
                Err(VerifyError::WrongProofLength { expected: proof.len(), got: proof.len() - 1 })
            );
        }
        let mut longer = proof.clone();
        longer.push(new_root);
        prop_assert_eq!(
            verify_consistency(old, new, &old_root, &new_root, &longer),
            Err(VerifyError::WrongProofLength { expected: proof.len(), got: proof.len() + 1 })
        );

        // Other sizes fail, even with the true roots for those sizes.
        let wrong_old = other_old.index(new as usize) as u64 + 1;
        if wrong_old != old {
            let wrong_root = tree_root(&tree, wrong_old);
            prop_assert!(verify_consistency(wrong_old, new, &wrong_root, &new_root, &proof).is_err());
        }
        let wrong_new = other_new.index(n as usize) as u64 + 1;
        if wrong_new != new && wrong_new >= old {
            let wrong_root = tree_root(&tree, wrong_new);
            prop_assert!(verify_consistency(old, wrong_new, &old_root, &wrong_root, &proof).is_err());
        }
        prop_assert_eq!(
            verify_consistency(new + 1, new, &new_root, &new_root, &[]),
            Err(VerifyError::SizeOrder { old: new + 1, new })
        );
    }

    #[test]
    fn frontier_tracks_memory_tree(n in 0..=MAX_LEAVES) {
        let leaves = leaves(n);
        let tree = memory_tree(&leaves);
        let mut frontier = Frontier::new();
        let mut completed = BTreeMap::new();
        prop_assert_eq!(frontier.root(), EMPTY_ROOT);
        for (i, leaf) in leaves.iter().enumerate() {
            let mut levels = Vec::new();
            frontier.push(*leaf, |level, index, hash| {
                levels.push(level);
                let fresh = completed.insert((level, index), *hash).is_none();
                assert!(fresh, "subtree ({level}, {index}) completed twice");
            });
            let size = i as u64 + 1;
            // Each push reports the leaf, then one parent per level it closes.
            prop_assert_eq!(levels.clone(), (0..levels.len() as u8).collect::<Vec<_>>());
            prop_assert_eq!(levels.len() as u32, size.trailing_zeros() + 1);
            prop_assert_eq!(frontier.size(), size);
            prop_assert_eq!(frontier.root(), tree_root(&tree, size));
            prop_assert_eq!(&Frontier::from_reader(&tree, size).expect("rebuild"), &frontier);
        }
        prop_assert_eq!(frontier.root(), naive_mth(&leaves));
        // The callbacks produced exactly the tree's complete subtrees.
        let mut expected = BTreeMap::new();
        for level in 0..64u8 {
            for index in 0..(n >> level) {
                expected.insert((level, index), tree.subtree(level, index).expect("subtree"));
            }
        }
        prop_assert_eq!(completed, expected);
    }
}

fn tree_root(tree: &MemoryTree, size: u64) -> Hash {
    root(tree, size).expect("root")
}

#[test]
fn naive_mth_matches_the_definition_on_small_trees() {
    let l = leaves(5);
    let check = |n: usize, want: Hash| assert_eq!(naive_mth(&l[..n]), want, "size {n}");
    check(0, EMPTY_ROOT);
    check(1, l[0]);
    check(2, node_hash(&l[0], &l[1]));
    check(3, node_hash(&node_hash(&l[0], &l[1]), &l[2]));
    check(
        5,
        node_hash(
            &node_hash(&node_hash(&l[0], &l[1]), &node_hash(&l[2], &l[3])),
            &l[4],
        ),
    );
}

#[test]
fn proof_generation_refuses_impossible_requests() {
    let tree = memory_tree(&leaves(4));
    let check = |result: Result<Vec<Hash>, ProofError<std::convert::Infallible>>, want: &str| {
        match result {
            Err(e @ ProofError::OutOfRange { .. }) => assert_eq!(e.to_string(), want),
            other => panic!("want out of range ({want}), got {other:?}"),
        }
    };
    check(
        inclusion_proof(&tree, 4, 4),
        "leaf index 4 is out of range for tree size 4: need index < size",
    );
    check(
        inclusion_proof(&tree, 0, 0),
        "leaf index 0 is out of range for tree size 0: need index < size",
    );
    check(
        consistency_proof(&tree, 0, 4),
        "old size 0 is out of range for tree size 4: need 0 < old <= new",
    );
    check(
        consistency_proof(&tree, 4, 3),
        "old size 4 is out of range for tree size 3: need 0 < old <= new",
    );
    assert_eq!(
        consistency_proof(&tree, 4, 4).expect("same size"),
        Vec::<Hash>::new()
    );
    assert_eq!(root(&tree, 0).expect("empty root"), EMPTY_ROOT);
}

#[test]
fn equal_and_empty_sizes_in_consistency() {
    let a = leaf_hash(b"a");
    let b = leaf_hash(b"b");
    let check = |old, new, old_root: &Hash, new_root: &Hash, proof: &[Hash], want| {
        assert_eq!(
            verify_consistency(old, new, old_root, new_root, proof),
            want,
            "({old}, {new})"
        );
    };
    check(3, 3, &a, &a, &[], Ok(()));
    check(
        3,
        3,
        &a,
        &b,
        &[],
        Err(VerifyError::SameSizeDifferentRoots { size: 3 }),
    );
    check(
        3,
        3,
        &a,
        &a,
        &[a],
        Err(VerifyError::WrongProofLength {
            expected: 0,
            got: 1,
        }),
    );
    check(
        0,
        0,
        &EMPTY_ROOT,
        &EMPTY_ROOT,
        &[],
        Err(VerifyError::EmptyOldTree),
    );
    check(0, 5, &EMPTY_ROOT, &a, &[], Err(VerifyError::EmptyOldTree));
    check(
        1,
        2,
        &a,
        &b,
        &[],
        Err(VerifyError::WrongProofLength {
            expected: 1,
            got: 0,
        }),
    );
}

#[test]
fn proofs_serialize_as_spec_json() {
    let h = leaf_hash(b"x");
    let proof = InclusionProof {
        leaf_index: 3,
        tree_size: 7,
        hashes: vec![h, EMPTY_ROOT],
    };
    let json = serde_json::to_string(&proof).expect("serialize");
    assert_eq!(
        json,
        format!(
            r#"{{"leaf_index":3,"tree_size":7,"hashes":["{}","{}"]}}"#,
            hash_to_hex(&h),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
    );
    assert_eq!(
        serde_json::from_str::<InclusionProof>(&json).expect("parse"),
        proof
    );

    let proof = ConsistencyProof {
        first: 2,
        second: 9,
        hashes: vec![h],
    };
    let json = serde_json::to_string(&proof).expect("serialize");
    assert_eq!(
        json,
        format!(
            r#"{{"first":2,"second":9,"hashes":["{}"]}}"#,
            hash_to_hex(&h)
        )
    );
    assert_eq!(
        serde_json::from_str::<ConsistencyProof>(&json).expect("parse"),
        proof
    );

    let bad = r#"{"first":1,"second":2,"hashes":["00"]}"#;
    let err = serde_json::from_str::<ConsistencyProof>(bad).expect_err("short hash");
    assert!(err.to_string().contains("hashes[0]"), "{err}");
}

#[test]
fn proof_structs_verify() {
    let l = leaves(6);
    let tree = memory_tree(&l);
    let proof = InclusionProof {
        leaf_index: 4,
        tree_size: 6,
        hashes: inclusion_proof(&tree, 4, 6).expect("proof"),
    };
    assert_eq!(proof.verify(&l[4], &tree.root()), Ok(()));
    assert_eq!(
        proof.verify(&l[3], &tree.root()),
        Err(VerifyError::RootMismatch)
    );
    let proof = ConsistencyProof {
        first: 3,
        second: 6,
        hashes: consistency_proof(&tree, 3, 6).expect("proof"),
    };
    assert_eq!(proof.verify(&tree_root(&tree, 3), &tree.root()), Ok(()));
    assert_eq!(
        proof.verify(&tree_root(&tree, 2), &tree.root()),
        Err(VerifyError::OldRootMismatch)
    );
}

#[test]
fn hex_hashes() {
    let zero = "0".repeat(64);
    let check = |input: &str, want: Result<Hash, &str>| {
        assert_eq!(
            hash_from_hex(input),
            want.map_err(str::to_owned),
            "{input:?}"
        );
    };
    check(&zero, Ok([0; 32]));
    check(&"ab".repeat(32), Ok([0xab; 32]));
    check(
        "",
        Err("a hash is 64 lowercase hex digits, got 0 characters"),
    );
    check(
        &"0".repeat(63),
        Err("a hash is 64 lowercase hex digits, got 63 characters"),
    );
    check(
        &"0".repeat(66),
        Err("a hash is 64 lowercase hex digits, got 66 characters"),
    );
    check(
        &"AB".repeat(32),
        Err("invalid hex digit 'A' at position 0 (a hash is lowercase 0-9a-f)"),
    );
    check(
        &format!("{}g", "0".repeat(63)),
        Err("invalid hex digit 'g' at position 63 (a hash is lowercase 0-9a-f)"),
    );
    check(
        &format!("{}é", "0".repeat(62)),
        Err("invalid hex digit 'é' at position 62 (a hash is lowercase 0-9a-f)"),
    );
    let h = leaf_hash(b"round trip");
    assert_eq!(hash_from_hex(&hash_to_hex(&h)), Ok(h));
}

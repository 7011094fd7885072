//! RFC 9162 §2.1 Merkle trees: leaf and node hashing, the Merkle Tree Hash, inclusion and
//! consistency proofs (generation and verification), and the frontier of a growing tree.
//!
//! Proof generation never sees the whole tree: it reads hashes of complete, aligned subtrees
//! through [`SubtreeReader`], which a store implements over whatever it persists (e.g. C2SP
//! tlog tiles). Every ragged range on the right edge of a tree is decomposed into complete
//! subtrees, so a root or a proof costs O(log n) reads and never rebuilds anything.
//!
//! Verification follows the RFC 9162 §2.1.3.2 and §2.1.4.2 algorithms step by step, so any
//! Certificate-Transparency verifier agrees with ours on what a proof means.

use std::convert::Infallible;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// The Merkle Tree Hash of the empty tree: SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The hash of a leaf: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Reads hashes of complete, aligned subtrees: the subtree at `level` (height; 0 = a leaf hash)
/// and `index` covers leaves [index << level, (index + 1) << level). Stores implement it.
pub trait SubtreeReader {
    /// Why a read failed (I/O, a missing tile, …).
    type Error;

    /// The hash of the complete subtree at `level` and `index`.
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a root or a proof could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ProofError<E> {
    /// The requested leaf index or tree sizes do not describe a proof.
    #[error("{what} {value} is out of range for tree size {size}: {rule}")]
    OutOfRange {
        /// Which argument is wrong, e.g. "leaf index" or "old size".
        what: &'static str,
        /// The offending value.
        value: u64,
        /// The tree size it was checked against.
        size: u64,
        /// The rule it breaks, e.g. "need index < size".
        rule: &'static str,
    },
    /// The reader failed to produce a subtree hash.
    #[error("reading subtree hashes: {0}")]
    Read(E),
}

/// MTH of the first `size` leaves, using O(log n) subtree reads.
pub fn root<R: SubtreeReader>(r: &R, size: u64) -> Result<Hash, ProofError<R::Error>> {
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    range_hash(r, 0, size).map_err(ProofError::Read)
}

/// RFC 9162 §2.1.3.1 inclusion proof for leaf `index` in the tree of `size` leaves (O(log n)
/// reads: every ragged range is decomposed into complete subtrees).
pub fn inclusion_proof<R: SubtreeReader>(
    r: &R,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError<R::Error>> {
    if index >= size {
        return Err(ProofError::OutOfRange {
            what: "leaf index",
            value: index,
            size,
            rule: "need index < size",
        });
    }
    let mut proof = Vec::new();
    path(r, index, 0, size, &mut proof).map_err(ProofError::Read)?;
    Ok(proof)
}

/// RFC 9162 §2.1.4.1 consistency proof between sizes old <= new.
///
/// Equal sizes give an empty proof. An empty old tree is refused: RFC 9162 defines
/// consistency proofs only for 0 < old, and [`verify_consistency`] rejects old = 0.
pub fn consistency_proof<R: SubtreeReader>(
    r: &R,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProofError<R::Error>> {
    if old == 0 || old > new {
        return Err(ProofError::OutOfRange {
            what: "old size",
            value: old,
            size: new,
            rule: "need 0 < old <= new",
        });
    }
    let mut proof = Vec::new();
    subproof(r, old, 0, new, true, &mut proof).map_err(ProofError::Read)?;
    Ok(proof)
}

/// The largest power of two strictly below `n` (n >= 2): where RFC 9162 splits a tree.
fn split_point(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[start:end]) for a non-empty range of the RFC recursion: one read if its length is a
/// power of two, otherwise the RFC split into a complete left part and a recursively split rest.
///
/// Every range the recursion visits starts at a multiple of the smallest power of two not
/// below its length (true of [0, n), and kept by each split at a power of two), so a
/// power-of-two range is always one complete, aligned subtree.
fn range_hash<R: SubtreeReader>(r: &R, start: u64, end: u64) -> Result<Hash, R::Error> {
    let len = end - start;
    if len.is_power_of_two() {
        debug_assert!(start.is_multiple_of(len), "unaligned range {start}..{end}");
        let level = len.trailing_zeros();
        // A u64 has at most 64 bits, so the level always fits.
        return r.subtree(level as u8, start >> level);
    }
    let k = split_point(len);
    let left = range_hash(r, start, start + k)?;
    let right = range_hash(r, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// PATH(m, D[start:end]) of RFC 9162 §2.1.3.1, appended to `out` from the leaf upwards.
fn path<R: SubtreeReader>(
    r: &R,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), R::Error> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(r, m, start, start + k, out)?;
        out.push(range_hash(r, start + k, end)?);
    } else {
        path(r, m - k, start + k, end, out)?;
        out.push(range_hash(r, start, start + k)?);
    }
    Ok(())
}

/// SUBPROOF(m, D[start:end], complete) of RFC 9162 §2.1.4.1, appended to `out`.
fn subproof<R: SubtreeReader>(
    r: &R,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), R::Error> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(range_hash(r, start, end)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(r, m, start, start + k, complete, out)?;
        out.push(range_hash(r, start + k, end)?);
    } else {
        subproof(r, m - k, start + k, end, false, out)?;
        out.push(range_hash(r, start, start + k)?);
    }
    Ok(())
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The claimed leaf index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The old tree is larger than the new one.
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizeOrder {
        /// The claimed old size.
        old: u64,
        /// The claimed new size.
        new: u64,
    },
    /// Consistency with the empty tree proves nothing (RFC 9162 needs 0 < old).
    #[error("old tree size is 0: consistency with the empty tree proves nothing")]
    EmptyOldTree,
    /// The proof has the wrong number of hashes for the claimed index and sizes.
    #[error("proof has {got} hashes, expected {expected}")]
    WrongProofLength {
        /// The number the claimed index and sizes call for.
        expected: usize,
        /// The number supplied.
        got: usize,
    },
    /// The proof does not lead to the expected (new) root.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
    /// The consistency proof does not lead to the old root.
    #[error("consistency proof does not lead to the old root")]
    OldRootMismatch,
    /// Two roots for the same tree size differ: the log forked.
    #[error("trees of equal size {size} have different roots")]
    SameSizeDifferentRoots {
        /// The common tree size.
        size: u64,
    },
}

/// Verifies that `leaf` is the leaf hash at `index` in the tree of `size` leaves with root
/// `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    // 1. The index must be inside the tree.
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let wrong_length = || VerifyError::WrongProofLength {
        expected: inclusion_proof_len(index, size),
        got: proof.len(),
    };
    // 2.–3.
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut r = *leaf;
    // 4.
    for p in proof {
        if sn == 0 {
            return Err(wrong_length());
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5.
    if sn != 0 {
        return Err(wrong_length());
    }
    if r != *root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `new` leaves with root `new_root` extends the tree of `old`
/// leaves with root `old_root` (RFC 9162 §2.1.4.2).
///
/// Equal sizes need an empty proof and equal roots. An old size of 0 is always rejected:
/// RFC 9162 defines consistency only for 0 < old, and the empty tree is a prefix of every tree.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if old > new {
        return Err(VerifyError::SizeOrder { old, new });
    }
    if old == 0 {
        return Err(VerifyError::EmptyOldTree);
    }
    if old == new {
        if !proof.is_empty() {
            return Err(VerifyError::WrongProofLength {
                expected: 0,
                got: proof.len(),
            });
        }
        if old_root != new_root {
            return Err(VerifyError::SameSizeDifferentRoots { size: old });
        }
        return Ok(());
    }
    let wrong_length = || VerifyError::WrongProofLength {
        expected: consistency_proof_len(old, new),
        got: proof.len(),
    };
    // 1.
    let Some((first, rest)) = proof.split_first() else {
        return Err(wrong_length());
    };
    // 2. A power-of-two old tree is itself a node of the new tree: its root is the seed.
    let (seed, rest) = if old.is_power_of_two() {
        (old_root, proof)
    } else {
        (first, rest)
    };
    // 3.–4.
    let mut fn_ = old - 1;
    let mut sn = new - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5.
    let mut fr = *seed;
    let mut sr = *seed;
    // 6.
    for c in rest {
        if sn == 0 {
            return Err(wrong_length());
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // 7.
    if sn != 0 {
        return Err(wrong_length());
    }
    if fr != *old_root {
        return Err(VerifyError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// The length of the inclusion proof for `index` < `size`: one hash per level below the
/// point where the paths to `index` and to the last leaf part, plus one per left sibling above.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = (index.checked_shr(inner).unwrap_or(0)).count_ones();
    (inner + border) as usize
}

/// The length of the consistency proof for 0 < `old` < `new`: the inclusion proof of the old
/// tree's last complete node, plus that node itself unless it is the whole old tree.
fn consistency_proof_len(old: u64, new: u64) -> usize {
    let level = old.trailing_zeros();
    let seed = usize::from(!old.is_power_of_two());
    seed + inclusion_proof_len((old - 1) >> level, ((new - 1) >> level) + 1)
}

/// The right edge of a growing tree: the hashes of the complete subtrees that make up the
/// first `size` leaves (one per set bit of size), O(log n) memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Subtree hashes from the largest (leftmost) to the smallest (rightmost).
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash; calls `completed(level, index, hash)` for every complete subtree
    /// this closes, starting with the leaf itself at level 0 (so a store can append it to its
    /// level file).
    ///
    /// # Panics
    /// If the tree already holds `u64::MAX` leaves.
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(u8, u64, &Hash)) {
        let mut level = 0u8;
        let mut index = self.size;
        let mut hash = leaf;
        completed(level, index, &hash);
        // A right child completes its parent; the left sibling is the frontier's last entry.
        while index & 1 == 1 {
            let left = self
                .hashes
                .pop()
                .expect("frontier holds one hash per set bit of its size");
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            completed(level, index, &hash);
        }
        self.hashes.push(hash);
        self.size = self.size.checked_add(1).expect("tree size overflows u64");
    }

    /// The Merkle Tree Hash of the leaves appended so far.
    pub fn root(&self) -> Hash {
        let mut from_right = self.hashes.iter().rev();
        let Some(last) = from_right.next() else {
            return EMPTY_ROOT;
        };
        from_right.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// Rebuilds the frontier for `size` from a reader (reads the subtree of each set bit).
    pub fn from_reader<R: SubtreeReader>(r: &R, size: u64) -> Result<Self, ProofError<R::Error>> {
        let mut hashes = Vec::with_capacity(size.count_ones() as usize);
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            let width = 1u64 << level;
            if size & width != 0 {
                hashes.push(r.subtree(level, start >> level).map_err(ProofError::Read)?);
                start += width;
            }
        }
        Ok(Self { size, hashes })
    }
}

/// All complete subtrees of a list of leaves, kept in memory: a reference implementation and
/// test helper.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    /// `levels[l][i]` is the complete subtree at level `l`, index `i`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash and every subtree it completes.
    pub fn push(&mut self, leaf: Hash) {
        let mut level = 0;
        let mut hash = leaf;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            if row.len() % 2 == 1 {
                return;
            }
            hash = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
        }
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// The Merkle Tree Hash of all leaves.
    pub fn root(&self) -> Hash {
        match self.size() {
            0 => EMPTY_ROOT,
            size => range_hash(self, 0, size).unwrap_or_else(|never| match never {}),
        }
    }
}

impl SubtreeReader for MemoryTree {
    type Error = Infallible;

    /// # Panics
    /// If the subtree is not complete in this tree: asking for it is a caller bug.
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, Infallible> {
        let hash = self
            .levels
            .get(usize::from(level))
            .and_then(|row| row.get(usize::try_from(index).ok()?));
        match hash {
            Some(hash) => Ok(*hash),
            None => panic!(
                "MemoryTree of size {} has no complete subtree at level {level}, index {index}",
                self.size()
            ),
        }
    }
}

/// Formats a hash as 64 lowercase hex digits.
pub fn hash_to_hex(h: &Hash) -> String {
    hex::encode(h)
}

/// Parses a hash from exactly 64 lowercase hex digits; the error names the problem.
pub fn hash_from_hex(s: &str) -> Result<Hash, String> {
    if s.len() != 64 {
        return Err(format!(
            "a hash is 64 lowercase hex digits, got {} characters",
            s.chars().count()
        ));
    }
    if let Some((i, c)) = s
        .char_indices()
        .find(|&(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
    {
        return Err(format!(
            "invalid hex digit {c:?} at position {i} (a hash is lowercase 0-9a-f)"
        ));
    }
    let mut hash = [0u8; 32];
    hex::decode_to_slice(s, &mut hash).map_err(|e| e.to_string())?;
    Ok(hash)
}

/// Serde helper: a list of hashes as lowercase hex strings.
mod hex_hashes {
    use super::{Hash, hash_from_hex, hash_to_hex};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(hashes: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(hashes.iter().map(hash_to_hex))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .enumerate()
            .map(|(i, s)| {
                hash_from_hex(s).map_err(|e| D::Error::custom(format!("hashes[{i}]: {e}")))
            })
            .collect()
    }
}

/// JSON form of an inclusion proof (SPEC §3.3).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The 0-based index of the proven leaf.
    pub leaf_index: u64,
    /// The size of the tree the proof is for.
    pub tree_size: u64,
    /// The RFC 9162 inclusion path, from the leaf upwards.
    #[serde(with = "hex_hashes")]
    pub hashes: Vec<Hash>,
}

impl InclusionProof {
    /// Verifies this proof for `leaf` against the tree root `root`.
    pub fn verify(&self, leaf: &Hash, root: &Hash) -> Result<(), VerifyError> {
        verify_inclusion(leaf, self.leaf_index, self.tree_size, &self.hashes, root)
    }
}

/// JSON form of a consistency proof (SPEC §3.3).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The old tree size.
    pub first: u64,
    /// The new tree size.
    pub second: u64,
    /// The RFC 9162 consistency path.
    #[serde(with = "hex_hashes")]
    pub hashes: Vec<Hash>,
}

impl ConsistencyProof {
    /// Verifies this proof between the roots of the old and the new tree.
    pub fn verify(&self, first_root: &Hash, second_root: &Hash) -> Result<(), VerifyError> {
        verify_consistency(
            self.first,
            self.second,
            first_root,
            second_root,
            &self.hashes,
        )
    }
}

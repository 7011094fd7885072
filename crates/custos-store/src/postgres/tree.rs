//! Roots and proofs over the subtree hashes stored in `ledger_entries`.
//!
//! The node at (level L, index i) is stored in the row of the leaf that completed it,
//! seq = ((i + 1) << L) - 1, at byte (L - 1) * 32 of `nodes`; level 0 is `leaf_hash`. A proof
//! runs the custos-core algorithm twice: once recording which O(log n) nodes it reads, then,
//! after ONE query fetched those rows, for real.

use std::cell::RefCell;
use std::collections::HashMap;

use custos_core::merkle::{Hash, SubtreeReader};

use crate::{Result, StoreError};

/// Records the subtrees an algorithm asks for, answering with zeros.
#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) wanted: RefCell<Vec<(u8, u64)>>,
}

impl SubtreeReader for Recorder {
    type Error = StoreError;

    fn subtree(&self, level: u8, index: u64) -> Result<Hash> {
        self.wanted.borrow_mut().push((level, index));
        Ok([0; 32])
    }
}

/// Answers from fetched hashes.
pub(crate) struct Fetched {
    pub(crate) hashes: HashMap<(u8, u64), Hash>,
}

impl SubtreeReader for Fetched {
    type Error = StoreError;

    fn subtree(&self, level: u8, index: u64) -> Result<Hash> {
        self.hashes
            .get(&(level, index))
            .copied()
            .ok_or_else(|| StoreError::Corrupt {
                seq: node_seq(level, index).unwrap_or(u64::MAX),
                problem: format!("tree node at level {level}, index {index} is not stored"),
            })
    }
}

/// The seq of the leaf whose row holds node (level, index).
pub(crate) fn node_seq(level: u8, index: u64) -> Option<u64> {
    index
        .checked_add(1)?
        .checked_mul(1u64.checked_shl(u32::from(level))?)?
        .checked_sub(1)
}

/// Picks node (level, index) out of a row's `leaf_hash` and `nodes`.
pub(crate) fn node_from_row(
    level: u8,
    seq: u64,
    leaf_hash: &[u8],
    nodes: Option<&[u8]>,
) -> Result<Hash> {
    let bytes = if level == 0 {
        Some(leaf_hash)
    } else {
        let at = (usize::from(level) - 1) * 32;
        nodes.and_then(|n| n.get(at..at + 32))
    };
    bytes
        .and_then(|b| <Hash>::try_from(b).ok())
        .ok_or_else(|| StoreError::Corrupt {
            seq,
            problem: format!("the row of seq {seq} holds no tree node at level {level}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_rows() {
        assert_eq!(node_seq(0, 5), Some(5));
        assert_eq!(node_seq(1, 0), Some(1));
        assert_eq!(node_seq(1, 2), Some(5));
        assert_eq!(node_seq(3, 1), Some(15));
        assert_eq!(node_seq(63, 0), Some(u64::MAX >> 1));
        assert_eq!(node_seq(63, 1), None);
        assert_eq!(node_seq(64, 0), None);
    }
}

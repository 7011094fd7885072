//! custos-core: the pure heart of custos — what an external verifier would embed.
//!
//! No I/O, no async, no clock, no randomness: every function here is deterministic, and the
//! caller supplies times, ids and key seeds. It holds
//! - [`entry`]: the ledger entry (SPEC §3.1), its validation limits, secret redaction and the
//!   canonical bytes that are hashed;
//! - [`jcs`]: RFC 8785 JSON canonicalisation, and [`canonical`]: a fast check that bytes are
//!   exactly a canonical entry (for verification);
//! - [`merkle`]: RFC 9162 hashing, tree hash, inclusion and consistency proofs, the frontier of a
//!   growing tree;
//! - [`note`]: C2SP signed notes with Ed25519 and tlog-checkpoint bodies;
//! - [`time`]: RFC 3339 parsing and the nanosecond UTC form custos assigns.
#![deny(missing_docs)]

pub mod canonical;
pub mod entry;
pub mod jcs;
pub mod merkle;
pub mod note;
pub mod time;

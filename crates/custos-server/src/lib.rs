//! custos-server: the only crate that knows HTTP, wire shapes and authentication.
//!
//! So far it holds authentication: API keys bound to a tenant and roles, kept as ledger
//! entries and checked in constant time ([`keys`]). The HTTP API (issue 3) builds on it.
#![deny(missing_docs)]

pub mod keys;

//! custos-ledger

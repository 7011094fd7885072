//! custos-store

//! custos-core: the pure heart of custos.

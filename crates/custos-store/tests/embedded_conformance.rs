//! The backend-neutral conformance suite, run against the embedded store.

use custos_store::embedded::{EmbeddedConfig, EmbeddedStore};

async fn fresh() -> (EmbeddedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), EmbeddedConfig::default()).expect("open");
    (store, dir)
}

custos_store::conformance_tests!(fresh());

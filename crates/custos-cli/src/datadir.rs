//! The data directory: the store, the log key (0600) and the ledger settings.
//!
//! ```text
//! <data>/ledger.json      {"origin": "..."}
//! <data>/keys/log.key     the Ed25519 signing key, C2SP note private-key text, mode 0600
//! <data>/log.pub          the verifier key text (public)
//! <data>/log/ tree/ …     the embedded store
//! ```

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use custos_core::entry::Limits;
use custos_core::note::Signer;
use custos_ledger::{Ledger, LedgerConfig};
use custos_store::embedded::{EmbeddedConfig, EmbeddedStore};
use custos_store::system_clock;
use serde::{Deserialize, Serialize};

/// Settings kept in `ledger.json`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Settings {
    /// Checkpoint origin.
    pub origin: String,
}

fn settings_path(dir: &Path) -> PathBuf {
    dir.join("ledger.json")
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("keys").join("log.key")
}

/// Creates the data directory and key. Fails if a key exists already (never overwrites).
pub fn init(dir: &Path, origin: Option<String>) -> anyhow::Result<(Settings, Signer)> {
    if key_path(dir).exists() {
        bail!(
            "{} is already initialised (found {}); refusing to replace the log key",
            dir.display(),
            key_path(dir).display()
        );
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let origin = match origin {
        Some(o) => o,
        None => format!(
            "custos.local/log-{}",
            hex::encode(rand::random::<[u8; 8]>())
        ),
    };
    // The key name is the origin, as tlog-checkpoint expects of the log's own signature.
    let seed: [u8; 32] = rand::random();
    let signer = Signer::from_seed(&origin, seed)
        .map_err(|e| anyhow!("origin `{origin}` cannot name a key: {e}"))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.join("keys"))
        .context("creating keys/")?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(key_path(dir))
        .with_context(|| format!("creating {}", key_path(dir).display()))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .context("setting key file mode 0600")?;
    f.write_all(signer.to_private_key_text().as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .context("writing the log key")?;
    fs::write(dir.join("log.pub"), format!("{}\n", signer.verifier()))
        .context("writing log.pub")?;
    let settings = Settings { origin };
    fs::write(
        settings_path(dir),
        serde_json::to_vec_pretty(&settings).context("encoding settings")?,
    )
    .context("writing ledger.json")?;
    Ok((settings, signer))
}

/// Reads settings and key of an initialised directory.
pub fn load(dir: &Path) -> anyhow::Result<(Settings, Signer)> {
    let raw = fs::read(settings_path(dir)).with_context(|| {
        format!(
            "{} is not a custos data directory (run `custos init --data {}` first)",
            dir.display(),
            dir.display()
        )
    })?;
    let settings: Settings = serde_json::from_slice(&raw).context("parsing ledger.json")?;
    let key = fs::read_to_string(key_path(dir))
        .with_context(|| format!("reading {}", key_path(dir).display()))?;
    let signer =
        Signer::parse(key.trim()).map_err(|e| anyhow!("the log key is unreadable: {e}"))?;
    Ok((settings, signer))
}

/// The ledger over the embedded store in `dir`, read-write.
pub type EmbeddedLedger = Ledger<EmbeddedStore>;

/// Opens the ledger of an initialised directory.
pub async fn open(dir: &Path) -> anyhow::Result<Arc<EmbeddedLedger>> {
    let (settings, signer) = load(dir)?;
    let store = EmbeddedStore::open(dir, EmbeddedConfig::default())
        .with_context(|| format!("opening the store in {}", dir.display()))?;
    let config = LedgerConfig {
        origin: settings.origin,
        limits: Limits::default(),
        checkpoint_interval: Duration::from_secs(1),
    };
    let ledger = Ledger::open(Arc::new(store), signer, config, system_clock()).await?;
    Ok(Arc::new(ledger))
}

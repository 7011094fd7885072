//! The data directory: the store, the log key (0600) and the ledger settings.
//!
//! ```text
//! <data>/ledger.json      {"origin": "..."}
//! <data>/keys/log.key     the Ed25519 signing key, C2SP note private-key text, mode 0600
//! <data>/keys/request.key the server secret request-signing secrets derive from, mode 0600
//! <data>/nonces.log       nonces of signed requests still inside their time window
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

fn request_key_path(dir: &Path) -> PathBuf {
    dir.join("keys").join("request.key")
}

/// Where the server keeps nonces of signed requests.
pub fn nonce_path(dir: &Path) -> PathBuf {
    dir.join("nonces.log")
}

/// Writes `text` to a new file of mode 0600 and syncs it; never replaces a file.
fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting {} to mode 0600", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// The server secret that request-signing secrets are derived from: created (0600) on first
/// use, so data directories made before it existed gain one.
pub fn request_signing(dir: &Path) -> anyhow::Result<custos_server::signing::SigningKeys> {
    let path = request_key_path(dir);
    if !path.exists() {
        write_secret(&path, &hex::encode(rand::random::<[u8; 32]>()))?;
    }
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut master = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut master)
        .map_err(|e| anyhow!("{} is not 64 hex digits: {e}", path.display()))?;
    Ok(custos_server::signing::SigningKeys::new(master))
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
    write_secret(&key_path(dir), &signer.to_private_key_text())?;
    request_signing(dir)?;
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

/// What `serve` may tune of the store and ledger.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Seconds between checkpoints while entries arrive.
    pub checkpoint_interval: Duration,
    /// Append queue capacity.
    pub max_queued_entries: usize,
    /// Largest canonical entry.
    pub max_entry_bytes: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            checkpoint_interval: Duration::from_secs(1),
            max_queued_entries: EmbeddedConfig::default().max_queued_entries,
            max_entry_bytes: Limits::default().max_entry_bytes,
        }
    }
}

/// Opens the ledger of an initialised directory.
pub async fn open(dir: &Path) -> anyhow::Result<Arc<EmbeddedLedger>> {
    open_with(dir, &Tuning::default()).await
}

/// The ledger over `store`, as the directory's settings and `tuning` say.
async fn ledger_over<S: custos_store::Store>(
    store: S,
    settings: Settings,
    signer: Signer,
    tuning: &Tuning,
) -> anyhow::Result<Arc<Ledger<S>>> {
    let config = LedgerConfig {
        origin: settings.origin,
        limits: Limits {
            max_entry_bytes: tuning.max_entry_bytes,
            ..Limits::default()
        },
        checkpoint_interval: tuning.checkpoint_interval,
    };
    let ledger = Ledger::open(Arc::new(store), signer, config, system_clock()).await?;
    Ok(Arc::new(ledger))
}

/// Opens the ledger of an initialised directory, tuned.
pub async fn open_with(dir: &Path, tuning: &Tuning) -> anyhow::Result<Arc<EmbeddedLedger>> {
    let (settings, signer) = load(dir)?;
    let store = EmbeddedStore::open(
        dir,
        EmbeddedConfig {
            max_queued_entries: tuning.max_queued_entries,
            ..EmbeddedConfig::default()
        },
    )
    .with_context(|| format!("opening the store in {}", dir.display()))?;
    ledger_over(store, settings, signer, tuning).await
}

/// The ledger over PostgreSQL at `url`, signed with the key of the (initialised) directory
/// `dir`. Several nodes share one database: give each the same `keys/` and `ledger.json`.
pub async fn open_postgres(
    dir: &Path,
    pg: &crate::config::Postgres,
    tuning: &Tuning,
) -> anyhow::Result<Arc<Ledger<custos_store::postgres::PostgresStore>>> {
    let (settings, signer) = load(dir)?;
    let store = custos_store::postgres::PostgresStore::open(
        &pg.url,
        custos_store::postgres::PostgresConfig {
            max_queued_entries: tuning.max_queued_entries,
            max_connections: pg.max_connections,
            migrate: pg.migrate,
            ..Default::default()
        },
    )
    .await
    .context("opening the PostgreSQL store")?;
    ledger_over(store, settings, signer, tuning).await
}

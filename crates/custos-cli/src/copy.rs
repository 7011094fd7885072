//! `custos copy`: moves a ledger into a PostgreSQL store and verifies it on arrival.
//!
//! Entries travel as the canonical bytes the source sealed — nothing is re-sealed, so every
//! seq, id, ts, leaf hash, proof and signed checkpoint stays valid. The destination checks
//! each record as it arrives (next seq, canonical form, `prev_hash` chain, ts order), then
//! each source checkpoint's signature against the root it recomputed itself, then the whole
//! ledger is verified from the destination as `custos verify` would. A copy that stopped
//! half-way is resumed by running it again: what the destination already holds must be the
//! same ledger (same root at its size), and only the rest is copied.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use custos_core::note;
use custos_store::postgres::{PostgresConfig, PostgresStore};
use custos_store::{Store, StoredCheckpoint};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::commands::{bad, integrity, verify_with};
use crate::config::{Config, StoreKind};
use crate::datadir;

/// Entries per destination transaction.
const CHUNK: u64 = 10_000;

/// What a copy did.
#[derive(Serialize)]
struct CopyReport {
    entries: u64,
    copied_entries: u64,
    checkpoints: u64,
    copied_checkpoints: u64,
    seconds: f64,
}

/// The endpoints of a copy.
pub struct Endpoints {
    /// Source kind.
    pub from: StoreKind,
    /// Destination kind.
    pub to: StoreKind,
    /// Source database (with `from = postgres`); default the configuration's.
    pub from_url: Option<String>,
    /// Destination database; default the configuration's.
    pub to_url: Option<String>,
}

/// Runs `custos copy`.
pub async fn run(
    dir: &Path,
    config: &Config,
    ends: Endpoints,
    json_out: bool,
) -> anyhow::Result<()> {
    if ends.to != StoreKind::Postgres {
        bail!(bad(
            "--to must be postgres: the embedded store seals its own entries and takes no \
             others (to move an embedded ledger, stop custos and copy its data directory)"
        ));
    }
    let configured = config.postgres.as_ref().map(|p| p.url.clone());
    let to_url = ends.to_url.or(configured.clone()).ok_or_else(|| {
        bad("--to postgres needs --to-url, [postgres] url in the config, or CUSTOS_POSTGRES_URL")
    })?;
    let from_url = match ends.from {
        StoreKind::Embedded => None,
        StoreKind::Postgres => {
            let url = ends
                .from_url
                .or(configured)
                .ok_or_else(|| bad("--from postgres needs --from-url or [postgres] url"))?;
            if url == to_url {
                bail!(bad("--from-url and --to-url name the same database"));
            }
            Some(url)
        }
    };
    // The key and origin the checkpoints and the copy must verify under.
    let (settings, signer) = datadir::load(dir)?;
    let log = Log {
        verifier: signer.verifier(),
        origin: settings.origin,
    };
    let dest = PostgresStore::open(
        &to_url,
        PostgresConfig {
            migrate: config.postgres.as_ref().is_none_or(|p| p.migrate),
            ..Default::default()
        },
    )
    .await
    .context("opening the destination PostgreSQL store")?;
    let result = match from_url {
        None => match custos_store::embedded::EmbeddedStore::open_read_only(dir) {
            Ok(source) => copy_from(&source, &dest, &log, json_out).await,
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("opening the store in {} read-only", dir.display()))),
        },
        Some(from_url) => {
            let source = PostgresStore::open(
                &from_url,
                PostgresConfig {
                    migrate: false,
                    ..Default::default()
                },
            )
            .await;
            match source {
                Ok(source) => {
                    let r = copy_from(&source, &dest, &log, json_out).await;
                    source.close().await.context("closing the source")?;
                    r
                }
                Err(e) => Err(anyhow::Error::new(e).context("opening the source PostgreSQL store")),
            }
        }
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            dest.close().await.context("closing the destination")?;
            return Err(e);
        }
    };
    // Verify on arrival, from what the destination stored, as `custos verify` does.
    let (dest, verified) = tokio::task::spawn_blocking(move || {
        let r = verify_with(&dest, &log.verifier, &log.origin, json_out);
        (dest, r)
    })
    .await
    .context("the verification thread")?;
    dest.close().await.context("closing the destination")?;
    verified.context("verifying the copy in the destination")?;
    if json_out {
        crate::commands::print_json(&report)?;
    } else {
        println!(
            "copied {} entries ({} were there already) and {} checkpoints ({} were there already) in {:.1} s",
            report.copied_entries,
            report.entries - report.copied_entries,
            report.copied_checkpoints,
            report.checkpoints - report.copied_checkpoints,
            report.seconds
        );
    }
    Ok(())
}

/// The log a copy must verify under: the data directory's key and origin.
struct Log {
    verifier: note::Verifier,
    origin: String,
}

async fn copy_from<S: Store>(
    source: &S,
    dest: &PostgresStore,
    log: &Log,
    json_out: bool,
) -> anyhow::Result<CopyReport> {
    let started = Instant::now();
    let size = source.size().context("reading the source's size")?;
    if source.tree_trusted_size().context("reading the source")? < size {
        bail!(
            "the source was not shut down cleanly: open it once read-write (`custos verify` \
             names any damage; `custos serve` recovers it) before copying"
        );
    }
    let have = dest.size().context("reading the destination's size")?;
    if have > size {
        bail!(integrity(format!(
            "the destination holds {have} entries, more than the source's {size}: it is \
             another ledger, or a later one"
        )));
    }
    if have > 0 && dest.root(have)? != source.root(have)? {
        bail!(integrity(format!(
            "the destination's first {have} entries are not the source's (their roots \
             differ): it holds another ledger; copy into an empty database"
        )));
    }
    let bar = if json_out {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(size);
        b.set_style(
            ProgressStyle::with_template("{spinner} copying {pos}/{len} entries {per_sec} {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_position(have);
        b
    };
    let mut at = have;
    while at < size {
        let to = (at + CHUNK).min(size);
        let records = source
            .read_range(at, to)
            .with_context(|| format!("reading source entries {at}..{to}"))?;
        if records.len() as u64 != to - at {
            bail!(integrity(format!(
                "the source returned {} entries for {at}..{to}",
                records.len()
            )));
        }
        at = dest.import(records).await.map_err(|e| match e {
            custos_store::StoreError::Corrupt { .. } => {
                integrity(format!("the source's entries do not form one log: {e}"))
            }
            other => anyhow!(other).context("storing entries in the destination"),
        })?;
        bar.set_position(at);
    }
    bar.finish_and_clear();

    // Checkpoints, each checked against the root the destination computed itself.
    let mut checkpoints = 0u64;
    let mut copied_checkpoints = 0u64;
    loop {
        let page = source.checkpoints(checkpoints, 1000)?;
        if page.is_empty() {
            break;
        }
        for cp in page {
            checkpoints += 1;
            if copy_checkpoint(&cp, dest, &log.verifier, &log.origin)? {
                copied_checkpoints += 1;
            }
        }
    }
    Ok(CopyReport {
        entries: size,
        copied_entries: size - have,
        checkpoints,
        copied_checkpoints,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Adds one source checkpoint to the destination after checking its signature, origin and
/// root there; `false` when the destination has it already.
fn copy_checkpoint(
    cp: &StoredCheckpoint,
    dest: &PostgresStore,
    verifier: &note::Verifier,
    origin: &str,
) -> anyhow::Result<bool> {
    let forged = |why: String| {
        integrity(format!(
            "the source's checkpoint for size {}: {why}",
            cp.size
        ))
    };
    let signed = note::open_checkpoint(&cp.note, verifier)
        .map_err(|e| forged(format!("signature does not verify: {e}")))?;
    if signed.size != cp.size || signed.origin != origin {
        return Err(forged(format!(
            "it signs size {} of `{}`",
            signed.size, signed.origin
        )));
    }
    if dest.root(cp.size)? != signed.root {
        return Err(forged(
            "the entries copied do not have the root it signs".into(),
        ));
    }
    if dest
        .checkpoint_for_size(cp.size)?
        .is_some_and(|there| there.note == cp.note)
    {
        return Ok(false);
    }
    let latest = dest.add_checkpoint(cp)?;
    if latest != *cp {
        return Err(integrity(format!(
            "the destination already has a checkpoint for size {} (the source's next is for \
             size {}): something else wrote to it",
            latest.size, cp.size
        )));
    }
    Ok(true)
}

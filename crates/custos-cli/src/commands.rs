//! What each subcommand does. Human output by default, `--json` for machines.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, anyhow};
use custos_core::entry::{Entry, EntryBody, Outcome, Severity};
use custos_core::merkle::{self, InclusionProof};
use custos_core::note::{self, Verifier};
use custos_core::time::parse_rfc3339;
use custos_ledger::export::{self, Format, Range};
use custos_ledger::{mirror, verify};
use custos_store::embedded::EmbeddedStore;
use custos_store::{EntryQuery, Store};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::{Cli, Command, Failure, KeysCommand, MirrorCommand, QueryArgs, RangeArgs, datadir};

/// Input that was wrong (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Data that is not intact (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Integrity(pub String);

pub(crate) fn bad(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(msg.into()))
}

fn time_arg(name: &str, v: &Option<String>) -> anyhow::Result<Option<i128>> {
    v.as_deref()
        .map(|s| parse_rfc3339(s).map_err(|e| bad(format!("--{name}: {e}"))))
        .transpose()
}

fn range_of(a: RangeArgs) -> anyhow::Result<Range> {
    Ok(Range {
        tenant: a.tenant,
        start: time_arg("start", &a.start)?,
        end: time_arg("end", &a.end)?,
    })
}

pub(crate) fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v).context("writing output")?;
    writeln!(out).context("writing output")?;
    Ok(())
}

/// Runs one command.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let config = crate::config::Config::load(cli.config.as_deref(), |k| std::env::var(k).ok())
        .map_err(|e| bad(format!("{e:#}")))?;
    let dir = cli.data.clone().unwrap_or_else(|| config.data_dir.clone());
    let json_out = cli.json;
    match cli.command {
        Command::Init { origin } => {
            let (settings, signer) = datadir::init(&dir, origin)?;
            // Create the store too, so the directory is complete.
            drop(datadir::open(&dir).await?);
            if json_out {
                print_json(&json!({
                    "data": dir, "origin": settings.origin,
                    "verifier_key": signer.verifier().to_string(),
                }))?;
            } else {
                println!("initialised {}", dir.display());
                println!("origin:       {}", settings.origin);
                println!("verifier key: {}", signer.verifier());
                println!(
                    "(also in {}; the signing key is keys/log.key, mode 0600)",
                    dir.join("log.pub").display()
                );
            }
        }
        Command::Append { entries, batch } => {
            append(&dir, entries, batch as usize, json_out).await?
        }
        Command::Get { key } => {
            let ledger = datadir::open(&dir).await?;
            let entry = ledger.get_by_key(&key)?;
            print_json(&entry)?;
            close(&ledger).await?;
        }
        Command::Query(args) => query(&dir, args, json_out).await?,
        Command::Export {
            format,
            range,
            output,
        } => {
            let format: Format = format.parse().map_err(bad)?;
            let range = range_of(range)?;
            let ledger = datadir::open(&dir).await?;
            let origin = ledger.config().origin.clone();
            let count = match output {
                Some(path) => {
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    let n =
                        export::export(ledger.store().as_ref(), &origin, format, &range, &mut w)?;
                    w.into_inner()
                        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?
                        .sync_all()
                        .with_context(|| format!("syncing {}", path.display()))?;
                    n
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    export::export(ledger.store().as_ref(), &origin, format, &range, &mut out)?
                }
            };
            eprintln!("exported {count} entries");
            close(&ledger).await?;
        }
        Command::Summary { range } => {
            let range = range_of(range)?;
            let ledger = datadir::open(&dir).await?;
            let s = export::summary(ledger.store().as_ref(), &range)?;
            print_json(&s)?;
            close(&ledger).await?;
        }
        Command::Checkpoint { size } => {
            let ledger = datadir::open(&dir).await?;
            let cp = match size {
                Some(size) => ledger.checkpoint_for_size(size)?,
                None => ledger.checkpoint().await?,
            };
            if json_out {
                print_json(&json!({"size": cp.size, "note": cp.note}))?;
            } else {
                print!("{}", cp.note);
            }
            close(&ledger).await?;
        }
        Command::Proof {
            seq,
            tree_size,
            out_dir,
        } => {
            let ledger = datadir::open(&dir).await?;
            let bundle = ledger.prove(seq, tree_size).await?;
            if let Some(out) = out_dir {
                write_bundle(&out, &bundle, &ledger.verifier())?;
                eprintln!(
                    "wrote entry.json, proof.json, checkpoint.txt and log.pub to {}",
                    out.display()
                );
            }
            print_json(&bundle.proof)?;
            close(&ledger).await?;
        }
        Command::Consistency { old, new } => {
            let ledger = datadir::open(&dir).await?;
            let proof = ledger.consistency(old, new)?;
            print_json(&proof)?;
            close(&ledger).await?;
        }
        Command::Verify => match (&config.store, &config.postgres) {
            (crate::config::StoreKind::Postgres, Some(pg)) => {
                verify_postgres(&dir, &pg.url, json_out).await?
            }
            _ => verify_cmd(&dir, json_out)?,
        },
        Command::VerifyProof {
            entry,
            proof,
            checkpoint,
            key,
        } => verify_proof(&entry, &proof, &checkpoint, &key, json_out)?,
        Command::Mirror {
            command:
                MirrorCommand::Sync {
                    dir: mirror_dir,
                    key_file,
                    max_file_bytes,
                },
        } => {
            let key = mirror::load_key(&key_file)?;
            let mut config = mirror::MirrorConfig::new(mirror_dir, key);
            config.max_file_bytes = max_file_bytes;
            let mut writer = mirror::MirrorWriter::open(config)?;
            let ledger = datadir::open(&dir).await?;
            let n = mirror::sync_from_store(ledger.store().as_ref(), &mut writer)?;
            writer.close()?;
            if json_out {
                print_json(&json!({"written": n}))?;
            } else {
                println!("mirrored {n} entries");
            }
            close(&ledger).await?;
        }
        Command::Mirror {
            command:
                MirrorCommand::Verify {
                    mut files,
                    key_file,
                    through,
                },
        } => {
            files.sort();
            let key = mirror::load_key(&key_file)?;
            match mirror::verify_files(&files, &key, through) {
                Ok(report) => {
                    if json_out {
                        print_json(
                            &json!({"ok": true, "files": report.files, "entries": report.entries,
                            "first_seq": report.first_seq, "last_seq": report.last_seq, "open_tail": report.open_tail}),
                        )?;
                    } else {
                        println!(
                            "mirror intact: {} entries in {} files, seq {} to {}",
                            report.entries,
                            report.files,
                            report.first_seq.map_or("-".into(), |s| s.to_string()),
                            report.last_seq.map_or("-".into(), |s| s.to_string())
                        );
                        if report.open_tail {
                            println!(
                                "the last file is open: pass --through SEQ to also rule out a cut tail"
                            );
                        }
                    }
                }
                Err(e @ mirror::MirrorError::Tampered { .. }) => {
                    return Err(integrity(format!("mirror: {e}")).into());
                }
                Err(e) => return Err(anyhow::Error::new(e).into()),
            }
        }
        Command::Keys { command } => keys(&dir, command, json_out).await?,
        Command::Copy {
            from,
            to,
            from_url,
            to_url,
        } => {
            crate::copy::run(
                &dir,
                &config,
                crate::copy::Endpoints {
                    from: from.into(),
                    to: to.into(),
                    from_url,
                    to_url,
                },
                json_out,
            )
            .await?
        }
        Command::Policy {
            command: crate::PolicyCommand::Test { dir },
        } => crate::gate::policy_test(&dir, json_out)?,
        Command::Decision {
            command: crate::DecisionCommand::Verify { file, key },
        } => crate::gate::decision_verify(&file, &key, json_out)?,
        Command::Token {
            command:
                crate::TokenCommand::Verify {
                    token,
                    key,
                    origin,
                    request_id,
                    plan_hash,
                    at,
                },
        } => crate::gate::token_verify(
            crate::gate::TokenCheck {
                token: &token,
                key: &key,
                origin: origin.as_deref(),
                request_id: request_id.as_deref(),
                plan_hash: plan_hash.as_deref(),
                at: at.as_deref(),
            },
            json_out,
        )?,
        Command::Migrate => {
            let pg = config.postgres.as_ref().ok_or_else(|| {
                bad("migrate needs [postgres] url in the config, or CUSTOS_POSTGRES_URL")
            })?;
            custos_store::postgres::migrate(&pg.url)
                .await
                .context("migrating the PostgreSQL schema")?;
            if json_out {
                print_json(&json!({"ok": true}))?;
            } else {
                println!("the PostgreSQL schema is current");
            }
        }
        Command::Serve { listen } => {
            let mut config = config;
            if let Some(l) = listen {
                config.listen = l;
            }
            config.data_dir = dir;
            serve(config).await?
        }
        Command::Bench(args) => crate::bench::run(args, json_out).await?,
        Command::Demo => demo(&dir).await?,
        Command::Agents { command } => crate::agents::agents(&dir, command, json_out).await?,
        Command::Rebuild => crate::agents::rebuild(&dir, json_out).await?,
    }
    Ok(())
}

async fn close(ledger: &datadir::EmbeddedLedger) -> anyhow::Result<()> {
    ledger.store().close().await.context("closing the store")
}

/// Reads entries from arguments or stdin JSON Lines; validates all, then appends.
async fn append(dir: &Path, args: Vec<String>, batch: usize, json_out: bool) -> anyhow::Result<()> {
    let mut bodies = Vec::new();
    // Where each entry came from, to name it in errors.
    let mut sources = Vec::new();
    let parse = |what: String, text: &str| -> anyhow::Result<EntryBody> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("{what}: not JSON: {e}")))?;
        EntryBody::from_json(&value).map_err(|e| bad(format!("{what}: {e}")))
    };
    if args.is_empty() {
        let stdin = std::io::stdin().lock();
        for (i, line) in stdin.lines().enumerate() {
            let line = line.map_err(|e| bad(format!("stdin line {}: {e}", i + 1)))?;
            if line.trim().is_empty() {
                continue;
            }
            let what = format!("stdin line {}", i + 1);
            bodies.push(parse(what.clone(), &line)?);
            sources.push(what);
        }
    } else {
        for (i, a) in args.iter().enumerate() {
            let what = format!("argument {}", i + 1);
            bodies.push(parse(what.clone(), a)?);
            sources.push(what);
        }
    }
    if bodies.is_empty() {
        return Err(bad(
            "no entries given (pass JSON arguments or JSON Lines on stdin)",
        ));
    }
    let ledger = datadir::open(dir).await?;
    // Validate everything before appending anything.
    let prepared = ledger.prepare_batch(bodies).map_err(|e| match e {
        custos_ledger::LedgerError::InvalidEntry {
            index: Some(i),
            error,
        } => bad(format!(
            "{}: {error}",
            sources.get(i).map_or("an entry", String::as_str)
        )),
        other => bad(other.to_string()),
    })?;
    let mut receipts = Vec::with_capacity(prepared.len());
    let mut rest = prepared;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(batch));
        let acked = ledger.append_prepared(rest).await?;
        if !json_out {
            // Printed only once durable: a line on stdout is an acknowledgement.
            let mut out = std::io::stdout().lock();
            for r in &acked {
                writeln!(out, "{}\t{}", r.seq, r.id).context("writing output")?;
            }
            out.flush().context("writing output")?;
        }
        receipts.extend(acked);
        rest = tail;
    }
    ledger.checkpoint().await?;
    if json_out {
        print_json(&receipts)?;
    }
    close(&ledger).await
}

fn parse_enum<T>(
    name: &str,
    v: &Option<String>,
    f: impl Fn(&str) -> Option<T>,
    allowed: &str,
) -> anyhow::Result<Option<T>> {
    v.as_deref()
        .map(|s| f(s).ok_or_else(|| bad(format!("--{name}: `{s}` is not one of {allowed}"))))
        .transpose()
}

async fn query(dir: &Path, a: QueryArgs, json_out: bool) -> anyhow::Result<()> {
    if a.limit == 0 || a.limit > custos_store::MAX_QUERY_LIMIT {
        return Err(bad("--limit must be between 1 and 1000"));
    }
    let q = EntryQuery {
        tenant: a.tenant,
        actor: a.actor,
        event_type: a.event_type,
        action: a.action,
        outcome: parse_enum(
            "outcome",
            &a.outcome,
            Outcome::parse,
            "success, failure, denied, error",
        )?,
        min_severity: parse_enum(
            "severity",
            &a.severity,
            Severity::parse,
            "info, low, medium, high, critical",
        )?,
        resource: a.resource,
        resource_prefix: a.prefix,
        target: a.target,
        trace_id: a.trace_id,
        session_id: a.session_id,
        start: time_arg("start", &a.start)?,
        end: time_arg("end", &a.end)?,
        after: a.after,
        descending: a.desc,
        limit: a.limit,
    };
    let ledger = datadir::open(dir).await?;
    let (entries, next) = ledger.query(&q)?;
    if json_out {
        print_json(&json!({"entries": entries, "next": next}))?;
    } else {
        for e in &entries {
            println!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                e.seq,
                e.ts,
                e.tenant,
                e.actor,
                e.event_type,
                e.action,
                e.outcome,
                e.resource.as_deref().unwrap_or("-")
            );
        }
        match next {
            Some(n) => eprintln!("{} entries; next page: --after {n}", entries.len()),
            None => eprintln!("{} entries", entries.len()),
        }
    }
    close(&ledger).await
}

fn write_bundle(
    out: &Path,
    bundle: &custos_ledger::ProofBundle,
    verifier: &Verifier,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let write = |name: &str, bytes: Vec<u8>| {
        std::fs::write(out.join(name), bytes).with_context(|| format!("writing {name}"))
    };
    write("entry.json", serde_json::to_vec_pretty(&bundle.entry)?)?;
    write("proof.json", serde_json::to_vec_pretty(&bundle.proof)?)?;
    write("checkpoint.txt", bundle.checkpoint.clone().into_bytes())?;
    write("log.pub", format!("{verifier}\n").into_bytes())?;
    Ok(())
}

fn verify_cmd(dir: &Path, json_out: bool) -> anyhow::Result<()> {
    let store = EmbeddedStore::open_read_only(dir)
        .with_context(|| format!("opening the store in {} read-only", dir.display()))?;
    verify_store(&store, dir, json_out)
}

/// `custos verify` on the PostgreSQL store named by the configuration.
async fn verify_postgres(dir: &Path, url: &str, json_out: bool) -> anyhow::Result<()> {
    // Verification only reads: never migrate here.
    let store = custos_store::postgres::PostgresStore::open(
        url,
        custos_store::postgres::PostgresConfig {
            migrate: false,
            ..Default::default()
        },
    )
    .await
    .context("opening the PostgreSQL store")?;
    // Verification reads from threads of its own; keep it off the runtime's workers.
    let dir = dir.to_owned();
    let (store, result) = tokio::task::spawn_blocking(move || {
        let result = verify_store(&store, &dir, json_out);
        (store, result)
    })
    .await
    .context("the verification thread")?;
    store.close().await.context("closing the store")?;
    result
}

/// Verifies `store` against the origin and key of the data directory `dir`.
fn verify_store<S: Store>(store: &S, dir: &Path, json_out: bool) -> anyhow::Result<()> {
    let (settings, signer) = datadir::load(dir)?;
    verify_with(store, &signer.verifier(), &settings.origin, json_out)
}

/// Verifies `store` as the log of `verifier` and `origin`, printing the report.
pub(crate) fn verify_with<S: Store>(
    store: &S,
    verifier: &Verifier,
    origin: &str,
    json_out: bool,
) -> anyhow::Result<()> {
    let total = store.size().unwrap_or(0);
    let bar = if json_out {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template("{spinner} verifying {pos}/{len} entries {per_sec} {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    };
    let started = std::time::Instant::now();
    let report = verify::verify(store, verifier, origin, |n| bar.set_position(n))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if json_out {
        print_json(&report)?;
    } else if report.ok() {
        println!(
            "ledger intact: {} entries, {} checkpoints (latest for size {}), root {} ({:.0} entries/s)",
            report.entries,
            report.checkpoints,
            report
                .latest_checkpoint
                .map_or("-".into(), |s| s.to_string()),
            report.root,
            report.entries as f64 / secs.max(1e-9)
        );
    }
    match &report.failure {
        None => Ok(()),
        Some(f) => Err(integrity(format!("ledger NOT intact: {f}"))),
    }
}

/// Data that is not intact (exit code 1).
pub(crate) fn integrity(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Integrity(msg.into()))
}

/// The log's verifier key from `--key`: the key text, or a file holding it (DATA/log.pub).
pub(crate) fn read_verifier(key: &str) -> anyhow::Result<Verifier> {
    let key_text = if Path::new(key).is_file() {
        std::fs::read_to_string(key).map_err(|e| bad(format!("reading {key}: {e}")))?
    } else {
        key.to_owned()
    };
    Verifier::parse(key_text.trim()).map_err(|e| bad(format!("--key: {e}")))
}

fn verify_proof(
    entry: &Path,
    proof: &Path,
    checkpoint: &Path,
    key: &str,
    json_out: bool,
) -> anyhow::Result<()> {
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| bad(format!("reading {}: {e}", p.display())));
    let entry_bytes = read(entry)?;
    let entry: Entry = serde_json::from_slice(&entry_bytes)
        .map_err(|e| bad(format!("{}: not an entry: {e}", entry.display())))?;
    let proof_bytes = read(proof)?;
    let proof: InclusionProof = serde_json::from_slice(&proof_bytes)
        .map_err(|e| bad(format!("{}: not an inclusion proof: {e}", proof.display())))?;
    let note_text = String::from_utf8(read(checkpoint)?)
        .map_err(|_| bad(format!("{}: not UTF-8", checkpoint.display())))?;
    let verifier = read_verifier(key)?;
    let fail = |msg: String| integrity(msg);
    let cp = note::open_checkpoint(&note_text, &verifier)
        .map_err(|e| fail(format!("checkpoint does not verify with this key: {e}")))?;
    if entry.seq != proof.leaf_index {
        return Err(fail(format!(
            "the entry is seq {} but the proof is for leaf {}",
            entry.seq, proof.leaf_index
        )));
    }
    if proof.tree_size != cp.size {
        return Err(fail(format!(
            "the proof is for tree size {} but the checkpoint is for {}",
            proof.tree_size, cp.size
        )));
    }
    let leaf = entry
        .leaf_hash()
        .map_err(|e| fail(format!("the entry has no canonical form: {e}")))?;
    proof
        .verify(&leaf, &cp.root)
        .map_err(|e| fail(format!("inclusion proof does not verify: {e}")))?;
    if json_out {
        print_json(
            &json!({"ok": true, "seq": entry.seq, "tree_size": cp.size, "origin": cp.origin,
            "root": merkle::hash_to_hex(&cp.root), "leaf_hash": merkle::hash_to_hex(&leaf)}),
        )?;
    } else {
        println!(
            "OK: entry seq {} (leaf {}) is in the log `{}` of {} entries with root {}, signed by {}",
            entry.seq,
            merkle::hash_to_hex(&leaf),
            cp.origin,
            cp.size,
            merkle::hash_to_hex(&cp.root),
            verifier.name()
        );
    }
    Ok(())
}

async fn serve(config: crate::config::Config) -> anyhow::Result<()> {
    let _log_guard = init_logging(&config.log)?;
    let dir = config.data_dir.as_path();
    if !dir.join("ledger.json").exists() {
        let (settings, signer) = datadir::init(dir, None)?;
        tracing::info!(
            data = %dir.display(),
            origin = %settings.origin,
            verifier_key = %signer.verifier(),
            "initialised the data directory"
        );
    }
    let tuning = datadir::Tuning {
        checkpoint_interval: std::time::Duration::from_secs(config.checkpoint_interval_secs),
        max_queued_entries: config.limits.max_queued_entries,
        max_entry_bytes: config.limits.max_entry_bytes,
    };
    match (&config.store, &config.postgres) {
        (crate::config::StoreKind::Postgres, Some(pg)) => {
            let ledger = datadir::open_postgres(dir, pg, &tuning).await?;
            tracing::info!(store = "postgres", "ledger opened");
            serve_ledger(ledger, &config).await
        }
        _ => serve_ledger(datadir::open_with(dir, &tuning).await?, &config).await,
    }
}

/// Serves `ledger` (any store) as `config` says; keys and secrets come from the data directory.
async fn serve_ledger<S: Store>(
    ledger: std::sync::Arc<custos_ledger::Ledger<S>>,
    config: &crate::config::Config,
) -> anyhow::Result<()> {
    let dir = config.data_dir.as_path();
    let tls = config
        .tls
        .as_ref()
        .map(|t| custos_server::tls_from_pem(&t.cert, &t.key).map_err(bad))
        .transpose()?;
    let mirror = config
        .mirror
        .as_ref()
        .map(|m| -> anyhow::Result<_> {
            let mut c = mirror::MirrorConfig::new(&m.dir, mirror::load_key(&m.key_file)?);
            c.max_file_bytes = m.max_file_bytes;
            Ok(c)
        })
        .transpose()?;
    let mut keys = custos_server::keys::KeyRegistry::load(&ledger)?
        .with_signing(datadir::request_signing(dir)?);
    // On a ledger without any key nobody can call the API, and `custos keys create` cannot
    // run beside the server: issue one admin key of the `system` tenant (it may manage every
    // tenant's keys over `POST /v1/keys`) and show it once, below the listen line.
    let bootstrap = if keys.list(None).is_empty() {
        Some(
            keys.issue(
                &ledger,
                custos_ledger::SYSTEM_TENANT,
                &[custos_server::keys::Role::Admin],
                None,
                false,
                "system",
            )
            .await?,
        )
    } else {
        None
    };
    // Nonces of signed requests live in the store: a synced journal beside the embedded
    // store, a table every node shares on PostgreSQL (a replay to another node is refused too).
    let nonces = custos_server::signing::NonceStore::in_store(ledger.store().clone());
    if ledger.store().shared() {
        tracing::info!("nonces of signed requests: in the shared database");
    } else {
        tracing::info!(path = %datadir::nonce_path(dir).display(), "nonces of signed requests");
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| bad(format!("listen {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    // The first line on stdout, for scripts and tests that start the server; the bootstrap
    // key (if any) on the next. One write, so a reader that takes only the first line and
    // closes the pipe cannot make the second fail; and a closed stdout never stops the server.
    let mut banner = format!(
        "listening on {}://{addr}\n",
        if tls.is_some() { "https" } else { "http" }
    );
    if let Some(k) = &bootstrap {
        banner.push_str(&format!(
            "bootstrap admin key (tenant system, shown once; only its hash is kept): {}\n",
            k.text
        ));
        tracing::info!(key_id = %k.key.id, "issued the bootstrap admin key");
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(banner.as_bytes()).and_then(|()| out.flush()) {
        tracing::warn!(error = %e, "stdout is closed; the listen line (and any bootstrap key) was not shown");
    }
    drop(out);
    tracing::info!(%addr, tls = tls.is_some(), data = %dir.display(), "listening");
    let shutdown = async {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::info!("shutting down: draining requests");
    };
    custos_server::serve(
        ledger,
        keys,
        listener,
        custos_server::ServeOptions {
            nonces,
            max_body_bytes: config.limits.max_body_bytes,
            max_index_lag: config.limits.ready_max_index_lag,
            tls,
            drain: std::time::Duration::from_secs(config.drain_secs),
            mirror,
            gate: Some(gate_setup(&config.gate)?),
            oversight: config.oversight.service_config(),
            alerts: Some(config.alerts.clone().with_data_dir(&config.data_dir)),
        },
        shutdown,
    )
    .await
    .context("serving")?;
    tracing::info!("stopped: final checkpoint issued and store closed");
    Ok(())
}

/// The gate's policies, LLM verifier and settings from `[gate]`.
fn gate_setup(gate: &crate::config::Gate) -> anyhow::Result<custos_server::GateSetup> {
    use custos_gate::intent::llm::{ApiKey, LlmConfig, LlmVerifier, ProviderKind};
    use custos_gate::policy::{OperatorPolicies, RegoPolicyEngine, SoftPolicyConfig};
    let operator = match &gate.policy_dir {
        Some(dir) => OperatorPolicies::load_dir(dir)
            .map_err(|e| bad(format!("gate policies in {}: {e}", dir.display())))?,
        None => OperatorPolicies::none(),
    };
    let policies = RegoPolicyEngine::new(&operator, SoftPolicyConfig::default())
        .map_err(|e| bad(format!("compiling the gate policies: {e}")))?;
    let overrides = custos_gate::overrides::OverrideConfig {
        min_approvers: gate.override_min_approvers,
        ttl_seconds: gate.override_ttl_secs,
        require_signatures: gate.require_signed_approvals,
        ..Default::default()
    };
    let llm = match &gate.llm {
        None => None,
        Some(l) => {
            let provider = match l.provider.as_str() {
                "openai" | "openai-compatible" => ProviderKind::OpenaiCompatible,
                "anthropic" => ProviderKind::Anthropic,
                other => {
                    return Err(bad(format!(
                        "gate.llm.provider `{other}` is not openai or anthropic"
                    )));
                }
            };
            let mut config = LlmConfig::new(provider, &l.url, &l.model)
                .with_timeout(std::time::Duration::from_millis(l.timeout_ms));
            if let Some(var) = &l.api_key_env {
                let key = std::env::var(var)
                    .map_err(|_| bad(format!("gate.llm.api_key_env: ${var} is not set")))?;
                config = config.with_api_key(ApiKey::new(key));
            }
            let verifier =
                LlmVerifier::from_config(config).map_err(|e| bad(format!("gate.llm: {e}")))?;
            Some(std::sync::Arc::new(verifier)
                as std::sync::Arc<dyn custos_gate::intent::IntentVerifier>)
        }
    };
    let config = custos_gate::service::GateConfig {
        min_confidence: gate.min_confidence,
        token_ttl_nanos: i128::from(gate.token_ttl_secs) * 1_000_000_000,
        overrides,
    };
    config.validate().map_err(|e| bad(format!("[gate]: {e}")))?;
    Ok(custos_server::GateSetup {
        policies: std::sync::Arc::new(policies),
        llm,
        config,
    })
}

/// Structured logs on stderr: JSON lines by default, with the request id of each request.
/// Lines are written by a background thread (request handlers only format them); when it falls
/// behind, loggers wait rather than drop lines. The guard flushes what is left when dropped.
fn init_logging(
    log: &crate::config::Log,
) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    let filter = tracing_subscriber::EnvFilter::try_new(&log.level)
        .map_err(|e| bad(format!("log level `{}`: {e}", log.level)))?;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("custos-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match log.format {
        crate::config::LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        crate::config::LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    result.map_err(|e| anyhow!("starting the logger: {e}"))?;
    Ok(guard)
}

async fn keys(dir: &Path, command: KeysCommand, json_out: bool) -> anyhow::Result<()> {
    use custos_server::keys::{KeyRegistry, Role};
    let ledger = datadir::open(dir).await?;
    let mut registry = KeyRegistry::load(&ledger)?.with_signing(datadir::request_signing(dir)?);
    match command {
        KeysCommand::Create {
            tenant,
            roles,
            agent,
            signed,
            by,
        } => {
            let roles = roles
                .iter()
                .map(|r| {
                    Role::parse(r).ok_or_else(|| {
                        bad(format!(
                            "--role: `{r}` is not one of admin, auditor, security, finance, \
                             manager, orchestrator, agent"
                        ))
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let issued = registry
                .issue(&ledger, &tenant, &roles, agent.as_deref(), signed, &by)
                .await?;
            if json_out {
                let mut out = json!({"key": issued.key, "secret": issued.text});
                if let Some(s) = &issued.signing_secret {
                    out["signing_secret"] = json!(s);
                }
                print_json(&out)?;
            } else {
                println!("{}", issued.text);
                if let Some(s) = &issued.signing_secret {
                    println!("{s}");
                    eprintln!(
                        "requests with this key must be signed (HMAC-SHA256 with the second line; \
                         see README, \"Signed requests\")"
                    );
                }
                eprintln!(
                    "key {} for tenant {} ({}) — shown once; only its hash is kept",
                    issued.key.id,
                    issued.key.tenant,
                    issued
                        .key
                        .roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        KeysCommand::List { tenant } => {
            let keys = registry.list(tenant.as_deref());
            if json_out {
                print_json(&keys)?;
            } else {
                for k in keys {
                    println!(
                        "{}\t{}\t{}\t{}{}\t{}",
                        k.id,
                        k.tenant,
                        k.roles
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        k.agent.as_deref().unwrap_or("-"),
                        if k.signed { "\tsigned" } else { "" },
                        if k.revoked_seq.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                    );
                }
            }
        }
        KeysCommand::Revoke { id, by } => {
            let key = registry.revoke(&ledger, &id, &by).await?;
            if json_out {
                print_json(&key)?;
            } else {
                println!(
                    "revoked {} (ledger seq {})",
                    key.id,
                    key.revoked_seq.unwrap_or(0)
                );
            }
        }
    }
    ledger.checkpoint().await?;
    close(&ledger).await
}

/// The README's first command: everything in one go on the embedded store.
async fn demo(dir: &Path) -> anyhow::Result<()> {
    if !dir.join("ledger.json").exists() {
        let (settings, signer) = datadir::init(dir, None)?;
        println!(
            "1. initialised {} (origin {}, verifier key {})",
            dir.display(),
            settings.origin,
            signer.verifier()
        );
    } else {
        println!("1. using the existing ledger in {}", dir.display());
    }
    let ledger = datadir::open(dir).await?;
    let mut bodies = Vec::new();
    for (i, (tool, outcome)) in [
        ("crm.search", Outcome::Success),
        ("email.send", Outcome::Success),
        ("db.drop_table", Outcome::Denied),
    ]
    .iter()
    .enumerate()
    {
        let mut b = EntryBody::new(
            "demo",
            "tool_invocation",
            "agent:sales-assistant",
            if *outcome == Outcome::Denied {
                "deny"
            } else {
                "allow"
            },
            *outcome,
        );
        b.resource = Some(format!("/tools/{tool}"));
        b.severity = if *outcome == Outcome::Denied {
            Severity::High
        } else {
            Severity::Info
        };
        b.data.insert("tool".into(), json!(tool));
        b.data
            .insert("api_token".into(), json!("sk-live-this-is-redacted"));
        b.data.insert("step".into(), json!(i));
        bodies.push(b);
    }
    let receipts = ledger.append_batch(bodies).await?;
    println!(
        "2. appended seq {}..={} (durable; secrets under keys like api_token are stored as [REDACTED])",
        receipts.first().map_or(0, |r| r.seq),
        receipts.last().map_or(0, |r| r.seq)
    );
    let seq = receipts.last().map_or(0, |r| r.seq);
    let bundle = ledger.prove(seq, None).await?;
    let out = dir.join("demo-proof");
    write_bundle(&out, &bundle, &ledger.verifier())?;
    println!(
        "3. inclusion proof of seq {seq} in the signed checkpoint of size {} written to {}",
        bundle.proof.tree_size,
        out.display()
    );
    close(&ledger).await?;
    drop(ledger);
    print!("4. offline check (custos verify-proof, no data directory): ");
    verify_proof(
        &out.join("entry.json"),
        &out.join("proof.json"),
        &out.join("checkpoint.txt"),
        &out.join("log.pub").display().to_string(),
        false,
    )?;
    print!("5. full verification: ");
    verify_cmd(dir, false)?;
    let exe = std::env::args().next().unwrap_or_else(|| "custos".into());
    println!(
        "\nTry: {exe} --data {} query --actor agent:sales-assistant   |   {exe} --data {} export --format csv",
        dir.display(),
        dir.display()
    );
    Ok(())
}

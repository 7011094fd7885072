//! `custos`: the command line. The only crate that knows about terminals; thin over the
//! ledger and store crates.
//!
//! Exit codes: 0 success; 1 verification failed (the data is not intact); 2 bad input or
//! usage; 3 not found; 4 overloaded, retry later; 5 storage or other failure.

mod agents;
mod bench;
mod bench_gate;
mod bench_http;
mod bench_oversight;
mod commands;
mod config;
mod copy;
mod datadir;
mod gate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// custos — independent governance and audit for AI agents: a tamper-evident ledger with
/// Merkle proofs anyone can check.
#[derive(Parser, Debug)]
#[command(name = "custos", version, about, long_about = None)]
pub struct Cli {
    /// Data directory of the embedded store [default: data_dir of the config, CUSTOS_DATA,
    /// or ./custos-data].
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    /// TOML configuration file (see `custos serve --help`); CUSTOS_* variables override it.
    #[arg(long, global = true, env = "CUSTOS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API on the embedded store (initialising the data directory on first
    /// start). Settings come from --config FILE (TOML), then CUSTOS_* variables, then flags:
    /// listen, data_dir, checkpoint_interval_secs, drain_secs, [limits] max_body_bytes,
    /// max_queued_entries, max_entry_bytes, [log] level, format (json|text), [tls] cert, key,
    /// [mirror] dir, key_file, max_file_bytes. See README, "Configuration".
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080, or listen of the config / CUSTOS_LISTEN].
        #[arg(long)]
        listen: Option<String>,
    },
    /// Apply the PostgreSQL schema migrations ([postgres] url / CUSTOS_POSTGRES_URL); `serve`
    /// also applies them on start.
    Migrate,
    /// Copy the ledger into a PostgreSQL store and verify it there: entries keep their bytes,
    /// seqs, ids and proofs; every checkpoint is checked against the root the destination
    /// computed; then the whole copy is verified. Run it again to resume or to catch up.
    /// Serve the copy with the same data directory (keys/, ledger.json) and store = postgres.
    Copy {
        /// Where from: embedded (the data directory) or postgres.
        #[arg(long, value_enum)]
        from: StoreArg,
        /// Where to: postgres.
        #[arg(long, value_enum)]
        to: StoreArg,
        /// With --from postgres: the source database [default: [postgres] url].
        #[arg(long)]
        from_url: Option<String>,
        /// The destination database [default: [postgres] url, or CUSTOS_POSTGRES_URL].
        #[arg(long)]
        to_url: Option<String>,
    },
    /// Create the data directory and the log's Ed25519 key; print the verifier key.
    Init {
        /// Checkpoint origin (a schema-less URL naming this log); generated if absent.
        #[arg(long)]
        origin: Option<String>,
    },
    /// Append entries given as JSON arguments, or as JSON Lines on stdin when none are given.
    /// All are validated before any is appended.
    Append {
        /// Entries as JSON objects.
        entries: Vec<String>,
        /// Entries per durable write; each batch's seqs are printed as soon as it is durable.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        batch: u64,
    },
    /// Print one entry by seq or id.
    Get {
        /// A seq (digits) or an entry id (UUID).
        key: String,
    },
    /// Search entries (SPEC §3.6 filters), one page at a time.
    Query(QueryArgs),
    /// Stream entries in a time range to stdout or a file.
    Export {
        /// json, jsonl, csv or cloudevents.
        #[arg(long, default_value = "jsonl")]
        format: String,
        #[command(flatten)]
        range: RangeArgs,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Counts by event type, severity, actor, resource and outcome for a period.
    Summary {
        #[command(flatten)]
        range: RangeArgs,
    },
    /// Print the latest signed checkpoint (issuing one if entries arrived since), or the one
    /// for a given size.
    Checkpoint {
        /// The checkpoint issued for exactly this tree size.
        #[arg(long)]
        size: Option<u64>,
    },
    /// Inclusion proof of an entry (SPEC §3.3 JSON).
    Proof {
        /// Seq of the entry.
        seq: u64,
        /// Tree size to prove against (default: the latest checkpoint).
        #[arg(long)]
        tree_size: Option<u64>,
        /// Also write entry.json, proof.json, checkpoint.txt and log.pub here, ready for
        /// `custos verify-proof`.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Consistency proof between two tree sizes (SPEC §3.3 JSON).
    Consistency {
        /// The older size.
        old: u64,
        /// The newer size.
        new: u64,
    },
    /// Verify the whole ledger (SPEC §3.4). Exit 1 naming the first bad seq.
    Verify,
    /// Check offline that an entry is in the log the checkpoint commits to. Opens no data
    /// directory.
    VerifyProof {
        /// The entry JSON.
        #[arg(long)]
        entry: PathBuf,
        /// The inclusion proof JSON.
        #[arg(long)]
        proof: PathBuf,
        /// The signed checkpoint text.
        #[arg(long)]
        checkpoint: PathBuf,
        /// The log's verifier key (`name+keyid+base64`), or a file holding it.
        #[arg(long)]
        key: String,
    },
    /// API keys: bound to a tenant and roles, stored only as hashes, every change a ledger entry.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Gate policies (SPEC §4.2): `policy test DIR` runs the Rego unit tests of operator
    /// policies against the built-in bundle.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Approval tokens of the plan gate (SPEC §4.1).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Signed gate decisions (SPEC §4.1).
    Decision {
        #[command(subcommand)]
        command: DecisionCommand,
    },
    /// The signed JSON Lines mirror.
    Mirror {
        #[command(subcommand)]
        command: MirrorCommand,
    },
    /// The agent registry (SPEC §5.1), rebuilt from the data directory's ledger.
    Agents {
        #[command(subcommand)]
        command: agents::AgentsCommand,
    },
    /// Rebuild the projections (the agent registry, its requests and settings) from the ledger
    /// alone and print what they hold.
    Rebuild,
    /// Measure appends, verification, proofs, queries and memory on a fresh data directory;
    /// or, with --gate, --oversight or --anomaly, those services.
    Bench(bench::BenchArgs),
    /// Quick start: init if needed, append a few entries, prove one, check the proof offline
    /// and verify the whole ledger.
    Demo,
}

/// A store kind on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum StoreArg {
    /// The embedded store in the data directory.
    Embedded,
    /// A PostgreSQL database.
    Postgres,
}

impl From<StoreArg> for config::StoreKind {
    fn from(a: StoreArg) -> Self {
        match a {
            StoreArg::Embedded => config::StoreKind::Embedded,
            StoreArg::Postgres => config::StoreKind::Postgres,
        }
    }
}

/// Key subcommands.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Issue a key and print it once.
    Create {
        /// The tenant it acts in.
        #[arg(long)]
        tenant: String,
        /// A role (repeat for several): admin, auditor, security, finance, manager,
        /// orchestrator, agent.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// For an agent key: the agent it may write as.
        #[arg(long)]
        agent: Option<String>,
        /// Requests with this key must carry the HMAC request signature.
        #[arg(long)]
        signed: bool,
        /// Who issues it (recorded as the entry's actor).
        #[arg(long, default_value = "user:cli")]
        by: String,
    },
    /// List keys (never their secrets).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key by id.
    Revoke {
        /// The key id (the part after `ck_`).
        id: String,
        /// Who revokes it (recorded as the entry's actor).
        #[arg(long, default_value = "user:cli")]
        by: String,
    },
}

/// Policy subcommands.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Run the `test_*` rules of the `*_test.rego` files in DIR against custos's built-in
    /// policies plus DIR's operator policies (`package custos.operator.<name>`). Exit 1 when
    /// any test fails.
    Test {
        /// Directory of operator policies and their tests.
        dir: PathBuf,
    },
}

/// Token subcommands.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Check an approval token offline: the log's signature, expiry, and (if given) that it
    /// approves this request and exactly this plan. Exit 1 when it does not.
    Verify {
        /// The token (as the review returned it).
        token: String,
        /// The log's verifier key (`name+keyid+base64`), or a file holding it (DATA/log.pub).
        #[arg(long)]
        key: String,
        /// The origin the token must name [default: the key's name].
        #[arg(long)]
        origin: Option<String>,
        /// The request id about to be executed.
        #[arg(long)]
        request_id: Option<String>,
        /// The `sha256:…` hash of the plan about to be executed.
        #[arg(long)]
        plan_hash: Option<String>,
        /// Check as of this time (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<String>,
    },
}

/// Decision subcommands.
#[derive(Subcommand, Debug)]
pub enum DecisionCommand {
    /// Check a review answer's signature offline (as `POST /v1/reviews` or `GET
    /// /v1/reviews/{id}` returned it): the log key's Ed25519 signature over the RFC 8785 form
    /// of the decision. Exit 1 when it does not verify.
    Verify {
        /// The review answer, a JSON file (`-` for standard input).
        file: std::path::PathBuf,
        /// The log's verifier key (`name+keyid+base64`), or a file holding it (DATA/log.pub).
        #[arg(long)]
        key: String,
    },
}

/// Mirror subcommands.
#[derive(Subcommand, Debug)]
pub enum MirrorCommand {
    /// Append every ledger entry the mirror does not have yet to its JSON Lines files.
    Sync {
        /// Directory of the mirror files.
        #[arg(long)]
        dir: PathBuf,
        /// File holding the HMAC key (hex or base64, at least 32 bytes).
        #[arg(long)]
        key_file: PathBuf,
        /// Rotate files at this size.
        #[arg(long, default_value_t = 64 * 1024 * 1024)]
        max_file_bytes: u64,
    },
    /// Check mirror files for any edit, deletion, reordering or truncation.
    Verify {
        /// Mirror files (sorted by name before checking).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// File holding the HMAC key (hex or base64).
        #[arg(long)]
        key_file: PathBuf,
        /// Require the mirror to reach at least this seq (detects a cut tail).
        #[arg(long)]
        through: Option<u64>,
    },
}

/// Which entries an export or summary covers.
#[derive(Args, Debug, Default)]
pub struct RangeArgs {
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// From this time (RFC 3339, inclusive).
    #[arg(long)]
    pub start: Option<String>,
    /// Until this time (RFC 3339, exclusive).
    #[arg(long)]
    pub end: Option<String>,
}

/// Query filters.
#[derive(Args, Debug, Default)]
pub struct QueryArgs {
    /// Tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Actor (`agent:…`, `user:…`, `system`).
    #[arg(long)]
    pub actor: Option<String>,
    /// Event type.
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Action.
    #[arg(long)]
    pub action: Option<String>,
    /// Outcome.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Severity at least.
    #[arg(long)]
    pub severity: Option<String>,
    /// Resource (exact, or a prefix with --prefix).
    #[arg(long)]
    pub resource: Option<String>,
    /// Match --resource as a prefix.
    #[arg(long)]
    pub prefix: bool,
    /// Target principal.
    #[arg(long)]
    pub target: Option<String>,
    /// Trace id.
    #[arg(long)]
    pub trace_id: Option<String>,
    /// Session id.
    #[arg(long)]
    pub session_id: Option<String>,
    /// From this time (RFC 3339, inclusive).
    #[arg(long)]
    pub start: Option<String>,
    /// Until this time (RFC 3339, exclusive).
    #[arg(long)]
    pub end: Option<String>,
    /// Cursor from the previous page.
    #[arg(long)]
    pub after: Option<u64>,
    /// Newest first.
    #[arg(long)]
    pub desc: bool,
    /// Page size (1–1000).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// The error.
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error: anyhow::Error = e.into();
        let code = exit_code(&error);
        Failure { code, error }
    }
}

/// Exit codes for errors.
pub mod code {
    /// Verification failed.
    pub const INTEGRITY: u8 = 1;
    /// Bad input.
    pub const BAD_INPUT: u8 = 2;
    /// Not found.
    pub const NOT_FOUND: u8 = 3;
    /// Overloaded.
    pub const OVERLOADED: u8 = 4;
    /// Anything else.
    pub const FAILURE: u8 = 5;
}

fn exit_code(e: &anyhow::Error) -> u8 {
    use custos_ledger::LedgerError;
    for cause in e.chain() {
        if let Some(l) = cause.downcast_ref::<LedgerError>() {
            return match l {
                LedgerError::InvalidEntry { .. } | LedgerError::BadRequest(_) => code::BAD_INPUT,
                LedgerError::NotFound(_) => code::NOT_FOUND,
                LedgerError::Overloaded { .. } => code::OVERLOADED,
                LedgerError::Integrity(_) => code::INTEGRITY,
                LedgerError::Store(_) | LedgerError::Signing(_) | LedgerError::Output(_) => {
                    code::FAILURE
                }
            };
        }
        if cause.downcast_ref::<commands::BadInput>().is_some() {
            return code::BAD_INPUT;
        }
        if cause.downcast_ref::<commands::Integrity>().is_some() {
            return code::INTEGRITY;
        }
        if let Some(k) = cause.downcast_ref::<custos_server::keys::KeyError>() {
            use custos_server::keys::KeyError;
            return match k {
                KeyError::BadRequest(_) | KeyError::Unauthenticated => code::BAD_INPUT,
                KeyError::NotFound(_) => code::NOT_FOUND,
                KeyError::Ledger(_) | KeyError::BadRecord { .. } => code::FAILURE,
            };
        }
    }
    code::FAILURE
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || matches!(
                c.downcast_ref::<custos_ledger::LedgerError>(),
                Some(custos_ledger::LedgerError::Output(io)) if io.kind() == std::io::ErrorKind::BrokenPipe
            )
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(code::FAILURE);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped early (`custos export | head`) is not an error.
        Err(f) if is_broken_pipe(&f.error) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

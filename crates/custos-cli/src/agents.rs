//! `custos agents` and `custos rebuild`: the agent registry read offline from the data
//! directory's ledger (SPEC §5.1), rebuilt from the ledger alone — no server needed.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use custos_oversight::registry::{AgentStatus, Registry};
use custos_store::Store;
use serde_json::json;

use crate::commands::{bad, print_json};
use crate::datadir;

/// `custos agents …`.
#[derive(Subcommand, Debug)]
pub enum AgentsCommand {
    /// List the registered agents of a tenant with their status, reporting status and score.
    List {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Only this status (active, warned, suspended, non_compliant, deleted).
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one agent's record.
    Show {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The agent id.
        id: String,
    },
}

async fn registry_of(dir: &Path) -> anyhow::Result<Registry> {
    let ledger = datadir::open(dir).await?;
    let rebuilt = {
        let ledger = ledger.clone();
        tokio::task::spawn_blocking(move || custos_oversight::service::rebuild(&ledger))
            .await
            .context("the rebuild task")?
    };
    ledger.store().close().await.context("closing the store")?;
    rebuilt.context("rebuilding the agent registry from the ledger")
}

/// Runs `custos agents …`.
pub async fn agents(dir: &Path, command: AgentsCommand, json_out: bool) -> anyhow::Result<()> {
    let registry = registry_of(dir).await?;
    match command {
        AgentsCommand::List { tenant, status } => {
            let status = match status.as_deref() {
                Some(s) => Some(
                    AgentStatus::parse(s)
                        .ok_or_else(|| bad(format!("--status: no status `{s}`")))?,
                ),
                None => None,
            };
            let mut agents: Vec<_> = registry
                .agents
                .values()
                .filter(|a| a.tenant == tenant)
                .filter(|a| match status {
                    Some(s) => a.status == s,
                    None => a.status != AgentStatus::Deleted,
                })
                .collect();
            agents.sort_by(|a, b| a.id.cmp(&b.id));
            if json_out {
                return print_json(&agents);
            }
            println!(
                "{:<32} {:<14} {:<14} {:>5}  last report",
                "agent", "status", "reporting", "score"
            );
            for a in agents {
                println!(
                    "{:<32} {:<14} {:<14} {:>5}  {}",
                    a.id,
                    a.status.as_str(),
                    a.reporting_status.as_str(),
                    a.security_score,
                    a.last_report_at.as_deref().unwrap_or("never")
                );
            }
            Ok(())
        }
        AgentsCommand::Show { tenant, id } => {
            let agent = registry.agent(&tenant, &id).ok_or_else(|| {
                anyhow::Error::from(custos_ledger::LedgerError::NotFound(format!(
                    "no agent `{id}` in tenant `{tenant}`"
                )))
            })?;
            print_json(agent)
        }
    }
}

/// Runs `custos rebuild`: rebuilds the agent registry (and its requests and settings) from
/// the ledger alone and prints what it holds; `--json` prints the whole registry.
pub async fn rebuild(dir: &Path, json_out: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let registry = registry_of(dir).await?;
    if json_out {
        return print_json(&registry);
    }
    let mut by_status = std::collections::BTreeMap::<&str, u64>::new();
    for a in registry.agents.values() {
        *by_status.entry(a.status.as_str()).or_default() += 1;
    }
    let pending = registry
        .requests
        .values()
        .filter(|r| r.status == custos_oversight::registry::RequestStatus::Pending)
        .count();
    println!(
        "{}",
        json!({
            "agents": registry.agents.len(),
            "by_status": by_status,
            "requests": registry.requests.len(),
            "pending_requests": pending,
            "tenants_with_settings": registry.settings.len(),
            "folded_to_seq": registry.folded_to,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

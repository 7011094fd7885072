//! Every agent's profile, fed from ledger entries, with a bound on how many agents it tracks.

use std::collections::HashMap;

use custos_core::entry::Entry;
use serde::Serialize;

use super::assessment::Assessment;
use super::config::AnomalyConfig;
use super::observation::{Observation, agent_of};
use super::profile::AgentProfile;

/// An assessment of one agent's window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AgentAssessment {
    /// The agent's tenant.
    pub tenant: String,
    /// The agent id (without `agent:`).
    pub agent: String,
    /// The window's assessment.
    pub assessment: Assessment,
}

/// The behavioural anomaly detector of a custos instance: one [`AgentProfile`] per
/// (tenant, agent), at most `max_agents` of them.
///
/// When the bound is reached, observations of agents not tracked yet are refused (counted
/// in [`refused_observations`](Self::refused_observations)) and tracked agents carry on;
/// [`forget`](Self::forget) frees a place (a deleted agent). Memory therefore never grows
/// with traffic, only up to `max_agents` profiles, each bounded as [`AgentProfile`] says.
#[derive(Clone, Debug)]
pub struct Detector {
    config: AnomalyConfig,
    /// Tenant → agent → profile: looked up by `&str` without allocating.
    profiles: HashMap<String, HashMap<String, AgentProfile>>,
    tracked: usize,
    refused_observations: u64,
}

impl Detector {
    /// A detector with no agents; the configuration is validated first.
    pub fn new(config: AnomalyConfig) -> Result<Self, String> {
        config.validate()?;
        Ok(Detector {
            config,
            profiles: HashMap::new(),
            tracked: 0,
            refused_observations: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AnomalyConfig {
        &self.config
    }

    /// Feeds one ledger entry (in ledger order). Entries that are not an agent's own
    /// behaviour (see [`Observation::from_entry`]) are ignored. Returns the assessment of the
    /// agent's window this entry closed, if any.
    pub fn observe_entry(&mut self, entry: &Entry) -> Option<AgentAssessment> {
        let agent = agent_of(entry)?;
        let obs = Observation::of_agent_entry(entry)?;
        self.observe(&entry.tenant, agent, &obs)
    }

    /// Feeds one observation of `agent` of `tenant` (in time order for that agent).
    pub fn observe(
        &mut self,
        tenant: &str,
        agent: &str,
        obs: &Observation,
    ) -> Option<AgentAssessment> {
        let assessment = match self
            .profiles
            .get_mut(tenant)
            .and_then(|agents| agents.get_mut(agent))
        {
            Some(profile) => profile.observe(obs, &self.config),
            None => {
                if self.tracked >= self.config.max_agents {
                    self.refused_observations += 1;
                    return None;
                }
                self.tracked += 1;
                let mut profile = AgentProfile::new();
                let assessment = profile.observe(obs, &self.config);
                self.profiles
                    .entry(tenant.to_owned())
                    .or_default()
                    .insert(agent.to_owned(), profile);
                assessment
            }
        }?;
        Some(AgentAssessment {
            tenant: tenant.to_owned(),
            agent: agent.to_owned(),
            assessment,
        })
    }

    /// The periodic tick: closes and scores every window that ended at or before
    /// `now_nanos`, so an agent that went idle is still assessed. Ordered by window start,
    /// tenant, agent.
    pub fn tick(&mut self, now_nanos: i128) -> Vec<AgentAssessment> {
        let mut out = Vec::new();
        for (tenant, agents) in &mut self.profiles {
            for (agent, profile) in agents {
                if let Some(assessment) = profile.close_until(now_nanos, &self.config) {
                    out.push(AgentAssessment {
                        tenant: tenant.clone(),
                        agent: agent.clone(),
                        assessment,
                    });
                }
            }
        }
        out.sort_by(|a, b| {
            (a.assessment.window_start_nanos, &a.tenant, &a.agent).cmp(&(
                b.assessment.window_start_nanos,
                &b.tenant,
                &b.agent,
            ))
        });
        out
    }

    /// The profile of an agent, if tracked.
    pub fn profile(&self, tenant: &str, agent: &str) -> Option<&AgentProfile> {
        self.profiles.get(tenant)?.get(agent)
    }

    /// Stops tracking an agent (deleted, or its baseline must be relearned after a
    /// legitimate change of behaviour); whether it was tracked.
    pub fn forget(&mut self, tenant: &str, agent: &str) -> bool {
        let Some(agents) = self.profiles.get_mut(tenant) else {
            return false;
        };
        let removed = agents.remove(agent).is_some();
        if agents.is_empty() {
            self.profiles.remove(tenant);
        }
        if removed {
            self.tracked -= 1;
        }
        removed
    }

    /// Agents tracked.
    pub fn tracked_agents(&self) -> usize {
        self.tracked
    }

    /// Observations refused because `max_agents` agents were already tracked.
    pub fn refused_observations(&self) -> u64 {
        self.refused_observations
    }
}

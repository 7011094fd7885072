//! Operator configuration of the soft policies (SPEC §4.2: soft policies are configurable,
//! hard ones are not).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{PolicyError, PolicyKind, builtin};

/// Which soft policies run, and what `required_tags` requires. Part of the bundle hash.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SoftPolicyConfig {
    /// Soft policy ids switched off. A hard policy id here is an error: those cannot be
    /// disabled.
    pub disabled: BTreeSet<String>,
    /// Tags `required_tags` requires (matched ignoring case, `_`, `-` and spaces).
    pub required_tags: Vec<String>,
}

impl Default for SoftPolicyConfig {
    fn default() -> Self {
        SoftPolicyConfig {
            disabled: BTreeSet::new(),
            required_tags: ["Owner", "Environment", "CostCenter"]
                .into_iter()
                .map(String::from)
                .collect(),
        }
    }
}

impl SoftPolicyConfig {
    /// Whether the soft policy `id` runs.
    pub fn enabled(&self, id: &str) -> bool {
        !self.disabled.contains(id)
    }

    /// Refuses to disable a hard policy or a policy that does not exist, and blank tag names.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for id in &self.disabled {
            match builtin::find(id) {
                Some(policy) if policy.kind == PolicyKind::Soft => {}
                Some(_) => {
                    return Err(PolicyError::Config(format!(
                        "{id} is a hard policy and cannot be disabled"
                    )));
                }
                None => {
                    return Err(PolicyError::Config(format!(
                        "{id} is not a soft policy (soft policies: {})",
                        soft_ids().join(", ")
                    )));
                }
            }
        }
        if self.required_tags.iter().any(|t| t.trim().is_empty()) {
            return Err(PolicyError::Config(
                "required_tags contains a blank tag name".to_string(),
            ));
        }
        Ok(())
    }
}

fn soft_ids() -> Vec<&'static str> {
    builtin::BUILTIN_POLICIES
        .iter()
        .filter(|p| p.kind == PolicyKind::Soft)
        .map(|p| p.id)
        .collect()
}

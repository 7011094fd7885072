//! What an override needs before it is granted: how many distinct approvers, and which roles
//! must be among them — derived from the review's violations and required approvals.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Outcome, OverrideError, ReviewFacts, Role};
use crate::policy::{Approval, Effect};

/// Default number of distinct approvers (SPEC §4.5).
pub const DEFAULT_MIN_APPROVERS: u32 = 2;

/// Most approvers a configuration may require.
pub const MAX_MIN_APPROVERS: u32 = 16;

/// Default time an override request stays open: 24 hours.
pub const DEFAULT_TTL_SECONDS: u64 = 24 * 60 * 60;

/// Longest time an override request may stay open: 365 days.
pub const MAX_TTL_SECONDS: u64 = 365 * 24 * 60 * 60;

/// The roles overriding a violation of each built-in policy needs (an empty list: any
/// approver). Security controls need `security`, cost controls `finance`, and skipping the
/// change ticket or the deletion confirmation — accountability for a production change or a
/// destruction — a `manager`. Every built-in policy is listed (a test holds this table to
/// [`crate::policy::BUILTIN_POLICIES`]); a policy id not listed and not an operator policy
/// needs `security`.
pub const BUILTIN_POLICY_ROLES: &[(&str, &[Role])] = &[
    ("production_change_requires_ticket", &[Role::Manager]),
    ("deletion_requires_confirmation", &[Role::Manager]),
    ("no_public_production_access", &[Role::Security]),
    ("cost_threshold_approval", &[Role::Finance]),
    ("no_audit_modification", &[Role::Security]),
    ("pci_baseline_requirements", &[Role::Security]),
    ("gdpr_data_residency", &[Role::Security]),
    ("enable_encryption_by_default", &[Role::Security]),
    ("use_reserved_instances", &[Role::Finance]),
    ("required_tags", &[]),
];

/// The roles overriding a missing approval needs: `finance` for finance, `security` for
/// security, `manager` for a change ticket or a deletion confirmation, none (any approver) for
/// a human reviewer's acceptance.
pub fn approval_roles(approval: Approval) -> &'static [Role] {
    match approval {
        Approval::ChangeTicket | Approval::UserDeletionConfirmation => &[Role::Manager],
        Approval::Finance => &[Role::Finance],
        Approval::Security => &[Role::Security],
        Approval::Human => &[],
    }
}

/// Operator configuration of overrides.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct OverrideConfig {
    /// Distinct approvers needed, 1..=[`MAX_MIN_APPROVERS`] (default 2).
    pub min_approvers: u32,
    /// How long a request stays open, 1..=[`MAX_TTL_SECONDS`] seconds (default 24 h).
    pub ttl_seconds: u64,
    /// Whether every approval must be signed with the approver's registered key.
    pub require_signatures: bool,
    /// Roles per policy id. For a built-in policy they are added to
    /// [`BUILTIN_POLICY_ROLES`] (configuration can add requirements, never remove them); for
    /// an operator policy (`operator.<name>`) they replace the default `security` — the
    /// operator owns that policy and could as well remove it. Any other id is an error.
    pub policy_roles: BTreeMap<String, BTreeSet<Role>>,
}

impl Default for OverrideConfig {
    fn default() -> Self {
        OverrideConfig {
            min_approvers: DEFAULT_MIN_APPROVERS,
            ttl_seconds: DEFAULT_TTL_SECONDS,
            require_signatures: false,
            policy_roles: BTreeMap::new(),
        }
    }
}

impl OverrideConfig {
    /// Refuses out-of-range numbers and role entries for policies that do not exist.
    pub fn validate(&self) -> Result<(), OverrideError> {
        if !(1..=MAX_MIN_APPROVERS).contains(&self.min_approvers) {
            return Err(OverrideError::Config(format!(
                "min_approvers must be between 1 and {MAX_MIN_APPROVERS}, not {}",
                self.min_approvers
            )));
        }
        if !(1..=MAX_TTL_SECONDS).contains(&self.ttl_seconds) {
            return Err(OverrideError::Config(format!(
                "ttl_seconds must be between 1 and {MAX_TTL_SECONDS}, not {}",
                self.ttl_seconds
            )));
        }
        for id in self.policy_roles.keys() {
            let operator = id
                .strip_prefix("operator.")
                .is_some_and(|name| !name.is_empty());
            if !operator && builtin_roles(id).is_none() {
                return Err(OverrideError::Config(format!(
                    "policy_roles names `{id}`, which is neither a built-in policy nor an operator policy (`operator.<name>`)"
                )));
            }
        }
        Ok(())
    }

    /// The time a request stays open, in nanoseconds.
    pub fn ttl_nanos(&self) -> i128 {
        i128::from(self.ttl_seconds) * 1_000_000_000
    }
}

fn add(
    roles: &mut BTreeMap<Role, BTreeSet<String>>,
    needed: impl IntoIterator<Item = Role>,
    source: &str,
) {
    for role in needed {
        roles.entry(role).or_default().insert(source.to_owned());
    }
}

fn builtin_roles(id: &str) -> Option<&'static [Role]> {
    BUILTIN_POLICY_ROLES
        .iter()
        .find(|(policy, _)| *policy == id)
        .map(|(_, roles)| *roles)
}

/// What an override needs: at least `min_approvers` distinct approvers, among whom every role
/// in `roles` is held by someone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ApprovalRequirements {
    /// Distinct approvers needed (at least 1).
    pub min_approvers: u32,
    /// Each required role, with why: `policy:<id>` (a violation of that policy),
    /// `approval:<name>` (a required approval), `config:<id>` (the configuration's
    /// `policy_roles`), `review:unexplained_veto` (a veto no violation accounts for).
    pub roles: BTreeMap<Role, BTreeSet<String>>,
    /// Whether every approval must be signed.
    pub require_signatures: bool,
}

impl ApprovalRequirements {
    /// The requirements for overriding `review` under `config` (validated first).
    ///
    /// Every violation that blocks (vetoes or escalates; informational ones do not) adds the
    /// roles of its policy: [`BUILTIN_POLICY_ROLES`] plus the configured ones for a built-in
    /// policy; the configured ones, else `security`, for an operator policy; `security` for
    /// any other id (fail secure). Its cure and every required approval add
    /// [`approval_roles`]. A vetoed review none of whose violations vetoes (an intent
    /// mismatch, a safety concern, a component that failed) needs `security`.
    pub fn derive(review: &ReviewFacts, config: &OverrideConfig) -> Result<Self, OverrideError> {
        config.validate()?;
        let mut roles: BTreeMap<Role, BTreeSet<String>> = BTreeMap::new();
        let mut vetoing = false;
        for violation in &review.violations {
            let cure = match violation.effect() {
                Effect::Inform => continue,
                Effect::Veto => {
                    vetoing = true;
                    None
                }
                Effect::Escalate(approval) => Some(approval),
            };
            let id = violation.policy.as_str();
            let policy = format!("policy:{id}");
            let configured = config.policy_roles.get(id);
            match (builtin_roles(id), configured) {
                (Some(builtin), extra) => {
                    add(&mut roles, builtin.iter().copied(), &policy);
                    if let Some(extra) = extra {
                        add(&mut roles, extra.iter().copied(), &format!("config:{id}"));
                    }
                }
                (None, Some(replaced)) if id.starts_with("operator.") => {
                    add(
                        &mut roles,
                        replaced.iter().copied(),
                        &format!("config:{id}"),
                    );
                }
                (None, _) => add(&mut roles, [Role::Security], &policy),
            }
            if let Some(approval) = cure {
                add(
                    &mut roles,
                    approval_roles(approval).iter().copied(),
                    &policy,
                );
            }
        }
        for approval in &review.required_approvals {
            let source = format!("approval:{}", approval.as_str());
            add(
                &mut roles,
                approval_roles(*approval).iter().copied(),
                &source,
            );
        }
        if review.decision == Outcome::Vetoed && !vetoing {
            add(&mut roles, [Role::Security], "review:unexplained_veto");
        }
        Ok(ApprovalRequirements {
            min_approvers: config.min_approvers,
            roles,
            require_signatures: config.require_signatures,
        })
    }

    /// The required roles none of `held` covers.
    pub fn missing_roles(&self, held: &BTreeSet<Role>) -> BTreeSet<Role> {
        self.roles
            .keys()
            .filter(|role| !held.contains(role))
            .copied()
            .collect()
    }

    /// Whether `approvers` distinct approvers holding `held` between them meet the
    /// requirements.
    pub fn met(&self, approvers: usize, held: &BTreeSet<Role>) -> bool {
        approvers >= self.min_approvers.max(1) as usize && self.missing_roles(held).is_empty()
    }

    /// Refuses requirements that could be met by nobody (zero approvers) — read back from a
    /// record.
    pub(super) fn check(&self) -> Result<(), OverrideError> {
        if !(1..=MAX_MIN_APPROVERS).contains(&self.min_approvers) {
            return Err(OverrideError::Rebuild(format!(
                "min_approvers {} is outside 1..={MAX_MIN_APPROVERS}",
                self.min_approvers
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::BUILTIN_POLICIES;

    /// A new built-in policy must be given its override roles.
    #[test]
    fn role_table_covers_every_builtin_policy() {
        let table: BTreeSet<&str> = BUILTIN_POLICY_ROLES.iter().map(|(id, _)| *id).collect();
        let builtin: BTreeSet<&str> = BUILTIN_POLICIES.iter().map(|p| p.id).collect();
        assert_eq!(table, builtin);
    }
}

//! The built-in policy bundle, compiled into the binary: the Rego sources, their unit tests,
//! and the table that fixes each built-in policy's kind and cure.

use super::{Approval, PolicyKind};

/// One built-in policy: its id, consequence and rule (SPEC §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinPolicy {
    /// Policy id; its Rego package is `custos.<kind>.<id>`.
    pub id: &'static str,
    /// Hard (cannot be disabled) or soft (configurable).
    pub kind: PolicyKind,
    /// The approval that cures a violation; `None` for a hard policy means veto, for a soft
    /// one information only.
    pub cure: Option<Approval>,
    /// The rule, in one sentence.
    pub rule: &'static str,
    /// The Rego source.
    pub rego: &'static str,
    /// Its Rego unit tests.
    pub tests: &'static str,
}

impl BuiltinPolicy {
    /// Path of the source inside the bundle (`builtin/hard/<id>.rego`).
    pub fn path(&self) -> String {
        format!("builtin/{}/{}.rego", kind_dir(self.kind), self.id)
    }

    /// Path of the unit tests inside the bundle (`builtin/hard/<id>_test.rego`).
    pub fn test_path(&self) -> String {
        format!("builtin/{}/{}_test.rego", kind_dir(self.kind), self.id)
    }

    /// The Rego path of its violations (`data.custos.hard.<id>.violations`).
    pub(crate) fn violations_rule(&self) -> String {
        format!("data.custos.{}.{}.violations", kind_dir(self.kind), self.id)
    }

    /// The Rego path of a soft policy's `evaluated` flag.
    pub(crate) fn evaluated_rule(&self) -> String {
        format!("data.custos.{}.{}.evaluated", kind_dir(self.kind), self.id)
    }
}

fn kind_dir(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::Hard => "hard",
        PolicyKind::Soft => "soft",
    }
}

/// Helpers every built-in policy imports (`package custos.lib`).
pub(crate) const LIB: (&str, &str) = (
    "builtin/lib/custos.rego",
    include_str!("../../policies/lib/custos.rego"),
);

macro_rules! builtin {
    ($kind:ident, $dir:literal, $id:literal, $cure:expr, $rule:literal) => {
        BuiltinPolicy {
            id: $id,
            kind: PolicyKind::$kind,
            cure: $cure,
            rule: $rule,
            rego: include_str!(concat!("../../policies/", $dir, "/", $id, ".rego")),
            tests: include_str!(concat!("../../policies/", $dir, "/", $id, "_test.rego")),
        }
    };
}

/// Every built-in policy: the seven hard policies of SPEC §4.2 in the SPEC's order, then the
/// soft ones. This table, not the Rego, decides kind and cure.
pub const BUILTIN_POLICIES: &[BuiltinPolicy] = &[
    builtin!(
        Hard,
        "hard",
        "production_change_requires_ticket",
        Some(Approval::ChangeTicket),
        "a change to a production resource needs change_ticket_id"
    ),
    builtin!(
        Hard,
        "hard",
        "deletion_requires_confirmation",
        Some(Approval::UserDeletionConfirmation),
        "a delete/destroy/terminate/replace needs deletion_confirmed"
    ),
    builtin!(
        Hard,
        "hard",
        "no_public_production_access",
        None,
        "no ingress from 0.0.0.0/0 or ::/0 to a production resource"
    ),
    builtin!(
        Hard,
        "hard",
        "cost_threshold_approval",
        Some(Approval::Finance),
        "estimated monthly cost (or increase) > 1000 needs finance_approved"
    ),
    builtin!(
        Hard,
        "hard",
        "no_audit_modification",
        None,
        "the plan may not modify custos itself, audit logs, CloudTrail, GuardDuty or other logging infrastructure"
    ),
    builtin!(
        Hard,
        "hard",
        "pci_baseline_requirements",
        None,
        "a PCI workload must have encryption, logging, firewall and isolation"
    ),
    builtin!(
        Hard,
        "hard",
        "gdpr_data_residency",
        None,
        "EU personal data must stay in EU regions"
    ),
    builtin!(
        Soft,
        "soft",
        "enable_encryption_by_default",
        Some(Approval::Human),
        "resources should be encrypted at rest"
    ),
    builtin!(
        Soft,
        "soft",
        "use_reserved_instances",
        None,
        "long-running production compute should use reserved capacity"
    ),
    builtin!(
        Soft,
        "soft",
        "required_tags",
        Some(Approval::Human),
        "resources carry the required tags (Owner, Environment, CostCenter by default)"
    ),
];

/// The built-in policy with this id.
pub(crate) fn find(id: &str) -> Option<&'static BuiltinPolicy> {
    BUILTIN_POLICIES.iter().find(|p| p.id == id)
}

//! Reading what a policy's `violations` rule produced into typed [`Violation`]s, holding it
//! to the output contract of the module docs. Anything outside the contract is an error —
//! never silently dropped, because a dropped violation would approve.

use serde_json::{Map, Value};

use crate::plan::read::kind_of;

use super::{Approval, PolicyError, PolicyKind, Severity, Violation};

/// Whose output is being read: a built-in policy's consequence is fixed by custos's table;
/// an operator policy states its own.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Origin {
    /// A built-in policy: kind and cure from the table; `kind`/`cure` keys are refused.
    Builtin {
        kind: PolicyKind,
        cure: Option<Approval>,
    },
    /// An operator policy: hard unless it says `"kind": "soft"`, cure as named.
    Operator,
}

/// The violations in `value` (the JSON form of the rule's value; `None` when undefined).
pub(crate) fn violations(
    policy: &str,
    value: Option<Value>,
    origin: Origin,
) -> Result<Vec<Violation>, PolicyError> {
    let malformed = |message: String| PolicyError::MalformedOutput {
        policy: policy.to_string(),
        message,
    };
    let items = match value {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(malformed(format!(
                "violations must be a set or an array of objects, not {}",
                kind_of(&other)
            )));
        }
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Object(fields) => violation(policy, fields, origin).map_err(malformed),
            other => Err(malformed(format!(
                "a violation must be an object, not {}",
                kind_of(&other)
            ))),
        })
        .collect()
}

fn violation(
    policy: &str,
    mut fields: Map<String, Value>,
    origin: Origin,
) -> Result<Violation, String> {
    let message = match fields.remove("message") {
        Some(Value::String(m)) if !m.trim().is_empty() => m,
        Some(_) => return Err("`message` must be a non-empty string".to_string()),
        None => return Err("a violation needs a `message`".to_string()),
    };
    let severity = match fields.remove("severity") {
        Some(Value::String(s)) => parse_severity(&s)?,
        Some(_) => return Err("`severity` must be a string".to_string()),
        None => return Err(format!("violation {message:?} needs a `severity`")),
    };
    let evidence = fields.remove("evidence").unwrap_or(Value::Null);
    let (kind, cure) = match origin {
        Origin::Builtin { kind, cure } => (kind, cure),
        Origin::Operator => (
            operator_kind(fields.remove("kind"))?,
            operator_cure(fields.remove("cure"))?,
        ),
    };
    if let Some(key) = fields.keys().next() {
        return Err(format!(
            "unexpected key `{key}` (allowed: message, severity, evidence{})",
            match origin {
                Origin::Builtin { .. } => "",
                Origin::Operator => ", cure, kind",
            }
        ));
    }
    Ok(Violation {
        policy: policy.to_string(),
        kind,
        severity,
        message,
        evidence,
        cure,
    })
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s)
        .ok_or_else(|| format!("unknown severity {s:?} (info, low, medium, high, critical)"))
}

fn operator_kind(value: Option<Value>) -> Result<PolicyKind, String> {
    match value {
        None => Ok(PolicyKind::Hard),
        Some(Value::String(s)) if s == "hard" => Ok(PolicyKind::Hard),
        Some(Value::String(s)) if s == "soft" => Ok(PolicyKind::Soft),
        Some(other) => Err(format!("`kind` must be \"hard\" or \"soft\", not {other}")),
    }
}

fn operator_cure(value: Option<Value>) -> Result<Option<Approval>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Approval::parse(&s).map(Some).ok_or_else(|| {
            format!(
                "unknown cure {s:?} (change_ticket, user_deletion_confirmation, finance, security, human)"
            )
        }),
        Some(other) => Err(format!("`cure` must be a string, not {other}")),
    }
}

/// A soft policy's `evaluated` flag: a boolean, nothing else.
pub(crate) fn evaluated_flag(policy: &str, value: Option<Value>) -> Result<bool, PolicyError> {
    match value {
        Some(Value::Bool(b)) => Ok(b),
        other => Err(PolicyError::MalformedOutput {
            policy: policy.to_string(),
            message: format!(
                "`evaluated` must be a boolean, not {}",
                other.as_ref().map_or("undefined", kind_of)
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const BUILTIN: Origin = Origin::Builtin {
        kind: PolicyKind::Hard,
        cure: Some(Approval::Finance),
    };

    #[test]
    fn contract() {
        let ok = json!([{"message": "m", "severity": "high", "evidence": {"a": 1}}]);
        let cases: Vec<(Option<Value>, Origin, Result<usize, &str>)> = vec![
            (None, BUILTIN, Ok(0)),
            (Some(json!([])), BUILTIN, Ok(0)),
            (Some(ok.clone()), BUILTIN, Ok(1)),
            (Some(ok), Origin::Operator, Ok(1)),
            (Some(json!(null)), BUILTIN, Err("set or an array")),
            (
                Some(json!({"message": "m"})),
                BUILTIN,
                Err("set or an array"),
            ),
            (Some(json!(["m"])), BUILTIN, Err("must be an object")),
            (
                Some(json!([{"message": "", "severity": "low"}])),
                BUILTIN,
                Err("non-empty"),
            ),
            (
                Some(json!([{"message": "m"}])),
                BUILTIN,
                Err("needs a `severity`"),
            ),
            (
                Some(json!([{"message": "m", "severity": "LOW"}])),
                BUILTIN,
                Err("unknown severity"),
            ),
            (
                Some(json!([{"message": "m", "severity": "low", "cure": "finance"}])),
                BUILTIN,
                Err("unexpected key `cure`"),
            ),
            (
                Some(json!([{"message": "m", "severity": "low", "kind": "medium"}])),
                Origin::Operator,
                Err("`kind`"),
            ),
        ];
        for (value, origin, expect) in cases {
            let got = violations("p", value.clone(), origin);
            match (expect, got) {
                (Ok(n), Ok(found)) => assert_eq!(found.len(), n, "{value:?}"),
                (Err(fragment), Err(PolicyError::MalformedOutput { message, .. })) => {
                    assert!(message.contains(fragment), "{value:?}: {message}");
                }
                (expect, got) => panic!("{value:?}: expected {expect:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn builtin_consequence_comes_from_the_table() {
        let found = violations(
            "cost_threshold_approval",
            Some(json!([{"message": "m", "severity": "medium"}])),
            BUILTIN,
        );
        let Ok(found) = found else {
            panic!("{found:?}")
        };
        assert_eq!(found[0].kind, PolicyKind::Hard);
        assert_eq!(found[0].cure, Some(Approval::Finance));
        assert_eq!(found[0].evidence, Value::Null);
    }
}

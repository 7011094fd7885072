//! When an executed attribute value is the approved one, and which attributes are a security
//! matter. The tolerances are listed in the module docs of [`super`].

use serde_json::Value;

use crate::plan::Ingress;

/// What sensitive values are replaced by, in plans and execution results alike.
const REDACTED: &str = "(sensitive)";

/// Lists longer than this are compared in order only (matching in any order is quadratic).
const UNORDERED_LIMIT: usize = 256;

/// Words that make an attribute security-relevant: network exposure (`ingress`, `egress`,
/// `cidr`, `public`, `security_group`, `firewall`, `source_range`, `acl`), encryption
/// (`encrypt`, `kms`, `ssl`, `tls`), access (`policy`, `iam`, `principal`, `role`,
/// `permission`) and audit (`logging`).
const SECURITY_WORDS: &[&str] = &[
    "ingress",
    "egress",
    "cidr",
    "public",
    "security_group",
    "firewall",
    "source_range",
    "acl",
    "encrypt",
    "kms",
    "ssl",
    "tls",
    "policy",
    "iam",
    "principal",
    "role",
    "permission",
    "logging",
];

/// Whether a change of this attribute is a security matter (its name, any case, contains one
/// of `ingress`, `egress`, `cidr`, `public`, `security_group`, `firewall`, `source_range`,
/// `acl`, `encrypt`, `kms`, `ssl`, `tls`, `policy`, `iam`, `principal`, `role`,
/// `permission`, `logging`): a changed value of one is critical rather than high.
pub fn is_security_relevant(attribute: &str) -> bool {
    let name = attribute.to_lowercase();
    SECURITY_WORDS.iter().any(|w| name.contains(w))
}

/// Whether `executed` differs from `approved` in a member whose name is security-relevant
/// (`root_block_device[0].encrypted`), at any depth; lists are followed element by element.
pub(super) fn differs_in_security_member(approved: &Value, executed: &Value) -> bool {
    match (approved, executed) {
        (Value::Object(a), Value::Object(e)) => a.iter().any(|(key, value)| {
            e.get(key).is_some_and(|ev| {
                !matches(value, ev)
                    && (is_security_relevant(key) || differs_in_security_member(value, ev))
            })
        }),
        (Value::Array(a), Value::Array(e)) if a.len() == e.len() => a
            .iter()
            .zip(e)
            .any(|(av, ev)| !matches(av, ev) && differs_in_security_member(av, ev)),
        _ => false,
    }
}

/// Whether `executed` is the value `approved` said.
pub(super) fn matches(approved: &Value, executed: &Value) -> bool {
    if approved == executed || is_redacted(approved) || is_redacted(executed) {
        return true;
    }
    match (approved, executed) {
        (Value::Null, other) | (other, Value::Null) => is_empty(other),
        (Value::Number(a), Value::Number(b)) => a.as_f64().is_some() && a.as_f64() == b.as_f64(),
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => {
            let parsed = s.trim().parse::<f64>().ok().filter(|f| f.is_finite());
            parsed.is_some() && parsed == n.as_f64()
        }
        (Value::Bool(b), Value::String(s)) | (Value::String(s), Value::Bool(b)) => s
            .trim()
            .eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        (Value::Object(a), Value::Object(e)) => a
            .iter()
            .all(|(key, value)| e.get(key).is_none_or(|ev| matches(value, ev))),
        (Value::Array(a), Value::Array(e)) => lists_match(a, e),
        _ => false,
    }
}

/// Lists match when they have the same length and their elements match in order or, short
/// lists, in some order; a `null` approved element (unknown at plan time) matches anything.
fn lists_match(approved: &[Value], executed: &[Value]) -> bool {
    let element = |a: &Value, e: &Value| a.is_null() || matches(a, e);
    if approved.len() != executed.len() {
        return false;
    }
    if approved.iter().zip(executed).all(|(a, e)| element(a, e)) {
        return true;
    }
    if approved.len() > UNORDERED_LIMIT {
        return false;
    }
    // Sets (security group rules, for one) may come back in another order. Greedy matching,
    // most specific approved elements first so wildcards do not take a needed partner.
    let mut order: Vec<&Value> = approved.iter().collect();
    order.sort_by_key(|a| a.is_null());
    let mut used = vec![false; executed.len()];
    order.into_iter().all(|a| {
        let partner = executed
            .iter()
            .enumerate()
            .find(|(i, e)| !used.get(*i).copied().unwrap_or(true) && element(a, e));
        match partner {
            Some((i, _)) => {
                if let Some(slot) = used.get_mut(i) {
                    *slot = true;
                }
                true
            }
            None => false,
        }
    })
}

/// `"(sensitive)"`, or the ledger's `"[REDACTED]"`: an approved plan read back from the
/// ledger has its secret-looking attributes redacted (SPEC §3.1), and such a value is unknown,
/// not a different one.
fn is_redacted(value: &Value) -> bool {
    value.as_str() == Some(REDACTED) || value.as_str() == Some(custos_core::entry::REDACTED)
}

/// What legacy Terraform providers store for an unset attribute.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(true) | Value::Number(_) => false,
    }
}

/// Executed ingress rules that no approved rule admits: same source, and ports and protocol
/// equal where both sides state them.
pub(super) fn unapproved_ingress<'a>(
    approved: &[Ingress],
    executed: &'a [Ingress],
) -> Vec<&'a Ingress> {
    let agree = |a: Option<u16>, e: Option<u16>| a.is_none() || e.is_none() || a == e;
    let covers = |a: &Ingress, e: &Ingress| {
        a.cidr == e.cidr
            && agree(a.from_port, e.from_port)
            && agree(a.to_port, e.to_port)
            && (a.protocol.is_none()
                || e.protocol.is_none()
                || a.protocol.as_deref().map(str::to_lowercase)
                    == e.protocol.as_deref().map(str::to_lowercase))
    };
    executed
        .iter()
        .filter(|e| !approved.iter().any(|a| covers(a, e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn value_tolerances() {
        let cases = [
            (json!(443), json!(443), true),
            (json!(443), json!("443"), true),
            (json!("443"), json!(443.0), true),
            (json!(443), json!("444"), false),
            (json!(443), json!("NaN"), false),
            (json!(true), json!("true"), true),
            (json!(true), json!("TRUE"), true),
            (json!(false), json!("true"), false),
            (json!("(sensitive)"), json!("hunter2"), true),
            (json!("a"), json!("(sensitive)"), true),
            (json!("[REDACTED]"), json!("hunter2"), true),
            (json!(null), json!(""), true),
            (json!(null), json!([]), true),
            (json!(null), json!(false), true),
            (json!(null), json!("x"), false),
            (json!(""), json!(null), true),
            (json!("10.0.0.0/8"), json!("0.0.0.0/0"), false),
            (json!({"a": 1}), json!({"a": 1, "computed": "x"}), true),
            (json!({"a": 1, "b": 2}), json!({"a": 1}), true),
            (json!({"a": 1}), json!({"a": 2}), false),
            (json!([1, 2]), json!([2, 1]), true),
            (json!([1, 2]), json!([1, 2, 3]), false),
            (json!([null, 2]), json!([7, 2]), true),
            (json!([null, 2]), json!([2, 7]), true),
            (
                json!([{"cidr_blocks": ["10.0.0.0/8"], "from_port": 443}]),
                json!([{"cidr_blocks": ["0.0.0.0/0"], "from_port": 443, "self": false}]),
                false,
            ),
            (json!("x"), json!(["x"]), false),
            (json!({}), json!([]), false),
        ];
        for (approved, executed, expected) in cases {
            assert_eq!(
                matches(&approved, &executed),
                expected,
                "{approved} vs {executed}"
            );
        }
    }

    #[test]
    fn security_members_deep_inside_values() {
        let cases = [
            (
                json!([{"encrypted": true, "size": 1}]),
                json!([{"encrypted": false, "size": 1}]),
                true,
            ),
            (
                json!([{"encrypted": true, "size": 1}]),
                json!([{"encrypted": true, "size": 2}]),
                false,
            ),
            (
                json!({"a": {"b": {"kms_key_id": "k1"}}}),
                json!({"a": {"b": {"kms_key_id": "k2"}}}),
                true,
            ),
            (json!({"cidr": "x"}), json!({"cidr": "x"}), false),
            (json!([1]), json!([1, 2]), false),
            (json!("a"), json!("b"), false),
        ];
        for (approved, executed, expected) in cases {
            assert_eq!(
                differs_in_security_member(&approved, &executed),
                expected,
                "{approved} vs {executed}"
            );
        }
    }

    #[test]
    fn security_relevant_attributes() {
        for name in [
            "ingress",
            "cidr_blocks",
            "publicly_accessible",
            "kms_key_id",
            "storage_encrypted",
            "policy",
            "iam_instance_profile",
            "vpc_security_group_ids",
            "source_ranges",
            "Logging",
        ] {
            assert!(is_security_relevant(name), "{name}");
        }
        for name in ["instance_type", "tags", "desired_capacity", "name"] {
            assert!(!is_security_relevant(name), "{name}");
        }
    }

    fn rule(cidr: &str, from: Option<u16>, to: Option<u16>, protocol: Option<&str>) -> Ingress {
        Ingress {
            cidr: cidr.to_owned(),
            public: crate::plan::is_public(cidr),
            from_port: from,
            to_port: to,
            protocol: protocol.map(str::to_owned),
        }
    }

    #[test]
    fn ingress_beyond_the_approved_rules() {
        let approved = [rule("10.0.0.0/8", Some(443), Some(443), Some("tcp"))];
        let executed = [
            rule("10.0.0.0/8", Some(443), Some(443), None),
            rule("10.0.0.0/8", Some(443), Some(443), Some("TCP")),
            rule("0.0.0.0/0", Some(443), Some(443), Some("tcp")),
            rule("10.0.0.0/8", Some(22), Some(22), Some("tcp")),
        ];
        let opened: Vec<&str> = unapproved_ingress(&approved, &executed)
            .iter()
            .map(|r| r.cidr.as_str())
            .collect();
        assert_eq!(opened, ["0.0.0.0/0", "10.0.0.0/8"]);
    }
}

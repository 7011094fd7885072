//! Security controls (encryption, logging, firewall, isolation) read from a resource's
//! attributes. These are heuristics over attribute names common across providers, so an
//! attribute of a shape they do not expect says nothing rather than failing the plan.
//!
//! Each attribute below is read as a statement: `true`/`false` (or `"enabled"`, `"off"`, …);
//! a non-empty string, list or block means configured (`true`), unless it is a block whose
//! `enabled` says otherwise; `null`, `""`, `[]` and `{}` say nothing (the setting may live in a
//! separate resource, such as `aws_s3_bucket_logging`).
//!
//! | control | attributes (statement as is) | attributes (statement inverted) | resource types that are the control |
//! | --- | --- | --- | --- |
//! | encryption | `encrypted`, `storage_encrypted`, `at_rest_encryption_enabled`, `encrypt_at_rest`, `server_side_encryption`, `server_side_encryption_configuration`, `encryption_configuration`, `encryption_config`, `encryption`, `kms_key_id`, `kms_key_arn`, `kms_master_key_id`, `kms_key_name`, `disk_encryption_key`, `customer_managed_key` | | `aws_s3_bucket_server_side_encryption_configuration` |
//! | logging | `logging`, `logging_config`, `logging_enabled`, `enable_logging`, `access_logs`, `log_publishing_options`, `enabled_cloudwatch_logs_exports`, `enabled_cluster_log_types`, `log_config` | | `aws_s3_bucket_logging` |
//! | firewall | `vpc_security_group_ids`, `security_groups`, `security_group_ids`, `network_security_group_id`, `firewall` | | security groups and their rules, network ACLs, NSGs, firewalls |
//! | isolation | `isolation`, `isolated`, `private`, `internal` | `publicly_accessible`, `associate_public_ip_address`, `map_public_ip_on_launch`, `public_network_access_enabled`, `public`, `vpc_config[].endpoint_public_access` | |
//!
//! Also: an S3 `acl` of `public-read`, `public-read-write` or `authenticated-read` is not
//! isolated; an `aws_s3_bucket_public_access_block` is isolated when all four of its blocks are
//! on. Several statements about one control combine fail-secure: any `false` wins.

use serde_json::{Map, Value};

use super::Controls;

const ENCRYPTION: &[&str] = &[
    "encrypted",
    "storage_encrypted",
    "at_rest_encryption_enabled",
    "encrypt_at_rest",
    "server_side_encryption",
    "server_side_encryption_configuration",
    "encryption_configuration",
    "encryption_config",
    "encryption",
    "kms_key_id",
    "kms_key_arn",
    "kms_master_key_id",
    "kms_key_name",
    "disk_encryption_key",
    "customer_managed_key",
];

const LOGGING: &[&str] = &[
    "logging",
    "logging_config",
    "logging_enabled",
    "enable_logging",
    "access_logs",
    "log_publishing_options",
    "enabled_cloudwatch_logs_exports",
    "enabled_cluster_log_types",
    "log_config",
];

const FIREWALL: &[&str] = &[
    "vpc_security_group_ids",
    "security_groups",
    "security_group_ids",
    "network_security_group_id",
    "firewall",
];

const ISOLATION: &[&str] = &["isolation", "isolated", "private", "internal"];

const EXPOSURE: &[&str] = &[
    "publicly_accessible",
    "associate_public_ip_address",
    "map_public_ip_on_launch",
    "public_network_access_enabled",
    "public",
];

/// Resource types that are themselves a firewall.
const FIREWALL_TYPES: &[&str] = &[
    "aws_security_group",
    "aws_default_security_group",
    "aws_security_group_rule",
    "aws_vpc_security_group_ingress_rule",
    "aws_vpc_security_group_egress_rule",
    "aws_network_acl",
    "aws_default_network_acl",
    "aws_network_acl_rule",
    "aws_networkfirewall_firewall",
    "azurerm_network_security_group",
    "azurerm_network_security_rule",
    "azurerm_firewall",
    "google_compute_firewall",
];

/// What one attribute value says about a control.
fn statement(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_lowercase().as_str() {
            "" => None,
            "true" | "yes" | "on" | "enabled" => Some(true),
            "false" | "no" | "off" | "disabled" | "none" => Some(false),
            _ => Some(true),
        },
        Value::Array(items) => match items.first() {
            None => None,
            Some(Value::Object(block)) => block_statement(block),
            Some(_) => Some(true),
        },
        Value::Object(block) if block.is_empty() => None,
        Value::Object(block) => block_statement(block),
        Value::Null | Value::Number(_) => None,
    }
}

/// A configuration block: its `enabled` flag when it has one, else configured.
fn block_statement(block: &Map<String, Value>) -> Option<bool> {
    match block.get("enabled") {
        Some(Value::Bool(b)) => Some(*b),
        _ => Some(true),
    }
}

/// Statements of several attributes about one control, combined: any `false` wins.
fn combine(statements: impl IntoIterator<Item = Option<bool>>) -> Option<bool> {
    statements
        .into_iter()
        .flatten()
        .reduce(|all, one| all && one)
}

fn read(attributes: &Map<String, Value>, keys: &[&str]) -> Option<bool> {
    combine(keys.iter().map(|k| attributes.get(*k).and_then(statement)))
}

fn is(cond: bool) -> Option<bool> {
    cond.then_some(true)
}

/// The S3 canned ACLs that expose a bucket.
fn s3_acl(attributes: &Map<String, Value>) -> Option<bool> {
    let acl = attributes.get("acl").and_then(Value::as_str)?;
    matches!(
        acl,
        "public-read" | "public-read-write" | "authenticated-read"
    )
    .then_some(false)
}

fn public_access_block(resource_type: &str, attributes: &Map<String, Value>) -> Option<bool> {
    if resource_type != "aws_s3_bucket_public_access_block" {
        return None;
    }
    combine(
        [
            "block_public_acls",
            "block_public_policy",
            "ignore_public_acls",
            "restrict_public_buckets",
        ]
        .iter()
        .map(|k| Some(attributes.get(*k) == Some(&Value::Bool(true)))),
    )
}

/// `vpc_config[].endpoint_public_access` (EKS, Lambda).
fn endpoint_exposure(attributes: &Map<String, Value>) -> Option<bool> {
    let blocks = attributes.get("vpc_config")?.as_array()?;
    combine(
        blocks
            .iter()
            .filter_map(Value::as_object)
            .map(|b| b.get("endpoint_public_access").and_then(Value::as_bool)),
    )
}

/// The controls a resource of `resource_type` with these attributes has.
pub(crate) fn from_attributes(resource_type: &str, attributes: &Map<String, Value>) -> Controls {
    let exposure = combine([read(attributes, EXPOSURE), endpoint_exposure(attributes)]);
    Controls {
        encryption: combine([
            read(attributes, ENCRYPTION),
            is(resource_type == "aws_s3_bucket_server_side_encryption_configuration"),
        ]),
        logging: combine([
            read(attributes, LOGGING),
            is(resource_type == "aws_s3_bucket_logging"),
        ]),
        firewall: combine([
            read(attributes, FIREWALL),
            is(FIREWALL_TYPES.contains(&resource_type)),
        ]),
        isolation: combine([
            read(attributes, ISOLATION),
            exposure.map(|public| !public),
            s3_acl(attributes),
            public_access_block(resource_type, attributes),
        ]),
    }
}

/// `base` with every control `over` states replaced by that statement.
pub(crate) fn overlay(base: Controls, over: &Controls) -> Controls {
    Controls {
        encryption: over.encryption.or(base.encryption),
        logging: over.logging.or(base.logging),
        firewall: over.firewall.or(base.firewall),
        isolation: over.isolation.or(base.isolation),
    }
}

/// Statements from two sources about the same resource, combined: any `false` wins.
pub(crate) fn merge(a: &Controls, b: &Controls) -> Controls {
    Controls {
        encryption: combine([a.encryption, b.encryption]),
        logging: combine([a.logging, b.logging]),
        firewall: combine([a.firewall, b.firewall]),
        isolation: combine([a.isolation, b.isolation]),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `(encryption, logging, firewall, isolation)` of a resource.
    fn check(resource_type: &str, attributes: Value, expected: [Option<bool>; 4]) {
        let attributes = attributes.as_object().cloned().unwrap_or_default();
        let c = from_attributes(resource_type, &attributes);
        assert_eq!(
            [c.encryption, c.logging, c.firewall, c.isolation],
            expected,
            "{resource_type} {attributes:?}"
        );
    }

    #[test]
    fn controls_table() {
        let (t, f, n) = (Some(true), Some(false), None);
        check("aws_instance", json!({}), [n, n, n, n]);
        check(
            "aws_db_instance",
            json!({"storage_encrypted": false, "publicly_accessible": true, "enabled_cloudwatch_logs_exports": null, "vpc_security_group_ids": ["sg-1"]}),
            [f, n, t, f],
        );
        check(
            "aws_db_instance",
            json!({"storage_encrypted": true, "kms_key_id": "arn:aws:kms:k", "publicly_accessible": false, "enabled_cloudwatch_logs_exports": ["audit"]}),
            [t, t, n, t],
        );
        check(
            "aws_s3_bucket",
            json!({"acl": "public-read", "logging": [], "server_side_encryption_configuration": []}),
            [n, n, n, f],
        );
        check(
            "aws_s3_bucket",
            json!({"acl": "private", "logging": [{"target_bucket": "logs"}], "server_side_encryption_configuration": [{"rule": [{}]}]}),
            [t, t, n, n],
        );
        check(
            "aws_dynamodb_table",
            json!({"server_side_encryption": [{"enabled": true, "kms_key_arn": "k"}]}),
            [t, n, n, n],
        );
        check(
            "aws_lb",
            json!({"access_logs": [{"bucket": "b", "enabled": false}], "internal": true, "security_groups": []}),
            [n, f, n, t],
        );
        check(
            "aws_subnet",
            json!({"map_public_ip_on_launch": false}),
            [n, n, n, t],
        );
        check(
            "aws_instance",
            json!({"associate_public_ip_address": true, "vpc_security_group_ids": ["sg-1"]}),
            [n, n, t, f],
        );
        check("aws_security_group", json!({"ingress": []}), [n, n, t, n]);
        check(
            "google_compute_firewall",
            json!({"log_config": [{"metadata": "INCLUDE_ALL_METADATA"}]}),
            [n, t, t, n],
        );
        check(
            "aws_eks_cluster",
            json!({"enabled_cluster_log_types": ["api", "audit"], "encryption_config": [], "vpc_config": [{"endpoint_public_access": true}]}),
            [n, t, n, f],
        );
        check(
            "aws_s3_bucket_public_access_block",
            json!({"block_public_acls": true, "block_public_policy": true, "ignore_public_acls": true, "restrict_public_buckets": true}),
            [n, n, n, t],
        );
        check(
            "aws_s3_bucket_public_access_block",
            json!({"block_public_acls": true, "block_public_policy": false, "ignore_public_acls": true, "restrict_public_buckets": true}),
            [n, n, n, f],
        );
        check(
            "aws_s3_bucket_server_side_encryption_configuration",
            json!({}),
            [t, n, n, n],
        );
        check("aws_s3_bucket_logging", json!({}), [n, t, n, n]);
        // Generic plans' plain statements.
        check(
            "vm",
            json!({"encryption": "aes256", "logging": "off", "firewall": true, "isolated": true}),
            [t, f, t, t],
        );
        check(
            "vm",
            json!({"encryption": "none", "public": true}),
            [f, n, n, f],
        );
        // Odd shapes say nothing.
        check("x", json!({"encrypted": 1, "logging": {}}), [n, n, n, n]);
    }

    #[test]
    fn overlay_and_merge() {
        let base = Controls {
            encryption: Some(true),
            logging: Some(true),
            firewall: None,
            isolation: None,
        };
        let over = Controls {
            encryption: Some(false),
            firewall: Some(true),
            ..Controls::default()
        };
        let laid = overlay(base.clone(), &over);
        assert_eq!(
            [laid.encryption, laid.logging, laid.firewall, laid.isolation],
            [Some(false), Some(true), Some(true), None]
        );
        let merged = merge(&base, &over);
        assert_eq!(
            [
                merged.encryption,
                merged.logging,
                merged.firewall,
                merged.isolation
            ],
            [Some(false), Some(true), Some(true), None]
        );
    }
}

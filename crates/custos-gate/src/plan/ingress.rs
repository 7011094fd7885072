//! Ingress a resource allows: the CIDRs (or address prefixes) it admits traffic from, with
//! ports and protocol.
//!
//! Read from the resources that open ingress:
//!
//! | resource | where | counted when |
//! | --- | --- | --- |
//! | `aws_security_group`, `aws_default_security_group` | `ingress[]` blocks | always |
//! | `aws_security_group_rule` | the rule | `type = "ingress"` |
//! | `aws_vpc_security_group_ingress_rule` | `cidr_ipv4`, `cidr_ipv6` | always |
//! | `aws_network_acl_rule` | `cidr_block`, `ipv6_cidr_block` | `egress` not true, `rule_action = "allow"` |
//! | `aws_network_acl`, `aws_default_network_acl` | `ingress[]` blocks | `action = "allow"` |
//! | `azurerm_network_security_rule` | `source_address_prefix(es)`, `destination_port_range(s)` | `direction = Inbound`, `access = Allow` |
//! | `azurerm_network_security_group` | `security_rule[]` blocks, as above | as above |
//! | `google_compute_firewall` | `source_ranges` × `allow[]` (`protocol`, `ports`) | `direction` INGRESS or unset, not `disabled` |
//!
//! and from the generic plan's `ingress` rules, which use the same field names (`cidr`,
//! `cidr_blocks`, `source`, `port`, `from_port`/`to_port`, `ports`, `protocol`).
//!
//! [`Ingress::cidr`] holds the source as written: a CIDR, an Azure prefix or service tag, or,
//! for rules that admit another security group or a prefix list rather than addresses, that
//! group's or list's id (`source_security_group_id`, `security_groups`,
//! `referenced_security_group_id`, `prefix_list_ids`), or `self` for a group admitting its own
//! members. So a rule's ports are visible whatever it admits.
//!
//! A CIDR is public when it is the whole internet: any address with prefix length 0
//! (`0.0.0.0/0`, `::/0`), or Azure's `*`, `Internet` and `Any`. Protocol `-1` (all traffic)
//! has no ports. A negative port (ICMP's `-1`) means no port.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Map, Value};

use super::json::{self, Path};
use super::{Ingress, PlanError};

/// Fields holding sources (all of them are read, not aliases of each other).
const SOURCE_FIELDS: &[&str] = &[
    "cidr",
    "cidrs",
    "cidr_blocks",
    "cidr_block",
    "ipv6_cidr_blocks",
    "ipv6_cidr_block",
    "cidr_ipv4",
    "cidr_ipv6",
    "source",
    "sources",
    "source_ranges",
    "source_cidr",
    "source_address_prefix",
    "source_address_prefixes",
    "source_security_group_id",
    "security_groups",
    "referenced_security_group_id",
    "prefix_list_ids",
    "prefix_list_id",
];

/// Most ingress rules one resource may expand to: a guard against a plan that multiplies a
/// few thousand sources by a few thousand port ranges into billions of rules.
pub(crate) const MAX_RULES: usize = 100_000;

/// First and last port of a range (`None`: all, or not applicable).
type PortRange = (Option<u16>, Option<u16>);

/// What a port field may hold, for error messages.
const PORT_RANGE: &str = "a port 0-65535, a range such as 80-443, or *";

/// Whether `cidr` admits the whole internet.
pub fn is_public(cidr: &str) -> bool {
    let cidr = cidr.trim();
    if ["*", "internet", "any"]
        .iter()
        .any(|word| cidr.eq_ignore_ascii_case(word))
    {
        return true;
    }
    match cidr.rsplit_once('/') {
        Some((address, "0")) => address.parse::<IpAddr>().is_ok(),
        _ => false,
    }
}

/// The ingress a resource of `resource_type` opens, read from its attributes at `path`.
pub(crate) fn from_attributes(
    resource_type: &str,
    attributes: &Map<String, Value>,
    path: &Path,
) -> Result<Vec<Ingress>, PlanError> {
    let mut out = Vec::new();
    let text = |key: &str| {
        attributes
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_lowercase)
    };
    match resource_type {
        "aws_security_group" | "aws_default_security_group" => {
            blocks(attributes, "ingress", path, &mut out, |_| true)?;
        }
        "aws_security_group_rule" if text("type").as_deref() == Some("ingress") => {
            rule(attributes, path, &mut out)?;
        }
        "aws_vpc_security_group_ingress_rule" => rule(attributes, path, &mut out)?,
        "aws_network_acl_rule"
            if attributes.get("egress") != Some(&Value::Bool(true))
                && text("rule_action").as_deref() == Some("allow") =>
        {
            rule(attributes, path, &mut out)?;
        }
        "aws_network_acl" | "aws_default_network_acl" => {
            blocks(attributes, "ingress", path, &mut out, |block| {
                block.get("action").and_then(Value::as_str) == Some("allow")
            })?;
        }
        "azurerm_network_security_rule" if azure_allows_inbound(attributes) => {
            rule(attributes, path, &mut out)?;
        }
        "azurerm_network_security_group" => {
            blocks(
                attributes,
                "security_rule",
                path,
                &mut out,
                azure_allows_inbound,
            )?;
        }
        "google_compute_firewall" => google_firewall(attributes, path, &mut out)?,
        _ => {}
    }
    Ok(out)
}

/// The generic plan's `ingress` rules at `path`.
pub(crate) fn from_rules(rules: &[Value], path: &Path) -> Result<Vec<Ingress>, PlanError> {
    let mut out = Vec::new();
    for (i, item) in rules.iter().enumerate() {
        let item_path = path.index(i);
        match item {
            Value::Object(rule_fields) => rule(rule_fields, &item_path, &mut out)?,
            other => {
                return Err(json::wrong_type(
                    &item_path,
                    "an object (an ingress rule with `cidr`, `port`, `protocol`)",
                    other,
                ));
            }
        }
    }
    Ok(out)
}

/// Removes repeated rules, keeping the first of each.
pub(crate) fn dedup(rules: Vec<Ingress>) -> Vec<Ingress> {
    let mut seen = BTreeSet::new();
    rules
        .into_iter()
        .filter(|rule| seen.insert(rule.clone()))
        .collect()
}

/// Reads every block of `attributes[key]` that `wanted` accepts as a rule.
fn blocks(
    attributes: &Map<String, Value>,
    key: &str,
    path: &Path,
    out: &mut Vec<Ingress>,
    wanted: impl Fn(&Map<String, Value>) -> bool,
) -> Result<(), PlanError> {
    let path = path.key(key);
    match attributes.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Null => {}
                    Value::Object(block) if wanted(block) => rule(block, &path.index(i), out)?,
                    Value::Object(_) => {}
                    other => return Err(json::wrong_type(&path.index(i), "an object", other)),
                }
            }
            Ok(())
        }
        Some(other) => Err(json::wrong_type(&path, "an array of rule blocks", other)),
    }
}

/// An Azure rule that lets traffic in (direction Inbound; access Allow, or unstated).
fn azure_allows_inbound(rule_fields: &Map<String, Value>) -> bool {
    let is = |key: &str, expected: &str| {
        rule_fields
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case(expected))
    };
    let access_stated = rule_fields.get("access").is_some_and(|v| !v.is_null());
    is("direction", "inbound") && (!access_stated || is("access", "allow"))
}

/// One rule: every source CIDR × every port range.
fn rule(fields: &Map<String, Value>, path: &Path, out: &mut Vec<Ingress>) -> Result<(), PlanError> {
    let cidrs = cidrs(fields, path)?;
    if cidrs.is_empty() {
        return Ok(());
    }
    let protocol = protocol(fields, path)?;
    let ranges = port_ranges(fields, path, protocol.as_deref())?;
    push_all(&cidrs, &ranges, protocol.as_deref(), path, out)
}

/// Adds every source × port range, refusing more than [`MAX_RULES`] for one resource.
fn push_all(
    cidrs: &[&str],
    ranges: &[PortRange],
    protocol: Option<&str>,
    path: &Path,
    out: &mut Vec<Ingress>,
) -> Result<(), PlanError> {
    let total = cidrs
        .len()
        .saturating_mul(ranges.len())
        .saturating_add(out.len());
    if total > MAX_RULES {
        return Err(PlanError::TooLarge {
            path: path.to_string(),
            what: "ingress rules (sources × port ranges) for one resource",
            limit: MAX_RULES,
        });
    }
    for cidr in cidrs {
        for (from_port, to_port) in ranges {
            out.push(Ingress {
                cidr: (*cidr).to_owned(),
                public: is_public(cidr),
                from_port: *from_port,
                to_port: *to_port,
                protocol: protocol.map(str::to_owned),
            });
        }
    }
    Ok(())
}

/// Every source the rule names.
fn cidrs<'a>(fields: &'a Map<String, Value>, path: &Path) -> Result<Vec<&'a str>, PlanError> {
    let mut out = Vec::new();
    if fields.get("self") == Some(&Value::Bool(true)) {
        out.push("self");
    }
    for key in SOURCE_FIELDS {
        if let Some(value) = fields.get(*key) {
            out.extend(
                json::strings(value, &path.key(key))?
                    .into_iter()
                    .filter(|c| !c.trim().is_empty()),
            );
        }
    }
    Ok(out)
}

/// The rule's protocol, as written (a number is written as text).
fn protocol(fields: &Map<String, Value>, path: &Path) -> Result<Option<String>, PlanError> {
    match json::aliased(fields, &["protocol", "ip_protocol"], path)? {
        None => Ok(None),
        Some((_, value @ (Value::String(_) | Value::Number(_)))) => Ok(json::scalar_text(value)),
        Some((key, other)) => Err(json::wrong_type(&path.key(key), "a string", other)),
    }
}

/// The port ranges a rule opens; one `(None, None)` when it names none.
fn port_ranges(
    fields: &Map<String, Value>,
    path: &Path,
    protocol: Option<&str>,
) -> Result<Vec<PortRange>, PlanError> {
    if protocol == Some("-1") {
        return Ok(vec![(None, None)]);
    }
    let from = json::aliased(fields, &["from_port"], path)?;
    let to = json::aliased(fields, &["to_port"], path)?;
    if from.is_some() || to.is_some() {
        let from_port = from
            .map(|(key, v)| port_range(v, &path.key(key)))
            .transpose()?
            .and_then(|(first, _)| first);
        let to_port = to
            .map(|(key, v)| port_range(v, &path.key(key)))
            .transpose()?
            .and_then(|(_, last)| last);
        return Ok(vec![(from_port, to_port)]);
    }
    let mut ranges = Vec::new();
    for key in [
        "port",
        "ports",
        "port_range",
        "destination_port_range",
        "destination_port_ranges",
    ] {
        match fields.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if !item.is_null() {
                        ranges.push(port_range(item, &path.key(key).index(i))?);
                    }
                }
            }
            Some(value) => ranges.push(port_range(value, &path.key(key))?),
        }
    }
    if ranges.is_empty() {
        ranges.push((None, None));
    }
    Ok(ranges)
}

/// A port or port range: `443`, `"443"`, `"80-443"`, `"*"`; negative numbers mean none.
fn port_range(value: &Value, path: &Path) -> Result<PortRange, PlanError> {
    let out_of_range = || PlanError::OutOfRange {
        path: path.to_string(),
        found: json::describe(value),
        range: PORT_RANGE,
    };
    let port = |text: &str| text.trim().parse::<u16>().map_err(|_| out_of_range());
    match value {
        Value::Number(n) => match n.as_i64() {
            Some(p) if p < 0 => Ok((None, None)),
            Some(p) => u16::try_from(p)
                .map(|p| (Some(p), Some(p)))
                .map_err(|_| out_of_range()),
            None => Err(out_of_range()),
        },
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() || s == "*" || s.eq_ignore_ascii_case("any") || s == "-1" {
                return Ok((None, None));
            }
            match s.split_once('-') {
                Some((first, last)) => Ok((Some(port(first)?), Some(port(last)?))),
                None => port(s).map(|p| (Some(p), Some(p))),
            }
        }
        other => Err(json::wrong_type(path, PORT_RANGE, other)),
    }
}

/// A Google firewall: `source_ranges` × each `allow` block's protocol and ports.
fn google_firewall(
    fields: &Map<String, Value>,
    path: &Path,
    out: &mut Vec<Ingress>,
) -> Result<(), PlanError> {
    let ingress = fields
        .get("direction")
        .and_then(Value::as_str)
        .is_none_or(|d| d.eq_ignore_ascii_case("ingress"));
    if !ingress || fields.get("disabled") == Some(&Value::Bool(true)) {
        return Ok(());
    }
    let sources = match fields.get("source_ranges") {
        Some(value) => json::strings(value, &path.key("source_ranges"))?,
        None => Vec::new(),
    };
    let Some(allow) = json::opt_array(fields, &["allow"], path)? else {
        return Ok(());
    };
    for (i, block) in allow.1.iter().enumerate() {
        let block_path = allow.0.index(i);
        let block = match block {
            Value::Null => continue,
            Value::Object(block) => block,
            other => return Err(json::wrong_type(&block_path, "an object", other)),
        };
        let protocol = protocol(block, &block_path)?;
        let ranges = port_ranges(block, &block_path, protocol.as_deref())?;
        push_all(&sources, &ranges, protocol.as_deref(), &block_path, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules(
        resource_type: &str,
        attributes: Value,
    ) -> Vec<(String, bool, Option<u16>, Option<u16>)> {
        let attributes = attributes.as_object().cloned().unwrap_or_default();
        from_attributes(resource_type, &attributes, &Path::named("after"))
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|i| (i.cidr, i.public, i.from_port, i.to_port))
            .collect()
    }

    fn r(
        cidr: &str,
        public: bool,
        from: Option<u16>,
        to: Option<u16>,
    ) -> (String, bool, Option<u16>, Option<u16>) {
        (cidr.to_owned(), public, from, to)
    }

    #[test]
    fn public_cidrs() {
        for cidr in [
            "0.0.0.0/0",
            "::/0",
            " ::0/0 ",
            "10.1.2.3/0",
            "*",
            "Internet",
            "any",
        ] {
            assert!(is_public(cidr), "{cidr}");
        }
        for cidr in [
            "10.0.0.0/8",
            "0.0.0.0/1",
            "VirtualNetwork",
            "sg-123",
            "0.0.0.0",
            "x/0",
            "",
        ] {
            assert!(!is_public(cidr), "{cidr}");
        }
    }

    #[test]
    fn aws_security_group_blocks() {
        let got = rules(
            "aws_security_group",
            json!({"ingress": [
                {"cidr_blocks": ["0.0.0.0/0"], "ipv6_cidr_blocks": ["::/0"], "from_port": 443, "to_port": 443, "protocol": "tcp"},
                {"cidr_blocks": [], "security_groups": ["sg-1"], "self": true, "from_port": 22, "to_port": 22, "protocol": "tcp"},
                {"cidr_blocks": ["10.0.0.0/8"], "from_port": 0, "to_port": 0, "protocol": "-1"},
                {"cidr_blocks": ["10.0.0.0/8"], "from_port": -1, "to_port": -1, "protocol": "icmp"}
            ], "egress": [{"cidr_blocks": ["0.0.0.0/0"], "from_port": 0, "to_port": 0, "protocol": "-1"}]}),
        );
        assert_eq!(
            got,
            vec![
                r("0.0.0.0/0", true, Some(443), Some(443)),
                r("::/0", true, Some(443), Some(443)),
                r("self", false, Some(22), Some(22)),
                r("sg-1", false, Some(22), Some(22)),
                r("10.0.0.0/8", false, None, None),
                r("10.0.0.0/8", false, None, None),
            ]
        );
    }

    #[test]
    fn aws_rules_count_only_ingress() {
        let rule = json!({"type": "ingress", "cidr_blocks": ["0.0.0.0/0"], "from_port": 22, "to_port": 22, "protocol": "tcp"});
        assert_eq!(
            rules("aws_security_group_rule", rule),
            vec![r("0.0.0.0/0", true, Some(22), Some(22))]
        );
        let egress = json!({"type": "egress", "cidr_blocks": ["0.0.0.0/0"], "from_port": 0, "to_port": 0, "protocol": "-1"});
        assert!(rules("aws_security_group_rule", egress).is_empty());
        let vpc_rule =
            json!({"cidr_ipv6": "::/0", "from_port": 80, "to_port": 8080, "ip_protocol": "tcp"});
        assert_eq!(
            rules("aws_vpc_security_group_ingress_rule", vpc_rule),
            vec![r("::/0", true, Some(80), Some(8080))]
        );
        let nacl = json!({"egress": false, "rule_action": "allow", "cidr_block": "0.0.0.0/0", "from_port": 3389, "to_port": 3389, "protocol": "6"});
        assert_eq!(
            rules("aws_network_acl_rule", nacl),
            vec![r("0.0.0.0/0", true, Some(3389), Some(3389))]
        );
        let deny = json!({"egress": false, "rule_action": "deny", "cidr_block": "0.0.0.0/0", "protocol": "-1"});
        assert!(rules("aws_network_acl_rule", deny).is_empty());
    }

    #[test]
    fn azure_rules_count_only_allowed_inbound() {
        let group = json!({"security_rule": [
            {"direction": "Inbound", "access": "Allow", "source_address_prefix": "*", "destination_port_range": "443", "protocol": "Tcp"},
            {"direction": "Inbound", "access": "Deny", "source_address_prefix": "Internet", "destination_port_range": "*", "protocol": "*"},
            {"direction": "Outbound", "access": "Allow", "source_address_prefix": "*", "destination_port_range": "*", "protocol": "*"},
            {"direction": "Inbound", "access": "Allow", "source_address_prefixes": ["10.0.0.0/16", "Internet"], "destination_port_ranges": ["80", "8000-8100"], "protocol": "Tcp"}
        ]});
        assert_eq!(
            rules("azurerm_network_security_group", group),
            vec![
                r("*", true, Some(443), Some(443)),
                r("10.0.0.0/16", false, Some(80), Some(80)),
                r("10.0.0.0/16", false, Some(8000), Some(8100)),
                r("Internet", true, Some(80), Some(80)),
                r("Internet", true, Some(8000), Some(8100)),
            ]
        );
        let single = json!({"direction": "Inbound", "access": "Allow", "source_address_prefix": "Internet", "destination_port_range": "22", "protocol": "Tcp"});
        assert_eq!(
            rules("azurerm_network_security_rule", single),
            vec![r("Internet", true, Some(22), Some(22))]
        );
    }

    #[test]
    fn google_firewalls_count_ingress_allow_blocks() {
        let firewall = json!({"direction": "INGRESS", "source_ranges": ["0.0.0.0/0"], "allow": [
            {"protocol": "tcp", "ports": ["443", "8080-8090"]}, {"protocol": "icmp", "ports": []}
        ], "deny": []});
        assert_eq!(
            rules("google_compute_firewall", firewall),
            vec![
                r("0.0.0.0/0", true, Some(443), Some(443)),
                r("0.0.0.0/0", true, Some(8080), Some(8090)),
                r("0.0.0.0/0", true, None, None),
            ]
        );
        let egress = json!({"direction": "EGRESS", "destination_ranges": ["0.0.0.0/0"], "allow": [{"protocol": "all"}]});
        assert!(rules("google_compute_firewall", egress).is_empty());
        let disabled = json!({"disabled": true, "source_ranges": ["0.0.0.0/0"], "allow": [{"protocol": "all"}]});
        assert!(rules("google_compute_firewall", disabled).is_empty());
    }

    #[test]
    fn expansion_is_bounded() {
        let sources: Vec<String> = (0..400)
            .map(|i| format!("10.0.{}.{}/32", i / 256, i % 256))
            .collect();
        let ports: Vec<String> = (0..300).map(|p| p.to_string()).collect();
        let firewall =
            json!({"source_ranges": sources, "allow": [{"protocol": "tcp", "ports": ports}]});
        let attributes = firewall.as_object().cloned().unwrap_or_default();
        let err = from_attributes(
            "google_compute_firewall",
            &attributes,
            &Path::named("after"),
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "after.allow[0]: the plan is too large: more than 100000 ingress rules (sources × port ranges) for one resource"
            )
        );
    }

    #[test]
    fn generic_rules_and_their_errors() {
        let path = Path::named("actions").index(1).key("ingress");
        let got = from_rules(
            &[
                json!({"cidr": "0.0.0.0/0", "port": 443, "protocol": "tcp"}),
                json!({"source": ["10.0.0.0/8"], "port": "8000-8080"}),
            ],
            &path,
        );
        let got: Vec<_> = got
            .unwrap_or_default()
            .into_iter()
            .map(|i| (i.cidr, i.from_port, i.to_port, i.protocol))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "0.0.0.0/0".to_owned(),
                    Some(443),
                    Some(443),
                    Some("tcp".to_owned())
                ),
                ("10.0.0.0/8".to_owned(), Some(8000), Some(8080), None),
            ]
        );
        let errors = [
            (
                json!({"cidr": 10, "port": 1}),
                "actions[1].ingress[0].cidr: expected a string or an array of strings, found the number 10",
            ),
            (
                json!({"cidr": "0.0.0.0/0", "port": 70000}),
                "actions[1].ingress[0].port: the number 70000 is out of range (expected a port 0-65535, a range such as 80-443, or *)",
            ),
            (
                json!({"cidr": "0.0.0.0/0", "port": "https"}),
                "actions[1].ingress[0].port: the string \"https\" is out of range (expected a port 0-65535, a range such as 80-443, or *)",
            ),
            (
                json!({"cidr_blocks": ["0.0.0.0/0", 1]}),
                "actions[1].ingress[0].cidr_blocks[1]: expected a string, found the number 1",
            ),
            (
                json!("0.0.0.0/0"),
                "actions[1].ingress[0]: expected an object (an ingress rule with `cidr`, `port`, `protocol`), found the string \"0.0.0.0/0\"",
            ),
        ];
        for (rule, message) in errors {
            let err = from_rules(&[rule], &path).err().map(|e| e.to_string());
            assert_eq!(err.as_deref(), Some(message));
        }
    }
}

//! The small vocabulary the deterministic verifier shares between a user's words and a
//! plan's resource types: resource *families* (network, firewall, compute, …) and, within a
//! family, countable *units* (`vpc`, `subnet`, `instance`, …) that quantities are checked on.
//!
//! Words map to families in [`word_kind`] / [`phrase_kind`]; resource types (Terraform's
//! `aws_*`, `azurerm_*`, `google_*`, …, or the generic plan's free-form types) in
//! [`resource_kind`], by the tokens of the type, most specific pattern first.
//!
//! What a request for one family naturally brings along is decided here too:
//! [`realised_by`] (which plan families *are* the thing asked for: an "API" is realised by
//! the compute or cluster that runs it) and [`companions`] (which plan families come with it
//! without being named: a new network segment comes with the firewall rules scoped to it;
//! instances come with their security groups and volumes).

use serde::{Deserialize, Serialize};

/// A family of resources, named the same on both sides: in a request and in a plan.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// VPCs, virtual networks, subnets, segments, routes, gateways.
    Network,
    /// Security groups, firewalls and their rules, network ACLs, NSGs, WAFs.
    Firewall,
    /// Instances, VMs, servers, GPU nodes, autoscaling groups, launch templates.
    Compute,
    /// Buckets, volumes, disks, file systems.
    Storage,
    /// Databases and caches.
    Database,
    /// Kubernetes and container clusters and their node groups.
    Cluster,
    /// Services, APIs, apps, functions, load balancers, API gateways.
    Service,
    /// Roles, policies, permissions, service accounts.
    Iam,
    /// Secrets, keys, certificates, passwords.
    Secret,
    /// Logs, trails, audit and monitoring.
    Logging,
    /// DNS zones and records.
    Dns,
    /// Queues, topics, streams.
    Queue,
    /// Request side only: a whole environment or stack ("clean up the dev environments").
    Any,
    /// Plan side only: helpers that change no infrastructure (`random_id`, `time_sleep`).
    Auxiliary,
    /// Plan side only: a resource type the vocabulary does not know.
    Other,
}

impl Family {
    /// The family's name as written in messages and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Network => "network",
            Family::Firewall => "firewall",
            Family::Compute => "compute",
            Family::Storage => "storage",
            Family::Database => "database",
            Family::Cluster => "cluster",
            Family::Service => "service",
            Family::Iam => "iam",
            Family::Secret => "secret",
            Family::Logging => "logging",
            Family::Dns => "dns",
            Family::Queue => "queue",
            Family::Any => "any",
            Family::Auxiliary => "auxiliary",
            Family::Other => "other",
        }
    }
}

/// A family and, where the thing is countable, its unit (`vpc`, `instance`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// The family.
    pub family: Family,
    /// The countable unit within the family; `None` for composites ("segment") and for types
    /// that are parts of something else (route tables).
    pub unit: Option<&'static str>,
}

const fn kind(family: Family, unit: Option<&'static str>) -> Kind {
    Kind { family, unit }
}

/// Plan families that *are* the thing a request names (a request for an API is satisfied by
/// the autoscaling group running it). `Any` is realised by every family except logging and
/// audit infrastructure, which must always be named.
pub fn realised_by(family: Family) -> &'static [Family] {
    use Family::*;
    match family {
        Cluster => &[Cluster, Compute],
        Service => &[Service, Compute, Cluster],
        Any => &[
            Network, Firewall, Compute, Storage, Database, Cluster, Service, Iam, Secret, Dns,
            Queue, Auxiliary, Other,
        ],
        Network => &[Network],
        Firewall => &[Firewall],
        Compute => &[Compute],
        Storage => &[Storage],
        Database => &[Database],
        Iam => &[Iam],
        Secret => &[Secret],
        Logging => &[Logging],
        Dns => &[Dns],
        Queue => &[Queue],
        Auxiliary => &[Auxiliary],
        Other => &[Other],
    }
}

/// Plan families that come with a request for `family` without being named. Deliberately
/// short: anything not listed must be asked for. Helpers (`random_id`) come with everything.
/// A companion is still subject to the safety rules (public ingress to production, another
/// environment, regulated data), so "a segment comes with its firewall rules" never covers
/// opening a production firewall.
pub fn companions(family: Family) -> &'static [Family] {
    use Family::*;
    match family {
        // A segment is a network plus the firewall rules scoped to it.
        Network => &[Firewall, Auxiliary],
        // Instances come with their security groups and volumes.
        Compute => &[Firewall, Storage, Auxiliary],
        // A cluster needs its security groups and service roles.
        Cluster => &[Firewall, Storage, Iam, Auxiliary],
        // A service is reached through firewall rules and DNS names.
        Service => &[Firewall, Dns, Auxiliary],
        // A database has its security group and its master credentials.
        Database => &[Firewall, Secret, Auxiliary],
        // A trail or log sink writes to a bucket.
        Logging => &[Storage, Auxiliary],
        Firewall | Storage | Iam | Secret | Dns | Queue | Any => &[Auxiliary],
        Auxiliary | Other => &[],
    }
}

/// Two-word phrases, checked before single words ("security group" is a firewall, not an
/// IAM group; "api key" is a secret, not a service; "machine learning" is nothing).
const PHRASES: &[(&str, &str, Option<Kind>)] = &[
    (
        "security",
        "group",
        Some(kind(Family::Firewall, Some("security_group"))),
    ),
    ("firewall", "rule", Some(kind(Family::Firewall, None))),
    ("network", "acl", Some(kind(Family::Firewall, None))),
    (
        "virtual",
        "machine",
        Some(kind(Family::Compute, Some("instance"))),
    ),
    (
        "virtual",
        "network",
        Some(kind(Family::Network, Some("vpc"))),
    ),
    ("route", "table", Some(kind(Family::Network, None))),
    ("load", "balancer", Some(kind(Family::Service, None))),
    ("api", "gateway", Some(kind(Family::Service, None))),
    ("api", "key", Some(kind(Family::Secret, Some("key")))),
    ("access", "key", Some(kind(Family::Secret, Some("key")))),
    ("service", "account", Some(kind(Family::Iam, None))),
    ("instance", "profile", Some(kind(Family::Iam, None))),
    (
        "node",
        "group",
        Some(kind(Family::Cluster, Some("node_group"))),
    ),
    (
        "node",
        "pool",
        Some(kind(Family::Cluster, Some("node_group"))),
    ),
    ("flow", "log", Some(kind(Family::Logging, None))),
    ("audit", "log", Some(kind(Family::Logging, None))),
    ("log", "group", Some(kind(Family::Logging, None))),
    ("file", "system", Some(kind(Family::Storage, None))),
    ("dns", "record", Some(kind(Family::Dns, None))),
    ("machine", "learning", None),
];

/// Single words (singular, lower case).
const WORDS: &[(&str, Kind)] = &[
    // network
    ("vpc", kind(Family::Network, Some("vpc"))),
    ("vnet", kind(Family::Network, Some("vpc"))),
    ("network", kind(Family::Network, Some("vpc"))),
    ("networking", kind(Family::Network, None)),
    ("segment", kind(Family::Network, None)),
    ("microsegment", kind(Family::Network, None)),
    ("subnet", kind(Family::Network, Some("subnet"))),
    ("subnetwork", kind(Family::Network, Some("subnet"))),
    ("gateway", kind(Family::Network, None)),
    ("nat", kind(Family::Network, None)),
    ("peering", kind(Family::Network, None)),
    ("vpn", kind(Family::Network, None)),
    // firewall
    ("firewall", kind(Family::Firewall, Some("firewall"))),
    ("sg", kind(Family::Firewall, Some("security_group"))),
    ("rule", kind(Family::Firewall, None)),
    ("nacl", kind(Family::Firewall, None)),
    ("acl", kind(Family::Firewall, None)),
    ("nsg", kind(Family::Firewall, Some("security_group"))),
    ("waf", kind(Family::Firewall, None)),
    ("port", kind(Family::Firewall, None)),
    ("ingress", kind(Family::Firewall, None)),
    // compute
    ("instance", kind(Family::Compute, Some("instance"))),
    ("vm", kind(Family::Compute, Some("instance"))),
    ("server", kind(Family::Compute, Some("instance"))),
    ("gpu", kind(Family::Compute, Some("instance"))),
    ("node", kind(Family::Compute, Some("instance"))),
    ("host", kind(Family::Compute, Some("instance"))),
    ("worker", kind(Family::Compute, Some("instance"))),
    ("ec2", kind(Family::Compute, Some("instance"))),
    ("asg", kind(Family::Compute, Some("instance"))),
    ("autoscaling", kind(Family::Compute, None)),
    ("compute", kind(Family::Compute, None)),
    // storage
    ("bucket", kind(Family::Storage, Some("bucket"))),
    ("s3", kind(Family::Storage, Some("bucket"))),
    ("storage", kind(Family::Storage, None)),
    ("volume", kind(Family::Storage, Some("volume"))),
    ("disk", kind(Family::Storage, Some("volume"))),
    ("blob", kind(Family::Storage, None)),
    ("efs", kind(Family::Storage, None)),
    // database
    ("database", kind(Family::Database, Some("database"))),
    ("db", kind(Family::Database, Some("database"))),
    ("rds", kind(Family::Database, Some("database"))),
    ("aurora", kind(Family::Database, Some("database"))),
    ("postgres", kind(Family::Database, Some("database"))),
    ("postgresql", kind(Family::Database, Some("database"))),
    ("mysql", kind(Family::Database, Some("database"))),
    ("dynamodb", kind(Family::Database, Some("database"))),
    ("sql", kind(Family::Database, Some("database"))),
    ("redis", kind(Family::Database, None)),
    ("cache", kind(Family::Database, None)),
    ("elasticache", kind(Family::Database, None)),
    // cluster
    ("cluster", kind(Family::Cluster, Some("cluster"))),
    ("eks", kind(Family::Cluster, Some("cluster"))),
    ("gke", kind(Family::Cluster, Some("cluster"))),
    ("aks", kind(Family::Cluster, Some("cluster"))),
    ("k8s", kind(Family::Cluster, Some("cluster"))),
    ("kubernetes", kind(Family::Cluster, Some("cluster"))),
    // service
    ("api", kind(Family::Service, None)),
    ("service", kind(Family::Service, None)),
    ("app", kind(Family::Service, None)),
    ("application", kind(Family::Service, None)),
    ("function", kind(Family::Service, None)),
    ("lambda", kind(Family::Service, None)),
    ("website", kind(Family::Service, None)),
    ("frontend", kind(Family::Service, None)),
    ("backend", kind(Family::Service, None)),
    ("endpoint", kind(Family::Service, None)),
    ("container", kind(Family::Service, None)),
    ("ecs", kind(Family::Service, None)),
    ("lb", kind(Family::Service, None)),
    ("alb", kind(Family::Service, None)),
    ("elb", kind(Family::Service, None)),
    // iam
    ("role", kind(Family::Iam, Some("role"))),
    ("policy", kind(Family::Iam, None)),
    ("iam", kind(Family::Iam, None)),
    ("permission", kind(Family::Iam, None)),
    // secret
    ("secret", kind(Family::Secret, Some("secret"))),
    ("key", kind(Family::Secret, Some("key"))),
    ("kms", kind(Family::Secret, Some("key"))),
    ("certificate", kind(Family::Secret, None)),
    ("cert", kind(Family::Secret, None)),
    ("password", kind(Family::Secret, None)),
    ("credential", kind(Family::Secret, None)),
    // logging
    ("log", kind(Family::Logging, None)),
    ("logging", kind(Family::Logging, None)),
    ("trail", kind(Family::Logging, None)),
    ("cloudtrail", kind(Family::Logging, None)),
    ("audit", kind(Family::Logging, None)),
    ("guardduty", kind(Family::Logging, None)),
    ("monitoring", kind(Family::Logging, None)),
    ("alarm", kind(Family::Logging, None)),
    // dns
    ("dns", kind(Family::Dns, None)),
    ("domain", kind(Family::Dns, None)),
    ("zone", kind(Family::Dns, None)),
    ("route53", kind(Family::Dns, None)),
    // queue
    ("queue", kind(Family::Queue, None)),
    ("topic", kind(Family::Queue, None)),
    ("sqs", kind(Family::Queue, None)),
    ("sns", kind(Family::Queue, None)),
    ("kafka", kind(Family::Queue, None)),
    ("stream", kind(Family::Queue, None)),
    // a whole environment
    ("environment", kind(Family::Any, None)),
    ("stack", kind(Family::Any, None)),
    ("infrastructure", kind(Family::Any, None)),
    ("infra", kind(Family::Any, None)),
    ("resource", kind(Family::Any, None)),
    ("everything", kind(Family::Any, None)),
    ("workspace", kind(Family::Any, None)),
];

/// `word` in the singular, for the cases the vocabulary needs (`vpcs`, `instances`,
/// `policies`, `dbs`); words ending in `ss` or `us` are left alone.
pub(crate) fn singular(word: &str) -> std::borrow::Cow<'_, str> {
    if let Some(stem) = word.strip_suffix("ies")
        && stem.len() >= 2
    {
        return format!("{stem}y").into();
    }
    if word.len() > 3
        && let Some(stem) = word.strip_suffix("es")
        && (stem.ends_with("ss") || stem.ends_with("sh") || stem.ends_with("ch"))
    {
        return stem.into();
    }
    if word.len() > 2
        && !word.ends_with("ss")
        && !word.ends_with("us")
        && let Some(stem) = word.strip_suffix('s')
    {
        return stem.into();
    }
    word.into()
}

/// The kind a single lower-case word names, plural or singular.
pub fn word_kind(word: &str) -> Option<Kind> {
    let lookup = |w: &str| WORDS.iter().find(|(k, _)| *k == w).map(|(_, kind)| *kind);
    // `gpus` ends in `us` like `status`, so the singular rule leaves it: try a bare `-s` too.
    lookup(word)
        .or_else(|| lookup(&singular(word)))
        .or_else(|| word.strip_suffix('s').and_then(lookup))
}

/// The kind a two-word phrase names: `Some(Some(kind))` a kind, `Some(None)` a phrase that
/// names nothing although its words might ("machine learning"), `None` not a phrase.
pub fn phrase_kind(first: &str, second: &str) -> Option<Option<Kind>> {
    let single = singular(second);
    PHRASES
        .iter()
        .find(|(a, b, _)| *a == first && (*b == second || *b == single))
        .map(|(_, _, kind)| *kind)
}

/// Resource-type patterns: token sequences of the type, most specific first. A pattern
/// matches when its tokens appear consecutively in the type's tokens.
const TYPE_PATTERNS: &[(&[&str], Kind)] = &[
    // Helpers that change no infrastructure.
    (&["random"], kind(Family::Auxiliary, None)),
    (&["time", "sleep"], kind(Family::Auxiliary, None)),
    (&["time", "offset"], kind(Family::Auxiliary, None)),
    (&["time", "static"], kind(Family::Auxiliary, None)),
    // Logging and audit before everything that shares words with them (flow logs, log
    // buckets, log groups).
    (&["flow", "log"], kind(Family::Logging, None)),
    (&["cloudtrail"], kind(Family::Logging, Some("trail"))),
    (&["guardduty"], kind(Family::Logging, None)),
    (&["securityhub"], kind(Family::Logging, None)),
    (&["log"], kind(Family::Logging, None)),
    (&["logging"], kind(Family::Logging, None)),
    (&["cloudwatch"], kind(Family::Logging, None)),
    (&["monitor"], kind(Family::Logging, None)),
    (&["monitoring"], kind(Family::Logging, None)),
    (&["config", "rule"], kind(Family::Logging, None)),
    // Firewalls, before networks (`aws_vpc_security_group_ingress_rule`,
    // `google_compute_firewall`, `azurerm_network_security_group`).
    (
        &["security", "group"],
        kind(Family::Firewall, Some("security_group")),
    ),
    (
        &["network", "security", "rule"],
        kind(Family::Firewall, None),
    ),
    (&["firewall"], kind(Family::Firewall, Some("firewall"))),
    (&["network", "acl"], kind(Family::Firewall, None)),
    (&["wafv2"], kind(Family::Firewall, None)),
    (&["waf"], kind(Family::Firewall, None)),
    (&["nsg"], kind(Family::Firewall, Some("security_group"))),
    // Secrets, before IAM (`aws_iam_access_key`).
    (&["access", "key"], kind(Family::Secret, Some("key"))),
    (&["secret"], kind(Family::Secret, Some("secret"))),
    (&["secretsmanager"], kind(Family::Secret, Some("secret"))),
    (&["kms"], kind(Family::Secret, Some("key"))),
    (&["key", "vault"], kind(Family::Secret, None)),
    (&["key", "pair"], kind(Family::Secret, Some("key"))),
    (&["acm"], kind(Family::Secret, None)),
    (&["certificate"], kind(Family::Secret, None)),
    (&["password"], kind(Family::Secret, None)),
    // Storage, before IAM (`aws_s3_bucket_policy`).
    (&["s3"], kind(Family::Storage, Some("bucket"))),
    (&["bucket"], kind(Family::Storage, Some("bucket"))),
    (
        &["storage", "account"],
        kind(Family::Storage, Some("bucket")),
    ),
    (
        &["storage", "container"],
        kind(Family::Storage, Some("bucket")),
    ),
    (&["ebs"], kind(Family::Storage, Some("volume"))),
    (&["volume"], kind(Family::Storage, Some("volume"))),
    (&["disk"], kind(Family::Storage, Some("volume"))),
    (&["efs"], kind(Family::Storage, None)),
    (&["blob"], kind(Family::Storage, None)),
    // IAM, before compute (`aws_iam_instance_profile`).
    (&["role", "assignment"], kind(Family::Iam, None)),
    (&["role", "policy"], kind(Family::Iam, None)),
    (&["role"], kind(Family::Iam, Some("role"))),
    (&["iam"], kind(Family::Iam, None)),
    (&["policy"], kind(Family::Iam, None)),
    (&["service", "account"], kind(Family::Iam, None)),
    // Databases, before clusters and networks (`aws_rds_cluster`, `aws_db_subnet_group`).
    (&["db"], kind(Family::Database, Some("database"))),
    (&["rds"], kind(Family::Database, Some("database"))),
    (&["database"], kind(Family::Database, Some("database"))),
    (&["dynamodb"], kind(Family::Database, Some("database"))),
    (&["sql"], kind(Family::Database, Some("database"))),
    (&["mssql"], kind(Family::Database, Some("database"))),
    (&["postgresql"], kind(Family::Database, Some("database"))),
    (&["mysql"], kind(Family::Database, Some("database"))),
    (&["cosmosdb"], kind(Family::Database, Some("database"))),
    (&["redshift"], kind(Family::Database, Some("database"))),
    (&["docdb"], kind(Family::Database, Some("database"))),
    (&["spanner"], kind(Family::Database, Some("database"))),
    (&["bigtable"], kind(Family::Database, Some("database"))),
    (&["elasticache"], kind(Family::Database, None)),
    (&["redis"], kind(Family::Database, None)),
    // Queues, before clusters (`aws_msk_cluster`).
    (&["sqs"], kind(Family::Queue, None)),
    (&["sns"], kind(Family::Queue, None)),
    (&["msk"], kind(Family::Queue, None)),
    (&["kinesis"], kind(Family::Queue, None)),
    (&["pubsub"], kind(Family::Queue, None)),
    (&["servicebus"], kind(Family::Queue, None)),
    (&["eventhub"], kind(Family::Queue, None)),
    (&["queue"], kind(Family::Queue, None)),
    // DNS, before networks (`aws_route53_record`).
    (&["route53"], kind(Family::Dns, None)),
    (&["dns"], kind(Family::Dns, None)),
    // Clusters and their node groups.
    (
        &["node", "group"],
        kind(Family::Cluster, Some("node_group")),
    ),
    (&["node", "pool"], kind(Family::Cluster, Some("node_group"))),
    (&["eks"], kind(Family::Cluster, Some("cluster"))),
    (
        &["kubernetes", "cluster"],
        kind(Family::Cluster, Some("cluster")),
    ),
    (
        &["container", "cluster"],
        kind(Family::Cluster, Some("cluster")),
    ),
    (&["ecs", "cluster"], kind(Family::Cluster, Some("cluster"))),
    (&["cluster"], kind(Family::Cluster, Some("cluster"))),
    // Services.
    (&["lambda"], kind(Family::Service, None)),
    (&["function"], kind(Family::Service, None)),
    (&["lb"], kind(Family::Service, None)),
    (&["alb"], kind(Family::Service, None)),
    (&["elb"], kind(Family::Service, None)),
    (&["load", "balancer"], kind(Family::Service, None)),
    (&["api", "gateway"], kind(Family::Service, None)),
    (&["apigatewayv2"], kind(Family::Service, None)),
    (&["app", "service"], kind(Family::Service, None)),
    (&["cloud", "run"], kind(Family::Service, None)),
    (&["ecs", "service"], kind(Family::Service, None)),
    (&["service"], kind(Family::Service, None)),
    (&["api"], kind(Family::Service, None)),
    (&["app"], kind(Family::Service, None)),
    // Compute.
    (
        &["autoscaling", "group"],
        kind(Family::Compute, Some("instance")),
    ),
    (&["scale", "set"], kind(Family::Compute, Some("instance"))),
    (
        &["instance", "group"],
        kind(Family::Compute, Some("instance")),
    ),
    (&["launch", "template"], kind(Family::Compute, None)),
    (&["launch", "configuration"], kind(Family::Compute, None)),
    (&["instance"], kind(Family::Compute, Some("instance"))),
    (
        &["virtual", "machine"],
        kind(Family::Compute, Some("instance")),
    ),
    (&["vm"], kind(Family::Compute, Some("instance"))),
    (&["server"], kind(Family::Compute, Some("instance"))),
    (&["ec2"], kind(Family::Compute, Some("instance"))),
    (&["gpu"], kind(Family::Compute, Some("instance"))),
    // Networks.
    (&["subnet"], kind(Family::Network, Some("subnet"))),
    (&["subnetwork"], kind(Family::Network, Some("subnet"))),
    (&["vpc"], kind(Family::Network, Some("vpc"))),
    (&["virtual", "network"], kind(Family::Network, Some("vpc"))),
    (&["compute", "network"], kind(Family::Network, Some("vpc"))),
    (&["vnet"], kind(Family::Network, Some("vpc"))),
    (&["network"], kind(Family::Network, None)),
    (&["route"], kind(Family::Network, None)),
    (&["gateway"], kind(Family::Network, None)),
    (&["eip"], kind(Family::Network, None)),
    (&["vpn"], kind(Family::Network, None)),
    (&["segment"], kind(Family::Network, None)),
];

/// The kind of a plan's resource type, by its tokens (lower case, split on everything that
/// is not a letter or a digit, singular): the first pattern of the table above that appears
/// in them. Unknown types are [`Family::Other`].
pub fn resource_kind(resource_type: &str) -> Kind {
    // Each token as written and in the singular (`kms` must stay `kms`; `logs` is `log`).
    let tokens: Vec<(String, String)> = resource_type
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| {
            let raw = t.to_lowercase();
            let single = singular(&raw).into_owned();
            (raw, single)
        })
        .collect();
    TYPE_PATTERNS
        .iter()
        .find(|(pattern, _)| {
            tokens.windows(pattern.len()).any(|window| {
                window
                    .iter()
                    .zip(pattern.iter())
                    .all(|((raw, single), p)| raw == p || single == p)
            })
        })
        .map(|(_, kind)| *kind)
        .unwrap_or(Kind {
            family: Family::Other,
            unit: None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_type(resource_type: &str, family: Family, unit: Option<&str>) {
        let got = resource_kind(resource_type);
        assert_eq!((got.family, got.unit), (family, unit), "{resource_type}");
    }

    #[test]
    fn resource_types_map_to_families() {
        use Family::*;
        let cases: &[(&str, Family, Option<&str>)] = &[
            ("aws_vpc", Network, Some("vpc")),
            ("aws_subnet", Network, Some("subnet")),
            ("aws_route_table", Network, None),
            ("aws_nat_gateway", Network, None),
            ("aws_security_group", Firewall, Some("security_group")),
            ("aws_security_group_rule", Firewall, Some("security_group")),
            (
                "aws_vpc_security_group_ingress_rule",
                Firewall,
                Some("security_group"),
            ),
            ("aws_network_acl", Firewall, None),
            ("google_compute_firewall", Firewall, Some("firewall")),
            (
                "azurerm_network_security_group",
                Firewall,
                Some("security_group"),
            ),
            ("azurerm_network_security_rule", Firewall, None),
            ("aws_instance", Compute, Some("instance")),
            ("google_compute_instance", Compute, Some("instance")),
            ("azurerm_linux_virtual_machine", Compute, Some("instance")),
            ("aws_autoscaling_group", Compute, Some("instance")),
            ("aws_launch_template", Compute, None),
            ("aws_iam_instance_profile", Iam, None),
            ("aws_iam_role", Iam, Some("role")),
            ("aws_iam_role_policy", Iam, None),
            ("aws_iam_policy", Iam, None),
            ("aws_iam_access_key", Secret, Some("key")),
            ("aws_kms_key", Secret, Some("key")),
            ("azurerm_key_vault", Secret, None),
            ("aws_s3_bucket", Storage, Some("bucket")),
            ("aws_s3_bucket_policy", Storage, Some("bucket")),
            ("google_storage_bucket", Storage, Some("bucket")),
            ("aws_ebs_volume", Storage, Some("volume")),
            ("aws_db_instance", Database, Some("database")),
            ("aws_rds_cluster", Database, Some("database")),
            ("aws_db_subnet_group", Database, Some("database")),
            ("google_sql_database_instance", Database, Some("database")),
            ("aws_elasticache_cluster", Database, None),
            ("aws_eks_cluster", Cluster, Some("cluster")),
            ("aws_eks_node_group", Cluster, Some("node_group")),
            ("azurerm_kubernetes_cluster", Cluster, Some("cluster")),
            ("google_container_cluster", Cluster, Some("cluster")),
            ("aws_msk_cluster", Queue, None),
            ("aws_lb", Service, None),
            ("aws_lambda_function", Service, None),
            ("aws_ecs_service", Service, None),
            ("aws_route53_record", Dns, None),
            ("aws_cloudtrail", Logging, Some("trail")),
            ("aws_flow_log", Logging, None),
            ("aws_cloudwatch_log_group", Logging, None),
            ("aws_guardduty_detector", Logging, None),
            ("random_id", Auxiliary, None),
            ("null_resource", Other, None),
            ("azurerm_resource_group", Other, None),
            ("", Other, None),
            // Generic plans' free-form types.
            ("vm", Compute, Some("instance")),
            ("gpu_instance", Compute, Some("instance")),
            ("firewall_rule", Firewall, Some("firewall")),
            ("Database", Database, Some("database")),
        ];
        for (resource_type, family, unit) in cases {
            check_type(resource_type, *family, *unit);
        }
    }

    #[test]
    fn words_map_to_families_in_any_number() {
        let cases: &[(&str, Option<Family>)] = &[
            ("vpcs", Some(Family::Network)),
            ("instances", Some(Family::Compute)),
            ("policies", Some(Family::Iam)),
            ("dbs", Some(Family::Database)),
            ("gpus", Some(Family::Compute)),
            ("environments", Some(Family::Any)),
            ("access", None),
            ("status", None),
            ("traffic", None),
        ];
        for (word, family) in cases {
            assert_eq!(word_kind(word).map(|k| k.family), *family, "{word}");
        }
        assert_eq!(
            phrase_kind("security", "groups")
                .flatten()
                .map(|k| k.family),
            Some(Family::Firewall)
        );
        assert_eq!(phrase_kind("machine", "learning"), Some(None));
        assert_eq!(phrase_kind("gpu", "instances"), None);
    }

    #[test]
    fn singular_forms() {
        for (plural, single) in [
            ("vpcs", "vpc"),
            ("policies", "policy"),
            ("addresses", "address"),
            ("switches", "switch"),
            ("access", "access"),
            ("status", "status"),
            ("s3", "s3"),
            ("us", "us"),
        ] {
            assert_eq!(singular(plural), single, "{plural}");
        }
    }
}

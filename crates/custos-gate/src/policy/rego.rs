//! [`RegoPolicyEngine`]: the [`PolicyEngine`] on regorus. Policies are parsed, checked and
//! prepared once, when the engine is built; each evaluation works on a clone of that prepared
//! engine (regorus clones share the compiled modules, so a clone costs microseconds), which
//! keeps evaluations independent and lets one engine serve concurrent reviews.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, PolicyPackageComponents};
use serde::Deserialize;

use super::builtin::{BUILTIN_POLICIES, LIB};
use super::output::{self, Origin};
use super::{
    BundleFile, OperatorPolicies, PolicyBundle, PolicyEngine, PolicyError, PolicyInput, PolicyKind,
    PolicyOutcome, SoftPolicyConfig, SoftPolicyResult, SoftPolicyStatus,
};

/// How long one policy rule may run before its evaluation fails (secure).
const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(1);

/// A rule evaluated at build time to make regorus analyse and prepare every module, so that
/// errors surface at startup and clones start prepared.
const PREPARE_RULE: &str = "data.custos.hard.cost_threshold_approval.threshold";

/// The [`PolicyEngine`] on regorus: the built-in bundle, the operator's policies and the
/// soft-policy configuration, compiled once.
#[derive(Debug)]
pub struct RegoPolicyEngine {
    template: Engine,
    operator: Vec<OperatorRule>,
    config: SoftPolicyConfig,
    bundle: PolicyBundle,
}

/// An operator package that declares `violations`.
#[derive(Clone, Debug)]
pub(crate) struct OperatorRule {
    /// `operator.<name>`.
    pub(crate) id: String,
    /// `data.custos.operator.<name>.violations`.
    pub(crate) violations_rule: String,
}

/// A compiled, prepared engine and the operator policies it evaluates.
pub(crate) struct Compiled {
    pub(crate) engine: Engine,
    pub(crate) operator: Vec<OperatorRule>,
}

impl RegoPolicyEngine {
    /// The built-in policies alone, with the default soft-policy configuration.
    pub fn builtin() -> Result<Self, PolicyError> {
        RegoPolicyEngine::new(&OperatorPolicies::none(), SoftPolicyConfig::default())
    }

    /// The built-in policies plus `operator`'s, with `config`. Fails if any file does not
    /// compile, an operator file declares a reserved or non-operator package, or `config`
    /// is invalid.
    pub fn new(operator: &OperatorPolicies, config: SoftPolicyConfig) -> Result<Self, PolicyError> {
        let bundle = PolicyBundle::new(operator, &config)?;
        let compiled = compile(operator.policies(), &[], &[], &config)?;
        Ok(RegoPolicyEngine {
            template: compiled.engine,
            operator: compiled.operator,
            config,
            bundle,
        })
    }

    /// Limits how long each policy rule may run (default 1 s); past it the evaluation fails.
    pub fn with_time_limit(mut self, limit: Duration) -> Self {
        self.template.set_execution_timer_config(timer(limit));
        self
    }

    /// The bundle this engine evaluates.
    pub fn bundle(&self) -> &PolicyBundle {
        &self.bundle
    }

    /// Ids of the operator policies evaluated (`operator.<name>`), sorted.
    pub fn operator_policy_ids(&self) -> Vec<&str> {
        self.operator.iter().map(|o| o.id.as_str()).collect()
    }
}

impl PolicyEngine for RegoPolicyEngine {
    fn evaluate(&self, input: &PolicyInput<'_>) -> Result<PolicyOutcome, PolicyError> {
        let document =
            serde_json::to_value(input).map_err(|e| PolicyError::Input(e.to_string()))?;
        let document =
            regorus::Value::deserialize(document).map_err(|e| PolicyError::Input(e.to_string()))?;
        let mut engine = self.template.clone();
        engine.set_input(document);

        let mut violations = Vec::new();
        for policy in BUILTIN_POLICIES
            .iter()
            .filter(|p| p.kind == PolicyKind::Hard)
        {
            let value = eval(&mut engine, &policy.violations_rule(), policy.id)?;
            let origin = Origin::Builtin {
                kind: policy.kind,
                cure: policy.cure,
            };
            violations.extend(output::violations(policy.id, value, origin)?);
        }
        for rule in &self.operator {
            let value = eval(&mut engine, &rule.violations_rule, &rule.id)?;
            violations.extend(output::violations(&rule.id, value, Origin::Operator)?);
        }
        let mut soft_policies = Vec::new();
        for policy in BUILTIN_POLICIES
            .iter()
            .filter(|p| p.kind == PolicyKind::Soft)
        {
            let status = if !self.config.enabled(policy.id) {
                SoftPolicyStatus::Disabled
            } else {
                let evaluated = output::evaluated_flag(
                    policy.id,
                    eval(&mut engine, &policy.evaluated_rule(), policy.id)?,
                )?;
                let value = eval(&mut engine, &policy.violations_rule(), policy.id)?;
                let origin = Origin::Builtin {
                    kind: policy.kind,
                    cure: policy.cure,
                };
                let found = output::violations(policy.id, value, origin)?;
                match (evaluated, found.is_empty()) {
                    (false, true) => SoftPolicyStatus::NotEvaluated,
                    (false, false) => {
                        return Err(PolicyError::MalformedOutput {
                            policy: policy.id.to_string(),
                            message: "violations reported although `evaluated` is false"
                                .to_string(),
                        });
                    }
                    (true, true) => SoftPolicyStatus::Passed,
                    (true, false) => {
                        violations.extend(found);
                        SoftPolicyStatus::Violated
                    }
                }
            };
            soft_policies.push(SoftPolicyResult {
                policy: policy.id.to_string(),
                status,
            });
        }
        Ok(PolicyOutcome {
            bundle_hash: self.bundle.hash().to_string(),
            violations,
            soft_policies,
        })
    }

    fn bundle_hash(&self) -> &str {
        self.bundle.hash()
    }
}

/// Evaluates `rule`; `None` when it is undefined.
pub(crate) fn eval(
    engine: &mut Engine,
    rule: &str,
    policy: &str,
) -> Result<Option<serde_json::Value>, PolicyError> {
    let value = engine
        .eval_rule(rule.to_string())
        .map_err(|e| PolicyError::Evaluation {
            policy: policy.to_string(),
            message: format!("{e:#}").trim().to_string(),
        })?;
    if value == regorus::Value::Undefined {
        return Ok(None);
    }
    serde_json::to_value(&value)
        .map(Some)
        .map_err(|e| PolicyError::MalformedOutput {
            policy: policy.to_string(),
            message: format!("not representable as JSON: {e}"),
        })
}

fn timer(limit: Duration) -> ExecutionTimerConfig {
    ExecutionTimerConfig {
        limit,
        check_interval: NonZeroU32::new(256).unwrap_or(NonZeroU32::MIN),
    }
}

/// Compiles the built-in bundle with `config`, the operator's policy and test files, and
/// custos's own test files (`builtin_tests`, trusted: not package-checked), then prepares
/// the engine. Operator files are held to their packages: a reserved package or, for a
/// policy file, one outside `custos.operator.<name>` is refused, naming the file.
pub(crate) fn compile(
    operator_policies: &[BundleFile],
    operator_tests: &[BundleFile],
    builtin_tests: &[BundleFile],
    config: &SoftPolicyConfig,
) -> Result<Compiled, PolicyError> {
    config.validate()?;
    let mut engine = Engine::new();
    engine.set_execution_timer_config(timer(DEFAULT_TIME_LIMIT));
    add(&mut engine, LIB.0, LIB.1)?;
    for policy in BUILTIN_POLICIES {
        add(&mut engine, &policy.path(), policy.rego)?;
    }
    for file in builtin_tests {
        add(&mut engine, &file.path, &file.content)?;
    }
    let data = serde_json::json!({ "custos_config": { "required_tags": config.required_tags } });
    regorus::Value::from_json_str(&data.to_string())
        .and_then(|value| engine.add_data(value))
        .map_err(|e| PolicyError::Config(e.to_string()))?;
    for file in operator_policies.iter().chain(operator_tests) {
        add(&mut engine, &file.path, &file.content)?;
    }

    let packages = engine
        .get_policy_package_components()
        .map_err(|e| compile_error("policy bundle", &e))?;
    let mut operator: BTreeMap<String, String> = BTreeMap::new();
    for PolicyPackageComponents {
        source_file,
        components,
    } in packages
    {
        let is_policy = operator_policies.iter().any(|f| f.path == source_file);
        let is_test = operator_tests.iter().any(|f| f.path == source_file);
        if !is_policy && !is_test {
            continue;
        }
        let package = components.join(".");
        if reserved(&components) {
            return Err(PolicyError::ReservedPackage {
                path: source_file,
                package,
            });
        }
        if !is_policy {
            continue;
        }
        let Some(name) = operator_name(&components) else {
            return Err(PolicyError::NotOperatorPackage {
                path: source_file,
                package,
            });
        };
        let declares = engine
            .has_declared_rule_rooted_at(&source_file, "violations")
            .map_err(|e| compile_error(&source_file, &e))?;
        if declares {
            operator.insert(
                format!("operator.{name}"),
                rule_path(&components, "violations"),
            );
        }
    }

    // Analysis errors (unsafe variables, recursion, conflicts) surface here, at startup.
    engine
        .eval_rule(PREPARE_RULE.to_string())
        .map_err(|e| compile_error("policy bundle", &e))?;
    Ok(Compiled {
        engine,
        operator: operator
            .into_iter()
            .map(|(id, violations_rule)| OperatorRule {
                id,
                violations_rule,
            })
            .collect(),
    })
}

fn add(engine: &mut Engine, path: &str, rego: &str) -> Result<(), PolicyError> {
    engine
        .add_policy(path.to_string(), rego.to_string())
        .map(|_| ())
        .map_err(|e| compile_error(path, &e))
}

fn compile_error(path: &str, error: &dyn std::fmt::Display) -> PolicyError {
    PolicyError::Compile {
        path: path.to_string(),
        message: format!("{error:#}").trim().to_string(),
    }
}

/// Packages operators may not declare: everything under `custos` but `custos.operator`,
/// and the data root of custos's configuration.
fn reserved(components: &[String]) -> bool {
    match components {
        [first, ..] if first == "custos_config" => true,
        [first, second, ..] if first == "custos" => second != "operator",
        [first] => first == "custos",
        _ => false,
    }
}

/// `<name>` of `custos.operator.<name>` (dotted if deeper).
fn operator_name(components: &[String]) -> Option<String> {
    match components {
        [custos, operator, rest @ ..] if custos == "custos" && operator == "operator" => {
            (!rest.is_empty()).then(|| rest.join("."))
        }
        _ => None,
    }
}

/// The Rego reference of `rule` in the package `components`, with bracket notation for
/// components that are not plain identifiers.
pub(crate) fn rule_path(components: &[String], rule: &str) -> String {
    let mut path = String::from("data");
    for component in components.iter().map(String::as_str).chain([rule]) {
        let plain = component
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && component
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if plain {
            path.push('.');
            path.push_str(component);
        } else {
            path.push('[');
            path.push_str(&serde_json::Value::from(component).to_string());
            path.push(']');
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(package: &str) -> Vec<String> {
        package.split('.').map(String::from).collect()
    }

    #[test]
    fn reserved_and_operator_packages() {
        let cases = [
            ("custos", true, None),
            ("custos.hard.x", true, None),
            ("custos.soft.required_tags", true, None),
            ("custos.lib", true, None),
            ("custos.test.hard.x", true, None),
            ("custos_config", true, None),
            ("custos.operator", false, None),
            ("custos.operator.no_gpu", false, Some("no_gpu")),
            ("custos.operator.team.rule", false, Some("team.rule")),
            ("acme.policies", false, None),
        ];
        for (package, is_reserved, name) in cases {
            let components = parts(package);
            assert_eq!(reserved(&components), is_reserved, "{package}");
            assert_eq!(operator_name(&components).as_deref(), name, "{package}");
        }
    }

    #[test]
    fn rule_paths_quote_what_is_not_an_identifier() {
        let cases = [
            ("custos.hard.x", "data.custos.hard.x.violations"),
            (
                "custos.operator.a-b",
                r#"data.custos.operator["a-b"].violations"#,
            ),
            (
                "custos.operator.1x",
                r#"data.custos.operator["1x"].violations"#,
            ),
        ];
        for (package, path) in cases {
            assert_eq!(rule_path(&parts(package), "violations"), path);
        }
    }
}

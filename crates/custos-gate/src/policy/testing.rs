//! `custos policy test`: Rego unit tests, OPA's convention. Every rule whose name starts with
//! `test_` in a test file (`*_test.rego`) is a test; it passes when it evaluates to `true`,
//! fails when it is `false` or undefined, and errs when evaluation fails. Tests usually set
//! their input with `with input as {...}`.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::builtin::BUILTIN_POLICIES;
use super::rego::{self, Compiled};
use super::{BundleFile, OperatorPolicies, PolicyError, SoftPolicyConfig};

/// The result of one test rule.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct PolicyTestResult {
    /// The test file (bundle path: `operator/…` or `builtin/…`).
    pub file: String,
    /// Its package (`custos.operator.team_x_test`).
    pub package: String,
    /// The rule (`test_denies_public_ssh`).
    pub name: String,
    /// What happened.
    pub outcome: TestOutcome,
}

/// What one test did.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "message")]
pub enum TestOutcome {
    /// Evaluated to `true`.
    Passed,
    /// Evaluated to `false` or was undefined.
    Failed,
    /// Evaluation failed; the engine's message.
    Error(String),
}

/// Every test run, in file order and, within a file, in source order.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyTestReport {
    /// The results.
    pub tests: Vec<PolicyTestResult>,
}

impl PolicyTestReport {
    /// How many passed.
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, TestOutcome::Passed))
    }

    /// How many failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, TestOutcome::Failed))
    }

    /// How many could not be evaluated.
    pub fn errors(&self) -> usize {
        self.count(|o| matches!(o, TestOutcome::Error(_)))
    }

    /// Whether every test passed (vacuously true with no tests).
    pub fn success(&self) -> bool {
        self.passed() == self.tests.len()
    }

    fn count(&self, f: impl Fn(&TestOutcome) -> bool) -> usize {
        self.tests.iter().filter(|t| f(&t.outcome)).count()
    }
}

impl fmt::Display for PolicyTestReport {
    /// One line per test, then `N passed, N failed, N errors`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for test in &self.tests {
            let (word, message) = match &test.outcome {
                TestOutcome::Passed => ("PASS", None),
                TestOutcome::Failed => ("FAIL", None),
                TestOutcome::Error(message) => ("ERROR", Some(message)),
            };
            writeln!(f, "{word} {}: {}.{}", test.file, test.package, test.name)?;
            if let Some(message) = message {
                for line in message.lines() {
                    writeln!(f, "    {line}")?;
                }
            }
        }
        write!(
            f,
            "{} passed, {} failed, {} errors",
            self.passed(),
            self.failed(),
            self.errors()
        )
    }
}

/// Runs the tests of the operator policy directory `dir`: loads the built-in bundle with
/// `config`, `dir`'s policies and its `*_test.rego` files (held to the same package rules as
/// at run time), and runs every `test_*` rule of the test files.
pub fn run_policy_tests(
    dir: &Path,
    config: &SoftPolicyConfig,
) -> Result<PolicyTestReport, PolicyError> {
    let operator = OperatorPolicies::load_dir(dir)?;
    let compiled = rego::compile(operator.policies(), operator.tests(), &[], config)?;
    run(compiled, operator.tests())
}

/// Runs custos's own unit tests of its built-in policies (`policies/*/<id>_test.rego`).
pub fn run_builtin_policy_tests() -> Result<PolicyTestReport, PolicyError> {
    let tests: Vec<BundleFile> = BUILTIN_POLICIES
        .iter()
        .map(|p| BundleFile {
            path: p.test_path(),
            content: p.tests.to_string(),
        })
        .collect();
    let compiled = rego::compile(&[], &[], &tests, &SoftPolicyConfig::default())?;
    run(compiled, &tests)
}

fn run(compiled: Compiled, files: &[BundleFile]) -> Result<PolicyTestReport, PolicyError> {
    let packages = compiled
        .engine
        .get_policy_package_components()
        .map_err(|e| PolicyError::Compile {
            path: "policy bundle".to_string(),
            message: e.to_string(),
        })?;
    let mut report = PolicyTestReport::default();
    for file in files {
        let components = packages
            .iter()
            .find(|p| p.source_file == file.path)
            .map(|p| p.components.clone())
            .unwrap_or_default();
        let package = components.join(".");
        for name in candidate_tests(&file.content) {
            let outcome = match compiled
                .engine
                .has_declared_rule_rooted_at(&file.path, &name)
            {
                Ok(true) => run_one(&compiled, &components, &name),
                Ok(false) => continue,
                Err(e) => TestOutcome::Error(format!("{e:#}").trim().to_string()),
            };
            report.tests.push(PolicyTestResult {
                file: file.path.clone(),
                package: package.clone(),
                name,
                outcome,
            });
        }
    }
    Ok(report)
}

fn run_one(compiled: &Compiled, components: &[String], name: &str) -> TestOutcome {
    let mut engine = compiled.engine.clone();
    match rego::eval(&mut engine, &rego::rule_path(components, name), name) {
        Ok(Some(serde_json::Value::Bool(true))) => TestOutcome::Passed,
        Ok(_) => TestOutcome::Failed,
        Err(PolicyError::Evaluation { message, .. }) => TestOutcome::Error(message),
        Err(e) => TestOutcome::Error(e.to_string()),
    }
}

/// Names that may be test rules: identifiers starting with `test_` at the start of a line
/// (rule heads), in source order, each once. The engine confirms which are declared rules,
/// so one in a comment or a string is not run.
fn candidate_tests(source: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in source.lines() {
        let head = line.trim_start();
        if !head.starts_with("test_") {
            continue;
        }
        let name: String = head
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::candidate_tests;

    #[test]
    fn candidates_are_rule_heads_starting_with_test() {
        let source = "package p\n\ntest_a if true\n  test_b := true\n# test_comment\n\
                      x := \"test_string\"\ntest_a if false\nnot_test_c if true\n";
        assert_eq!(
            candidate_tests(source),
            ["test_a", "test_b"].map(String::from)
        );
    }
}

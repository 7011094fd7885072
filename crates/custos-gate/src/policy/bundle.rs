//! The policy bundle: which Rego files make up the policy custos evaluates, loading the
//! operator's ones from a directory, and the bundle hash recorded with each decision.

use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::builtin::{BUILTIN_POLICIES, LIB};
use super::{PolicyError, SoftPolicyConfig};

/// One Rego file of the bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleFile {
    /// Its path inside the bundle: `builtin/…` for custos's own, `operator/<relative path>`
    /// for an operator's.
    pub path: String,
    /// The Rego source.
    pub content: String,
}

/// The operator's Rego files: policies (`*.rego`) and their unit tests (`*_test.rego`).
/// Packages are checked when an engine is built from them
/// ([`super::RegoPolicyEngine::new`]), not here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperatorPolicies {
    policies: Vec<BundleFile>,
    tests: Vec<BundleFile>,
}

impl OperatorPolicies {
    /// No operator policies: the built-in bundle alone.
    pub fn none() -> Self {
        OperatorPolicies::default()
    }

    /// Every `*.rego` file under `dir`, recursively, in path order; names starting with `.`
    /// (files and directories) are skipped. A directory that does not exist is an error:
    /// a configured policy directory that is missing is a misconfiguration, not "no policy".
    pub fn load_dir(dir: &Path) -> Result<Self, PolicyError> {
        let mut files = Vec::new();
        collect_rego(dir, "", &mut files)?;
        files.sort();
        let mut sources = Vec::with_capacity(files.len());
        for relative in files {
            let full = dir.join(&relative);
            let content = fs::read_to_string(&full).map_err(|e| PolicyError::Io {
                path: full.display().to_string(),
                message: e.to_string(),
            })?;
            sources.push((relative, content));
        }
        OperatorPolicies::from_sources(sources)
    }

    /// Operator files given as (relative path, Rego source); a path ending in `_test.rego` is
    /// a test file. Paths must be non-empty, without control characters, and unique.
    pub fn from_sources<I, P, C>(files: I) -> Result<Self, PolicyError>
    where
        I: IntoIterator<Item = (P, C)>,
        P: Into<String>,
        C: Into<String>,
    {
        let mut operator = OperatorPolicies::default();
        for (relative, content) in files {
            let relative: String = relative.into();
            if relative.is_empty() || relative.chars().any(char::is_control) {
                return Err(PolicyError::Io {
                    path: relative.escape_debug().to_string(),
                    message: "a policy file name must be non-empty and without control characters"
                        .to_string(),
                });
            }
            let path = format!("operator/{relative}");
            if operator.files().any(|f| f.path == path) {
                return Err(PolicyError::Io {
                    path,
                    message: "the same policy file is given twice".to_string(),
                });
            }
            let file = BundleFile {
                path,
                content: content.into(),
            };
            if relative.ends_with("_test.rego") {
                operator.tests.push(file);
            } else {
                operator.policies.push(file);
            }
        }
        Ok(operator)
    }

    /// The policy files (part of the bundle and its hash).
    pub fn policies(&self) -> &[BundleFile] {
        &self.policies
    }

    /// The test files (used by the test runner only; not part of the hash).
    pub fn tests(&self) -> &[BundleFile] {
        &self.tests
    }

    fn files(&self) -> impl Iterator<Item = &BundleFile> {
        self.policies.iter().chain(&self.tests)
    }
}

fn collect_rego(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), PolicyError> {
    let io = |e: std::io::Error| PolicyError::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    };
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(PolicyError::Io {
                path: entry.path().display().to_string(),
                message: "policy file names must be UTF-8".to_string(),
            });
        };
        if name.starts_with('.') {
            continue;
        }
        let relative = format!("{prefix}{name}");
        // The entry's own type: a symlinked directory is not followed (no loops).
        if entry.file_type().map_err(io)?.is_dir() {
            collect_rego(&entry.path(), &format!("{relative}/"), out)?;
        } else if name.ends_with(".rego") {
            out.push(relative);
        }
    }
    Ok(())
}

/// The set of files a [`super::PolicyEngine`] evaluates, and its hash.
///
/// The hash is the hex SHA-256 of the *listing*: one line per file,
/// `<hex SHA-256 of the content>  <path>\n` (the `sha256sum` format), sorted by path
/// (byte order). The files are the built-in helpers and policies (`builtin/…`, their unit
/// tests excluded), every operator policy file (`operator/<relative path>`, tests excluded),
/// and the soft-policy configuration as compact JSON (`config/soft_policies.json`), which
/// changes decisions too. So the hash changes exactly when something that can change a
/// decision changes, and can be recomputed with `sha256sum` from the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyBundle {
    listing: String,
    hash: String,
}

impl PolicyBundle {
    /// The bundle of the built-in policies, `operator`'s policies and `config`.
    pub fn new(
        operator: &OperatorPolicies,
        config: &SoftPolicyConfig,
    ) -> Result<Self, PolicyError> {
        let config_json =
            serde_json::to_string(config).map_err(|e| PolicyError::Config(e.to_string()))?;
        let mut entries: Vec<(String, String)> = Vec::new();
        entries.push((LIB.0.to_string(), sha256_hex(LIB.1)));
        for policy in BUILTIN_POLICIES {
            entries.push((policy.path(), sha256_hex(policy.rego)));
        }
        for file in operator.policies() {
            entries.push((file.path.clone(), sha256_hex(&file.content)));
        }
        entries.push((
            "config/soft_policies.json".to_string(),
            sha256_hex(&config_json),
        ));
        entries.sort();
        let listing: String = entries
            .iter()
            .map(|(path, digest)| format!("{digest}  {path}\n"))
            .collect();
        let hash = sha256_hex(&listing);
        Ok(PolicyBundle { listing, hash })
    }

    /// Hex SHA-256 of the listing: the bundle hash recorded with each decision.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The listing the hash is taken over.
    pub fn listing(&self) -> &str {
        &self.listing
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

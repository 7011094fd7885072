//! Deciding a resource's environment (SPEC §4.2), and whether it is production.
//!
//! The evidence, strongest first: the action's own `environment` (generic plans), the
//! resource's environment tags (`Environment`, `env`, `stage`, any case), tokens of its names
//! (the `Name` tag, `name`-like attributes, the Terraform name, module names, `for_each` keys),
//! `metadata.environment`, and tokens of the user's request.
//!
//! Rules, in the order they apply:
//! 1. Text is read token by token: lower-cased, split on everything that is not a letter or a
//!    digit; trailing digits are ignored when matching (`dev01`, `prod2`). Before a token is
//!    read alone, non-production compounds are recognised: `nonprod`, `non-prod`, `non_prod`,
//!    `nonproduction`, `preprod`, `pre-prod`, `preproduction`, and the same followed by one
//!    hyphenated qualifier (`nonprod-ml`, `non-prod-data`). So `nonprod` is never read as
//!    `prod`.
//! 2. Production words: `prod`, `production`, `prd`, `live` (`live` because payment and API
//!    platforms call production "live"; its other uses only make a resource look more
//!    production than it is, which fails secure). Non-production words: `dev`, `devel`,
//!    `develop`, `development`, `staging`, `stage`, `stg`, `test`, `testing`, `qa`, `uat`,
//!    `sandbox`, `sbx`, and the compounds of rule 1. Only whole tokens count (`devicefarm`,
//!    `reproduction`, `latest` say nothing).
//! 3. One piece of evidence that names both (`prod-to-dev-sync`) is production.
//! 4. An explicit label — the action's `environment`, an environment tag, `metadata.environment`
//!    — that names neither is still a statement that the resource belongs to *some* environment
//!    custos does not know, so it decides: production, under the label's own name (`corp`).
//! 5. Among the resource's own evidence (action, tags, names) the strongest source decides,
//!    except that a resource whose own evidence anywhere says production is production: a plan
//!    that calls a resource named `pci-prod-firewall` `dev` does not make it non-production.
//! 6. Only when the resource says nothing does `metadata.environment` decide, then the request.
//!    Nothing at all: `unknown`, treated as production (fail secure).

use super::{Environment, EnvironmentSource};

/// Words that mean production.
const PRODUCTION: &[&str] = &["prod", "production", "prd", "live"];

/// Words that mean not production.
const NON_PRODUCTION: &[&str] = &[
    "dev",
    "devel",
    "develop",
    "development",
    "staging",
    "stage",
    "stg",
    "test",
    "testing",
    "qa",
    "uat",
    "sandbox",
    "sbx",
];

/// Single tokens that start a non-production compound (`nonprod`, `nonprod2`, `preprod`).
const NEGATED_PRODUCTION: &[&str] = &["nonprod", "nonproduction", "preprod", "preproduction"];

/// Tokens that, followed by a production word, negate it (`non-prod`, `pre-prod`).
const NEGATING_PREFIXES: &[&str] = &["non", "pre"];

/// What one piece of text says about the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reading {
    /// The deciding word, lower case (`prod`, `nonprod-ml`, `dev`).
    pub word: String,
    /// Whether it means production.
    pub production: bool,
}

/// A token of text and whether a single hyphen joins it to the previous one.
#[derive(Debug)]
struct Token {
    text: String,
    hyphenated: bool,
}

/// Splits lower-cased `text` on every non-alphanumeric character, remembering which tokens a
/// single hyphen joins to the previous one.
fn tokens(text: &str) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::new();
    let mut current = String::new();
    let mut hyphenated = false;
    // The separator run since the last token: its length and whether it is just `-`.
    let mut separator_len = 0usize;
    let mut separator_is_hyphen = false;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if current.is_empty() {
                hyphenated = !out.is_empty() && separator_len == 1 && separator_is_hyphen;
                separator_len = 0;
            }
            current.push(c);
        } else {
            if !current.is_empty() {
                out.push(Token {
                    text: std::mem::take(&mut current),
                    hyphenated,
                });
            }
            separator_len += 1;
            separator_is_hyphen = c == '-';
        }
    }
    if !current.is_empty() {
        out.push(Token {
            text: current,
            hyphenated,
        });
    }
    out
}

/// `token` without trailing digits (`dev01` → `dev`).
fn stem(token: &str) -> &str {
    token.trim_end_matches(|c: char| c.is_ascii_digit())
}

fn is_production_word(token: &str) -> bool {
    PRODUCTION.contains(&stem(token))
}

/// Reads `text` token by token (rules 1–3). `None` when it names no environment.
pub fn read_text(text: &str) -> Option<Reading> {
    let tokens = tokens(text);
    let mut first_non_production: Option<String> = None;
    let mut i = 0;
    while let Some(token) = tokens.get(i) {
        let stemmed = stem(&token.text);
        let compound_len = if NEGATED_PRODUCTION.contains(&stemmed) {
            1
        } else if NEGATING_PREFIXES.contains(&stemmed)
            && tokens
                .get(i + 1)
                .is_some_and(|next| is_production_word(&next.text))
        {
            2
        } else {
            0
        };
        if compound_len > 0 {
            let mut end = i + compound_len;
            if tokens.get(end).is_some_and(|t| t.hyphenated) {
                end += 1;
            }
            let word: Vec<&str> = tokens
                .get(i..end)
                .unwrap_or_default()
                .iter()
                .map(|t| t.text.as_str())
                .collect();
            first_non_production.get_or_insert_with(|| word.join("-"));
            i = end;
            continue;
        }
        if is_production_word(&token.text) {
            return Some(Reading {
                word: token.text.clone(),
                production: true,
            });
        }
        if NON_PRODUCTION.contains(&stemmed) {
            first_non_production.get_or_insert_with(|| token.text.clone());
        }
        i += 1;
    }
    first_non_production.map(|word| Reading {
        word,
        production: false,
    })
}

/// Reads an explicit environment label (rule 4). `None` only when it is blank.
pub fn read_label(label: &str) -> Option<Reading> {
    let trimmed = label.trim();
    if trimmed.is_empty() {
        return None;
    }
    Some(read_text(trimmed).unwrap_or_else(|| Reading {
        word: trimmed.to_lowercase(),
        production: true,
    }))
}

/// Several readings of one source as one: the first production one, else the first.
fn combine(readings: impl IntoIterator<Item = Reading>) -> Option<Reading> {
    let mut first = None;
    for reading in readings {
        if reading.production {
            return Some(reading);
        }
        first.get_or_insert(reading);
    }
    first
}

/// Everything known about one resource's environment.
#[derive(Clone, Debug, Default)]
pub struct Evidence<'a> {
    /// The action's own `environment` (generic plans), or the plan-wide one.
    pub action: Option<&'a str>,
    /// Values of the resource's environment tags.
    pub tags: Vec<&'a str>,
    /// Its names: `Name` tag, name-like attributes, Terraform name, module names, keys.
    pub names: Vec<&'a str>,
    /// `metadata.environment`.
    pub metadata: Option<&'a str>,
    /// What the user's request says, read once per plan with [`read_text`].
    pub request: Option<Reading>,
}

/// The environment of one resource (rules 5 and 6).
pub fn decide(evidence: &Evidence<'_>) -> Environment {
    let own = [
        (
            EnvironmentSource::Action,
            evidence.action.and_then(read_label),
        ),
        (
            EnvironmentSource::Tag,
            combine(evidence.tags.iter().filter_map(|t| read_label(t))),
        ),
        (
            EnvironmentSource::Name,
            combine(evidence.names.iter().filter_map(|n| read_text(n))),
        ),
    ];
    let production = own
        .iter()
        .find(|(_, reading)| reading.as_ref().is_some_and(|r| r.production));
    let decided = production
        .or_else(|| own.iter().find(|(_, reading)| reading.is_some()))
        .and_then(|(source, reading)| reading.clone().map(|r| (*source, r)))
        .or_else(|| {
            evidence
                .metadata
                .and_then(read_label)
                .map(|r| (EnvironmentSource::Metadata, r))
        })
        .or_else(|| {
            evidence
                .request
                .clone()
                .map(|r| (EnvironmentSource::Request, r))
        });
    match decided {
        Some((source, reading)) => Environment {
            name: reading.word,
            production: reading.production,
            source,
        },
        None => Environment {
            name: "unknown".to_owned(),
            production: true,
            source: EnvironmentSource::Unknown,
        },
    }
}

/// Whether a tag key names an environment (`Environment`, `env`, `stage`, any case).
pub(crate) fn is_environment_tag(key: &str) -> bool {
    matches!(
        key.trim().to_lowercase().as_str(),
        "environment" | "env" | "stage"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` reads as `word` (production or not), or as nothing.
    fn check_text(text: &str, expected: Option<(&str, bool)>) {
        let got = read_text(text);
        let got = got.as_ref().map(|r| (r.word.as_str(), r.production));
        assert_eq!(got, expected, "read_text({text:?})");
    }

    #[test]
    fn text_is_read_token_by_token() {
        let cases: &[(&str, Option<(&str, bool)>)] = &[
            ("prod", Some(("prod", true))),
            ("PRODUCTION", Some(("production", true))),
            ("api-prd-01", Some(("prd", true))),
            ("prod2", Some(("prod2", true))),
            ("live", Some(("live", true))),
            ("pci-prod-firewall", Some(("prod", true))),
            ("module.prod_network", Some(("prod", true))),
            ("nonprod", Some(("nonprod", false))),
            ("nonprod-ml", Some(("nonprod-ml", false))),
            ("NonProd-ML", Some(("nonprod-ml", false))),
            ("non-prod", Some(("non-prod", false))),
            ("non_prod", Some(("non-prod", false))),
            ("non-prod-ml-cluster", Some(("non-prod-ml", false))),
            ("a non production account", Some(("non-production", false))),
            ("acme-nonprod-ml-gpu", Some(("nonprod-ml", false))),
            ("pre-prod", Some(("pre-prod", false))),
            ("preprod", Some(("preprod", false))),
            ("dev", Some(("dev", false))),
            ("dev01", Some(("dev01", false))),
            ("ml-dev-vpc-3", Some(("dev", false))),
            ("staging", Some(("staging", false))),
            ("stage", Some(("stage", false))),
            ("test", Some(("test", false))),
            ("qa", Some(("qa", false))),
            ("uat", Some(("uat", false))),
            ("sandbox", Some(("sandbox", false))),
            ("Development", Some(("development", false))),
            // Both in one piece of evidence: production (fail secure).
            ("prod-to-dev-sync", Some(("prod", true))),
            ("dev copy of prod", Some(("prod", true))),
            ("nonprod-ml next to prod", Some(("prod", true))),
            // Whole tokens only.
            ("devicefarm", None),
            ("reproduction", None),
            ("latest", None),
            ("products", None),
            ("nonproductive", None),
            ("", None),
            ("123456789123-acme-corp", None),
            ("web_host", None),
        ];
        for (text, expected) in cases {
            check_text(text, *expected);
        }
    }

    #[test]
    fn labels_that_name_no_known_environment_are_production() {
        assert_eq!(
            read_label("Corp"),
            Some(Reading {
                word: "corp".to_owned(),
                production: true
            })
        );
        assert_eq!(read_label("  "), None);
        assert_eq!(read_label("nonprod-ml").map(|r| r.production), Some(false));
    }

    /// One row of the decision table.
    struct Case {
        action: Option<&'static str>,
        tags: &'static [&'static str],
        names: &'static [&'static str],
        metadata: Option<&'static str>,
        request: &'static str,
        expected: (&'static str, bool, EnvironmentSource),
    }

    const NONE: Case = Case {
        action: None,
        tags: &[],
        names: &[],
        metadata: None,
        request: "",
        expected: ("unknown", true, EnvironmentSource::Unknown),
    };

    fn check(case: &Case) {
        let evidence = Evidence {
            action: case.action,
            tags: case.tags.to_vec(),
            names: case.names.to_vec(),
            metadata: case.metadata,
            request: read_text(case.request),
        };
        let got = decide(&evidence);
        let (name, production, source) = case.expected;
        assert_eq!(
            (got.name.as_str(), got.production, got.source),
            (name, production, source),
            "action {:?} tags {:?} names {:?} metadata {:?} request {:?}",
            case.action,
            case.tags,
            case.names,
            case.metadata,
            case.request
        );
    }

    #[test]
    fn decision_table() {
        use EnvironmentSource::*;
        let cases = [
            NONE,
            Case {
                action: Some("nonprod-ml"),
                expected: ("nonprod-ml", false, Action),
                ..NONE
            },
            Case {
                action: Some("production"),
                tags: &["dev"],
                expected: ("production", true, Action),
                ..NONE
            },
            // The resource's own production evidence beats a stronger non-production claim.
            Case {
                action: Some("nonprod-ml"),
                names: &["pci-prod-firewall"],
                expected: ("prod", true, Name),
                ..NONE
            },
            Case {
                action: Some("dev"),
                tags: &["Production"],
                expected: ("production", true, Tag),
                ..NONE
            },
            Case {
                tags: &["staging"],
                names: &["api"],
                metadata: Some("production"),
                expected: ("staging", false, Tag),
                ..NONE
            },
            Case {
                tags: &["dev", "prod"],
                expected: ("prod", true, Tag),
                ..NONE
            },
            // An environment tag custos does not know: production, under its own name.
            Case {
                tags: &["123456789123-acme-corp"],
                metadata: Some("dev"),
                expected: ("123456789123-acme-corp", true, Tag),
                ..NONE
            },
            Case {
                tags: &[""],
                metadata: Some("dev"),
                expected: ("dev", false, Metadata),
                ..NONE
            },
            Case {
                names: &["dev-vpc-1"],
                metadata: Some("production"),
                expected: ("dev", false, Name),
                ..NONE
            },
            Case {
                names: &["web_host", "123456789123-acme-corp-ec2"],
                metadata: Some("staging"),
                expected: ("staging", false, Metadata),
                ..NONE
            },
            Case {
                names: &["web_host"],
                metadata: Some("corp"),
                request: "deploy to dev",
                expected: ("corp", true, Metadata),
                ..NONE
            },
            Case {
                names: &["web_host"],
                request: "Create an ML microsegment in nonprod-ml",
                expected: ("nonprod-ml", false, Request),
                ..NONE
            },
            Case {
                request: "Scale up the production API",
                expected: ("production", true, Request),
                ..NONE
            },
            Case {
                request: "create a dev copy of the prod database",
                expected: ("prod", true, Request),
                ..NONE
            },
            Case {
                request: "add two GPU instances",
                expected: ("unknown", true, Unknown),
                ..NONE
            },
            Case {
                metadata: Some("   "),
                expected: ("unknown", true, Unknown),
                ..NONE
            },
        ];
        for case in &cases {
            check(case);
        }
    }

    #[test]
    fn environment_tag_keys_are_matched_in_any_case() {
        for key in [
            "Environment",
            "environment",
            "ENV",
            "env",
            "Stage",
            " stage ",
        ] {
            assert!(is_environment_tag(key), "{key}");
        }
        for key in ["Name", "environments", "tier"] {
            assert!(!is_environment_tag(key), "{key}");
        }
    }
}

//! Reading JSON by path: the typed accessors the normalisers use, so that every error names the
//! exact place in the document that was wrong (`actions[3].verb`,
//! `resource_changes[0].change.actions`, `infracost.totalMonthlyCost`).
//!
//! Conventions shared by every reader here: a `null` value is the same as an absent field; a
//! field may have aliases, of which the first present one is read (two aliases present with
//! different values is an error, not a silent choice); numbers may be JSON numbers or strings
//! holding one (Infracost writes `"902.5"`).

use std::fmt;

use serde_json::{Map, Value};

use super::PlanError;

/// Where a value sits in a document, printed as `a.b[3].c` (keys that are not plain words as
/// `["Cost Center"]`). The empty path is the document itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Path(String);

impl Path {
    /// The document itself.
    pub(crate) fn root() -> Path {
        Path(String::new())
    }

    /// A path starting at a named document (`infracost`, `metadata`).
    pub(crate) fn named(name: &str) -> Path {
        Path(name.to_owned())
    }

    /// The member `key` of the object at this path.
    pub(crate) fn key(&self, key: &str) -> Path {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let mut path = self.0.clone();
        if plain {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
        } else {
            path.push('[');
            path.push_str(&Value::String(key.to_owned()).to_string());
            path.push(']');
        }
        Path(path)
    }

    /// Element `index` of the array at this path.
    pub(crate) fn index(&self, index: usize) -> Path {
        Path(format!("{}[{index}]", self.0))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(top level)")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// What a value is, for error messages: its JSON type and, for scalars, a short rendering.
pub(crate) fn describe(value: &Value) -> String {
    const LIMIT: usize = 40;
    let shown = |text: String| {
        if text.chars().count() > LIMIT {
            let cut: String = text.chars().take(LIMIT).collect();
            format!("{cut}…")
        } else {
            text
        }
    };
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {}", shown(Value::String(s.clone()).to_string())),
        Value::Array(_) | Value::Object(_) => kind_of(value).to_owned(),
    }
}

/// What kind of JSON value it is (`a string`, `an array`, …), for error messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The error for a value of the wrong type.
pub(crate) fn wrong_type(path: &Path, expected: &'static str, found: &Value) -> PlanError {
    PlanError::WrongType {
        path: path.to_string(),
        expected,
        found: describe(found),
    }
}

/// An object member with its path.
pub(crate) type ObjectAt<'a> = (Path, &'a Map<String, Value>);

/// An array member with its path.
pub(crate) type ArrayAt<'a> = (Path, &'a [Value]);

/// The first of `keys` present (and not `null`) in `object`, with its key. Two aliases present
/// with different values is an error naming both.
pub(crate) fn aliased<'a>(
    object: &'a Map<String, Value>,
    keys: &[&'static str],
    path: &Path,
) -> Result<Option<(&'static str, &'a Value)>, PlanError> {
    let mut found: Option<(&'static str, &'a Value)> = None;
    for key in keys {
        let Some(value) = object.get(*key).filter(|v| !v.is_null()) else {
            continue;
        };
        match found {
            None => found = Some((key, value)),
            Some((first, earlier)) if earlier != value => {
                return Err(PlanError::ConflictingAliases {
                    path: path.to_string(),
                    first: first.to_owned(),
                    second: (*key).to_owned(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(found)
}

/// An optional string field (under any of `keys`).
pub(crate) fn opt_str<'a>(
    object: &'a Map<String, Value>,
    keys: &[&'static str],
    path: &Path,
) -> Result<Option<&'a str>, PlanError> {
    match aliased(object, keys, path)? {
        None => Ok(None),
        Some((_, Value::String(s))) => Ok(Some(s)),
        Some((key, other)) => Err(wrong_type(&path.key(key), "a string", other)),
    }
}

/// A required string field (under any of `keys`).
pub(crate) fn req_str<'a>(
    object: &'a Map<String, Value>,
    keys: &[&'static str],
    path: &Path,
) -> Result<&'a str, PlanError> {
    opt_str(object, keys, path)?.ok_or_else(|| missing(keys, path))
}

/// The error for a required field that is absent (naming its aliases).
pub(crate) fn missing(keys: &[&'static str], path: &Path) -> PlanError {
    let first = keys.first().copied().unwrap_or("?");
    PlanError::Missing {
        path: path.key(first).to_string(),
        aliases: keys.iter().skip(1).map(|k| (*k).to_owned()).collect(),
    }
}

/// An optional object field (under any of `keys`).
pub(crate) fn opt_object<'a>(
    object: &'a Map<String, Value>,
    keys: &[&'static str],
    path: &Path,
) -> Result<Option<ObjectAt<'a>>, PlanError> {
    match aliased(object, keys, path)? {
        None => Ok(None),
        Some((key, Value::Object(o))) => Ok(Some((path.key(key), o))),
        Some((key, other)) => Err(wrong_type(&path.key(key), "an object", other)),
    }
}

/// An optional array field (under any of `keys`).
pub(crate) fn opt_array<'a>(
    object: &'a Map<String, Value>,
    keys: &[&'static str],
    path: &Path,
) -> Result<Option<ArrayAt<'a>>, PlanError> {
    match aliased(object, keys, path)? {
        None => Ok(None),
        Some((key, Value::Array(a))) => Ok(Some((path.key(key), a.as_slice()))),
        Some((key, other)) => Err(wrong_type(&path.key(key), "an array", other)),
    }
}

/// A finite number: a JSON number, or a string holding one (`"902.5"`).
pub(crate) fn number(value: &Value, path: &Path) -> Result<f64, PlanError> {
    let parsed = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        other => return Err(wrong_type(path, "a number", other)),
    };
    match parsed {
        Some(n) if n.is_finite() => Ok(n),
        _ => Err(PlanError::NotANumber {
            path: path.to_string(),
            found: describe(value),
        }),
    }
}

/// An optional number field (under any of `keys`).
pub(crate) fn opt_number(
    object: &Map<String, Value>,
    keys: &[&'static str],
    path: &Path,
) -> Result<Option<f64>, PlanError> {
    aliased(object, keys, path)?
        .map(|(key, value)| number(value, &path.key(key)))
        .transpose()
}

/// A count: a non-negative whole JSON number, or a string holding one.
pub(crate) fn count(value: &Value, path: &Path) -> Result<u64, PlanError> {
    /// Largest whole number an f64 holds exactly.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let as_whole = |n: f64| (n.fract() == 0.0 && (0.0..=EXACT).contains(&n)).then_some(n as u64);
    let parsed = match value {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().and_then(as_whole)),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        other => return Err(wrong_type(path, "a non-negative whole number", other)),
    };
    parsed.ok_or_else(|| PlanError::OutOfRange {
        path: path.to_string(),
        found: describe(value),
        range: "a non-negative whole number",
    })
}

/// A string list: a JSON array of strings (`null` elements skipped) or a single string.
pub(crate) fn strings<'a>(value: &'a Value, path: &Path) -> Result<Vec<&'a str>, PlanError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Null => {}
                    Value::String(s) => out.push(s.as_str()),
                    other => return Err(wrong_type(&path.index(i), "a string", other)),
                }
            }
            Ok(out)
        }
        other => Err(wrong_type(path, "a string or an array of strings", other)),
    }
}

/// A scalar rendered as text (strings as they are, numbers and booleans as JSON writes them);
/// `None` for anything else.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_print_as_written_in_documents() {
        let path = Path::root()
            .key("resource_changes")
            .index(3)
            .key("change")
            .key("actions");
        assert_eq!(path.to_string(), "resource_changes[3].change.actions");
        assert_eq!(Path::root().to_string(), "(top level)");
        assert_eq!(
            Path::named("tags").key("Cost Center").to_string(),
            "tags[\"Cost Center\"]"
        );
        assert_eq!(
            Path::named("infracost").key("currency").to_string(),
            "infracost.currency"
        );
    }

    #[test]
    fn numbers_accept_numeric_strings_only() {
        let path = Path::named("x");
        assert_eq!(number(&json!(902.5), &path).ok(), Some(902.5));
        assert_eq!(number(&json!(" 902.5 "), &path).ok(), Some(902.5));
        for bad in [
            json!("abc"),
            json!("NaN"),
            json!("inf"),
            json!(""),
            json!("1e400"),
        ] {
            assert!(
                matches!(number(&bad, &path), Err(PlanError::NotANumber { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            number(&json!([]), &path),
            Err(PlanError::WrongType { .. })
        ));
    }

    #[test]
    fn counts_are_whole_and_not_negative() {
        let path = Path::named("q");
        assert_eq!(count(&json!(4), &path).ok(), Some(4));
        assert_eq!(count(&json!(4.0), &path).ok(), Some(4));
        assert_eq!(count(&json!("12"), &path).ok(), Some(12));
        for bad in [json!(-1), json!(1.5), json!("x"), json!(1e300)] {
            assert!(count(&bad, &path).is_err(), "{bad}");
        }
    }

    #[test]
    fn conflicting_aliases_are_an_error_and_equal_ones_are_not() {
        let path = Path::named("actions").index(0);
        let same = json!({"verb": "create", "action": "create"});
        let obj = same.as_object().cloned().unwrap_or_default();
        assert_eq!(
            opt_str(&obj, &["verb", "action"], &path).ok().flatten(),
            Some("create")
        );
        let differ = json!({"verb": "create", "action": "delete"});
        let obj = differ.as_object().cloned().unwrap_or_default();
        let err = opt_str(&obj, &["verb", "action"], &path)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("actions[0]: `verb` and `action` are both given and disagree")
        );
    }
}

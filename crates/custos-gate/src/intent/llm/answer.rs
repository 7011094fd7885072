//! The LLM's answer: its JSON schema, and the strict check that turns an answer into an
//! [`IntentAssessment`] or refuses it.
//!
//! The answer must be exactly one JSON object with exactly the keys `match` (`exact`,
//! `partial` or `mismatch`), `confidence` (a number in `[0, 1]`), `extra_actions`,
//! `missing_actions` and `safety_concerns` (arrays of at most 100 strings of at most 1000
//! characters). One surrounding Markdown code fence is tolerated (models add them despite
//! being told not to); anything else is an error. Blank strings are dropped.
//!
//! `extra_actions` name plan addresses. An address the plan does not have cannot be shown
//! as an action; it becomes a safety concern (the model saw something wrong, or
//! hallucinated: either way a human should look).

use serde_json::{Map, Value, json};

use crate::intent::{ActionRef, IntentAssessment, IntentError, Match, MissingAction, VerifierId};
use crate::plan::NormalizedPlan;
use crate::plan::read::kind_of;

/// Most items an answer array may hold.
const MAX_ITEMS: usize = 100;

/// Longest string an answer array may hold, in characters.
const MAX_STRING_CHARS: usize = 1000;

const KEYS: [&str; 5] = [
    "match",
    "confidence",
    "extra_actions",
    "missing_actions",
    "safety_concerns",
];

/// The JSON schema of the answer, in the subset of JSON Schema every structured-output
/// implementation accepts (OpenAI strict mode, vLLM, llama.cpp, Ollama): types, `enum`,
/// `required`, `additionalProperties: false`. Ranges and lengths are checked on receipt.
pub fn answer_schema() -> Value {
    let strings = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "type": "object",
        "properties": {
            "match": {"type": "string", "enum": ["exact", "partial", "mismatch"]},
            "confidence": {"type": "number", "description": "from 0 to 1"},
            "extra_actions": strings,
            "missing_actions": strings,
            "safety_concerns": strings,
        },
        "required": KEYS,
        "additionalProperties": false,
    })
}

/// Checks an answer text against the schema and maps it to an assessment by `verifier`.
pub(crate) fn parse_answer(
    text: &str,
    plan: &NormalizedPlan,
    verifier: VerifierId,
) -> Result<IntentAssessment, IntentError> {
    let body = unfence(text.trim());
    if body.is_empty() {
        return Err(IntentError::EmptyAnswer);
    }
    let value: Value = serde_json::from_str(body).map_err(|e| {
        IntentError::AnswerNotJson(format!("{e}; the answer begins {:?}", excerpt(body)))
    })?;
    let Value::Object(object) = value else {
        return Err(IntentError::SchemaViolation(format!(
            "the answer is {}, not an object",
            kind_of(&value)
        )));
    };
    if let Some(unknown) = object.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(IntentError::SchemaViolation(format!(
            "unknown key `{}`",
            excerpt(unknown)
        )));
    }
    let match_ = match object.get("match") {
        Some(Value::String(s)) => match s.as_str() {
            "exact" => Match::Exact,
            "partial" => Match::Partial,
            "mismatch" => Match::Mismatch,
            other => {
                return Err(IntentError::SchemaViolation(format!(
                    "`match` is {:?}, not exact, partial or mismatch",
                    excerpt(other)
                )));
            }
        },
        Some(other) => {
            return Err(IntentError::SchemaViolation(format!(
                "`match` is {}, not a string",
                kind_of(other)
            )));
        }
        None => return Err(missing_key("match")),
    };
    let confidence = match object.get("confidence") {
        Some(Value::Number(n)) => match n.as_f64() {
            Some(c) if (0.0..=1.0).contains(&c) => c,
            _ => {
                return Err(IntentError::SchemaViolation(format!(
                    "`confidence` is {n}, outside 0..1"
                )));
            }
        },
        Some(other) => {
            return Err(IntentError::SchemaViolation(format!(
                "`confidence` is {}, not a number",
                kind_of(other)
            )));
        }
        None => return Err(missing_key("confidence")),
    };
    let extra = strings(&object, "extra_actions")?;
    let missing = strings(&object, "missing_actions")?;
    let mut concerns = strings(&object, "safety_concerns")?;
    let mut extra_actions = Vec::new();
    for address in extra {
        match plan.actions.iter().find(|a| a.address == address) {
            Some(action) => extra_actions.push(ActionRef::new(
                action,
                format!("{verifier} judged it not asked for"),
            )),
            None => concerns.push(format!(
                "{verifier} named `{}` as not asked for, but the plan has no such action",
                excerpt(&address)
            )),
        }
    }
    Ok(IntentAssessment {
        match_,
        confidence,
        extra_actions,
        missing_actions: missing
            .into_iter()
            .map(|description| MissingAction {
                description,
                verb: None,
                family: None,
            })
            .collect(),
        safety_concerns: concerns,
        notes: Vec::new(),
        verifier,
        llm_verifier: None,
    }
    .normalised())
}

/// The text inside one surrounding Markdown code fence (```` ```json … ``` ````), or the
/// text itself.
fn unfence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let Some(inner) = rest.strip_suffix("```") else {
        return text;
    };
    // Drop the info string (`json`) on the opening line.
    match inner.split_once('\n') {
        Some((info, body)) if !info.contains('{') => body.trim(),
        _ => inner.trim(),
    }
}

fn strings(object: &Map<String, Value>, key: &str) -> Result<Vec<String>, IntentError> {
    let Some(value) = object.get(key) else {
        return Err(missing_key(key));
    };
    let Value::Array(items) = value else {
        return Err(IntentError::SchemaViolation(format!(
            "`{key}` is {}, not an array",
            kind_of(value)
        )));
    };
    if items.len() > MAX_ITEMS {
        return Err(IntentError::SchemaViolation(format!(
            "`{key}` has {} items, more than {MAX_ITEMS}",
            items.len()
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::String(s) = item else {
            return Err(IntentError::SchemaViolation(format!(
                "`{key}[{i}]` is {}, not a string",
                kind_of(item)
            )));
        };
        if s.chars().count() > MAX_STRING_CHARS {
            return Err(IntentError::SchemaViolation(format!(
                "`{key}[{i}]` is longer than {MAX_STRING_CHARS} characters"
            )));
        }
        let trimmed = s.trim();
        if !trimmed.is_empty() {
            out.push(trimmed.to_owned());
        }
    }
    Ok(out)
}

fn missing_key(key: &str) -> IntentError {
    IntentError::SchemaViolation(format!("missing key `{key}`"))
}

/// The first 80 characters of `text`.
fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(80).collect();
    if text.chars().nth(80).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Cost, CostSource, PlanFormat};

    fn plan() -> NormalizedPlan {
        NormalizedPlan {
            format: PlanFormat::Generic,
            actions: Vec::new(),
            cost: Cost {
                monthly: None,
                monthly_increase: None,
                currency: None,
                source: CostSource::None,
            },
            regions: Default::default(),
            notes: Vec::new(),
        }
    }

    fn parse(text: &str) -> Result<IntentAssessment, IntentError> {
        parse_answer(text, &plan(), VerifierId::new("test", "1"))
    }

    const GOOD: &str = r#"{"match":"exact","confidence":0.97,"extra_actions":[],"missing_actions":[],"safety_concerns":[]}"#;

    #[test]
    fn a_good_answer_parses() {
        let a = parse(GOOD).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.match_, a.confidence), (Match::Exact, 0.97));
        let fenced = format!("```json\n{GOOD}\n```");
        assert!(parse(&fenced).is_ok());
        let bare_fence = format!("```{GOOD}```");
        assert!(parse(&bare_fence).is_ok());
    }

    #[test]
    fn anything_else_is_refused() {
        let cases: &[(&str, &str)] = &[
            ("", "empty answer"),
            ("   ", "empty answer"),
            ("I cannot help with that.", "not JSON"),
            ("[1,2]", "an array, not an object"),
            (r#"{"match":"exact"}"#, "missing key `confidence`"),
            (
                r#"{"match":"perfect","confidence":1,"extra_actions":[],"missing_actions":[],"safety_concerns":[]}"#,
                "not exact, partial or mismatch",
            ),
            (
                r#"{"match":"exact","confidence":1.5,"extra_actions":[],"missing_actions":[],"safety_concerns":[]}"#,
                "outside 0..1",
            ),
            (
                r#"{"match":"exact","confidence":"high","extra_actions":[],"missing_actions":[],"safety_concerns":[]}"#,
                "not a number",
            ),
            (
                r#"{"match":"exact","confidence":1,"extra_actions":[1],"missing_actions":[],"safety_concerns":[]}"#,
                "`extra_actions[0]` is a number",
            ),
            (
                r#"{"match":"exact","confidence":1,"extra_actions":[],"missing_actions":"none","safety_concerns":[]}"#,
                "not an array",
            ),
            (
                r#"{"match":"exact","confidence":1,"extra_actions":[],"missing_actions":[],"safety_concerns":[],"approved":true}"#,
                "unknown key `approved`",
            ),
        ];
        for (text, expected) in cases {
            match parse(text) {
                Ok(a) => panic!("{text:?} parsed: {a:?}"),
                Err(e) => assert!(e.to_string().contains(expected), "{text:?}: {e}"),
            }
        }
    }

    #[test]
    fn unknown_extra_addresses_become_concerns_and_exact_becomes_partial() {
        let a = parse(
            r#"{"match":"exact","confidence":0.9,"extra_actions":["aws_iam_role.admin"],"missing_actions":[" "],"safety_concerns":[]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.match_, Match::Partial);
        assert!(a.missing_actions.is_empty());
        assert_eq!(a.safety_concerns.len(), 1);
        assert!(a.safety_concerns[0].contains("aws_iam_role.admin"));
    }
}

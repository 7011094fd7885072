//! Anthropic Messages.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::http::{Post, post_json, secret_header};
use super::{LlmConfig, LlmProvider, Prompt};
use crate::intent::{BoxFuture, IntentError, VerifierId};

/// The API version header value sent.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The provider: `POST {base_url}/v1/messages`.
pub(crate) struct Anthropic {
    pub config: LlmConfig,
    pub client: reqwest::Client,
}

impl LlmProvider for Anthropic {
    fn id(&self) -> VerifierId {
        self.config.verifier_id()
    }

    fn complete<'a>(&'a self, prompt: &'a Prompt) -> BoxFuture<'a, Result<String, IntentError>> {
        Box::pin(async move {
            let mut headers = HeaderMap::new();
            headers.insert(
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(ANTHROPIC_VERSION),
            );
            if let Some(key) = self.config.secret() {
                let (name, value) = secret_header("x-api-key", key)?;
                headers.insert(name, value);
            }
            let body = json!({
                "model": self.config.model,
                "max_tokens": self.config.max_output_tokens,
                "system": prompt.system,
                "messages": [{"role": "user", "content": prompt.user}],
                "temperature": 0,
            });
            let response = post_json(Post {
                client: &self.client,
                url: self.config.url("v1/messages"),
                headers,
                body,
                timeout: self.config.timeout,
                secret: self.config.secret(),
            })
            .await?;
            answer_text(&response)
        })
    }
}

/// The answer text of a message: its first `text` content block, unless the model refused
/// (`stop_reason: "refusal"`), stopped at the limit (`"max_tokens"`), or said nothing.
fn answer_text(response: &Value) -> Result<String, IntentError> {
    let stop_reason = response.get("stop_reason").and_then(Value::as_str);
    if stop_reason == Some("refusal") {
        return Err(IntentError::Refusal("stop_reason `refusal`".to_owned()));
    }
    if stop_reason == Some("max_tokens") {
        return Err(IntentError::Truncated(
            "stop_reason `max_tokens`".to_owned(),
        ));
    }
    let blocks = response
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| IntentError::UnexpectedShape("no `content` array".to_owned()))?;
    let text = blocks
        .iter()
        .find(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .and_then(|b| b.get("text"))
        .and_then(Value::as_str)
        .ok_or(IntentError::EmptyAnswer)?;
    if text.trim().is_empty() {
        return Err(IntentError::EmptyAnswer);
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_read() {
        let ok = json!({"content": [{"type": "thinking", "thinking": "…"}, {"type": "text", "text": "{}"}], "stop_reason": "end_turn"});
        assert_eq!(answer_text(&ok), Ok("{}".to_owned()));
        let cases: &[(Value, &str)] = &[
            (json!({}), "no `content` array"),
            (json!({"content": []}), "empty answer"),
            (
                json!({"content": [{"type": "text", "text": "  "}]}),
                "empty answer",
            ),
            (json!({"content": [], "stop_reason": "refusal"}), "refused"),
            (
                json!({"content": [{"type": "text", "text": "{\"ma"}], "stop_reason": "max_tokens"}),
                "truncated",
            ),
        ];
        for (response, expected) in cases {
            match answer_text(response) {
                Ok(text) => panic!("{response}: {text}"),
                Err(e) => assert!(e.to_string().contains(expected), "{response}: {e}"),
            }
        }
    }
}

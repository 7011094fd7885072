//! OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp server).

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::http::{Post, post_json, secret_header};
use super::{LlmConfig, LlmProvider, Prompt};
use crate::intent::error::scrub;
use crate::intent::{BoxFuture, IntentError, VerifierId};

/// The provider: `POST {base_url}/chat/completions`.
pub(crate) struct OpenAiCompatible {
    pub config: LlmConfig,
    pub client: reqwest::Client,
}

impl LlmProvider for OpenAiCompatible {
    fn id(&self) -> VerifierId {
        self.config.verifier_id()
    }

    fn complete<'a>(&'a self, prompt: &'a Prompt) -> BoxFuture<'a, Result<String, IntentError>> {
        Box::pin(async move {
            let mut headers = HeaderMap::new();
            if let Some(key) = self.config.secret() {
                let (name, value) = secret_header("authorization", &format!("Bearer {key}"))?;
                headers.insert(name, value);
            }
            let body = json!({
                "model": self.config.model,
                "messages": [
                    {"role": "system", "content": prompt.system},
                    {"role": "user", "content": prompt.user},
                ],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "intent_assessment",
                        "strict": true,
                        "schema": prompt.schema,
                    },
                },
                "max_tokens": self.config.max_output_tokens,
                "temperature": 0,
            });
            let response = post_json(Post {
                client: &self.client,
                url: self.config.url("chat/completions"),
                headers,
                body,
                timeout: self.config.timeout,
                secret: self.config.secret(),
            })
            .await?;
            answer_text(&response, self.config.secret())
        })
    }
}

/// The answer text of a chat completion: `choices[0].message.content`, unless the model
/// refused (`refusal`, `finish_reason: "content_filter"`), stopped at the limit
/// (`finish_reason: "length"`), or said nothing.
fn answer_text(response: &Value, secret: Option<&str>) -> Result<String, IntentError> {
    let choice = response
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first())
        .ok_or_else(|| IntentError::UnexpectedShape("no `choices[0]`".to_owned()))?;
    let message = choice
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| IntentError::UnexpectedShape("no `choices[0].message`".to_owned()))?;
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str)
        && !refusal.trim().is_empty()
    {
        return Err(IntentError::Refusal(scrub(refusal, secret, 300)));
    }
    let finish_reason = choice.get("finish_reason").and_then(Value::as_str);
    if finish_reason == Some("content_filter") {
        return Err(IntentError::Refusal(
            "the answer was withheld by the provider's content filter".to_owned(),
        ));
    }
    if finish_reason == Some("length") {
        return Err(IntentError::Truncated("finish_reason `length`".to_owned()));
    }
    match message.get("content") {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.clone()),
        Some(Value::String(_)) | Some(Value::Null) | None => Err(IntentError::EmptyAnswer),
        Some(_) => Err(IntentError::UnexpectedShape(
            "`choices[0].message.content` is not a string".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_are_read() {
        let ok = json!({"choices": [{"message": {"role": "assistant", "content": "{}"}, "finish_reason": "stop"}]});
        assert_eq!(answer_text(&ok, None), Ok("{}".to_owned()));
        let cases: &[(Value, &str)] = &[
            (json!({}), "no `choices[0]`"),
            (json!({"choices": []}), "no `choices[0]`"),
            (json!({"choices": [{}]}), "no `choices[0].message`"),
            (
                json!({"choices": [{"message": {"content": null, "refusal": "I can't help with that"}}]}),
                "refused: I can't help with that",
            ),
            (
                json!({"choices": [{"message": {"content": ""}, "finish_reason": "content_filter"}]}),
                "content filter",
            ),
            (
                json!({"choices": [{"message": {"content": "{\"ma"}, "finish_reason": "length"}]}),
                "truncated",
            ),
            (
                json!({"choices": [{"message": {"content": " "}}]}),
                "empty answer",
            ),
            (
                json!({"choices": [{"message": {"content": [1]}}]}),
                "not a string",
            ),
        ];
        for (response, expected) in cases {
            match answer_text(response, None) {
                Ok(text) => panic!("{response}: {text}"),
                Err(e) => assert!(e.to_string().contains(expected), "{response}: {e}"),
            }
        }
    }
}

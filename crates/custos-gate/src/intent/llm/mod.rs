//! The optional LLM intent verifier (SPEC §4.3): the same question the deterministic
//! verifier answers, put to a language model, with its answer held to a strict JSON schema.
//!
//! Two providers implement [`LlmProvider`] over HTTP (reqwest, rustls):
//! - [`ProviderKind::OpenAiCompatible`]: `POST {base_url}/chat/completions` with a bearer
//!   key and `response_format: {"type": "json_schema", …}` (OpenAI, vLLM, Ollama,
//!   llama.cpp server). `base_url` includes the version prefix
//!   (`https://api.openai.com/v1`, `http://localhost:11434/v1`). The body carries
//!   `max_tokens` and `temperature: 0`, which all of these accept for chat models (OpenAI's
//!   reasoning models, which want `max_completion_tokens`, are not supported).
//! - [`ProviderKind::Anthropic`]: `POST {base_url}/v1/messages` with `x-api-key` and
//!   `anthropic-version: 2023-06-01`, asking for JSON only and reading the first text block
//!   (`base_url`: `https://api.anthropic.com`).
//!
//! The credential is the verifier's own ([`ApiKey`]), separate from the orchestrator's; its
//! `Debug` is redacted, it is sent as a sensitive header, and every error text is scrubbed
//! of it. Redirects are not followed (a redirect would carry the key elsewhere).
//!
//! Fail secure: a timeout, an unreachable server, an HTTP error, a body that is not the
//! provider's JSON, an answer that is not JSON or not exactly the schema, a refusal, an
//! empty or truncated answer — each is an [`IntentError`], which [`super::verify`] turns
//! into [`super::IntentOutcome::Failed`]. The user's request and the plan go to the model
//! as data; whatever the model answers, [`super::combine`] lets it only tighten the
//! deterministic assessment, so a prompt injection cannot loosen the outcome.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{BoxFuture, IntentAssessment, IntentError, IntentInput, IntentVerifier, VerifierId};

mod answer;
mod anthropic;
mod http;
mod openai;
mod prompt;

pub use answer::answer_schema;
pub use prompt::{PROMPT_VERSION, Prompt, build_prompt};

/// Default time an LLM verifier gets for one assessment.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default limit on the answer's length, in tokens.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 1024;

/// Which API the LLM verifier speaks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// OpenAI-compatible chat completions.
    OpenaiCompatible,
    /// Anthropic Messages.
    Anthropic,
}

impl ProviderKind {
    /// The kind's name as recorded in verifier ids (`openai-compatible`, `anthropic`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenaiCompatible => "openai-compatible",
            ProviderKind::Anthropic => "anthropic",
        }
    }
}

/// The LLM verifier's API key. Never printed: `Debug` shows `ApiKey([redacted])`, there is
/// no `Display` and no `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

/// How to reach the LLM verifier.
#[derive(Clone, Debug)]
pub struct LlmConfig {
    /// Which API.
    pub provider: ProviderKind,
    /// Base URL (see the module docs for what it includes), `http` or `https`.
    pub base_url: String,
    /// The model, recorded in the verifier id.
    pub model: String,
    /// The verifier's own credential; `None` for local servers that need none.
    pub api_key: Option<ApiKey>,
    /// The whole exchange (connect, send, answer) must finish within this.
    pub timeout: Duration,
    /// Limit on the answer's length, in tokens.
    pub max_output_tokens: u32,
}

impl LlmConfig {
    /// A configuration with the default timeout and output limit and no key.
    pub fn new(
        provider: ProviderKind,
        base_url: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        LlmConfig {
            provider,
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            timeout: DEFAULT_TIMEOUT,
            max_output_tokens: DEFAULT_MAX_OUTPUT_TOKENS,
        }
    }

    /// The same configuration with `key`.
    pub fn with_api_key(mut self, key: ApiKey) -> Self {
        self.api_key = Some(key);
        self
    }

    /// The same configuration with `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The verifier id this configuration gives: `openai-compatible:<model>/1`,
    /// `anthropic:<model>/1`.
    pub fn verifier_id(&self) -> VerifierId {
        VerifierId::new(
            format!("{}:{}", self.provider.as_str(), self.model),
            PROMPT_VERSION,
        )
    }

    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<(), IntentError> {
        let url = self.base_url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(IntentError::Config(format!(
                "base_url must be an http or https URL, not `{url}`"
            )));
        }
        if self.model.trim().is_empty() {
            return Err(IntentError::Config("model is empty".to_owned()));
        }
        if self.timeout.is_zero() {
            return Err(IntentError::Config("timeout is zero".to_owned()));
        }
        if self.max_output_tokens == 0 {
            return Err(IntentError::Config("max_output_tokens is zero".to_owned()));
        }
        Ok(())
    }

    /// `base_url` joined with `path`, without a doubled `/`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url.trim().trim_end_matches('/'), path)
    }

    fn secret(&self) -> Option<&str> {
        self.api_key.as_ref().map(ApiKey::expose)
    }
}

/// A language model API that answers one prompt with one text.
pub trait LlmProvider: Send + Sync {
    /// Who it is (`openai-compatible:<model>/1`).
    fn id(&self) -> VerifierId;

    /// Sends the prompt and returns the model's answer text, or why there is none.
    fn complete<'a>(&'a self, prompt: &'a Prompt) -> BoxFuture<'a, Result<String, IntentError>>;
}

/// The LLM intent verifier: builds the prompt, asks the provider, holds the answer to the
/// schema.
pub struct LlmVerifier {
    provider: Box<dyn LlmProvider>,
}

impl fmt::Debug for LlmVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmVerifier")
            .field("id", &self.provider.id())
            .finish()
    }
}

impl LlmVerifier {
    /// A verifier over any provider.
    pub fn new(provider: Box<dyn LlmProvider>) -> Self {
        LlmVerifier { provider }
    }

    /// A verifier for `config`, with its own HTTP client (rustls, no redirects).
    pub fn from_config(config: LlmConfig) -> Result<Self, IntentError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| IntentError::Config(format!("building the HTTP client: {e}")))?;
        Self::with_client(config, client)
    }

    /// A verifier for `config` using `client` (injected, so callers share one and tests
    /// can shape it). The client should not follow redirects.
    pub fn with_client(config: LlmConfig, client: reqwest::Client) -> Result<Self, IntentError> {
        config.validate()?;
        let provider: Box<dyn LlmProvider> = match config.provider {
            ProviderKind::OpenaiCompatible => Box::new(openai::OpenAiCompatible { config, client }),
            ProviderKind::Anthropic => Box::new(anthropic::Anthropic { config, client }),
        };
        Ok(LlmVerifier { provider })
    }
}

impl IntentVerifier for LlmVerifier {
    fn id(&self) -> VerifierId {
        self.provider.id()
    }

    fn assess<'a>(
        &'a self,
        input: IntentInput<'a>,
    ) -> BoxFuture<'a, Result<IntentAssessment, IntentError>> {
        Box::pin(async move {
            let prompt = build_prompt(input);
            let text = self.provider.complete(&prompt).await?;
            answer::parse_answer(&text, input.plan, self.provider.id())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_never_printed() {
        let config = LlmConfig::new(ProviderKind::Anthropic, "https://x", "m")
            .with_api_key(ApiKey::new("sk-secret-123"));
        let debug = format!("{config:?}");
        assert!(!debug.contains("sk-secret-123"), "{debug}");
        assert!(debug.contains("[redacted]"));
    }

    #[test]
    fn configurations_are_checked() {
        let good = LlmConfig::new(ProviderKind::OpenaiCompatible, "http://127.0.0.1:1/v1", "m");
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(
            good.url("chat/completions"),
            "http://127.0.0.1:1/v1/chat/completions"
        );
        let trailing = LlmConfig::new(ProviderKind::Anthropic, "https://api.example/", "m");
        assert_eq!(
            trailing.url("v1/messages"),
            "https://api.example/v1/messages"
        );
        for bad in [
            LlmConfig::new(ProviderKind::OpenaiCompatible, "ftp://x", "m"),
            LlmConfig::new(ProviderKind::OpenaiCompatible, "http://x", " "),
            LlmConfig::new(ProviderKind::OpenaiCompatible, "http://x", "m")
                .with_timeout(Duration::ZERO),
        ] {
            assert!(
                matches!(bad.validate(), Err(IntentError::Config(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            good.verifier_id().to_string(),
            format!("openai-compatible:m/{PROMPT_VERSION}")
        );
    }
}

//! One webhook as an HTTP client: POSTs an alert's JSON body and says what the answer means.
//! The only module that speaks HTTP. URLs, routing keys and header values never reach an
//! error message.

use std::time::Duration;

use custos_core::entry::Entry;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::AlertError;
use crate::backoff::{Verdict, verdict};
use crate::config::WebhookConfig;
use crate::payload;

/// The header carrying [`payload::idempotency_key`].
pub(crate) const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// How much of a response body is read (and discarded) so the connection can be reused.
const MAX_DRAINED_BYTES: usize = 64 * 1024;
/// Longest error message kept.
const MAX_MESSAGE_CHARS: usize = 300;

/// A failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The webhook refused the request (3xx, 4xx other than 408/425/429): reported at once.
    pub(crate) rejected: bool,
    /// What happened, free of secrets.
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn retry(message: impl Into<String>) -> Self {
        Failure {
            rejected: false,
            message: message.into(),
        }
    }

    pub(crate) fn rejected(message: impl Into<String>) -> Self {
        Failure {
            rejected: true,
            message: message.into(),
        }
    }
}

/// A configured webhook with its HTTP client.
pub(crate) struct Sink {
    pub(crate) config: WebhookConfig,
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
}

impl Sink {
    /// The client for a validated webhook configuration: its timeout, no redirects (a
    /// redirect is a misconfiguration, and must not carry the headers elsewhere).
    pub(crate) fn new(config: WebhookConfig) -> Result<Sink, AlertError> {
        let bad =
            |problem: String| AlertError::Config(format!("webhook `{}`: {problem}", config.name));
        let url = reqwest::Url::parse(&config.url).map_err(|e| bad(format!("url: {e}")))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("headers: `{name}` is not a valid header name")))?;
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                bad(format!(
                    "headers: the value of `{name}` is not a valid header value"
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("custos/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| bad(format!("building the HTTP client: {e}")))?;
        Ok(Sink {
            config,
            client,
            url,
            headers,
        })
    }

    /// The webhook's name.
    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// The request body for `entry`.
    pub(crate) fn body(&self, entry: &Entry) -> Result<Vec<u8>, Failure> {
        let value = payload::body(self.config.kind, self.config.routing_key.as_deref(), entry);
        serde_json::to_vec(&value)
            .map_err(|e| Failure::rejected(format!("encoding the payload: {e}")))
    }

    /// POSTs `body` with `Idempotency-Key: key`.
    pub(crate) async fn post(&self, key: &str, body: Vec<u8>) -> Result<(), Failure> {
        let sent = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_HEADER, key)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return Err(Failure::retry(self.transport_error(e))),
        };
        let status = response.status();
        // Read a little of the answer so the connection can serve the next alert.
        let mut drained = 0;
        while drained < MAX_DRAINED_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => drained += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        match verdict(status.as_u16()) {
            Verdict::Delivered => Ok(()),
            Verdict::Retry => Err(Failure::retry(format!("HTTP {status}"))),
            Verdict::Rejected => Err(Failure::rejected(format!("HTTP {status}"))),
        }
    }

    /// A transport error as text: the timeout, or reqwest's message and its causes
    /// (connection refused, TLS, …) without the URL.
    fn transport_error(&self, error: reqwest::Error) -> String {
        if error.is_timeout() {
            return format!("timed out after {} ms", self.config.timeout_ms);
        }
        let error = error.without_url();
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        // Belt and braces: no cause may quote the URL (a Slack URL's path is its secret).
        text = text.replace(self.url.as_str(), "<url>");
        let path = self.url.path();
        if path.len() > 1 {
            text = text.replace(path, "/<path>");
        }
        payload::truncate(&text, MAX_MESSAGE_CHARS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SinkKind;

    /// A port nothing listens on.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }

    #[tokio::test]
    async fn a_transport_error_names_the_cause_never_the_url() {
        let url = format!(
            "http://127.0.0.1:{}/services/T000/B000/S3CR3TPATH",
            closed_port()
        );
        let sink = Sink::new(WebhookConfig::new("down", SinkKind::Slack, url)).expect("sink");
        let failure = sink
            .post("custos:acme:id", b"{}".to_vec())
            .await
            .expect_err("nothing listens");
        assert!(!failure.rejected, "a transport error is retried quietly");
        assert!(
            failure
                .message
                .to_lowercase()
                .contains("connection refused"),
            "{}",
            failure.message
        );
        assert!(!failure.message.contains("S3CR3T"), "{}", failure.message);
        assert!(
            !failure.message.contains("127.0.0.1"),
            "{}",
            failure.message
        );
    }
}

//! One JSON POST to a provider, with every way it can fail mapped to an [`IntentError`]
//! whose text is scrubbed of the key.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::intent::IntentError;
use crate::intent::error::scrub;

/// Largest response read, in bytes.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Longest message kept from an error body or a transport error, in characters.
const MESSAGE_CHARS: usize = 300;

/// One request to send.
pub(crate) struct Post<'a> {
    pub client: &'a reqwest::Client,
    pub url: String,
    /// Headers beyond `content-type`; secret ones are marked sensitive by the caller.
    pub headers: HeaderMap,
    pub body: Value,
    pub timeout: Duration,
    /// The key, to scrub from every error text.
    pub secret: Option<&'a str>,
}

/// A header value holding a credential: refused if it is not a valid header value (the
/// error does not repeat it), and marked sensitive so it is never logged by the HTTP stack.
pub(crate) fn secret_header(
    name: &'static str,
    value: &str,
) -> Result<(HeaderName, HeaderValue), IntentError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        IntentError::Config(format!(
            "the API key cannot be sent in the `{name}` header (it holds characters a header may not)"
        ))
    })?;
    header.set_sensitive(true);
    Ok((HeaderName::from_static(name), header))
}

/// Sends `post` and returns the JSON body of a 2xx answer. The whole exchange — connect,
/// send, status, body — must finish within `post.timeout`.
pub(crate) async fn post_json(post: Post<'_>) -> Result<Value, IntentError> {
    let timeout = post.timeout;
    match tokio::time::timeout(timeout, exchange(&post)).await {
        Ok(result) => result,
        Err(_) => Err(IntentError::Timeout(timeout)),
    }
}

async fn exchange(post: &Post<'_>) -> Result<Value, IntentError> {
    let response = post
        .client
        .post(&post.url)
        .timeout(post.timeout)
        .headers(post.headers.clone())
        .json(&post.body)
        .send()
        .await
        .map_err(|e| transport_error(&e, post))?;
    let status = response.status();
    let bytes = read_capped(response, post).await?;
    if !status.is_success() {
        return Err(IntentError::Http {
            status: status.as_u16(),
            message: scrub(&error_message(&bytes), post.secret, MESSAGE_CHARS),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        let start = String::from_utf8_lossy(bytes.get(..120).unwrap_or(&bytes)).into_owned();
        IntentError::InvalidResponse(scrub(
            &format!("{e}; the body begins {start:?}"),
            post.secret,
            MESSAGE_CHARS,
        ))
    })
}

/// Reads the body, refusing more than [`MAX_RESPONSE_BYTES`].
async fn read_capped(
    mut response: reqwest::Response,
    post: &Post<'_>,
) -> Result<Vec<u8>, IntentError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(IntentError::TooLarge(MAX_RESPONSE_BYTES));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(&e, post))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(IntentError::TooLarge(MAX_RESPONSE_BYTES));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The provider's error message (`{"error": {"message"}}` for OpenAI and Anthropic,
/// `{"error": "…"}` for some local servers), else the start of the body.
fn error_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let error = value.get("error");
        let message = error
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .or_else(|| error.and_then(Value::as_str))
            .or_else(|| value.get("message").and_then(Value::as_str));
        if let Some(message) = message {
            return message.to_owned();
        }
    }
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() {
        "(empty body)".to_owned()
    } else {
        text.into_owned()
    }
}

/// A reqwest error as an [`IntentError`]: timeout, connect or other transport failure, with
/// the chain of causes (connection refused, TLS, …), scrubbed.
fn transport_error(error: &reqwest::Error, post: &Post<'_>) -> IntentError {
    if error.is_timeout() {
        return IntentError::Timeout(post.timeout);
    }
    let mut detail = message_without_url(error);
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    let detail = scrub(&detail, post.secret, MESSAGE_CHARS);
    if error.is_connect() {
        IntentError::Connect {
            url: scrub(&post.url, post.secret, MESSAGE_CHARS),
            detail,
        }
    } else {
        IntentError::Transport(detail)
    }
}

/// reqwest's message without the URL it appends (the URL is reported once, in
/// [`IntentError::Connect`]'s `url`).
fn message_without_url(error: &reqwest::Error) -> String {
    let text = error.to_string();
    match error.url() {
        Some(url) => text.replace(&format!(" ({url})"), ""),
        None => text,
    }
}

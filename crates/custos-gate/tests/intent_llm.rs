//! The LLM intent verifier against a fake provider on 127.0.0.1: both APIs, good answers
//! (combined, never looser than the deterministic verifier) and every failure mode (each
//! failing secure, with an error that names what happened and never the key).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use custos_gate::intent::deterministic;
use custos_gate::intent::llm::{ApiKey, LlmConfig, LlmVerifier, ProviderKind};
use custos_gate::intent::{IntentInput, IntentOutcome, IntentVerifier, Match, verify};
use custos_gate::plan::{NormalizedPlan, normalize_value};
use custos_gate::request::Metadata;
use serde_json::{Value, json};

const KEY: &str = "sk-test-4f8a1c2e9b";
const MODEL: &str = "test-model";
const ML_REQUEST: &str = "Add a new microsegment for machine learning workloads with GPU instances";

// ---- the fake provider ---------------------------------------------------------------------

/// What the fake answers.
#[derive(Clone)]
struct Reply {
    status: u16,
    body: String,
    delay: Duration,
}

/// One request the fake received.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Clone)]
struct Fake {
    reply: Reply,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn handle(State(fake): State<Fake>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Ok(mut seen) = fake.seen.lock() {
        seen.push(Seen {
            path: uri.path().to_owned(),
            headers,
            body,
        });
    }
    tokio::time::sleep(fake.reply.delay).await;
    let status = StatusCode::from_u16(fake.reply.status).unwrap_or(StatusCode::IM_A_TEAPOT);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        fake.reply.body.clone(),
    )
        .into_response()
}

/// Starts a fake provider answering every request with `reply`; returns its base URL and
/// what it receives.
async fn serve(reply: Reply) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new().fallback(handle).with_state(Fake {
        reply,
        seen: seen.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, seen)
}

/// A loopback address nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
}

fn base_url(provider: ProviderKind, addr: SocketAddr) -> String {
    match provider {
        ProviderKind::OpenaiCompatible => format!("http://{addr}/v1"),
        ProviderKind::Anthropic => format!("http://{addr}"),
    }
}

fn config(provider: ProviderKind, addr: SocketAddr) -> LlmConfig {
    LlmConfig::new(provider, base_url(provider, addr), MODEL)
        .with_api_key(ApiKey::new(KEY))
        .with_timeout(Duration::from_millis(300))
}

/// The provider's success envelope around an answer text.
fn envelope(provider: ProviderKind, text: &str) -> String {
    match provider {
        ProviderKind::OpenaiCompatible => json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": MODEL,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null},
                "finish_reason": "stop"
            }]
        }),
        ProviderKind::Anthropic => json!({
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn"
        }),
    }
    .to_string()
}

fn ok(body: String) -> Reply {
    Reply {
        status: 200,
        body,
        delay: Duration::ZERO,
    }
}

fn answer(match_: &str, confidence: f64, extra: &[&str], concerns: &[&str]) -> String {
    json!({
        "match": match_,
        "confidence": confidence,
        "extra_actions": extra,
        "missing_actions": [],
        "safety_concerns": concerns,
    })
    .to_string()
}

// ---- plans ---------------------------------------------------------------------------------

fn scenario(name: &str) -> NormalizedPlan {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/plans")
        .join(format!("scenario-{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    normalize_value(&value, &Metadata::default(), ML_REQUEST, None)
        .unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Runs verification of the ML request against `plan` with an LLM verifier for `config`.
async fn run(config: LlmConfig, plan: &NormalizedPlan) -> IntentOutcome {
    let metadata = Metadata::default();
    let verifier = LlmVerifier::from_config(config).unwrap_or_else(|e| panic!("{e}"));
    let input = IntentInput {
        user_request: ML_REQUEST,
        metadata: &metadata,
        plan,
    };
    verify(input, Some(&verifier as &dyn IntentVerifier)).await
}

const PROVIDERS: [ProviderKind; 2] = [ProviderKind::OpenaiCompatible, ProviderKind::Anthropic];

// ---- good answers --------------------------------------------------------------------------

#[tokio::test]
async fn a_good_answer_is_combined_and_the_request_is_well_formed() {
    for provider in PROVIDERS {
        let (addr, seen) = serve(ok(envelope(provider, &answer("exact", 0.97, &[], &[])))).await;
        let plan = scenario("a");
        let outcome = run(config(provider, addr), &plan).await;
        let IntentOutcome::Assessed(assessment) = &outcome else {
            panic!("{provider:?}: {outcome:?}");
        };
        assert_eq!(assessment.match_, Match::Exact, "{provider:?}");
        assert_eq!(
            assessment.confidence, 0.97,
            "{provider:?}: the lower confidence"
        );
        assert_eq!(assessment.verifier.to_string(), "deterministic/1");
        let llm = assessment
            .llm_verifier
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert_eq!(llm, format!("{}:{MODEL}/1", provider.as_str()));
        assert!(outcome.approvable(0.9), "{provider:?}");

        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen.len(), 1, "{provider:?}");
        let request = &seen[0];
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(header("content-type").starts_with("application/json"));
        let body = &request.body;
        assert_eq!(body["model"], MODEL, "{provider:?}");
        let prompt_data = match provider {
            ProviderKind::OpenaiCompatible => {
                assert_eq!(request.path, "/v1/chat/completions");
                assert_eq!(header("authorization"), format!("Bearer {KEY}"));
                assert_eq!(header("x-api-key"), "");
                assert_eq!(body["messages"][0]["role"], "system");
                assert_eq!(body["messages"][1]["role"], "user");
                assert_eq!(body["response_format"]["type"], "json_schema");
                let schema = &body["response_format"]["json_schema"]["schema"];
                assert_eq!(
                    schema["properties"]["match"]["enum"],
                    json!(["exact", "partial", "mismatch"])
                );
                assert_eq!(schema["additionalProperties"], false);
                assert!(body["max_tokens"].as_u64().is_some_and(|n| n > 0));
                body["messages"][1]["content"].as_str().unwrap_or_default()
            }
            ProviderKind::Anthropic => {
                assert_eq!(request.path, "/v1/messages");
                assert_eq!(header("x-api-key"), KEY);
                assert_eq!(header("anthropic-version"), "2023-06-01");
                assert_eq!(header("authorization"), "");
                assert!(body["max_tokens"].as_u64().is_some_and(|n| n > 0));
                let system = body["system"].as_str().unwrap_or_default();
                assert!(system.contains("JSON"), "{system}");
                assert!(system.contains("safety_concerns"), "{system}");
                assert_eq!(body["messages"][0]["role"], "user");
                body["messages"][0]["content"].as_str().unwrap_or_default()
            }
        };
        // The user message is the request and the plan's changing actions as JSON.
        let data: Value =
            serde_json::from_str(prompt_data).unwrap_or_else(|e| panic!("{provider:?}: {e}"));
        assert_eq!(data["user_request"], ML_REQUEST);
        let actions = data["planned_actions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(actions.len(), 4, "{provider:?}");
        assert_eq!(actions[0]["address"], "aws_vpc.ml_segment");
        assert_eq!(actions[0]["verb"], "create");
        // The key travels only in its header.
        assert!(!body.to_string().contains(KEY), "{provider:?}");
    }
}

#[tokio::test]
async fn a_stricter_answer_makes_the_outcome_stricter() {
    for provider in PROVIDERS {
        let text = answer(
            "partial",
            0.6,
            &["aws_instance.gpu"],
            &["GPU instances cost more than a segment needs"],
        );
        let (addr, _) = serve(ok(envelope(provider, &text))).await;
        let outcome = run(config(provider, addr), &scenario("a")).await;
        let IntentOutcome::Assessed(assessment) = &outcome else {
            panic!("{provider:?}: {outcome:?}");
        };
        assert_eq!(assessment.match_, Match::Partial, "{provider:?}");
        assert_eq!(assessment.confidence, 0.6);
        let extra: Vec<&str> = assessment
            .extra_actions
            .iter()
            .map(|a| a.address.as_str())
            .collect();
        assert_eq!(extra, ["aws_instance.gpu"]);
        assert!(assessment.extra_actions[0].reason.contains(MODEL));
        assert_eq!(assessment.safety_concerns.len(), 1);
        assert!(!outcome.approvable(0.0), "{provider:?}");
    }
}

#[tokio::test]
async fn a_looser_answer_never_loosens_the_outcome() {
    let metadata = Metadata::default();
    for provider in PROVIDERS {
        // Scenario B: the deterministic verifier flags the PCI firewall; the model says
        // all is well (as a prompt injection would make it say).
        let plan = scenario("b");
        let alone = deterministic::assess(ML_REQUEST, &metadata, &plan);
        let (addr, _) = serve(ok(envelope(provider, &answer("exact", 1.0, &[], &[])))).await;
        let outcome = run(config(provider, addr), &plan).await;
        let IntentOutcome::Assessed(assessment) = &outcome else {
            panic!("{provider:?}: {outcome:?}");
        };
        assert!(assessment.match_ >= alone.match_, "{provider:?}");
        assert_ne!(assessment.match_, Match::Exact);
        assert_eq!(assessment.confidence, alone.confidence);
        assert_eq!(assessment.extra_actions, alone.extra_actions);
        assert_eq!(assessment.safety_concerns, alone.safety_concerns);
        assert!(!outcome.approvable(0.0), "{provider:?}");
    }
}

// ---- failures ------------------------------------------------------------------------------

/// Runs scenario A (which the deterministic verifier approves) against a fake answering
/// `reply`, and checks the outcome failed secure with a reason containing `expected`.
async fn check_failure(provider: ProviderKind, reply: Option<Reply>, expected: &str) {
    let addr = match reply {
        Some(reply) => serve(reply).await.0,
        None => closed_port().await,
    };
    let outcome = run(config(provider, addr), &scenario("a")).await;
    let IntentOutcome::Failed {
        verifier,
        reason,
        deterministic,
    } = &outcome
    else {
        panic!("{provider:?} {expected:?}: not a failure: {outcome:?}");
    };
    assert!(
        reason.contains(expected),
        "{provider:?}: {reason:?} does not say {expected:?}"
    );
    assert!(
        !reason.contains(KEY),
        "{provider:?}: the key leaked: {reason}"
    );
    assert_eq!(verifier.name, format!("{}:{MODEL}", provider.as_str()));
    // The deterministic verifier alone would approve; the failure must not.
    assert!(deterministic.approvable(0.9));
    assert!(!outcome.approvable(0.0), "{provider:?} {expected:?}");
    assert_eq!(outcome.failure(), Some(reason.as_str()));
    let record = outcome.record();
    assert_eq!(record.confidence, 0.0);
    assert_ne!(record.match_, Match::Exact);
    assert!(!record.approvable(0.0));
    let text = serde_json::to_string(&record).unwrap_or_default();
    assert!(text.contains(expected), "{text}");
    assert!(!text.contains(KEY), "{text}");
}

#[tokio::test]
async fn every_failure_fails_secure() {
    for provider in PROVIDERS {
        let error_body =
            json!({"error": {"type": "server_error", "message": "upstream overloaded"}})
                .to_string();
        let echo = json!({"error": {"message": format!("invalid key {KEY}")}}).to_string();
        let cases: Vec<(Option<Reply>, &str)> = vec![
            (
                Some(Reply {
                    delay: Duration::from_secs(3),
                    ..ok(envelope(provider, &answer("exact", 1.0, &[], &[])))
                }),
                "timed out after 300 ms",
            ),
            (None, "unreachable"),
            (
                Some(Reply {
                    status: 500,
                    ..ok(error_body)
                }),
                "HTTP 500: upstream overloaded",
            ),
            (
                Some(Reply {
                    status: 401,
                    ..ok(echo)
                }),
                "HTTP 401: invalid key [redacted]",
            ),
            (
                Some(Reply {
                    status: 429,
                    ..ok(String::new())
                }),
                "HTTP 429: (empty body)",
            ),
            (
                Some(ok("<html>bad gateway</html>".to_owned())),
                "not valid JSON",
            ),
            (
                Some(ok("{\"unexpected\": true}".to_owned())),
                "unexpected shape",
            ),
            (
                Some(ok(envelope(
                    provider,
                    r#"{"match":"yes","confidence":1,"extra_actions":[],"missing_actions":[],"safety_concerns":[]}"#,
                ))),
                "does not match the intent schema",
            ),
            (
                Some(ok(envelope(
                    provider,
                    r#"{"match":"exact","confidence":2,"extra_actions":[],"missing_actions":[],"safety_concerns":[]}"#,
                ))),
                "outside 0..1",
            ),
            (
                Some(ok(envelope(
                    provider,
                    r#"{"match":"exact","confidence":1,"extra_actions":[],"missing_actions":[],"safety_concerns":[],"approve":true}"#,
                ))),
                "unknown key `approve`",
            ),
            (
                Some(ok(envelope(provider, "I'm sorry, I can't help with that."))),
                "answer is not JSON",
            ),
            (Some(ok(envelope(provider, ""))), "empty answer"),
        ];
        for (reply, expected) in cases {
            check_failure(provider, reply, expected).await;
        }
    }
}

#[tokio::test]
async fn refusals_fail_secure() {
    let openai = json!({
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": null, "refusal": "I can't assist with that request."},
            "finish_reason": "stop"
        }]
    });
    check_failure(
        ProviderKind::OpenaiCompatible,
        Some(ok(openai.to_string())),
        "refused: I can't assist",
    )
    .await;
    let anthropic = json!({
        "type": "message",
        "role": "assistant",
        "content": [],
        "stop_reason": "refusal"
    });
    check_failure(
        ProviderKind::Anthropic,
        Some(ok(anthropic.to_string())),
        "refused",
    )
    .await;
    let truncated = json!({
        "type": "message",
        "content": [{"type": "text", "text": "{\"match\": \"ex"}],
        "stop_reason": "max_tokens"
    });
    check_failure(
        ProviderKind::Anthropic,
        Some(ok(truncated.to_string())),
        "truncated",
    )
    .await;
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let (addr, _) = serve(Reply {
        status: 307,
        body: String::new(),
        delay: Duration::ZERO,
    })
    .await;
    let outcome = run(config(ProviderKind::OpenaiCompatible, addr), &scenario("a")).await;
    assert!(
        outcome.failure().is_some_and(|r| r.contains("HTTP 307")),
        "{outcome:?}"
    );
}

#[test]
fn a_bad_configuration_is_refused_up_front() {
    let bad = LlmConfig::new(ProviderKind::Anthropic, "api.example.com", MODEL);
    let error = LlmVerifier::from_config(bad).map(|_| ()).err();
    assert!(
        error
            .as_ref()
            .is_some_and(|e| e.to_string().contains("base_url")),
        "{error:?}"
    );
}

//! The entry model: validation names the field, redaction, and sealed bytes are exactly the
//! RFC 8785 canonical form of the whole entry.

use custos_core::canonical::check_entry;
use custos_core::entry::{
    Entry, EntryBody, Limits, Outcome, PreparedEntry, REDACTED, Severity, is_secret_key, redact,
};
use custos_core::jcs;
use custos_core::merkle::leaf_hash;
use proptest::prelude::*;
use serde_json::{Value, json};

fn valid() -> Value {
    json!({
        "tenant": "acme",
        "event_type": "tool_invocation",
        "actor": "agent:did:web:sales-assistant.example.com",
        "action": "allow",
        "outcome": "success",
    })
}

/// One row: a change to a valid entry, and the field the error must name (None = accepted).
fn check(change: impl FnOnce(&mut serde_json::Map<String, Value>), field: Option<&str>) {
    let mut v = valid();
    change(v.as_object_mut().expect("object"));
    let result = EntryBody::from_json(&v).and_then(|b| PreparedEntry::new(b, &Limits::default()));
    match (result, field) {
        (Ok(_), None) => {}
        (Err(e), Some(f)) => assert_eq!(e.field, f, "wrong field named: {e}"),
        (Ok(_), Some(f)) => panic!("accepted, but expected an error naming `{f}`: {v}"),
        (Err(e), None) => panic!("refused a valid entry: {e}: {v}"),
    }
}

#[test]
fn validation_names_the_field() {
    check(|_| {}, None);
    check(|m| drop(m.remove("tenant")), Some("tenant"));
    check(
        |m| drop(m.insert("tenant".into(), json!(""))),
        Some("tenant"),
    );
    check(
        |m| drop(m.insert("tenant".into(), json!("a b"))),
        Some("tenant"),
    );
    check(
        |m| drop(m.insert("tenant".into(), json!(7))),
        Some("tenant"),
    );
    check(
        |m| drop(m.insert("actor".into(), json!("robot:x"))),
        Some("actor"),
    );
    check(
        |m| drop(m.insert("actor".into(), json!("agent:"))),
        Some("actor"),
    );
    check(|m| drop(m.insert("actor".into(), json!("system"))), None);
    check(
        |m| drop(m.insert("actor".into(), json!("user:alice@example.com"))),
        None,
    );
    check(
        |m| drop(m.insert("target".into(), json!("nobody"))),
        Some("target"),
    );
    check(
        |m| drop(m.insert("outcome".into(), json!("maybe"))),
        Some("outcome"),
    );
    check(
        |m| drop(m.insert("severity".into(), json!("urgent"))),
        Some("severity"),
    );
    check(
        |m| drop(m.insert("severity".into(), json!("critical"))),
        None,
    );
    check(|m| drop(m.insert("seq".into(), json!(1))), Some("seq"));
    check(
        |m| drop(m.insert("prev_hash".into(), json!("00"))),
        Some("prev_hash"),
    );
    check(
        |m| drop(m.insert("colour".into(), json!("red"))),
        Some("colour"),
    );
    check(
        |m| drop(m.insert("action".into(), json!(""))),
        Some("action"),
    );
    check(
        |m| drop(m.insert("resource".into(), json!("/a\nb"))),
        Some("resource"),
    );
    check(
        |m| drop(m.insert("resource".into(), json!("x".repeat(4097)))),
        Some("resource"),
    );
    check(
        |m| drop(m.insert("resource".into(), json!("x".repeat(4096)))),
        None,
    );
    check(
        |m| drop(m.insert("client_ts".into(), json!("yesterday"))),
        Some("client_ts"),
    );
    check(
        |m| drop(m.insert("client_ts".into(), json!("2026-11-23T10:00:00.5+01:00"))),
        None,
    );
    check(
        |m| drop(m.insert("request".into(), json!({"ip": "300.1.1.1"}))),
        Some("request.ip"),
    );
    check(
        |m| {
            drop(m.insert(
                "request".into(),
                json!({"ip": "::1", "user_agent": "curl/8"}),
            ))
        },
        None,
    );
    check(
        |m| drop(m.insert("request".into(), json!({"port": 1}))),
        Some("request.port"),
    );
    check(|m| drop(m.insert("data".into(), json!([1]))), Some("data"));
    check(
        |m| drop(m.insert("data".into(), json!({"n": 9007199254740993u64}))),
        Some("data.n"),
    );
    check(
        |m| drop(m.insert("data".into(), json!({"ctl": "tab\there is fine in data"}))),
        None,
    );
    // `data` itself is level 1: 17 nested objects are one too many, 16 are fine.
    let mut deep = json!(1);
    for _ in 0..17 {
        deep = json!({ "d": deep });
    }
    check(
        |m| drop(m.insert("data".into(), deep.clone())),
        Some("data.d.d.d.d.d.d.d.d.d.d.d.d.d.d.d.d"),
    );
    let mut ok_depth = json!(1);
    for _ in 0..16 {
        ok_depth = json!({ "d": ok_depth });
    }
    check(|m| drop(m.insert("data".into(), ok_depth)), None);
    check(
        |m| drop(m.insert("data".into(), json!({"blob": "x".repeat(70_000)}))),
        Some("(entry)"),
    );
}

#[test]
fn secret_keys_are_recognised_as_the_spec_says() {
    for (key, secret) in [
        ("password", true),
        ("DB-Password", true),
        ("access_token", true),
        ("api_key", true),
        ("x-api-key", true),
        ("apikey", true),
        ("Authorization", true),
        ("private_key", true),
        ("aws_credentials", true),
        ("session_cookie", true),
        ("client_secret", true),
        ("passwd", true),
        ("tokens_in", false),
        ("token_count", false),
        ("mytoken", false),
        ("passwords", false),
        ("secretary", false),
        ("", false),
    ] {
        assert_eq!(is_secret_key(key), secret, "{key}");
    }
}

#[test]
fn redaction_reaches_every_depth_and_is_hashed_redacted() {
    let mut data = json!({
        "user": {"name": "bob", "Password": "hunter2", "keys": [{"api_key": "k1"}, {"note": "ok"}]},
        "access_token": {"nested": "object replaced whole"},
        "tokens_in": 12
    });
    let n = redact(data.as_object_mut().expect("object"));
    assert_eq!(n, 3);
    assert_eq!(data["user"]["Password"], REDACTED);
    assert_eq!(data["user"]["keys"][0]["api_key"], REDACTED);
    assert_eq!(data["access_token"], REDACTED);
    assert_eq!(data["tokens_in"], 12);
    assert_eq!(data["user"]["name"], "bob");

    let mut body = EntryBody::new("acme", "auth_login", "user:bob", "login", Outcome::Success);
    body.data.insert("password".into(), json!("hunter2"));
    let prepared = PreparedEntry::new(body, &Limits::default()).expect("valid");
    let (bytes, _) = prepared.seal(
        0,
        "01a20851-ac24-7686-976a-2b96988d7d0a",
        "2026-11-23T12:00:00.000000000Z",
        &[0; 32],
    );
    let text = String::from_utf8(bytes).expect("utf8");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains(r#""password":"[REDACTED]""#), "{text}");
}

fn opt_string() -> impl Strategy<Value = Option<String>> {
    prop::option::of(
        "[ -~é€😀]{1,12}".prop_filter("no controls", |s| !s.chars().any(char::is_control)),
    )
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(|n| json!(n)),
        (-1e15f64..1e15).prop_map(|f| json!(f)),
        "[\\x00-\\x7f€😀\u{e000}]{0,8}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_\\-€😀\u{e000}]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body_strategy() -> impl Strategy<Value = EntryBody> {
    (
        (
            "[a-z][a-z0-9._-]{0,8}",
            "[a-z_]{1,12}",
            "(agent|user):[a-z0-9.:-]{1,10}",
            "[a-z]{1,8}",
        ),
        (0usize..4, 0usize..5),
        (
            opt_string(),
            opt_string(),
            opt_string(),
            opt_string(),
            opt_string(),
        ),
        prop::option::of("(agent|user):[a-z0-9]{1,6}"),
        prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..5),
        any::<bool>(),
    )
        .prop_map(
            |(
                (tenant, et, actor, action),
                (o, s),
                (res, pd, mr, tr, se),
                target,
                data,
                with_req,
            )| {
                let mut b = EntryBody::new(tenant, et, actor, action, Outcome::ALL[o]);
                b.severity = Severity::ALL[s];
                b.resource = res;
                b.policy_decision = pd;
                b.matched_rule = mr;
                b.trace_id = tr;
                b.session_id = se;
                b.target = target;
                b.data = data.into_iter().collect();
                if with_req {
                    b.request = Some(custos_core::entry::RequestInfo {
                        ip: Some("2001:db8::1".into()),
                        user_agent: Some("agent-sdk/1.0".into()),
                    });
                    b.client_ts = Some("2026-11-23T11:00:00Z".into());
                }
                b
            },
        )
}

proptest! {
    /// The fast path (render, then seal) equals the general canonicaliser on the whole entry,
    /// and stored bytes parse back to an entry whose canonical form is the same bytes.
    #[test]
    fn sealed_bytes_are_the_jcs_of_the_entry(body in body_strategy(), seq in 0u64..(1 << 53), prev in any::<[u8; 32]>()) {
        let prepared = PreparedEntry::new(body, &Limits::default());
        prop_assert!(prepared.is_ok(), "generator made an invalid body: {:?}", prepared.err());
        let prepared = prepared.expect("checked above");
        let (bytes, leaf) = prepared.seal(seq, "01a20851-ac24-7686-976a-2b96988d7d0a", "2026-11-23T12:00:00.123456789Z", &prev);
        let value: Value = serde_json::from_slice(&bytes).expect("sealed bytes are JSON");
        prop_assert_eq!(&jcs::to_canonical(&value).expect("canonical"), &bytes);
        let entry = Entry::from_canonical(&bytes).expect("parses back");
        prop_assert_eq!(entry.seq, seq);
        prop_assert_eq!(&entry.prev_hash, &hex::encode(prev));
        prop_assert_eq!(leaf, leaf_hash(&bytes));
        prop_assert_eq!(entry.leaf_hash().expect("leaf"), leaf);
    }

    /// Any single flipped bit of an entry's bytes is either not an entry any more or has a
    /// different leaf hash: nothing can change an entry silently.
    #[test]
    fn a_flipped_bit_never_goes_unnoticed(body in body_strategy(), bit in any::<prop::sample::Index>()) {
        let prepared = PreparedEntry::new(body, &Limits::default()).expect("valid");
        let (bytes, leaf) = prepared.seal(7, "01a20851-ac24-7686-976a-2b96988d7d0a", "2026-11-23T12:00:00.123456789Z", &[1; 32]);
        let head = check_entry(&bytes).expect("the fast check accepts a sealed entry");
        prop_assert_eq!(head.seq, 7);
        prop_assert_eq!(head.prev_hash, [1u8; 32]);
        let mut flipped = bytes.clone();
        let i = bit.index(bytes.len() * 8);
        flipped[i / 8] ^= 1 << (i % 8);
        // The fast check used by verification agrees with the full parse on every flip.
        prop_assert_eq!(
            check_entry(&flipped).is_ok(),
            Entry::from_canonical(&flipped).is_ok(),
            "disagreement on {}", String::from_utf8_lossy(&flipped)
        );
        if let Ok(e) = Entry::from_canonical(&flipped) {
            prop_assert_ne!(e.leaf_hash().expect("leaf"), leaf);
        }
    }
}

#[test]
fn non_canonical_bytes_are_refused() {
    let prepared = PreparedEntry::new(
        EntryBody::new("acme", "x", "system", "y", Outcome::Success),
        &Limits::default(),
    )
    .expect("valid");
    let (bytes, _) = prepared.seal(
        1,
        "01a20851-ac24-7686-976a-2b96988d7d0a",
        "2026-11-23T12:00:00.000000000Z",
        &[0; 32],
    );
    let text = String::from_utf8(bytes).expect("utf8");
    for bad in [
        text.replacen(':', ": ", 1),
        text.replace(
            r#""action":"y","actor":"system""#,
            r#""actor":"system","action":"y""#,
        ),
        text.replace(r#""seq":1"#, r#""seq":1.0"#),
        text.replace(r#""tenant":"acme""#, r#""tenant":"\u0061cme""#),
        text.replace('}', r#","extra":1}"#),
    ] {
        assert_ne!(bad, text, "the mutation must change something");
        assert!(
            Entry::from_canonical(bad.as_bytes()).is_err(),
            "accepted: {bad}"
        );
    }
    assert!(Entry::from_canonical(text.as_bytes()).is_ok());
}

proptest! {
    /// Hostile bytes never panic any parser of outside input; they are refused or accepted.
    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = check_entry(&bytes);
        let _ = Entry::from_canonical(&bytes);
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            if let Ok(b) = EntryBody::from_json(&v) {
                let _ = PreparedEntry::new(b, &Limits::default());
            }
            let _ = jcs::to_canonical(&v);
        }
        let _ = serde_json::from_slice::<custos_core::merkle::InclusionProof>(&bytes);
        let _ = serde_json::from_slice::<custos_core::merkle::ConsistencyProof>(&bytes);
    }

    /// Mutations of a real entry (cut, spliced, duplicated ranges) never panic either, and the
    /// fast check still agrees with the full parse.
    #[test]
    fn mutated_entries_never_panic(body in body_strategy(), cut in any::<prop::sample::Index>(), len in 0usize..40, junk in prop::collection::vec(any::<u8>(), 0..8)) {
        let prepared = PreparedEntry::new(body, &Limits::default()).expect("valid");
        let (bytes, _) = prepared.seal(3, "01a20851-ac24-7686-976a-2b96988d7d0a", "2026-11-23T12:00:00.123456789Z", &[2; 32]);
        let at = cut.index(bytes.len());
        let end = (at + len).min(bytes.len());
        let mut m = bytes[..at].to_vec();
        m.extend_from_slice(&junk);
        m.extend_from_slice(&bytes[end..]);
        prop_assert_eq!(check_entry(&m).is_ok(), Entry::from_canonical(&m).is_ok(), "disagreement on {}", String::from_utf8_lossy(&m));
    }
}

//! `custos serve` as an operator runs it: settings from a TOML file with `CUSTOS_*` overrides,
//! HTTPS, Prometheus metrics, JSON logs with request ids (and no secrets), problem+json for
//! axum's own rejections, and a graceful shutdown that finishes the request in flight.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::{Resp, Server, bootstrap_key, parse_response, spawn_server};

fn custos(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_custos"));
    c.arg("--config").arg(config).env_remove("CUSTOS_DATA");
    c
}

/// `custos --config CONFIG serve`, stderr to a file; reads `more` stdout lines after the
/// listen line.
fn start(
    config: &Path,
    env: &[(&str, &Path)],
    stderr: &Path,
    more: usize,
) -> (Server, String, Vec<String>) {
    let mut cmd = custos(config);
    cmd.envs(env.iter().copied())
        .arg("serve")
        .stderr(std::fs::File::create(stderr).expect("stderr file"));
    spawn_server(cmd, more)
}

fn tls_client(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// One HTTPS request on its own connection; returns (status, lowercase head, body).
fn https(
    tls: &Arc<rustls::ClientConfig>,
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> Resp {
    let tcp = TcpStream::connect(addr).expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(tls.clone(), name).expect("tls");
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(k) = key {
        req.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    req.push_str("Content-Type: application/json\r\n\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    // A server closing without close_notify still gave us the whole response.
    if let Err(e) = s.read_to_end(&mut raw) {
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }
    parse_response(&raw)
}

const ENTRY: &str = r#"{"event_type":"tool_invocation","actor":"agent:crm-bot","action":"allow","outcome":"success","data":{"api_token":"sk-live-123"}}"#;

#[test]
fn a_configured_https_server_counts_logs_and_stops_cleanly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let (cert_path, key_path) = (tmp.path().join("tls.crt"), tmp.path().join("tls.key"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("cert file");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("key file");
    let config = tmp.path().join("custos.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[limits]\nmax_body_bytes = 4096\n\
             [log]\nformat = \"json\"\nlevel = \"info\"\n",
            data.display().to_string()
        ),
    )
    .expect("config");

    // The data directory comes from the config file alone (no --data).
    let created = custos(&config)
        .args(["init", "--origin", "ops.example/log"])
        .output()
        .expect("init");
    assert!(created.status.success(), "{created:?}");
    let out = custos(&config)
        .args(["keys", "create", "--tenant", "acme", "--role", "admin"])
        .output()
        .expect("keys");
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    assert!(data.join("ledger.json").exists());

    // TLS from the environment, over a config file without [tls].
    let log = tmp.path().join("stderr.log");
    let (mut server, scheme, _) = start(
        &config,
        &[
            ("CUSTOS_TLS_CERT", &cert_path),
            ("CUSTOS_TLS_KEY", &key_path),
        ],
        &log,
        0,
    );
    assert_eq!(scheme, "https");
    let tls = tls_client(&cert.cert.pem());
    let r = https(&tls, &server.addr, "POST", "/v1/entries", Some(&key), ENTRY);
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.headers.contains("x-request-id: "), "{}", r.headers);

    // The body limit from the config file; axum's rejection arrives as problem+json.
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000));
    let r = https(&tls, &server.addr, "POST", "/v1/entries", Some(&key), &big);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(
        r.headers.contains("content-type: application/problem+json"),
        "{}",
        r.headers
    );
    assert_eq!(r.json()["status"], 413);
    let r = https(&tls, &server.addr, "PUT", "/v1/entries", Some(&key), "");
    assert_eq!(r.status, 405);
    assert!(
        r.headers.contains("application/problem+json") && r.headers.contains("allow: "),
        "{}",
        r.headers
    );

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(&server.addr).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(!buf.starts_with(b"HTTP/1.1 200"));

    // Metrics: the SPEC §7 ledger figures and the HTTP counters, in Prometheus text.
    // A refusal, recorded within about a second as a security event.
    let r = https(
        &tls,
        &server.addr,
        "GET",
        "/v1/entries",
        Some("ck_0000_bad"),
        "",
    );
    assert_eq!(r.status, 401);
    let mut metrics = String::new();
    for _ in 0..50 {
        let r = https(&tls, &server.addr, "GET", "/metrics", None, "");
        assert_eq!(r.status, 200);
        assert!(r.headers.contains("openmetrics-text"), "{}", r.headers);
        metrics = r.body;
        if metrics.contains("custos_security_events_total{") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        metrics.contains(
            r#"custos_security_events_total{event_type="auth_failure",severity="low"} 1"#
        ),
        "{metrics}"
    );
    for want in [
        r#"custos_audit_events_total{event_type="tool_invocation",severity="info"} 1"#,
        // The appended entry and the refusal record.
        "custos_ledger_append_seconds_count 2",
        r#"custos_http_requests_total{method="GET",route="/v1/entries",status="401"} 1"#,
        r#"custos_http_requests_total{method="POST",route="/v1/entries",status="201"} 1"#,
        r#"custos_http_requests_total{method="POST",route="/v1/entries",status="413"} 1"#,
        "custos_http_request_duration_seconds_bucket{",
        "custos_up 1",
    ] {
        assert!(metrics.contains(want), "missing {want} in\n{metrics}");
    }
    shipped_rules_and_dashboard_use_only_exported_metrics(&metrics);
    let entries = metrics
        .lines()
        .find_map(|l| l.strip_prefix("custos_ledger_entries "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .expect("custos_ledger_entries");
    assert!(
        entries >= 2,
        "the key entry and the appended one: {entries}"
    );

    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");

    // JSON logs: one object per line, requests carry their id and route; no secret anywhere.
    let logs = std::fs::read_to_string(&log).expect("logs");
    assert!(!logs.contains(&key), "the API key was logged");
    assert!(!logs.contains("sk-live-123"), "an entry secret was logged");
    let mut answered = 0;
    for line in logs.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["fields"]["message"] == "answered" {
            answered += 1;
            assert!(
                v["span"]["request_id"]
                    .as_str()
                    .is_some_and(|s| s.len() >= 16),
                "{line}"
            );
            assert!(v["span"]["route"].is_string(), "{line}");
        }
    }
    assert!(answered >= 4, "{logs}");

    let verified = custos(&config).arg("verify").output().expect("verify");
    assert!(verified.status.success(), "{verified:?}");
}

#[test]
fn shutdown_finishes_the_request_in_flight() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let config = tmp.path().join("custos.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n",
            data.display().to_string()
        ),
    )
    .expect("config");
    // First start: `serve` initialises the directory and shows a bootstrap admin key once,
    // on the line after the listen line.
    let log = tmp.path().join("stderr.log");
    let (mut server, scheme, lines) = start(&config, &[], &log, 1);
    assert_eq!(scheme, "http");
    let key = bootstrap_key(&lines);
    assert!(data.join("ledger.json").exists());

    // Half a request: headers and part of the body.
    let mut s = TcpStream::connect(&server.addr).expect("connect");
    let head = format!(
        "POST /v1/entries HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        ENTRY.len()
    );
    s.write_all(head.as_bytes()).expect("head");
    let (first, rest) = ENTRY.split_at(20);
    s.write_all(first.as_bytes()).expect("first part");
    std::thread::sleep(Duration::from_millis(200));
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused while the old one drains.
    assert!(
        TcpStream::connect(&server.addr).is_err(),
        "still accepting after SIGTERM"
    );
    s.write_all(rest.as_bytes()).expect("rest of the body");
    let mut raw = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.read_to_end(&mut raw);
    let r = parse_response(&raw);
    assert_eq!(r.status, 201, "{}", r.body);
    let receipt = r.json();
    let status = server.terminate();
    assert!(status.success(), "{status:?}");

    // The acknowledged entry is there, covered by the final checkpoint.
    let seq = receipt["seq"].as_u64().expect("seq").to_string();
    let got = custos(&config)
        .args(["--json", "get", &seq])
        .output()
        .expect("get");
    assert!(got.status.success(), "{got:?}");
    let verified = custos(&config).arg("verify").output().expect("verify");
    assert!(verified.status.success(), "{verified:?}");
}

/// The Prometheus alert rules and Grafana dashboard in `deploy/` name only metric families this
/// server exports (a renamed metric would otherwise silently blank a panel or an alert).
fn shipped_rules_and_dashboard_use_only_exported_metrics(exposition: &str) {
    let families: Vec<&str> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for file in [
        "deploy/prometheus/custos-alerts.yml",
        "deploy/grafana/custos-dashboard.json",
    ] {
        let text = std::fs::read_to_string(root.join(file)).expect(file);
        let mut named = 0;
        for (i, _) in text.match_indices("custos_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                families.contains(&family),
                "{file} uses {name}, which /metrics does not export ({families:?})"
            );
            named += 1;
        }
        assert!(named >= 5, "{file} names only {named} metrics");
    }
}

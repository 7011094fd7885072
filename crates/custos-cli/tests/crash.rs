//! Crash safety (SPEC §3.5, §10): a real `custos append` is killed with SIGKILL at random
//! moments while it appends; every entry it acknowledged (printed) must survive, and the
//! ledger must verify after recovery.
//!
//! Rounds: `CUSTOS_CRASH_ROUNDS` (default 4 for CI; run e.g. 50 by hand for a soak).

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_entry() {
    let rounds: u64 = std::env::var("CUSTOS_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("crash test seed {seed}, {rounds} rounds");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    ok(&custos(&data, &["init", "--origin", "crash.example/log"]));
    let lines: String = (0..40_000).map(|i| entry_line(i) + "\n").collect();
    let mut acked: HashMap<u64, String> = HashMap::new();
    for round in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_custos"))
            .arg("--data")
            .arg(&data)
            .args(["append", "--batch", "100"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = lines.clone();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let stdout = child.stdout.take().expect("stdout");
        // The reader reports the first acknowledgement, so the kill lands while appends run
        // (validating 40 000 lines first can take seconds on a loaded machine).
        let (first_ack, acking) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut parts = line.split('\t');
                if let (Some(seq), Some(id)) = (parts.next(), parts.next())
                    && let Ok(seq) = seq.parse::<u64>()
                {
                    if got.is_empty() {
                        let _ = first_ack.send(());
                    }
                    got.push((seq, id.to_owned()));
                }
            }
            got
        });
        let _ = acking.recv_timeout(Duration::from_secs(60));
        let delay = next(&mut seed) % 1600;
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let _ = writer.join();
        let got = reader.join().expect("reader");
        eprintln!(
            "round {round}: killed {delay} ms after the first acknowledgement, {} entries acknowledged",
            got.len()
        );
        for (seq, id) in got {
            assert!(
                acked.insert(seq, id).is_none(),
                "seq {seq} acknowledged twice"
            );
        }
        // Reopening recovers (a torn tail is cut and recorded); everything acknowledged is there.
        let export = ok(&custos(&data, &["export", "--format", "jsonl"]));
        let mut stored: HashMap<u64, String> = HashMap::new();
        for line in export.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("jsonl");
            stored.insert(
                v["seq"].as_u64().expect("seq"),
                v["id"].as_str().expect("id").to_owned(),
            );
        }
        for (seq, id) in &acked {
            assert_eq!(
                stored.get(seq),
                Some(id),
                "acknowledged seq {seq} lost or changed"
            );
        }
        let (code, report) = verify(&data);
        assert_eq!(code, 0, "verify after crash round {round}: {report}");
    }
    assert!(
        !acked.is_empty(),
        "no round acknowledged anything; the test proved nothing"
    );
}

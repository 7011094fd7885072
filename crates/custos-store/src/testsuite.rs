//! The conformance suite every backend must pass (feature `testsuite`).
//!
//! Each check takes a fresh, empty store. A backend runs them all with
//! [`conformance_tests!`](crate::conformance_tests), which expands to one `#[tokio::test]` per
//! check, so the embedded and PostgreSQL backends are held to exactly the same behaviour.

use std::collections::HashSet;

use custos_core::entry::{Entry, EntryBody, Limits, Outcome, PreparedEntry, Severity, ZERO_HASH};
use custos_core::merkle::{self, MemoryTree};
use custos_core::note::{self, Checkpoint, Signer};

use crate::{EntryQuery, FilterView, Store, StoreError, StoredCheckpoint};

/// A varied, deterministic entry body: two tenants, several actors, types, resources,
/// outcomes and severities, some with targets, traces and sessions.
pub fn body(i: u64) -> EntryBody {
    let tenant = if i.is_multiple_of(3) {
        "acme"
    } else {
        "globex"
    };
    let types = [
        "tool_invocation",
        "policy_evaluation",
        "agent_executed",
        "auth_login",
    ];
    let mut b = EntryBody::new(
        tenant,
        types[(i % 4) as usize],
        format!("agent:a{}", i % 5),
        if i.is_multiple_of(7) { "deny" } else { "allow" },
        Outcome::ALL[(i % 4) as usize],
    );
    b.severity = Severity::ALL[(i % 5) as usize];
    if i.is_multiple_of(2) {
        b.resource = Some(format!("/crm/contacts/{}", i % 6));
    } else if i % 5 == 1 {
        b.resource = Some(format!("aws:ec2:sg-{}", i % 3));
    }
    if i % 4 == 1 {
        b.target = Some(format!("agent:t{}", i % 2));
    }
    if i % 3 == 1 {
        b.trace_id = Some(format!("trace-{}", i % 4));
    }
    if i % 5 == 2 {
        b.session_id = Some(format!("sess-{}", i % 3));
    }
    b.data.insert("i".into(), i.into());
    b.data.insert("password".into(), "hunter2".into());
    b
}

/// The segment files of an embedded store's data directory, oldest first (for tests that
/// damage them on purpose).
pub fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("log"))
        .expect("log directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seg-"))
        })
        .collect();
    v.sort();
    v
}

/// Prepares [`body`]`(i)`.
pub fn prepared(i: u64) -> PreparedEntry {
    match PreparedEntry::new(body(i), &Limits::default()) {
        Ok(p) => p,
        Err(e) => panic!("test body {i} is invalid: {e}"),
    }
}

async fn fill<S: Store>(store: &S, n: u64) -> Vec<crate::Appended> {
    let mut out = Vec::new();
    let mut i = store.size().expect("size");
    let end = i + n;
    while i < end {
        let batch_len = (end - i).min(37);
        let batch = (i..i + batch_len).map(prepared).collect();
        out.extend(store.append(batch).await.expect("append"));
        i += batch_len;
    }
    out
}

fn entry<S: Store>(store: &S, seq: u64) -> Entry {
    let rec = store.get(seq).expect("get").expect("entry exists");
    assert_eq!(rec.seq, seq);
    Entry::from_canonical(&rec.bytes).expect("stored bytes are canonical")
}

/// Seqs are 0.. gap-free, `prev_hash` chains, ids are unique UUIDs sorting like seqs, ts
/// never goes back, and secrets were redacted before hashing.
pub async fn sequencing<S: Store>(store: S) {
    assert_eq!(store.size().expect("size"), 0);
    let appended = fill(&store, 200).await;
    assert_eq!(
        appended.iter().map(|a| a.seq).collect::<Vec<_>>(),
        (0..200).collect::<Vec<_>>()
    );
    assert_eq!(store.size().expect("size"), 200);
    let mut prev = ZERO_HASH;
    let mut ids = HashSet::new();
    let mut last_id = String::new();
    let mut last_ts = i128::MIN;
    for a in &appended {
        let e = entry(&store, a.seq);
        assert_eq!(e.seq, a.seq);
        assert_eq!(e.id, a.id);
        assert_eq!(e.ts, a.ts);
        assert_eq!(
            e.prev_hash,
            merkle::hash_to_hex(&prev),
            "chain at {}",
            a.seq
        );
        assert_eq!(e.leaf_hash().expect("leaf"), a.leaf_hash);
        assert_eq!(
            e.data.get("password").and_then(|v| v.as_str()),
            Some("[REDACTED]")
        );
        assert!(ids.insert(e.id.clone()), "duplicate id");
        assert!(e.id > last_id, "ids sort like seqs");
        let ts = custos_core::time::parse_rfc3339(&e.ts).expect("ts");
        assert!(ts >= last_ts, "ts went back at {}", a.seq);
        last_id = e.id;
        last_ts = ts;
        prev = a.leaf_hash;
    }
    assert!(store.get(200).expect("get").is_none());
}

/// Batches that are empty or too large are refused and change nothing.
pub async fn batch_limits<S: Store>(store: S) {
    let err = store.append(Vec::new()).await.expect_err("empty batch");
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let big: Vec<_> = (0..10_001).map(prepared).collect();
    let err = store.append(big).await.expect_err("oversized batch");
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(store.size().expect("size"), 0);
}

/// Concurrent appenders get distinct seqs with no gaps.
pub async fn concurrent_appends<S: Store>(store: S) {
    let store = std::sync::Arc::new(store);
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for k in 0..25u64 {
                let batch = vec![prepared(t * 100 + k), prepared(t * 100 + k + 50)];
                seqs.extend(
                    store
                        .append(batch)
                        .await
                        .expect("append")
                        .into_iter()
                        .map(|a| a.seq),
                );
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all.sort_unstable();
    assert_eq!(all, (0..800).collect::<Vec<_>>());
    assert_eq!(store.size().expect("size"), 800);
}

/// `read_range`, `leaf_hashes`, `scan`, roots and proofs agree with an in-memory tree.
pub async fn tree_and_proofs<S: Store>(store: S) {
    let appended = fill(&store, 300).await;
    let mut mem = MemoryTree::new();
    let mut roots = vec![mem.root()];
    for a in &appended {
        mem.push(a.leaf_hash);
        roots.push(mem.root());
    }
    let leaves = store.leaf_hashes(0, 300).expect("leaves");
    assert_eq!(
        leaves,
        appended.iter().map(|a| a.leaf_hash).collect::<Vec<_>>()
    );
    let range = store.read_range(10, 60).expect("range");
    assert_eq!(
        range.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (10..60).collect::<Vec<_>>()
    );
    for r in &range {
        assert_eq!(
            merkle::leaf_hash(&r.bytes),
            appended[r.seq as usize].leaf_hash
        );
    }
    // A physical scan returns every record in order.
    let mut cursor = None;
    let mut scanned = Vec::new();
    loop {
        let chunk = store.scan(cursor, 64).expect("scan");
        scanned.extend(chunk.records.iter().map(|r| r.seq));
        match chunk.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(scanned, (0..300).collect::<Vec<_>>());
    for size in [0u64, 1, 2, 3, 7, 8, 9, 255, 256, 257, 300] {
        assert_eq!(
            store.root(size).expect("root"),
            roots[size as usize],
            "root {size}"
        );
    }
    for size in [1u64, 2, 5, 17, 256, 257, 300] {
        for index in [0, size / 2, size - 1] {
            let proof = store.inclusion_proof(index, size).expect("proof");
            merkle::verify_inclusion(
                &appended[index as usize].leaf_hash,
                index,
                size,
                &proof,
                &roots[size as usize],
            )
            .unwrap_or_else(|e| panic!("inclusion {index}/{size}: {e}"));
        }
        assert!(
            store.consistency_proof(0, size).is_err(),
            "RFC 9162 defines no proof from 0"
        );
        for old in [1u64, (size / 3).max(1), size] {
            let proof = store.consistency_proof(old, size).expect("consistency");
            merkle::verify_consistency(
                old,
                size,
                &roots[old as usize],
                &roots[size as usize],
                &proof,
            )
            .unwrap_or_else(|e| panic!("consistency {old}->{size}: {e}"));
        }
    }
    assert!(
        store.inclusion_proof(300, 300).is_err(),
        "index beyond the tree"
    );
    assert!(
        store.inclusion_proof(0, 301).is_err(),
        "size beyond the log"
    );
    assert!(
        store.consistency_proof(5, 301).is_err(),
        "size beyond the log"
    );
}

/// Checkpoints are kept in order, found by size, and never go back: one for a size the latest
/// already covers is not kept, and the latest is returned instead.
pub async fn checkpoints<S: Store>(store: S) {
    assert!(store.latest_checkpoint().expect("latest").is_none());
    let signer = Signer::from_seed("test.example/log", [9u8; 32]).expect("signer");
    let mut notes = Vec::new();
    for n in [5u64, 20, 21] {
        fill(&store, n).await;
        let size = store.size().expect("size");
        let cp = Checkpoint {
            origin: "test.example/log".into(),
            size,
            root: store.root(size).expect("root"),
            extensions: Vec::new(),
        };
        let note = note::sign_checkpoint(&signer, &cp).expect("sign");
        let stored = StoredCheckpoint {
            size,
            issued_nanos: size as i128,
            note,
        };
        assert_eq!(store.add_checkpoint(&stored).expect("add"), stored);
        // The same size again (as from another node, issued at another time) keeps the first.
        let again = StoredCheckpoint {
            issued_nanos: stored.issued_nanos + 1,
            ..stored.clone()
        };
        assert_eq!(store.add_checkpoint(&again).expect("add again"), stored);
        notes.push(stored);
    }
    assert_eq!(
        store.latest_checkpoint().expect("latest").as_ref(),
        notes.last()
    );
    assert_eq!(
        store.checkpoint_for_size(25).expect("for size"),
        Some(notes[1].clone())
    );
    assert_eq!(store.checkpoint_for_size(24).expect("for size"), None);
    assert_eq!(store.checkpoints(0, 10).expect("list"), notes);
    assert_eq!(
        store.checkpoints(1, 1).expect("list"),
        vec![notes[1].clone()]
    );
    let older = StoredCheckpoint {
        size: 5,
        issued_nanos: 0,
        note: notes[0].note.clone(),
    };
    assert_eq!(
        store.add_checkpoint(&older).expect("older"),
        notes[2],
        "a checkpoint for a covered size is not kept: the latest is returned"
    );
    assert_eq!(store.checkpoints(0, 10).expect("list"), notes);
    let beyond = StoredCheckpoint {
        size: 1000,
        issued_nanos: 0,
        note: notes[0].note.clone(),
    };
    assert!(
        store.add_checkpoint(&beyond).is_err(),
        "a checkpoint may not exceed the log"
    );
    for cp in &notes {
        let opened = note::open_checkpoint(&cp.note, &signer.verifier()).expect("opens");
        assert_eq!(opened.root, store.root(cp.size).expect("root"));
    }
}

/// Writers racing to add checkpoints (as nodes sharing a store do) never fail: each gets back
/// a checkpoint covering at least its own size, and the kept checkpoints strictly grow.
pub async fn concurrent_checkpoints<S: Store>(store: S) {
    let signer = Signer::from_seed("test.example/log", [9u8; 32]).expect("signer");
    let store = std::sync::Arc::new(store);
    fill(&*store, 64).await;
    let signed = |size: u64| {
        let cp = Checkpoint {
            origin: "test.example/log".into(),
            size,
            root: store.root(size).expect("root"),
            extensions: Vec::new(),
        };
        StoredCheckpoint {
            size,
            issued_nanos: size as i128,
            note: note::sign_checkpoint(&signer, &cp).expect("sign"),
        }
    };
    let cps: Vec<StoredCheckpoint> = (1..=64).map(signed).collect();
    let threads: Vec<_> = (0..4usize)
        .map(|t| {
            let store = store.clone();
            // Each writer goes through the sizes in its own interleaving, some backwards.
            let mine: Vec<StoredCheckpoint> = cps
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 4 == t || (i + t) % 3 == 0)
                .map(|(_, c)| c.clone())
                .collect();
            std::thread::spawn(move || {
                for cp in mine {
                    let got = store.add_checkpoint(&cp).expect("adding never fails");
                    assert!(got.size >= cp.size, "{} < {}", got.size, cp.size);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread");
    }
    let kept = store.checkpoints(0, 1000).expect("list");
    assert!(!kept.is_empty());
    assert!(
        kept.windows(2).all(|w| w[0].size < w[1].size),
        "sizes strictly increase: {:?}",
        kept.iter().map(|c| c.size).collect::<Vec<_>>()
    );
    for cp in &kept {
        assert_eq!(cp, &cps[cp.size as usize - 1], "kept as signed");
    }
    assert_eq!(
        store.latest_checkpoint().expect("latest").as_ref(),
        kept.last()
    );
}

/// Nonces of signed requests: fresh once per key until they expire, a replay otherwise —
/// also when several writers race with the same nonce (as nodes sharing a store do).
pub async fn nonces<S: Store>(store: S) {
    let now = 1_700_000_000;
    let exp = now + 301;
    assert!(
        store
            .record_nonce("k1", "nonce-a", exp, now)
            .expect("first")
    );
    assert!(
        !store
            .record_nonce("k1", "nonce-a", exp, now)
            .expect("replay")
    );
    assert!(
        !store
            .record_nonce("k1", "nonce-a", exp + 50, now + 300)
            .expect("replay, later, other expiry"),
        "refused while it has not expired"
    );
    assert!(
        store
            .record_nonce("k2", "nonce-a", exp, now)
            .expect("other key")
    );
    assert!(
        store
            .record_nonce("k1", "nonce-b", exp, now)
            .expect("other nonce")
    );
    // Once expired it is forgotten (the timestamp check refuses such a request anyway), and
    // a new use is remembered again.
    assert!(
        store
            .record_nonce("k1", "nonce-a", exp + 400, exp + 1)
            .expect("after expiry")
    );
    assert!(
        !store
            .record_nonce("k1", "nonce-a", exp + 400, exp + 2)
            .expect("replay of the new use")
    );
    let store = std::sync::Arc::new(store);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..20)
                    .filter(|i| {
                        store
                            .record_nonce("k3", &format!("race-{i:04}"), exp, now)
                            .expect("record")
                    })
                    .count()
            })
        })
        .collect();
    let fresh: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert_eq!(fresh, 20, "each racing nonce is fresh exactly once");
}

fn brute_force<S: Store>(store: &S, q: &EntryQuery) -> Vec<u64> {
    let size = store.size().expect("size");
    let all = store.read_range(0, size).expect("range");
    let mut out: Vec<u64> = all
        .iter()
        .filter(|r| {
            let v = FilterView::parse(&r.bytes).expect("view");
            let ts = custos_core::time::parse_rfc3339(&v.ts).expect("ts");
            v.matches(q)
                && q.start.is_none_or(|s| ts >= s)
                && q.end.is_none_or(|e| ts < e)
                && q.after
                    .is_none_or(|a| if q.descending { r.seq < a } else { r.seq > a })
        })
        .map(|r| r.seq)
        .collect();
    if q.descending {
        out.reverse();
    }
    out.truncate(q.limit);
    out
}

/// Every filter, both directions, cursors and time ranges give exactly what a brute-force
/// scan gives — before and after the indexes catch up.
pub async fn queries<S: Store>(store: S) {
    fill(&store, 400).await;
    let mid_ts = {
        let e = entry(&store, 200);
        custos_core::time::parse_rfc3339(&e.ts).expect("ts")
    };
    let base = |limit| EntryQuery {
        limit,
        ..EntryQuery::default()
    };
    let mut cases: Vec<EntryQuery> = vec![
        base(1000),
        EntryQuery {
            tenant: Some("acme".into()),
            ..base(1000)
        },
        EntryQuery {
            tenant: Some("acme".into()),
            actor: Some("agent:a3".into()),
            ..base(1000)
        },
        EntryQuery {
            actor: Some("agent:a1".into()),
            event_type: Some("policy_evaluation".into()),
            ..base(1000)
        },
        EntryQuery {
            tenant: Some("globex".into()),
            event_type: Some("auth_login".into()),
            ..base(1000)
        },
        EntryQuery {
            action: Some("deny".into()),
            ..base(1000)
        },
        EntryQuery {
            outcome: Some(Outcome::Denied),
            ..base(1000)
        },
        EntryQuery {
            min_severity: Some(Severity::High),
            ..base(1000)
        },
        EntryQuery {
            resource: Some("/crm/contacts/2".into()),
            ..base(1000)
        },
        EntryQuery {
            resource: Some("/crm/".into()),
            resource_prefix: true,
            ..base(1000)
        },
        EntryQuery {
            resource: Some("/crm/".into()),
            ..base(1000)
        },
        EntryQuery {
            target: Some("agent:t1".into()),
            ..base(1000)
        },
        EntryQuery {
            trace_id: Some("trace-1".into()),
            ..base(1000)
        },
        EntryQuery {
            session_id: Some("sess-2".into()),
            tenant: Some("globex".into()),
            ..base(1000)
        },
        EntryQuery {
            start: Some(mid_ts),
            ..base(1000)
        },
        EntryQuery {
            end: Some(mid_ts),
            actor: Some("agent:a2".into()),
            ..base(1000)
        },
        EntryQuery {
            tenant: Some("nobody".into()),
            ..base(1000)
        },
    ];
    let more: Vec<EntryQuery> = cases
        .iter()
        .flat_map(|q| {
            [
                EntryQuery {
                    descending: true,
                    ..q.clone()
                },
                EntryQuery {
                    limit: 7,
                    ..q.clone()
                },
                EntryQuery {
                    limit: 7,
                    descending: true,
                    after: Some(300),
                    ..q.clone()
                },
                EntryQuery {
                    limit: 3,
                    after: Some(100),
                    ..q.clone()
                },
            ]
        })
        .collect();
    cases.extend(more);
    for round in 0..2 {
        for q in &cases {
            let got: Vec<u64> = store
                .query(q)
                .expect("query")
                .records
                .iter()
                .map(|r| r.seq)
                .collect();
            assert_eq!(got, brute_force(&store, q), "round {round}: {q:?}");
        }
        store.wait_indexed().await.expect("index");
    }
    // Paging through everything visits every match once.
    for descending in [false, true] {
        let mut q = EntryQuery {
            tenant: Some("globex".into()),
            limit: 13,
            descending,
            ..EntryQuery::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = store.query(&q).expect("page");
            seen.extend(page.records.iter().map(|r| r.seq));
            match page.next {
                Some(n) => q.after = Some(n),
                None => break,
            }
        }
        let all = brute_force(
            &store,
            &EntryQuery {
                limit: usize::MAX,
                ..q.clone()
            }
            .without_cursor(),
        );
        assert_eq!(seen, all, "paging descending={descending}");
    }
    assert!(store.query(&base(0)).is_err(), "limit 0");
    assert!(store.query(&base(1001)).is_err(), "limit over 1000");
}

impl EntryQuery {
    fn without_cursor(mut self) -> Self {
        self.after = None;
        self
    }
}

/// Ids and times find their entries, indexed or not.
pub async fn lookups<S: Store>(store: S) {
    let appended = fill(&store, 50).await;
    for a in [&appended[0], &appended[25], &appended[49]] {
        assert_eq!(store.seq_of_id(&a.id).expect("id"), Some(a.seq));
    }
    store.wait_indexed().await.expect("index");
    for a in [&appended[3], &appended[48]] {
        assert_eq!(store.seq_of_id(&a.id).expect("id"), Some(a.seq));
    }
    assert_eq!(
        store
            .seq_of_id("0190c7a2-0000-7000-8000-000000000000")
            .expect("id"),
        None
    );
    assert_eq!(store.seq_of_id("not-a-uuid").expect("id"), None);
    let ts = |s: &str| custos_core::time::parse_rfc3339(s).expect("ts");
    assert_eq!(store.seq_at_or_after(i128::MIN).expect("time"), 0);
    assert_eq!(store.seq_at_or_after(i128::MAX).expect("time"), 50);
    let t = ts(&appended[30].ts);
    let first = store.seq_at_or_after(t).expect("time");
    assert!(first <= 30 && ts(&appended[first as usize].ts) >= t);
    if first > 0 {
        assert!(ts(&appended[first as usize - 1].ts) < t);
    }
}

/// Health: writable while open, indexes catch up with the log, unwritable once closed.
pub async fn health<S: Store>(store: S) {
    let h = store.health().expect("health");
    assert_eq!((h.size, h.indexed, h.unwritable.as_deref()), (0, 0, None));
    fill(&store, 300).await;
    store.wait_indexed().await.expect("indexed");
    let h = store.health().expect("health");
    assert_eq!(
        (h.size, h.indexed, h.unwritable.as_deref()),
        (300, 300, None)
    );
    store.close().await.expect("close");
    let h = store.health().expect("health after close");
    assert_eq!(h.size, 300);
    assert!(h.unwritable.is_some(), "a closed store is not writable");
}

/// Expands to one test per conformance check; `$make` is an async expression giving a fresh
/// store (it may refer to items in scope, e.g. a temp dir helper).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            sequencing, batch_limits, concurrent_appends, tree_and_proofs, checkpoints,
            concurrent_checkpoints, queries, lookups, health, nonces);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make.await;
                $crate::testsuite::$name(store).await;
            }
        )*
    };
}

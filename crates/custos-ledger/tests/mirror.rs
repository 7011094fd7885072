//! The signed JSON Lines mirror (SPEC §3.7): the exact line and seal format, rotation, resume
//! after reopen and after interrupted appends, every kind of tampering named by file, line and
//! seq, and hostile file content that must give errors, never panics.

use std::fs;
use std::path::{Path, PathBuf};

use custos_core::entry::{EntryBody, Limits, Outcome, PreparedEntry};
use custos_core::jcs;
use custos_ledger::mirror::{
    DEFAULT_PREFIX, MirrorConfig, MirrorError, MirrorReport, MirrorWriter, load_key, verify_files,
};
use custos_store::RawRecord;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const KEY: [u8; 32] = [7; 32];
const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `n` chained ledger records, seq 0..n.
fn records(n: u64) -> Vec<RawRecord> {
    records_by("agent:a", n)
}

/// `n` chained ledger records by `actor`.
fn records_by(actor: &str, n: u64) -> Vec<RawRecord> {
    let prepared = PreparedEntry::new(
        EntryBody::new("t1", "tool_invocation", actor, "allow", Outcome::Success),
        &Limits::default(),
    )
    .expect("valid body");
    let mut prev = [0u8; 32];
    (0..n)
        .map(|seq| {
            let (bytes, leaf) = prepared.seal(
                seq,
                "0190c7a2-0000-7000-8000-000000000000",
                "2026-11-23T12:00:00.000000000Z",
                &prev,
            );
            prev = leaf;
            RawRecord { seq, bytes }
        })
        .collect()
}

fn config(dir: &Path, max_file_bytes: u64) -> MirrorConfig {
    MirrorConfig {
        max_file_bytes,
        ..MirrorConfig::new(dir, KEY.to_vec())
    }
}

/// The mirror files in `dir`, sorted by name as the CLI does.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    files
}

/// About four entry lines per file.
const SMALL_FILES: u64 = 1_500;

/// Writes records 0..n in batches of `batch` and returns the files.
fn write_mirror(dir: &Path, n: u64, batch: usize) -> Vec<PathBuf> {
    let mut writer = MirrorWriter::open(config(dir, SMALL_FILES)).expect("open");
    for chunk in records(n).chunks(batch) {
        writer.append(chunk).expect("append");
    }
    writer.close().expect("close");
    files(dir)
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .expect("read mirror file")
        .split_inclusive('\n')
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    fs::write(path, lines.concat()).expect("write mirror file");
}

fn line_seq(line: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(line).expect("json line");
    v["seq"].as_u64().expect("entry line")
}

fn hmac_hex(message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&KEY).expect("key");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// An entry line signed with [`KEY`], as only a key holder can write it.
fn signed_entry_line(seq: u64, entry: &[u8], previous_hash: &str) -> String {
    let hash = hex::encode(Sha256::digest(entry));
    let signature = hmac_hex(format!("{hash}{previous_hash}").as_bytes());
    let entry = std::str::from_utf8(entry).expect("utf-8");
    format!(
        "{{\"seq\":{seq},\"entry\":{entry},\"content_hash\":\"{hash}\",\"previous_hash\":\"{previous_hash}\",\"signature\":\"{signature}\"}}\n"
    )
}

#[test]
fn lines_and_seals_have_the_documented_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = records(6);
    let mut writer = MirrorWriter::open(config(dir.path(), 1)).expect("open");
    writer.append(&recs[..2]).expect("append");
    writer.close().expect("close");
    let files = files(dir.path());
    let names: Vec<_> = files
        .iter()
        .map(|p| p.file_name().and_then(|n| n.to_str()).expect("name"))
        .collect();
    assert_eq!(
        names,
        ["custos-mirror-000001.jsonl", "custos-mirror-000002.jsonl"]
    );

    let h0 = hex::encode(Sha256::digest(&recs[0].bytes));
    let h1 = hex::encode(Sha256::digest(&recs[1].bytes));
    let sig0 = hmac_hex(format!("{h0}{ZEROS}").as_bytes());
    let sig1 = hmac_hex(format!("{h1}{h0}").as_bytes());
    let entry0 = String::from_utf8(recs[0].bytes.clone()).expect("utf-8");
    let entry1 = String::from_utf8(recs[1].bytes.clone()).expect("utf-8");
    let seal = serde_json::json!({
        "file": "custos-mirror-000001.jsonl",
        "lines": 1,
        "last_seq": 0,
        "last_hash": h0,
        "next_file": "custos-mirror-000002.jsonl",
    });
    let seal_jcs = String::from_utf8(jcs::to_canonical(&seal).expect("jcs")).expect("utf-8");
    let seal_sig = hmac_hex(seal_jcs.as_bytes());
    assert_eq!(
        lines(&files[0]),
        [
            format!(
                "{{\"seq\":0,\"entry\":{entry0},\"content_hash\":\"{h0}\",\"previous_hash\":\"{ZEROS}\",\"signature\":\"{sig0}\"}}\n"
            ),
            format!("{{\"seal\":{seal_jcs},\"signature\":\"{seal_sig}\"}}\n"),
        ]
    );
    assert_eq!(
        lines(&files[1]),
        [format!(
            "{{\"seq\":1,\"entry\":{entry1},\"content_hash\":\"{h1}\",\"previous_hash\":\"{h0}\",\"signature\":\"{sig1}\"}}\n"
        )]
    );
}

#[test]
fn round_trip_over_rotated_files_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = write_mirror(dir.path(), 40, 7);
    assert!(
        files.len() >= 5,
        "expected rotation, got {} files",
        files.len()
    );
    for file in &files[..files.len() - 1] {
        let last = lines(file).pop().expect("non-empty");
        assert!(
            last.starts_with("{\"seal\":"),
            "{} not sealed",
            file.display()
        );
    }
    let report = verify_files(&files, &KEY, Some(39)).expect("verifies");
    assert_eq!(
        report,
        MirrorReport {
            files: files.len(),
            entries: 40,
            first_seq: Some(0),
            last_seq: Some(39),
            open_tail: true,
        }
    );
    // Files given up to a seal are complete up to it: no open tail.
    let report = verify_files(&files[..2], &KEY, None).expect("prefix verifies");
    assert!(!report.open_tail);
    assert_eq!(report.first_seq, Some(0));
    // Files given from the middle of the chain: the report says where checking began.
    let report = verify_files(&files[1..], &KEY, None).expect("suffix verifies");
    assert!(report.first_seq.is_some_and(|s| s > 0));
    assert_eq!(report.last_seq, Some(39));
}

#[test]
fn one_huge_append_is_one_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = records(5_000);
    let mut writer = MirrorWriter::open(MirrorConfig {
        max_file_bytes: 1 << 20,
        ..MirrorConfig::new(dir.path(), KEY.to_vec())
    })
    .expect("open");
    writer.append(&recs).expect("append");
    assert_eq!(writer.next_seq(), 5_000);
    writer.close().expect("close");
    let files = files(dir.path());
    assert!(files.len() >= 2);
    let report = verify_files(&files, &KEY, Some(4_999)).expect("verifies");
    assert_eq!(report.entries, 5_000);
}

#[test]
fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = records(30);
    let mut writer = MirrorWriter::open(config(dir.path(), SMALL_FILES)).expect("open");
    assert_eq!(writer.next_seq(), 0);
    writer.append(&recs[..13]).expect("append");
    writer.close().expect("close");
    let before = files(dir.path());

    let mut writer = MirrorWriter::open(config(dir.path(), SMALL_FILES)).expect("reopen");
    assert_eq!(writer.next_seq(), 13);
    writer.append(&recs[13..]).expect("append after reopen");
    writer.close().expect("close");

    let after = files(dir.path());
    assert!(after.len() > before.len());
    // The newest file before reopening was continued, not replaced.
    let continued = lines(&before[before.len() - 1]);
    assert!(continued.len() >= 2);
    let report = verify_files(&after, &KEY, Some(29)).expect("verifies");
    assert_eq!((report.entries, report.first_seq), (30, Some(0)));
}

#[test]
fn records_must_continue_the_mirror() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = records(10);
    let mut writer = MirrorWriter::open(config(dir.path(), SMALL_FILES)).expect("open");
    writer.append(&recs[..3]).expect("append");
    for (batch, expected, found) in [
        (&recs[4..6], 3, 4),                             // gap
        (&recs[2..5], 3, 2),                             // repeat
        (&[recs[3].clone(), recs[5].clone()][..], 4, 5), // gap inside a batch
    ] {
        match writer.append(batch) {
            Err(MirrorError::OutOfSequence {
                expected: e,
                found: f,
            }) => assert_eq!((e, f), (expected, found)),
            other => panic!("expected OutOfSequence, got {other:?}"),
        }
        assert_eq!(writer.next_seq(), 3, "a refused batch writes nothing");
    }
    let not_one_line = RawRecord {
        seq: 3,
        bytes: b"{\"a\":\n1}".to_vec(),
    };
    assert!(matches!(
        writer.append(&[not_one_line]),
        Err(MirrorError::Invalid(_))
    ));
    writer.append(&recs[3..]).expect("append continues");
    writer.close().expect("close");
    verify_files(&files(dir.path()), &KEY, Some(9)).expect("verifies");
}

#[test]
fn a_mirror_may_start_after_the_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = records(120);
    let mut writer = MirrorWriter::open(config(dir.path(), SMALL_FILES)).expect("open");
    writer
        .append(&recs[100..])
        .expect("first append at seq 100");
    assert_eq!(writer.next_seq(), 120);
    writer.close().expect("close");
    let report = verify_files(&files(dir.path()), &KEY, Some(119)).expect("verifies");
    assert_eq!(
        (report.first_seq, report.last_seq, report.entries),
        (Some(100), Some(119), 20)
    );
}

/// A built mirror that a tamper case changes.
struct Mirror {
    /// The files to verify, in order.
    files: Vec<PathBuf>,
    key: Vec<u8>,
    through: Option<u64>,
}

/// Where verification must report the problem: file index, line, seq.
type Expect = (usize, u64, Option<u64>);

struct Case {
    name: &'static str,
    tamper: fn(&mut Mirror) -> Expect,
    /// Part of the problem text.
    problem: &'static str,
}

fn check(case: &Case) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut mirror = Mirror {
        files: write_mirror(dir.path(), 20, 3),
        key: KEY.to_vec(),
        through: None,
    };
    assert!(mirror.files.len() >= 4, "{}: too few files", case.name);
    verify_files(&mirror.files, &mirror.key, Some(19)).expect("untampered mirror verifies");
    let (file, line, seq) = (case.tamper)(&mut mirror);
    match verify_files(&mirror.files, &mirror.key, mirror.through) {
        Err(MirrorError::Tampered {
            file: f,
            line: l,
            seq: s,
            problem,
        }) => {
            assert_eq!(
                (&f, l, s),
                (&mirror.files[file], line, seq),
                "{}: wrong place ({problem})",
                case.name
            );
            assert!(
                problem.contains(case.problem),
                "{}: problem `{problem}` lacks `{}`",
                case.name,
                case.problem
            );
        }
        other => panic!("{}: expected Tampered, got {other:?}", case.name),
    }
}

fn edit_line(path: &Path, line: usize, edit: impl FnOnce(&str) -> String) {
    let mut all = lines(path);
    all[line - 1] = edit(&all[line - 1]);
    write_lines(path, &all);
}

fn last_index(lines: &[String]) -> u64 {
    lines.len() as u64
}

#[test]
fn every_tampering_is_named() {
    let cases = [
        Case {
            name: "edited entry field",
            tamper: |m| {
                let seq = line_seq(&lines(&m.files[0])[1]);
                edit_line(&m.files[0], 2, |l| l.replace("\"allow\"", "\"deny!\""));
                (0, 2, Some(seq))
            },
            problem: "does not match its content_hash",
        },
        Case {
            name: "edited entry with a recomputed content_hash",
            tamper: |m| {
                let seq = line_seq(&lines(&m.files[1])[0]);
                edit_line(&m.files[1], 1, |l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).expect("json");
                    v["entry"]["action"] = "deny".into();
                    let bytes = jcs::to_canonical(&v["entry"]).expect("jcs");
                    let old = v["content_hash"].as_str().expect("hash").to_owned();
                    let new = hex::encode(Sha256::digest(&bytes));
                    let entry = String::from_utf8(bytes).expect("utf-8");
                    let start = l.find(",\"entry\":").expect("entry") + 9;
                    let end = l.find(",\"content_hash\"").expect("hash");
                    format!("{}{entry}{}", &l[..start], &l[end..]).replace(&old, &new)
                });
                (1, 1, Some(seq))
            },
            problem: "signature does not verify",
        },
        Case {
            name: "edited signature",
            tamper: |m| {
                let seq = line_seq(&lines(&m.files[1])[2]);
                edit_line(&m.files[1], 3, |l| {
                    let at = l.rfind('"').expect("quote") - 1;
                    let flipped = if &l[at..=at] == "0" { "1" } else { "0" };
                    format!("{}{flipped}{}", &l[..at], &l[at + 1..])
                });
                (1, 3, Some(seq))
            },
            problem: "signature does not verify",
        },
        Case {
            name: "edited seq of a line",
            tamper: |m| {
                let seq = line_seq(&lines(&m.files[2])[1]);
                edit_line(&m.files[2], 2, |l| {
                    l.replacen(&format!("{{\"seq\":{seq},"), "{\"seq\":900,", 1)
                });
                (2, 2, Some(900))
            },
            problem: "the line was edited",
        },
        Case {
            name: "whitespace added",
            tamper: |m| {
                let seq = line_seq(&lines(&m.files[0])[0]);
                edit_line(&m.files[0], 1, |l| l.replacen("{\"seq\":", "{ \"seq\":", 1));
                (0, 1, Some(seq))
            },
            problem: "not in the exact form",
        },
        Case {
            name: "field added",
            tamper: |m| {
                let seq = line_seq(&lines(&m.files[0])[2]);
                edit_line(&m.files[0], 3, |l| {
                    l.replacen("{\"seq\":", "{\"note\":\"benign\",\"seq\":", 1)
                });
                (0, 3, Some(seq))
            },
            problem: "not in the exact form",
        },
        Case {
            name: "line replaced by the same seq of another mirror with the same key",
            tamper: |m| {
                let other = tempfile::tempdir().expect("tempdir");
                let mut writer = MirrorWriter::open(config(other.path(), 1 << 20)).expect("open");
                writer.append(&records_by("agent:b", 20)).expect("append");
                writer.close().expect("close");
                let foreign = lines(&files(other.path())[0]);
                let mut all = lines(&m.files[1]);
                let seq = line_seq(&all[1]);
                all[1] = foreign[seq as usize].clone();
                write_lines(&m.files[1], &all);
                (1, 2, Some(seq))
            },
            problem: "previous_hash is not the content_hash",
        },
        Case {
            name: "seq 0 chained to a predecessor (forged with the key)",
            tamper: |m| {
                let mut all = lines(&m.files[0]);
                let entry = records(1).remove(0).bytes;
                all[0] = signed_entry_line(0, &entry, &"1".repeat(64));
                write_lines(&m.files[0], &all);
                (0, 1, Some(0))
            },
            problem: "seq 0 has a non-zero previous_hash",
        },
        Case {
            name: "deleted line",
            tamper: |m| {
                let mut all = lines(&m.files[1]);
                let seq = line_seq(&all[2]);
                all.remove(1);
                write_lines(&m.files[1], &all);
                (1, 2, Some(seq))
            },
            problem: "follows seq",
        },
        Case {
            name: "swapped lines",
            tamper: |m| {
                let mut all = lines(&m.files[2]);
                let seq = line_seq(&all[2]);
                all.swap(1, 2);
                write_lines(&m.files[2], &all);
                (2, 2, Some(seq))
            },
            problem: "follows seq",
        },
        Case {
            name: "first line of a rotated file deleted",
            tamper: |m| {
                let mut all = lines(&m.files[0]);
                all.remove(0);
                let last = line_seq(&all[all.len() - 2]);
                write_lines(&m.files[0], &all);
                (0, last_index(&all), Some(last))
            },
            problem: "the seal counts",
        },
        Case {
            name: "last entry before a seal deleted",
            tamper: |m| {
                let mut all = lines(&m.files[1]);
                let n = all.len();
                all.remove(n - 2);
                let last = line_seq(&all[n - 3]);
                write_lines(&m.files[1], &all);
                (1, last_index(&all), Some(last))
            },
            problem: "the seal counts",
        },
        Case {
            name: "seal removed",
            tamper: |m| {
                let mut all = lines(&m.files[1]);
                all.pop();
                let last = line_seq(&all[all.len() - 1]);
                write_lines(&m.files[1], &all);
                (1, last_index(&all) + 1, Some(last))
            },
            problem: "no seal",
        },
        Case {
            name: "seal count edited",
            tamper: |m| {
                let all = lines(&m.files[0]);
                let last = line_seq(&all[all.len() - 2]);
                let n = all.len();
                edit_line(&m.files[0], n, |l| {
                    l.replace(&format!("\"lines\":{}", n - 1), "\"lines\":1")
                });
                (0, n as u64, Some(last))
            },
            problem: "seal's signature does not verify",
        },
        Case {
            name: "middle file deleted",
            tamper: |m| {
                let gone = m.files.remove(1);
                fs::remove_file(gone).expect("remove");
                let all = lines(&m.files[0]);
                (0, last_index(&all), Some(line_seq(&all[all.len() - 2])))
            },
            problem: "a file is missing",
        },
        Case {
            name: "file renamed",
            tamper: |m| {
                let renamed = m.files[0].with_file_name(format!("{DEFAULT_PREFIX}-000000.jsonl"));
                fs::rename(&m.files[0], &renamed).expect("rename");
                m.files[0] = renamed;
                let all = lines(&m.files[0]);
                (0, last_index(&all), Some(line_seq(&all[all.len() - 2])))
            },
            problem: "renamed",
        },
        Case {
            name: "files out of order",
            tamper: |m| {
                m.files.swap(1, 2);
                let all = lines(&m.files[0]);
                (0, last_index(&all), Some(line_seq(&all[all.len() - 2])))
            },
            problem: "out of order",
        },
        Case {
            name: "tail truncated, caught by through",
            tamper: |m| {
                let last = m.files.len() - 1;
                let mut all = lines(&m.files[last]);
                all.pop();
                write_lines(&m.files[last], &all);
                m.through = Some(19);
                (last, last_index(&all), Some(18))
            },
            problem: "tail was truncated",
        },
        Case {
            name: "whole last file deleted, caught by through",
            tamper: |m| {
                let gone = m.files.pop().expect("files");
                fs::remove_file(gone).expect("remove");
                m.through = Some(19);
                let last = m.files.len() - 1;
                let all = lines(&m.files[last]);
                (last, last_index(&all), Some(line_seq(&all[all.len() - 2])))
            },
            problem: "tail was truncated",
        },
        Case {
            name: "torn last line",
            tamper: |m| {
                let last = m.files.len() - 1;
                let mut all = lines(&m.files[last]);
                all.push("{\"seq\":20,\"entry\":{\"act".into());
                write_lines(&m.files[last], &all);
                (last, last_index(&all), Some(19))
            },
            problem: "torn last line",
        },
        Case {
            name: "line appended after a seal",
            tamper: |m| {
                let mut all = lines(&m.files[0]);
                let next = lines(&m.files[1]);
                let last = line_seq(&all[all.len() - 2]);
                all.push(next[0].clone());
                write_lines(&m.files[0], &all);
                (0, last_index(&all), Some(last))
            },
            problem: "follows the file's seal",
        },
        Case {
            name: "wrong key",
            tamper: |m| {
                m.key = vec![8; 32];
                (0, 1, Some(0))
            },
            problem: "signature does not verify",
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn truncated_tail_passes_without_through_but_reports_an_open_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = write_mirror(dir.path(), 20, 3);
    let last = &files[files.len() - 1];
    let mut all = lines(last);
    all.pop();
    write_lines(last, &all);
    let report = verify_files(&files, &KEY, None).expect("a cut tail leaves no trace in the files");
    assert!(report.open_tail);
    assert_eq!(report.last_seq, Some(18));
}

#[test]
fn a_torn_last_line_is_cut_on_reopen() {
    for torn in [
        "{\"seq\":20,\"entr",
        "\0\0\0\0\0\0",
        "garbage that is not json\n",
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_mirror(dir.path(), 20, 3);
        let last = &files[files.len() - 1];
        let intact = fs::read(last).expect("read");
        let mut with_torn = intact.clone();
        with_torn.extend_from_slice(torn.as_bytes());
        fs::write(last, &with_torn).expect("write");
        assert!(
            verify_files(&files, &KEY, None).is_err(),
            "{torn:?}: a torn line must not verify"
        );

        let mut writer = MirrorWriter::open(config(dir.path(), SMALL_FILES)).expect("reopen");
        assert_eq!(writer.next_seq(), 20, "{torn:?}");
        assert_eq!(
            fs::read(last).expect("read"),
            intact,
            "{torn:?}: only the torn part is cut"
        );
        writer.append(&records(25)[20..]).expect("append");
        writer.close().expect("close");
        verify_files(&crate::files(dir.path()), &KEY, Some(24)).expect("verifies after repair");
    }
}

#[test]
fn a_complete_but_bad_last_line_is_not_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = write_mirror(dir.path(), 20, 3);
    let last = &files[files.len() - 1];
    let n = lines(last).len();
    edit_line(last, n, |l| l.replace("\"allow\"", "\"deny!\""));
    let before = fs::read(last).expect("read");
    match MirrorWriter::open(config(dir.path(), SMALL_FILES)) {
        Err(MirrorError::Tampered { line, seq, .. }) => {
            assert_eq!((line, seq), (n as u64, Some(19)))
        }
        other => panic!("expected Tampered, got {other:?}"),
    }
    assert_eq!(fs::read(last).expect("read"), before, "evidence is kept");
}

#[test]
fn reopening_with_another_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_mirror(dir.path(), 5, 5);
    let other = MirrorConfig {
        key: vec![9; 32],
        ..config(dir.path(), SMALL_FILES)
    };
    match MirrorWriter::open(other) {
        Err(MirrorError::Tampered { problem, .. }) => assert!(problem.contains("key"), "{problem}"),
        other => panic!("expected Tampered, got {other:?}"),
    }
}

#[test]
fn resumes_when_interrupted_around_a_rotation() {
    // Interrupted after sealing a file but before creating the next one: the newest file ends
    // with a seal. And interrupted after creating the next one: the newest file is empty.
    for remove_newest in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_mirror(dir.path(), 20, 3);
        let newest = &files[files.len() - 1];
        if remove_newest {
            fs::remove_file(newest).expect("remove");
        } else {
            fs::write(newest, b"").expect("empty");
        }
        let sealed = lines(&files[files.len() - 2]);
        let last_seq = line_seq(&sealed[sealed.len() - 2]);

        let mut writer = MirrorWriter::open(config(dir.path(), SMALL_FILES)).expect("reopen");
        assert_eq!(writer.next_seq(), last_seq + 1);
        let recs = records(30);
        writer
            .append(&recs[(last_seq + 1) as usize..])
            .expect("append");
        writer.close().expect("close");
        // Verification checks that every seal names the file the chain continues in.
        verify_files(&crate::files(dir.path()), &KEY, Some(29)).expect("verifies");
    }
}

#[test]
fn configuration_is_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, MirrorConfig); 4] = [
        ("short key", MirrorConfig::new(dir.path(), vec![1; 31])),
        ("zero size", config(dir.path(), 0)),
        (
            "prefix with a slash",
            MirrorConfig {
                prefix: "../x".into(),
                ..config(dir.path(), 100)
            },
        ),
        (
            "empty prefix",
            MirrorConfig {
                prefix: String::new(),
                ..config(dir.path(), 100)
            },
        ),
    ];
    for (name, config) in cases {
        assert!(
            matches!(MirrorWriter::open(config), Err(MirrorError::Invalid(_))),
            "{name}"
        );
    }
    assert!(matches!(
        verify_files(&[], &KEY, None),
        Err(MirrorError::Invalid(_))
    ));
    assert!(fs::read_dir(dir.path()).expect("dir").next().is_none());
}

#[test]
fn keys_load_from_hex_or_base64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key: Vec<u8> = (0..40).collect();
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&key)
    };
    let cases = [
        ("hex", format!("{}\n", hex::encode(&key)), Ok(key.clone())),
        ("base64", format!("  {b64}\n"), Ok(key.clone())),
        ("short hex", hex::encode([1u8; 31]), Err("31 bytes")),
        (
            "neither",
            "not a key!".into(),
            Err("neither hex nor base64"),
        ),
        ("empty", "\n".into(), Err("empty")),
        ("odd hex is not base64 either", "abc".into(), Err("neither")),
    ];
    for (name, text, expected) in cases {
        let path = dir.path().join(name);
        fs::write(&path, &text).expect("write key");
        match (load_key(&path), expected) {
            (Ok(k), Ok(want)) => assert_eq!(k, want, "{name}"),
            (Err(MirrorError::Invalid(msg)), Err(needle)) => {
                assert!(msg.contains(needle), "{name}: {msg}");
                assert!(
                    !msg.contains("not a key"),
                    "{name}: the key text leaked: {msg}"
                );
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
    assert!(matches!(
        load_key(&dir.path().join("missing")),
        Err(MirrorError::Io { .. })
    ));
}

/// xorshift64*, so the hostile-input tests are reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn every_byte_change_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer = MirrorWriter::open(config(dir.path(), 1_000)).expect("open");
    writer.append(&records(4)).expect("append");
    writer.close().expect("close");
    let files = files(dir.path());
    assert!(files.len() >= 2);
    verify_files(&files, &KEY, None).expect("verifies");
    let mut rng = Rng(0x5eed);
    for file in &files {
        let original = fs::read(file).expect("read");
        for at in 0..original.len() {
            let mut changed = original.clone();
            changed[at] ^= 1 + (rng.below(255) as u8);
            fs::write(file, &changed).expect("write");
            assert!(
                verify_files(&files, &KEY, None).is_err(),
                "{}: change at byte {at} went unnoticed",
                file.display()
            );
        }
        fs::write(file, &original).expect("restore");
    }
}

#[test]
fn hostile_files_give_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write_mirror(dir.path(), 8, 8);
    let last = good[good.len() - 1].clone();
    let good_bytes = fs::read(&last).expect("read");
    let mut rng = Rng(42);
    let alphabet = b"{}[]\":,0123456789abcdef\n seqentryseal\\\xff\x00";
    for round in 0..300 {
        let len = 1 + rng.below(400);
        let bytes: Vec<u8> = if round % 3 == 0 {
            (0..len).map(|_| rng.next() as u8).collect()
        } else if round % 3 == 1 {
            (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect()
        } else {
            // A valid prefix with a random splice.
            let mut b = good_bytes.clone();
            let at = rng.below(b.len());
            b.truncate(at);
            b.extend((0..rng.below(40)).map(|_| alphabet[rng.below(alphabet.len())]));
            b
        };
        fs::write(&last, &bytes).expect("write");
        let _ = verify_files(&good, &KEY, Some(7));
        let _ = verify_files(std::slice::from_ref(&last), &KEY, None);
        // Reopening either resumes or refuses; it never panics.
        if let Ok(writer) = MirrorWriter::open(config(dir.path(), SMALL_FILES)) {
            writer.close().expect("close");
        }
    }
}

#[test]
fn reopening_after_a_cut_at_any_byte_resumes_a_verifiable_mirror() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = write_mirror(dir.path(), 12, 12);
    let last = files[files.len() - 1].clone();
    let full = fs::read(&last).expect("read");
    let newlines = full.iter().filter(|b| **b == b'\n').count() as u64;
    let first_in_last = 12 - newlines;
    for cut in 0..=full.len() {
        fs::write(&last, &full[..cut]).expect("cut");
        let whole_lines = full[..cut].iter().filter(|b| **b == b'\n').count() as u64;
        let writer = MirrorWriter::open(config(dir.path(), SMALL_FILES)).expect("reopen");
        assert_eq!(
            writer.next_seq(),
            first_in_last + whole_lines,
            "cut at {cut}"
        );
        writer.close().expect("close");
        let report = verify_files(&files, &KEY, None).expect("verifies after repair");
        assert_eq!(report.last_seq, Some(first_in_last + whole_lines - 1));
    }
}

//! SPEC §3.4 on real files: each test damages the data directory the way an attacker or a
//! failing disk would, and `custos verify` must fail (exit 1) naming the seq and the kind.

mod support;

use support::*;

const N: u64 = 40;

fn expect_failure(data: &std::path::Path, kind: &str, seq: Option<u64>) -> serde_json::Value {
    let (code, report) = verify(data);
    assert_eq!(code, 1, "verify must exit 1, report: {report}");
    let failure = &report["failure"];
    assert_eq!(failure["kind"], kind, "report: {report}");
    if let Some(seq) = seq {
        assert_eq!(failure["seq"], seq, "report: {report}");
    }
    report
}

#[test]
fn intact_ledger_verifies() {
    let (_tmp, data) = ledger_with(N);
    let (code, report) = verify(&data);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["entries"], N);
    assert_eq!(report["latest_checkpoint"], N);
    assert!(report["failure"].is_null());
}

#[test]
fn changed_field_with_valid_crc_is_named() {
    let (_tmp, data) = ledger_with(N);
    let seg = segment_path(&data);
    let mut recs = read_records(&seg);
    let text = String::from_utf8(recs[17].payload.clone()).expect("utf8");
    assert!(text.contains("\"action\":\"allow\""));
    // Same length, still canonical JSON: only the hash can tell.
    recs[17].payload = text
        .replace("\"action\":\"allow\"", "\"action\":\"alloW\"")
        .into_bytes();
    write_records(&seg, &recs);
    expect_failure(&data, "changed_entry", Some(17));
}

#[test]
fn changed_byte_anywhere_in_a_record_is_named() {
    let (_tmp, data) = ledger_with(N);
    let seg = segment_path(&data);
    let mut bytes = std::fs::read(&seg).expect("read");
    let recs = read_records(&seg);
    let offset: usize = recs[..23]
        .iter()
        .map(|r| 16 + r.payload.len())
        .sum::<usize>()
        + 16
        + 40;
    bytes[offset] ^= 0x01;
    std::fs::write(&seg, bytes).expect("write");
    expect_failure(&data, "corrupt_record", Some(23));
}

#[test]
fn deleted_entry_is_named() {
    let (_tmp, data) = ledger_with(N);
    let seg = segment_path(&data);
    let mut recs = read_records(&seg);
    recs.remove(11);
    write_records(&seg, &recs);
    expect_failure(&data, "missing_entry", Some(11));
}

#[test]
fn reordered_entries_are_named() {
    let (_tmp, data) = ledger_with(N);
    let seg = segment_path(&data);
    let mut recs = read_records(&seg);
    recs.swap(5, 6);
    write_records(&seg, &recs);
    expect_failure(&data, "reordered_entries", Some(5));
}

#[test]
fn truncated_tail_is_named_against_the_last_checkpoint() {
    let (_tmp, data) = ledger_with(N);
    let seg = segment_path(&data);
    let mut recs = read_records(&seg);
    recs.truncate(31);
    write_records(&seg, &recs);
    let report = expect_failure(&data, "truncated", Some(31));
    assert_eq!(report["failure"]["checkpoint_size"], N);
    // And the ledger refuses to open it for appending.
    let out = custos(&data, &["append", &entry_line(99)]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));
}

#[test]
fn inserted_entry_is_named() {
    let (_tmp, data) = ledger_with(N);
    let seg = segment_path(&data);
    let mut recs = read_records(&seg);
    let copy = recs[8].clone();
    recs.insert(9, copy);
    write_records(&seg, &recs);
    expect_failure(&data, "inserted_entry", Some(9));
}

#[test]
fn forged_checkpoint_is_named() {
    let (_tmp, data) = ledger_with(N);
    // Rewrite the checkpoint's root in the checkpoint log, with a valid CRC: only the
    // signature can tell.
    let path = data.join("checkpoints").join("checkpoints.log");
    let bytes = std::fs::read(&path).expect("read");
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4")) as usize;
    let size = u64::from_le_bytes(bytes[8..16].try_into().expect("8"));
    let issued = i128::from_le_bytes(bytes[16..32].try_into().expect("16"));
    let note = String::from_utf8(bytes[32..32 + len].to_vec()).expect("utf8");
    let mut lines: Vec<&str> = note.split('\n').collect();
    let forged_root = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    assert_eq!(lines[2].len(), forged_root.len());
    lines[2] = forged_root;
    let forged = lines.join("\n");
    let mut rec = Vec::new();
    let mut crc = crc32c::crc32c(&size.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &issued.to_le_bytes());
    crc = crc32c::crc32c_append(crc, forged.as_bytes());
    rec.extend_from_slice(&(forged.len() as u32).to_le_bytes());
    rec.extend_from_slice(&crc.to_le_bytes());
    rec.extend_from_slice(&size.to_le_bytes());
    rec.extend_from_slice(&issued.to_le_bytes());
    rec.extend_from_slice(forged.as_bytes());
    rec.extend_from_slice(&bytes[32 + len..]);
    std::fs::write(&path, rec).expect("write");
    let report = expect_failure(&data, "forged_checkpoint", None);
    assert_eq!(report["failure"]["checkpoint_size"], N);
}

#[test]
fn changed_tree_hash_is_named() {
    let (_tmp, data) = ledger_with(N);
    let path = data.join("tree").join("level-00.hashes");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[32 * 29 + 3] ^= 0x80;
    std::fs::write(&path, bytes).expect("write");
    expect_failure(&data, "changed_entry", Some(29));
}

#[test]
fn entry_and_its_tree_leaf_rewritten_together_break_the_chain() {
    let (_tmp, data) = ledger_with(N);
    let seg = segment_path(&data);
    let mut recs = read_records(&seg);
    let text = String::from_utf8(recs[12].payload.clone()).expect("utf8");
    recs[12].payload = text
        .replace("\"action\":\"allow\"", "\"action\":\"alloW\"")
        .into_bytes();
    write_records(&seg, &recs);
    let leaf = custos_core::merkle::leaf_hash(&recs[12].payload);
    let path = data.join("tree").join("level-00.hashes");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[32 * 12..32 * 13].copy_from_slice(&leaf);
    std::fs::write(&path, bytes).expect("write");
    expect_failure(&data, "broken_chain", Some(13));
}

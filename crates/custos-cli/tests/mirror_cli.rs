//! `custos mirror sync` and `custos mirror verify` end to end on real files.

mod support;

use support::*;

#[test]
fn sync_then_verify_then_detect_a_deleted_line() {
    let (tmp, data) = ledger_with(25);
    let key = tmp.path().join("mirror.key");
    std::fs::write(
        &key,
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    )
    .expect("key");
    let dir = tmp.path().join("mirror");
    let sync = |expect: &str| {
        let out = ok(&custos(
            &data,
            &[
                "mirror",
                "sync",
                "--dir",
                dir.to_str().expect("utf8"),
                "--key-file",
                key.to_str().expect("utf8"),
            ],
        ));
        assert!(out.contains(expect), "{out}");
    };
    sync("mirrored 25 entries");
    ok(&custos_stdin(
        &data,
        &["append"],
        &(entry_line(100) + "\n" + &entry_line(101) + "\n"),
    ));
    sync("mirrored 2 entries");
    sync("mirrored 0 entries");
    let file = std::fs::read_dir(&dir)
        .expect("dir")
        .next()
        .expect("a file")
        .expect("entry")
        .path();
    let verify = |through: &str| {
        custos(
            &data,
            &[
                "mirror",
                "verify",
                file.to_str().expect("utf8"),
                "--key-file",
                key.to_str().expect("utf8"),
                "--through",
                through,
            ],
        )
    };
    let out = ok(&verify("26"));
    assert!(out.contains("27 entries"), "{out}");
    // A mirror that stops short of what the ledger has is caught with --through.
    assert_eq!(verify("27").status.code(), Some(1));
    // Delete one line in the middle.
    let text = std::fs::read_to_string(&file).expect("read");
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 10)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&file, kept.join("\n") + "\n").expect("write");
    let out = verify("26");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("seq 11") || err.contains("line 11"), "{err}");
}

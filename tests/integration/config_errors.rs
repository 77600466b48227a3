//! Integration tests: config and rule errors are reported with file, line and column.

use crate::util::backstop;

/// (config text, expected line, expected column, a word the message must contain)
const CASES: &[(&str, u64, u64, &str)] = &[
    (
        "own:\n  domains: [example.org]\n  networks: [192.0.2.0/24, 300.1.2.3/8]\n",
        3,
        28,
        "invalid network",
    ),
    (
        "own:\n  domians: [example.org]\n",
        2,
        3,
        "unknown key \"domians\": did you mean domains?",
    ),
    (
        "rules:\n  - id: mine\n    field: subject\n    match: ['(unclosed']\n    score: 5\n",
        4,
        13,
        "regex",
    ),
    (
        "rules:\n  - id: mine\n    field: subjet\n    match: [x]\n    score: 5\n",
        3,
        12,
        "unknown field",
    ),
    (
        "rules:\n  - id: mine\n    field: subject\n    match: [x]\n",
        2,
        9,
        "needs a score",
    ),
    (
        "actions:\n  unverified-bounce: discard\n",
        2,
        22,
        "only backscatter",
    ),
    (
        "threshold: maybe\n",
        1,
        12,
        "threshold takes a whole number, e.g. threshold: 5",
    ),
    (
        "own: {domains: example.org}\n",
        1,
        16,
        "domains takes a list, e.g. domains: [example.org]",
    ),
    (
        "max_size: 32 parsecs\n",
        1,
        11,
        "expected bytes, or a number with K, M or G",
    ),
    (
        "threshold: 5\nthreshold: 6\n",
        2,
        1,
        "threshold is given twice: give each key once",
    ),
    (
        "actions:\n  backscatter: foldr\n",
        2,
        16,
        "unknown value \"foldr\": did you mean folder? (expected one of inbox, folder, discard)",
    ),
    (
        "trace_headers: yes\n",
        1,
        16,
        "trace_headers takes true or false",
    ),
    ("own:\n\tdomains: [x]\n", 2, 2, "tabs"),
];

#[test]
fn errors_name_file_line_and_column() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (i, (text, line, col, word)) in CASES.iter().enumerate() {
        let path = tmp.path().join(format!("bad{i}.yaml"));
        std::fs::write(&path, text).expect("write");
        let want = format!("{}:{line}:{col}: ", path.display());
        for args in [
            vec!["lint".to_string()],
            vec![
                "check".to_string(),
                "-c".to_string(),
                "/dev/null".to_string(),
            ],
        ] {
            let mut cmd = backstop(tmp.path());
            if args[0] == "lint" {
                cmd.arg("lint").arg(&path);
            } else {
                cmd.arg("check").arg("-c").arg(&path).arg("/dev/null");
            }
            let out = cmd.output().expect("run");
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err.strip_prefix("backstop: ").unwrap_or(&err);
            assert_eq!(out.status.code(), Some(2), "case {i} ({}): {err}", args[0]);
            assert!(
                err.starts_with(&want),
                "case {i} ({}): want prefix {want:?}, got {err:?}",
                args[0]
            );
            assert!(err.contains(word), "case {i}: {err:?} lacks {word:?}");
        }
    }
}

#[test]
fn a_good_file_lints_clean() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("good.yaml");
    std::fs::write(&path, "own:\n  domains: [example.org]\n  hosts: [mail.example.org, \"*.out.example.org\"]\n  networks: [192.0.2.0/24, 2001:db8::/32, 198.51.100.7]\nrules:\n  - id: my-alert\n    field: subject\n    match: ['^ALERT:']\n    score: 6\n    kind: ndr\n").expect("write");
    let out = backstop(tmp.path())
        .arg("lint")
        .arg(&path)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn every_error_of_a_file_is_reported_in_one_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("bad.yaml");
    std::fs::write(
        &path,
        "own:\n  networks: [300.1.1.1/8]\n  domains: [a b]\nthreshold: 0\ncpu_budget_ms: 1\n",
    )
    .expect("write");
    let out = backstop(tmp.path())
        .arg("lint")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let p = path.display();
    for want in [
        format!("{p}:2:14: invalid network"),
        format!("{p}:3:13: invalid domain"),
        format!("{p}:4:12: threshold must be at least 1"),
        format!("{p}:5:16: cpu_budget_ms must be between"),
    ] {
        assert!(
            err.lines().any(|l| l.starts_with(&want)),
            "{want:?} missing from {err}"
        );
    }
}

#[test]
fn max_size_takes_size_suffixes() {
    for (text, bytes) in [
        ("32M", 32 << 20),
        ("512 KiB", 512 << 10),
        ("1G", 1 << 30),
        ("1000", 1000),
        ("2mb", 2 << 20),
    ] {
        let c = backstop::config::Config::from_str(&format!("max_size: {text}\n"), "c.yaml")
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(c.max_size, bytes, "{text}");
    }
}

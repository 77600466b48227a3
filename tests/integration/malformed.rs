//! Integration tests: malformed, hostile and huge input still gets a verdict, never a panic.

use crate::util::{backstop, run_with_input};

/// Inputs built in code: each is a way real mail goes wrong.
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&'static str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("no headers", b"just some text\nand more\n".to_vec()),
        ("only a From_ line", b"From MAILER-DAEMON Fri Jan  2 00:00:00 2026\n".to_vec()),
        ("binary garbage", (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()),
        ("NUL in subject", b"Subject: a\0b\nFrom: <>\n\nx\n".to_vec()),
        ("CR only", b"Return-Path: <>\rSubject: Undelivered Mail Returned to Sender\rFrom: MAILER-DAEMON@x.example\r\rThis is the mail system at host x.\r".to_vec()),
        ("unterminated multipart", b"Return-Path: <>\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nAction: failed\n--b\nContent-Type: message/rfc822\n\nReceived: from a by b\n".to_vec()),
        ("boundary never used", b"Content-Type: multipart/mixed; boundary=zzz\nSubject: x\n\nbody\n".to_vec()),
        ("broken base64 original", b"Return-Path: <>\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n!!!!not base64@@@@\n--b--\n".to_vec()),
        ("8-bit headers", b"Subject: caf\xe9 \xff\xfe\nFrom: \xc3\x28 <a@b.example>\n\n\xff\n".to_vec()),
        ("huge header line", { let mut m = b"Subject: ".to_vec(); m.extend(std::iter::repeat_n(b'x', 2_000_000)); m.extend(b"\n\nbody\n"); m }),
        ("many Received", { let mut m = Vec::new(); for i in 0..20_000 { m.extend(format!("Received: from h{i} ([10.0.0.1]) by h{i}\n").as_bytes()); } m.extend(b"Return-Path: <>\n\nx\n"); m }),
        ("debug-assert reproducer", b"0\nContent-Type:multipart/\n\tboundary=outer-b\n\n--outer-bContent-Type:message/rfc822\n\nb\nContent-Type:message/rfc822\n\n\n--outer-b--".to_vec()),
    ];
    let mut nested = Vec::new();
    for _ in 0..5_000 {
        nested.extend(b"Content-Type: multipart/mixed; boundary=q\n\n--q\n");
    }
    v.push(("5000 nested multiparts", nested));
    let mut siblings = b"Content-Type: multipart/mixed; boundary=b\nReturn-Path: <>\n\n".to_vec();
    for _ in 0..50_000 {
        siblings.extend(b"--b\nContent-Type: text/plain\n\nx\n");
    }
    v.push(("50000 sibling parts", siblings));
    let mut deep = Vec::new();
    for _ in 0..20_000 {
        deep.extend(b"Content-Type: message/rfc822\n\n");
    }
    deep.extend(b"Subject: bottom\n\nx\n");
    v.push(("20000 nested message/rfc822", deep));
    v
}

#[test]
fn malformed_input_gets_a_verdict() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (name, input) in cases() {
        let out = run_with_input(
            backstop(tmp.path()).args(["check", "--format", "word"]),
            &input,
        );
        assert!(
            out.status.success(),
            "{name}: exit {:?}, {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let word = String::from_utf8_lossy(&out.stdout);
        assert!(
            ["clean", "legit-bounce", "backscatter", "unverified-bounce"].contains(&word.as_ref()),
            "{name}: {word}"
        );
        let maildir = tmp.path().join("Maildir");
        let out = run_with_input(backstop(tmp.path()).arg("deliver").arg(&maildir), &input);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: deliver {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

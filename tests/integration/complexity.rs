//! Integration tests: no hostile message costs more than linear time (issue 11).
//!
//! The sender writes every byte, so each shape below grows one part of a message that
//! evaluation walks (In-Reply-To/References IDs, Received lines, pasted header lines, MIME
//! parts, one long header, report wording, recipients) and measures the CPU time of
//! `evaluate` at two sizes eight times apart. Linear work grows about eightfold; quadratic
//! work grows sixtyfourfold. The test fails when the growth passes 24: no wall-clock bound,
//! only a ratio of CPU times taken in one run (the best of three at each size), which a
//! loaded machine shifts for both sizes alike.

use std::time::Duration;

use backstop::config::Config;
use backstop::message::EnvVars;
use backstop::rules::RuleSet;
use backstop::verdict::evaluate;

/// The smaller size; the larger one is eight times this.
const BASE: usize = 48 * 1024;
/// The largest growth accepted for an eightfold input (linear is 8, n log n about 10).
const MAX_GROWTH: f64 = 24.0;

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The best of three CPU times of evaluating `message`.
fn cost(message: &[u8], config: &Config, rules: &RuleSet) -> Duration {
    let env = EnvVars {
        sender: Some(String::new()),
        recipient: Some(("RECIPIENT".into(), "user@example.org".into())),
        ..EnvVars::default()
    };
    (0..3)
        .map(|_| {
            let start = thread_cpu();
            let eval = evaluate(message, config, rules, &env);
            let spent = thread_cpu() - start;
            // Dropped outside the measured span; kept alive so the work is not skipped.
            std::hint::black_box(eval);
            spent
        })
        .min()
        .unwrap_or_default()
}

/// Repeats `unit(i)` for i = 0, 1, ... until `size` bytes are written.
fn fill(size: usize, unit: impl Fn(usize) -> String) -> String {
    let mut out = String::with_capacity(size + 256);
    let mut i = 0;
    while out.len() < size {
        out.push_str(&unit(i));
        i += 1;
    }
    out
}

const DSN_HEAD: &str = "From: Mail Delivery System <MAILER-DAEMON@mx.remote.example>\r\n\
To: user@example.org\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Auto-Submitted: auto-replied\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
--B\r\nContent-Type: text/plain\r\n\r\nI could not deliver your message.\r\n\
--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.remote.example\r\n\r\n\
Final-Recipient: rfc822; x@remote.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
--B\r\nContent-Type: message/rfc822\r\n\r\n";

/// The hostile shapes: a name and a message of about `size` bytes.
fn shapes(size: usize) -> Vec<(&'static str, String)> {
    let vacation = "From: user@remote.example\r\nTo: user@example.org\r\n\
Subject: Out of office\r\nAuto-Submitted: auto-replied\r\n";
    vec![
        (
            "an auto-reply naming many short Message-IDs in folded References",
            format!(
                "{vacation}In-Reply-To: <a@example.org>\r\nReferences: {}\r\n\r\nI am away.\r\n",
                fill(size, |i| format!("{i}@\r\n "))
            ),
        ),
        (
            "an auto-reply naming the same Message-ID again and again",
            format!(
                "{vacation}References: {}\r\n\r\nI am away.\r\n",
                fill(size, |_| "<x@example.org>\r\n ".to_string())
            ),
        ),
        (
            "a DSN whose returned original has many Received lines",
            format!(
                "{DSN_HEAD}{}From: user@example.org\r\nMessage-ID: <1@example.org>\r\n\r\nhi\r\n--B--\r\n",
                fill(size, |i| format!(
                    "Received: from h{i}.example.net (h{i}.example.net [192.0.2.{}]) by mx{i}.example.com with ESMTP id {i}; Mon, 1 Jan 2024 00:00:00 +0000\r\n",
                    i % 250
                ))
            ),
        ),
        (
            "a bounce with many header lines pasted inline",
            format!(
                "From: MAILER-DAEMON@mx.remote.example\r\nTo: user@example.org\r\n\
Subject: failure notice\r\n\r\nSorry, I couldn't deliver it.\r\n\r\n--- Below this line is a copy of the message.\r\n\r\n{}\r\nbody\r\n",
                fill(size, |i| format!(
                    "Received: from a{i}.example.net ([198.51.100.{}]) by b{i}.example.com; Mon, 1 Jan 2024 00:00:00 +0000\r\n",
                    i % 250
                ))
            ),
        ),
        (
            "a bounce of many MIME parts",
            format!(
                "From: MAILER-DAEMON@mx.remote.example\r\nTo: user@example.org\r\nSubject: Undeliverable\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"P\"\r\n\r\n{}--P--\r\n",
                fill(size, |i| format!(
                    "--P\r\nContent-Type: text/plain\r\n\r\nDelivery to user{i} failed permanently.\r\n"
                ))
            ),
        ),
        (
            "one unfolded Subject line",
            format!(
                "From: MAILER-DAEMON@mx.remote.example\r\nTo: user@example.org\r\nSubject: {}\r\n\r\nbody\r\n",
                fill(size, |i| format!(
                    "Undelivered Mail {i} returned to sender "
                ))
            ),
        ),
        (
            "a report body full of NDR wording",
            format!(
                "From: MAILER-DAEMON@mx.remote.example\r\nTo: user@example.org\r\nSubject: failure\r\n\r\n{}",
                fill(size, |i| format!(
                    "<u{i}@remote.example>: host mx.remote.example said: 550 5.1.1 user unknown (in reply to RCPT TO command)\r\n"
                ))
            ),
        ),
        (
            "one Received line of many words in the returned original",
            format!(
                "{DSN_HEAD}Received: {}\r\nMessage-ID: <2@example.org>\r\n\r\nhi\r\n--B--\r\n",
                fill(size, |i| format!(
                    "from x{i} by y{i} with z ([10.0.0.{}]) ",
                    i % 250
                ))
            ),
        ),
        (
            "many recipients in To",
            format!(
                "From: MAILER-DAEMON@mx.remote.example\r\nSubject: Undeliverable\r\nTo: {}\r\n\r\nbody\r\n",
                fill(size, |i| format!("u{i}@example.org,\r\n "))
            ),
        ),
        (
            "nested returned messages",
            format!("{}hi\r\n", fill(size, |_| DSN_HEAD.to_string())),
        ),
    ]
}

#[test]
fn evaluation_time_grows_linearly_with_every_hostile_shape() {
    let config: Config = Config::from_str(
        "own:\n  domains: [example.org]\n  hosts: [mail.example.org]\n  networks: [192.0.2.1]\n",
        "test.yaml",
    )
    .expect("the test config loads");
    let rules = RuleSet::build(&config.user_rules, "test.yaml").expect("the default rules build");
    let small = shapes(BASE);
    let large = shapes(8 * BASE);
    let mut report = Vec::new();
    let mut failed = Vec::new();
    for ((name, s), (_, l)) in small.iter().zip(&large) {
        let (cs, cl) = (
            cost(s.as_bytes(), &config, &rules),
            cost(l.as_bytes(), &config, &rules),
        );
        // A floor of 1 ms keeps a tiny base time from making noise look like growth.
        let growth = cl.as_secs_f64() / cs.as_secs_f64().max(0.001);
        let line = format!(
            "{name}: {} KB in {cs:?}, {} KB in {cl:?}: x{growth:.1}",
            s.len() / 1024,
            l.len() / 1024
        );
        if growth > MAX_GROWTH {
            failed.push(line.clone());
        }
        report.push(line);
    }
    println!("{}", report.join("\n"));
    assert!(
        failed.is_empty(),
        "super-linear evaluation (growth over x{MAX_GROWTH} for an eightfold input):\n{}",
        failed.join("\n")
    );
}

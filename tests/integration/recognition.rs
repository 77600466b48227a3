//! Integration tests: bounces are recognised by their structure, in wording no rule knows, and
//! people who paste the same structure into a post are not (issue 13, docs/recognition.md).

use backstop::config::Config;
use backstop::message::EnvVars;
use backstop::rules::RuleSet;
use backstop::verdict::{Verdict, evaluate};

fn verdict(raw: &str) -> Verdict {
    let config = Config::from_str(
        "own: {domains: [not-in-message.invalid], hosts: [mx.not-in-message.invalid]}",
        "test",
    )
    .expect("config");
    let rules = RuleSet::build(&[], "none").expect("rules");
    evaluate(raw.as_bytes(), &config, &rules, &EnvVars::default()).verdict
}

/// A report in words no rule knows (subject and text): only its sender and its structure speak.
const UNKNOWN_WORDING_REPORT: &str = "From: MAILER-DAEMON <>\n\
To: kijitora@example.jp\n\
Subject: Rapport 17\n\
Message-Id: <r17@mx.example.net>\n\
Date: Tue, 11 Jun 2024 18:02:02 +0900\n\
\n\
Zorg kon het bericht niet afleveren.\n\
\n\
mx.example.org [192.0.2.7]:\n\
550 5.1.1 <neko@example.org>: Recipient address rejected\n\
\n\
Received: from mail.example.jp (mail.example.jp [192.0.2.1])\n\
\tby mx.example.net; Tue, 11 Jun 2024 18:02:00 +0900\n\
Message-Id: <66681288@example.jp>\n\
From: <kijitora@example.jp>\n\
Subject: Nyaan\n";

#[test]
fn a_daemon_report_in_unknown_words_is_recognised_by_its_status_code_and_pasted_headers() {
    assert_ne!(verdict(UNKNOWN_WORDING_REPORT), Verdict::Clean);
}

#[test]
fn a_daemon_sender_alone_is_not_a_bounce() {
    let bare = "From: MAILER-DAEMON <>\nTo: kijitora@example.jp\nSubject: Rapport 17\n\nZorg.\n";
    assert_eq!(verdict(bare), Verdict::Clean);
}

#[test]
fn a_person_pasting_a_status_code_a_dialogue_and_headers_is_not_a_bounce() {
    let post = "From: Dermot <dermot@example.ie>\n\
To: list@example.ie\n\
Subject: why does my relay refuse this?\n\
Message-Id: <p1@example.ie>\n\
\n\
My server logged this:\n\
\n\
>>> RCPT TO:<neko@example.org>\n\
<<< 550 5.1.1 <neko@example.org>: Recipient address rejected\n\
\n\
and the message had\n\
\n\
Received: from mail.example.jp (mail.example.jp [192.0.2.1])\n\
\tby mx.example.net; Tue, 11 Jun 2024 18:02:00 +0900\n\
Message-Id: <66681288@example.jp>\n\
\n\
Any idea?\n";
    assert_eq!(verdict(post), Verdict::Clean);
}

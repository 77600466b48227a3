//! The one evaluation of a message: is it a bounce, whose, and what to do with it, with every reason.

use serde::Serialize;

use crate::config::{Action, Config};
use crate::evidence::anchor::Anchor;
use crate::evidence::original::{self, Original};
use crate::evidence::own::Own;
use crate::evidence::ownership::{self, DECISION_MARGIN, Evidence};
use crate::evidence::received::{JudgedHop, judge_chain};
use crate::message::{self, EnvVars, Envelope};
use crate::proofs::{self, alarm::WaveFacts};
use crate::rules::{Facts, Kind, RuleHit, RuleSet};

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Clean,
    LegitBounce,
    Backscatter,
    UnverifiedBounce,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::LegitBounce => "legit-bounce",
            Verdict::Backscatter => "backscatter",
            Verdict::UnverifiedBounce => "unverified-bounce",
        }
    }
}

/// The user's own infrastructure as it was used, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct OwnView {
    pub domains: Vec<String>,
    pub message_id_domains: Vec<String>,
    pub hosts: Vec<String>,
    pub networks: Vec<String>,
    pub notes: Vec<String>,
}

impl From<&Own> for OwnView {
    fn from(own: &Own) -> OwnView {
        OwnView {
            domains: own.domains.clone(),
            message_id_domains: own.message_id_domains.clone(),
            hosts: own.hosts.iter().map(|h| h.as_str().to_string()).collect(),
            networks: own.networks.iter().map(|n| n.to_string()).collect(),
            notes: own.origin.clone(),
        }
    }
}

/// The original as found, with its judged hops.
#[derive(Debug, Clone, Serialize)]
pub struct OriginalView {
    #[serde(flatten)]
    pub original: Original,
    #[serde(rename = "hops")]
    pub judged: Vec<JudgedHop>,
    /// Who wrote the report: the hops are believed from it down.
    pub anchor: Anchor,
}

/// The whole decision and the path it took.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub verdict: Verdict,
    pub kind: Option<Kind>,
    pub action: Action,
    /// One line per reason, strongest first.
    pub reasons: Vec<String>,
    pub original: Option<OriginalView>,
    /// The bounce score and the threshold it was held against.
    pub score: i32,
    pub threshold: i32,
    /// Every rule that matched.
    pub rules: Vec<RuleHit>,
    /// How many rules were tried.
    pub rules_tried: usize,
    /// The ownership evidence and its total.
    pub evidence: Vec<Evidence>,
    pub ownership: i32,
    pub envelope: Envelope,
    pub own: Option<OwnView>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<String>,
    /// Things that shaped the decision outside the rules (size limits, parse failures).
    pub notes: Vec<String>,
    /// Why the message could not be judged (the CPU budget ran out); written as
    /// `X-Backstop-Error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a legitimate bounce: what the wave alarm records of it (`crate::proofs::alarm`).
    #[serde(skip)]
    pub wave: Option<WaveFacts>,
}

impl Evaluation {
    /// A verdict reached without reading the message (too large, or no headers).
    pub fn unparsed(note: String, envelope: Envelope) -> Evaluation {
        Evaluation {
            verdict: Verdict::Clean,
            kind: None,
            action: Action::Inbox,
            reasons: vec![note.clone()],
            original: None,
            score: 0,
            threshold: 0,
            rules: Vec::new(),
            rules_tried: 0,
            evidence: Vec::new(),
            ownership: 0,
            envelope,
            own: None,
            message_id: None,
            subject: None,
            from: None,
            notes: vec![note],
            error: None,
            wave: None,
        }
    }
}

/// Evaluates one message (`raw` may start with an mbox From_ line).
pub fn evaluate(raw: &[u8], config: &Config, rules: &RuleSet, env: &EnvVars) -> Evaluation {
    let (from_line, message_bytes) = message::split_from_line(raw);
    let analysed = message::for_analysis(message_bytes);
    let Some(mail) = message::parse(&analysed) else {
        let envelope = Envelope::learn(env, None, from_line);
        return Evaluation::unparsed(
            "the input has no header: delivered as it is".into(),
            envelope,
        );
    };
    let envelope = Envelope::learn(env, Some(&mail), from_line);
    let facts = Facts::new(&mail, envelope.sender.as_deref());
    let hits = rules.evaluate(&facts);
    let score: i32 = hits.iter().map(|h| h.score).sum();
    let mut eval = Evaluation {
        verdict: Verdict::Clean,
        kind: None,
        action: Action::Inbox,
        reasons: Vec::new(),
        original: None,
        score,
        threshold: config.threshold,
        rules: hits,
        rules_tried: rules.rules.len(),
        evidence: Vec::new(),
        ownership: 0,
        envelope,
        own: None,
        message_id: mail.message_id().map(str::to_string),
        subject: mail.subject().map(str::to_string),
        from: message::from_text(&mail),
        notes: Vec::new(),
        error: None,
        wave: None,
    };
    if mail.headers_only {
        eval.notes.push(format!(
            "more than {} MIME parts: only the top-level headers were read",
            message::MAX_PARTS
        ));
    }
    if score < config.threshold {
        eval.reasons.push(format!(
            "not a bounce or automatic reply: score {score} is below the threshold {}",
            config.threshold
        ));
        return eval;
    }
    let kind = choose_kind(&eval.rules);
    eval.kind = Some(kind);
    eval.reasons.push(format!(
        "{} (score {score} reaches the threshold {}; strongest: {})",
        kind_sentence(kind),
        config.threshold,
        strongest(&eval.rules)
    ));

    let own = config.own(eval.envelope.recipient_domain());
    let found = original::find(&mail).or_else(|| {
        (kind == Kind::AutoReply || kind == Kind::ChallengeResponse)
            .then(|| original::references(&mail))
            .flatten()
    });
    let mut bounce = proofs::Bounce {
        original: None,
        addressed_to: proofs::addressed_to(&mail, &env.recipients),
        date: proofs::date_of(&mail),
        now: proofs::now(),
    };
    let Some(original) = found else {
        eval.own = Some(OwnView::from(&own));
        eval.verdict = Verdict::UnverifiedBounce;
        eval.reasons
            .push("no part of the original came back, so there is nothing to judge it by".into());
        // BATV needs no original: the address the bounce came to is the proof.
        eval.evidence = proofs::gather(config, &bounce);
        eval.ownership = eval.evidence.iter().map(|e| e.points).sum();
        if let Some((verdict, why)) = decide_by_proofs(&eval.evidence) {
            eval.verdict = verdict;
            eval.reasons.push(why);
        }
        eval.action = action_for(eval.verdict, eval.kind, config);
        return eval;
    };
    let anchor = Anchor::find(&mail, &own);
    let judged = judge_chain(&original.received, &own, &anchor);
    let mut evidence = ownership::weigh(&original, &judged, &own, &anchor);
    bounce.original = Some(&original);
    evidence.extend(proofs::gather(config, &bounce));
    let proven = decide_by_proofs(&evidence);
    let total: i32 = evidence.iter().map(|e| e.points).sum();
    eval.verdict = if total >= DECISION_MARGIN {
        Verdict::LegitBounce
    } else if total <= -DECISION_MARGIN {
        Verdict::Backscatter
    } else {
        Verdict::UnverifiedBounce
    };
    // Relay evidence outranks identifiers: a chain that entered the foreign side from
    // an own host is never called backscatter, and a forged own hop is never legit.
    let has = |tag: &str| evidence.iter().any(|e| e.tag == tag);
    let capped = if proven.is_some() {
        None
    } else if eval.verdict == Verdict::Backscatter
        && ownership::RELAY_POSITIVE.iter().any(|t| has(t))
    {
        Some("own relay evidence rules out backscatter")
    } else if eval.verdict == Verdict::Backscatter
        && !ownership::STRONG_NEGATIVE.iter().any(|t| has(t))
    {
        Some("only weak or guessed evidence speaks against it, and that never decides backscatter")
    } else if eval.verdict == Verdict::LegitBounce && has(ownership::FORGED_OWN_HOP) {
        Some("a forged own hop rules out a legitimate bounce")
    } else if eval.verdict == Verdict::LegitBounce
        && !ownership::RELAY_POSITIVE.iter().any(|t| has(t))
    {
        Some(
            "a legitimate bounce needs what a sender cannot write: a hop the bouncer recorded \
             from an own relay, or a proof",
        )
    } else {
        None
    };
    if let Some(why) = capped {
        eval.verdict = Verdict::UnverifiedBounce;
        eval.notes.push(why.to_string());
    }
    let mut sorted: Vec<&Evidence> = evidence.iter().filter(|e| e.points != 0).collect();
    sorted.sort_by_key(|e| -e.points.abs());
    eval.reasons
        .extend(sorted.iter().map(|e| format!("{:+} {}", e.points, e.text)));
    if let Some((verdict, _)) = &proven {
        eval.verdict = *verdict;
    }
    eval.reasons.push(match (&proven, eval.verdict) {
        (Some((_, why)), _) => format!("ownership evidence totals {total:+}, and {why}"),
        (None, Verdict::LegitBounce) => {
            format!("ownership evidence totals {total:+}: a bounce of mail you sent")
        }
        (None, Verdict::Backscatter) => format!(
            "ownership evidence totals {total:+}: the original was not yours (forged sender)"
        ),
        _ => match capped {
            Some(why) => format!("ownership evidence totals {total:+}, but {why}"),
            None if own.relays_configured => format!(
                "ownership evidence totals {total:+}, within ±{}: not enough to decide",
                DECISION_MARGIN - 1
            ),
            // The first-day trap: with no relays of their own named, every real bounce of
            // the user's is unverified at best; say what would change that.
            None => format!(
                "ownership evidence totals {total:+}, within ±{}: not enough to decide; \
                 no own.hosts or own.networks are configured, so no Received line can \
                 show the original was yours (`backstop init SENT-FOLDER` proposes them)",
                DECISION_MARGIN - 1
            ),
        },
    });
    eval.action = action_for(eval.verdict, eval.kind, config);
    if eval.verdict == Verdict::LegitBounce {
        eval.wave = Some(proofs::alarm::facts(&original, &judged));
    }
    eval.evidence = evidence;
    eval.ownership = total;
    eval.own = Some(OwnView::from(&own));
    eval.original = Some(OriginalView {
        original,
        judged,
        anchor,
    });
    eval
}

/// The config's action for a verdict and the kind of bounce (see `actions:` in
/// backstop.yaml(5)).
fn action_for(verdict: Verdict, kind: Option<Kind>, config: &Config) -> Action {
    match verdict {
        Verdict::Backscatter => config.actions.backscatter.value.for_kind(kind),
        Verdict::UnverifiedBounce => config.actions.unverified_bounce.value.for_kind(kind),
        _ => Action::Inbox,
    }
}

/// The proof rule, in one place so that it can be read (and merged) as a whole.
///
/// Proofs are what the attacker cannot write: the ledger of sent mail, the user's DKIM
/// signature and BATV tags (see [`crate::proofs`] for each tag). They outrank the Received
/// heuristics: a positive proof makes the bounce `legit-bounce` and a negative one
/// `backscatter`, whatever the heuristics say. A positive and a negative proof together
/// contradict each other, and leave it `unverified-bounce`. None: no proof either way, the
/// heuristics decide.
pub fn decide_by_proofs(evidence: &[Evidence]) -> Option<(Verdict, String)> {
    let tagged = |list: &[&str]| -> Vec<&str> {
        let mut tags: Vec<&str> = evidence
            .iter()
            .filter(|e| list.contains(&e.tag))
            .map(|e| e.tag)
            .collect();
        tags.dedup();
        tags
    };
    let (yes, no) = (tagged(proofs::POSITIVE), tagged(proofs::NEGATIVE));
    match (yes.is_empty(), no.is_empty()) {
        (true, true) => None,
        (false, true) => Some((
            Verdict::LegitBounce,
            format!(
                "proof that you sent it ({}) outranks the Received heuristics: a bounce of mail you sent",
                yes.join(", ")
            ),
        )),
        (true, false) => Some((
            Verdict::Backscatter,
            format!(
                "proof of forgery ({}) outranks the Received heuristics: the original was not yours",
                no.join(", ")
            ),
        )),
        (false, false) => Some((
            Verdict::UnverifiedBounce,
            format!(
                "the proofs contradict each other ({} against {}): not enough to decide",
                yes.join(", "),
                no.join(", ")
            ),
        )),
    }
}

/// The kind a message's structure names (a feedback report, then a DSN), else the kind
/// with the highest total score among matched rules that name one.
fn choose_kind(hits: &[RuleHit]) -> Kind {
    for structural in [Kind::FeedbackReport, Kind::Dsn] {
        if hits
            .iter()
            .any(|h| h.score > 0 && h.kind == Some(structural))
        {
            return structural;
        }
    }
    let mut totals: Vec<(Kind, i32)> = Vec::new();
    for h in hits.iter().filter(|h| h.score > 0) {
        if let Some(k) = h.kind {
            match totals.iter_mut().find(|(kind, _)| *kind == k) {
                Some((_, t)) => *t += h.score,
                None => totals.push((k, h.score)),
            }
        }
    }
    totals.sort_by_key(|(k, t)| (-t, *k));
    totals.first().map_or(Kind::Ndr, |(k, _)| *k)
}

fn strongest(hits: &[RuleHit]) -> String {
    hits.iter()
        .max_by_key(|h| h.score)
        .map_or_else(String::new, |h| h.id.clone())
}

fn kind_sentence(kind: Kind) -> &'static str {
    match kind {
        Kind::Dsn => "a delivery status notification (RFC 3464)",
        Kind::Ndr => "a non-delivery report",
        Kind::AutoReply => "an automatic reply",
        Kind::ChallengeResponse => "a challenge-response request",
        Kind::VirusNotice => "a virus or content-filter notice",
        Kind::FeedbackReport => "an abuse or feedback report (RFC 5965)",
    }
}

/// The verdict rules, as a specification: each test is one rule of `evaluate`, shown on a
/// small message.
#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "own:\n  domains: [own.example]\n  hosts: [mail.own.example]\n  networks: [198.51.100.0/24]\n";

    fn judge(config: &str, message: &str) -> Evaluation {
        let config = Config::from_str(config, "test.yaml").expect("the config loads");
        let rules = RuleSet::build(&config.user_rules, "test.yaml").expect("the rules build");
        let recipient = ("RECIPIENT".to_string(), "user@own.example".to_string());
        let env = EnvVars {
            sender: Some(String::new()),
            recipient: Some(recipient.clone()),
            recipients: vec![recipient],
        };
        evaluate(message.as_bytes(), &config, &rules, &env)
    }

    /// A delivery status notification, returning `original` (a header, then a line of body)
    /// when there is one.
    fn dsn(original: Option<&str>) -> String {
        let returned = original.map_or_else(String::new, |o| {
            format!("--b\nContent-Type: message/rfc822\n\n{o}\nhello\n\n")
        });
        format!(
            "From: Mail Delivery System <MAILER-DAEMON@mx.remote.example>\n\
             To: user@own.example\n\
             Subject: Undelivered Mail Returned to Sender\n\
             MIME-Version: 1.0\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\
             \n\
             --b\n\
             Content-Type: text/plain\n\
             \n\
             I'm sorry to have to inform you that your message could not be delivered.\n\
             \n\
             --b\n\
             Content-Type: message/delivery-status\n\
             \n\
             Reporting-MTA: dns; mx.remote.example\n\
             \n\
             Final-Recipient: rfc822; nobody@remote.example\n\
             Action: failed\n\
             Status: 5.1.1\n\
             \n\
             {returned}--b--\n"
        )
    }

    /// The original as the user's own server sent it: submitted to mail.own.example, which
    /// handed it to the remote MX.
    const SENT_BY_US: &str = "Received: from mail.own.example (mail.own.example [198.51.100.7])\n\tby mx.remote.example (Postfix) with ESMTPS id 1; Fri, 2 Jan 2026 00:00:02 +0000\nReceived: from laptop (unknown [10.0.0.5])\n\tby mail.own.example (Postfix) with ESMTPSA id 2; Fri, 2 Jan 2026 00:00:01 +0000\nFrom: user@own.example\nTo: nobody@remote.example\nMessage-ID: <1@own.example>\nSubject: hello\n";

    /// The original as a spammer sent it in the user's name, from a host that is not theirs.
    const FORGED: &str = "Received: from bot.spam.example (bot.spam.example [203.0.113.9])\n\tby mx.remote.example (Postfix) with ESMTP id 1; Fri, 2 Jan 2026 00:00:02 +0000\nFrom: user@own.example\nTo: nobody@remote.example\nMessage-ID: <x@bot.spam.example>\nSubject: buy now\n";

    #[test]
    fn mail_scoring_below_the_threshold_is_clean_and_goes_to_the_inbox() {
        let e = judge(
            CONFIG,
            "From: friend@remote.example\nTo: user@own.example\nSubject: lunch?\n\nat noon\n",
        );
        assert_eq!(
            (e.verdict, e.kind, e.action),
            (Verdict::Clean, None, Action::Inbox)
        );
        assert!(e.score < e.threshold, "{e:?}");
        assert!(e.original.is_none() && e.evidence.is_empty());
    }

    #[test]
    fn input_without_a_header_is_clean_and_delivered_as_it_is() {
        let e = judge(CONFIG, "");
        assert_eq!((e.verdict, e.action), (Verdict::Clean, Action::Inbox));
        assert_eq!(e.reasons, ["the input has no header: delivered as it is"]);
    }

    #[test]
    fn a_bounce_without_its_original_is_unverified_and_takes_the_unverified_action() {
        let message = dsn(None);
        let e = judge(CONFIG, &message);
        assert_eq!(e.kind, Some(Kind::Dsn), "{:?}", e.reasons);
        assert_eq!(e.verdict, Verdict::UnverifiedBounce, "{:?}", e.reasons);
        assert_eq!(e.action, Action::Folder, "the default unverified action");
        assert!(e.original.is_none());
        let inbox = format!("{CONFIG}actions:\n  unverified-bounce: inbox\n");
        assert_eq!(judge(&inbox, &message).action, Action::Inbox);
    }

    #[test]
    fn a_bounce_of_mail_sent_through_an_own_relay_is_legit_and_goes_to_the_inbox() {
        let e = judge(CONFIG, &dsn(Some(SENT_BY_US)));
        assert_eq!(e.verdict, Verdict::LegitBounce, "{:?}", e.reasons);
        assert!(e.ownership >= ownership::DECISION_MARGIN, "{e:?}");
        assert_eq!(e.action, Action::Inbox);
        let discard = format!("{CONFIG}actions:\n  backscatter: discard\n");
        assert_eq!(
            judge(&discard, &dsn(Some(SENT_BY_US))).action,
            Action::Inbox,
            "a legit bounce is never moved or dropped"
        );
    }

    #[test]
    fn a_bounce_of_mail_that_entered_from_a_foreign_host_is_backscatter() {
        let e = judge(CONFIG, &dsn(Some(FORGED)));
        assert_eq!(e.verdict, Verdict::Backscatter, "{:?}", e.reasons);
        assert!(e.ownership <= -ownership::DECISION_MARGIN, "{e:?}");
        assert!(
            e.evidence
                .iter()
                .any(|x| x.points < 0 && ownership::STRONG_NEGATIVE.contains(&x.tag)),
            "backscatter needs strong evidence: {:?}",
            e.evidence
        );
        assert_eq!(e.action, Action::Folder, "the default backscatter action");
        let discard = format!("{CONFIG}actions:\n  backscatter: discard\n");
        assert_eq!(judge(&discard, &dsn(Some(FORGED))).action, Action::Discard);
    }

    #[test]
    fn weak_or_guessed_evidence_alone_never_decides_backscatter() {
        // Only the Message-ID speaks against this original, judged by own Message-ID domains
        // guessed from the own domains; the hop our server recorded is not vouched for.
        let original = "From: user@own.example\nTo: nobody@remote.example\nMessage-ID: <x@bot.spam.example>\nSubject: buy now\nReceived: from bot.spam.example (bot.spam.example [203.0.113.9]) by mail.own.example; Fri, 2 Jan 2026 00:00:02 +0000\n";
        let e = judge(CONFIG, &dsn(Some(original)));
        assert!(e.ownership <= -ownership::DECISION_MARGIN, "{e:?}");
        assert_eq!(e.verdict, Verdict::UnverifiedBounce, "{:?}", e.reasons);
        assert_eq!(e.action, Action::Folder, "the unverified action");
        // With the Message-ID domains configured, the same Message-ID is strong evidence.
        let configured = format!("{CONFIG}  message_id_domains: [own.example]\n");
        let e = judge(&configured, &dsn(Some(original)));
        assert_eq!(e.verdict, Verdict::Backscatter, "{:?}", e.reasons);
    }

    fn hit(kind: Option<Kind>, score: i32) -> RuleHit {
        RuleHit {
            id: format!("{kind:?}-{score}"),
            field: "subject".into(),
            score,
            kind,
            matched: String::new(),
            describe: String::new(),
        }
    }

    #[test]
    fn the_kind_is_the_structure_first_then_the_highest_total() {
        // A feedback report, then a DSN, win by structure whatever the scores.
        let hits = [
            hit(Some(Kind::AutoReply), 9),
            hit(Some(Kind::Dsn), 1),
            hit(Some(Kind::FeedbackReport), 1),
        ];
        assert_eq!(choose_kind(&hits), Kind::FeedbackReport);
        assert_eq!(choose_kind(&hits[..2]), Kind::Dsn);
        // Otherwise the highest total of positive scores; rules naming no kind, or scoring
        // against, do not count.
        let hits = [
            hit(Some(Kind::AutoReply), 3),
            hit(Some(Kind::AutoReply), 3),
            hit(Some(Kind::VirusNotice), 5),
            hit(Some(Kind::VirusNotice), -4),
            hit(None, 20),
        ];
        assert_eq!(choose_kind(&hits), Kind::AutoReply);
        // A bounce no rule names a kind for is a non-delivery report.
        assert_eq!(choose_kind(&[hit(None, 9)]), Kind::Ndr);
    }
}

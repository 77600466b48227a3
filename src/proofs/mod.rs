//! Proofs: evidence that the attacker cannot produce, which outranks the Received heuristics.
//!
//! The sender of backscatter writes every byte of the message that bounced, but cannot know
//! which Message-IDs the user sent (the [`ledger`]), sign with the user's DKIM key ([`dkim`]),
//! or make a valid BATV tag ([`batv`]). Each check gives [`Evidence`] with a tag of its own;
//! `verdict::decide_by_proofs` turns the tags into a verdict:
//!
//! | tag | meaning | weight |
//! |---|---|---|
//! | `ledger-sent` | the original's Message-ID (an auto-reply's In-Reply-To/References) is in the ledger | proof: legit |
//! | `ledger-not-sent` | it is not, though the ledger was learning when the original was written | proof: forged |
//! | `ledger-unknown` | the ledger cannot say (the original predates it, or it cannot be read) | none |
//! | `dkim-valid` | the original carries a valid signature of an own signing domain | proof: legit |
//! | `dkim-invalid` | an own signature does not verify (`signs_all` off) | weak |
//! | `dkim-invalid-required` | an own signature does not verify, or names a key not configured (`signs_all`) | proof: forged |
//! | `dkim-missing-required` | an original from an own signing domain came back unsigned (`signs_all`) | proof: forged |
//! | `dkim-unknown-key` | an own signature names a selector with no configured key | none |
//! | `batv-valid` | the bounce came to a valid `prvs=` address | proof: legit |
//! | `batv-invalid` | to a wrong or expired tag (`required` off) | weak |
//! | `batv-invalid-required` | to an untagged, wrongly or expiredly tagged address (`required`) | proof: forged |
//! | `stamp-valid` | the original carries a valid [`stamp`] of a site key | proof: legit |
//! | `stamp-invalid` | a stamp names a site key but does not verify (copied onto other mail) | weak |
//! | `stamp-unknown` | a stamp of no site key, too old, or unreadable | none |
//!
//! Replay is the limit of all three: a spammer who resends a message the user really sent
//! (its Message-ID, its signed headers, its tagged sender) makes its bounces pass as legit.
//!
//! Nothing here runs for clean mail, and each proof reads its files (the ledger, the keys
//! file) only when the bounce gives it something to look up.

pub mod alarm;
pub mod batv;
pub mod dkim;
pub mod ledger;
pub mod spec;
pub mod stamp;

use crate::config::Config;
use crate::evidence::original::{Form, Original};
use crate::evidence::ownership::Evidence;

pub const LEDGER_SENT: &str = "ledger-sent";
pub const LEDGER_NOT_SENT: &str = "ledger-not-sent";
pub const LEDGER_UNKNOWN: &str = "ledger-unknown";
pub const DKIM_VALID: &str = "dkim-valid";
pub const DKIM_INVALID: &str = "dkim-invalid";
pub const DKIM_INVALID_REQUIRED: &str = "dkim-invalid-required";
pub const DKIM_MISSING_REQUIRED: &str = "dkim-missing-required";
pub const DKIM_UNKNOWN_KEY: &str = "dkim-unknown-key";
pub const BATV_VALID: &str = "batv-valid";
pub const BATV_INVALID: &str = "batv-invalid";
pub const BATV_INVALID_REQUIRED: &str = "batv-invalid-required";
pub const STAMP_VALID: &str = "stamp-valid";
pub const STAMP_INVALID: &str = "stamp-invalid";
pub const STAMP_UNKNOWN: &str = "stamp-unknown";

/// Days a stamp stays valid when `stamp.max_age_days` is not set.
pub const DEFAULT_STAMP_MAX_AGE_DAYS: u32 = 60;

/// Tags that prove the user sent the original.
pub const POSITIVE: &[&str] = &[LEDGER_SENT, DKIM_VALID, BATV_VALID, STAMP_VALID];
/// Tags that prove the original was forged.
pub const NEGATIVE: &[&str] = &[
    LEDGER_NOT_SENT,
    DKIM_INVALID_REQUIRED,
    DKIM_MISSING_REQUIRED,
    BATV_INVALID_REQUIRED,
];

/// The points a proof carries in the evidence total (the verdict does not rest on them).
pub const PROOF_POINTS: i32 = 10;

/// An auto-reply answers within this many days: its own Date, less this, bounds the date of the
/// message it answers, for the ledger's "not sent" evidence.
pub const REPLY_WINDOW_DAYS: i64 = 14;

/// What the proofs need to know of a bounce.
#[derive(Debug, Clone, Default)]
pub struct Bounce<'a> {
    pub original: Option<&'a Original>,
    /// The addresses the bounce was sent to: the envelope recipient variables, Delivered-To and
    /// X-Original-To.
    pub addressed_to: Vec<String>,
    /// The report's own Date, Unix seconds.
    pub date: Option<i64>,
    /// The time now, Unix seconds.
    pub now: i64,
}

/// Runs every proof the config and the bounce allow.
pub fn gather(config: &Config, bounce: &Bounce<'_>) -> Vec<Evidence> {
    let mut ev = Vec::new();
    batv_evidence(config, bounce, &mut ev);
    dkim_evidence(config, bounce, &mut ev);
    stamp_evidence(config, bounce, &mut ev);
    ledger_evidence(config, bounce, &mut ev);
    ev
}

/// The time now in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn date_text(t: i64) -> String {
    mail_parser::DateTime::from_timestamp(t).to_rfc3339()
}

fn ledger_evidence(config: &Config, b: &Bounce<'_>, ev: &mut Vec<Evidence>) {
    let Some(o) = b.original else {
        return;
    };
    let reference = o.form == Form::Reference;
    let (ids, date): (Vec<String>, Option<i64>) = if reference {
        (o.references.clone(), b.date)
    } else {
        (o.message_id.iter().cloned().collect(), o.date)
    };
    if ids.is_empty() {
        return;
    }
    if let Some(shared) = &config.shared_ledger {
        shared_ledger_evidence(shared.as_ref(), &ids, ev);
        return;
    }
    let Some(paths) = ledger::Paths::from_config(config.ledger.path.as_deref()) else {
        return;
    };
    let expire = config
        .ledger
        .expire_days
        .as_ref()
        .map_or(ledger::DEFAULT_EXPIRE_DAYS, |d| d.value);
    let found = match ledger::lookup(&paths, &ids, b.now, expire) {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(e) => {
            ev.push(Evidence::new(
                0,
                LEDGER_UNKNOWN,
                format!("the ledger {} cannot be read: {e}", paths.ledger.display()),
            ));
            return;
        }
    };
    if let Some((id, sent)) = found.found {
        ev.push(Evidence::new(
            PROOF_POINTS,
            LEDGER_SENT,
            format!(
                "you sent {id} on {} (it is in the ledger of sent mail)",
                date_text(sent)
            ),
        ));
        return;
    }
    let what = if reference {
        "the messages it answers are"
    } else {
        "its Message-ID is"
    };
    let covered = match (found.coverage, date) {
        (Some(c), Some(d)) if reference => {
            c.from <= d - REPLY_WINDOW_DAYS * 86_400 && d <= c.through
        }
        (Some(c), Some(d)) => c.from <= d && d <= c.through,
        _ => false,
    };
    let complete = config.ledger.complete.unwrap_or(true);
    match (covered, found.coverage) {
        (true, Some(c)) if complete => ev.push(Evidence::new(
            -PROOF_POINTS,
            LEDGER_NOT_SENT,
            format!(
                "{what} not in the ledger, which has recorded every message you sent from {} to {}: \
                 you did not send it",
                date_text(c.from),
                date_text(c.through)
            ),
        )),
        (true, _) => ev.push(Evidence::new(
            0,
            LEDGER_UNKNOWN,
            format!("{what} not in the ledger, but ledger.complete is false: absence says nothing"),
        )),
        (false, Some(c)) => ev.push(Evidence::new(
            0,
            LEDGER_UNKNOWN,
            format!(
                "{what} not in the ledger, but its date ({}) is outside the time the ledger covers \
                 ({} to {})",
                date.map_or_else(|| "unknown".to_string(), date_text),
                date_text(c.from),
                date_text(c.through)
            ),
        )),
        (false, None) => {}
    }
}

/// The shared ledger's answer: a proof when it holds an ID; its absence says nothing (it holds
/// only what was learnt while it could be reached), and when it cannot answer the message is
/// judged without it.
fn shared_ledger_evidence(shared: &dyn spec::SharedLedger, ids: &[String], ev: &mut Vec<Evidence>) {
    match shared.find(ids) {
        Ok(Some(id)) => ev.push(Evidence::new(
            PROOF_POINTS,
            LEDGER_SENT,
            format!("you sent {id} (it is in the shared ledger of sent mail)"),
        )),
        Ok(None) => ev.push(Evidence::new(
            0,
            LEDGER_UNKNOWN,
            "not in the shared ledger, whose absence proves nothing".to_string(),
        )),
        Err(e) => ev.push(Evidence::new(
            0,
            LEDGER_UNKNOWN,
            format!("the shared ledger cannot answer ({e}): judged without it"),
        )),
    }
}

/// The stamp keys of the config's `stamp.key_file`, or None when it names none.
pub fn stamp_keys(config: &Config) -> Option<Result<Vec<stamp::Key>, String>> {
    let file = config.stamp.key_file.as_ref()?;
    let path = crate::config::expand_home(file);
    Some(
        std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| stamp::parse_keys(&t))
            .map_err(|e| format!("the stamp keys file {}: {e}", path.display())),
    )
}

fn stamp_evidence(config: &Config, b: &Bounce<'_>, ev: &mut Vec<Evidence>) {
    let Some(o) = b.original else {
        return;
    };
    if config.stamp.key_file.is_none() || !stamp::present(&o.headers) {
        return;
    }
    let keys = match stamp_keys(config) {
        None => return,
        Some(Ok(k)) => k,
        Some(Err(e)) => {
            ev.push(Evidence::new(0, STAMP_UNKNOWN, e));
            return;
        }
    };
    let max_age = config
        .stamp
        .max_age_days
        .as_ref()
        .map_or(DEFAULT_STAMP_MAX_AGE_DAYS, |d| d.value);
    let (points, tag, text) = match stamp::verify(&o.headers, &keys) {
        stamp::Outcome::None => return,
        stamp::Outcome::Valid { key, time }
            if time >= b.now - i64::from(max_age) * 86_400 && time <= b.now + 86_400 =>
        {
            (
                PROOF_POINTS,
                STAMP_VALID,
                format!(
                    "the original carries a valid stamp of site key {key}, made {}",
                    date_text(time)
                ),
            )
        }
        stamp::Outcome::Valid { key, time } => (
            0,
            STAMP_UNKNOWN,
            format!(
                "the original's stamp of site key {key} verifies but was made {}, outside \
                 stamp.max_age_days ({max_age})",
                date_text(time)
            ),
        ),
        stamp::Outcome::Invalid { key } => (
            -1,
            STAMP_INVALID,
            format!(
                "the original's stamp names site key {key} but does not verify over its From, \
                 Date and Message-ID (copied from other mail?)"
            ),
        ),
        stamp::Outcome::UnknownKey { key } => (
            0,
            STAMP_UNKNOWN,
            format!("the original's stamp names key {key:?}, which is none of the site keys"),
        ),
        stamp::Outcome::Malformed => (
            0,
            STAMP_UNKNOWN,
            "the original's stamp cannot be read".to_string(),
        ),
    };
    ev.push(Evidence::new(points, tag, text));
}

/// The DKIM keys the config gives (inline, then the keys file).
pub fn dkim_keys(config: &Config) -> Result<Vec<dkim::KeyEntry>, String> {
    let mut keys: Vec<dkim::KeyEntry> = config
        .dkim
        .keys
        .iter()
        .map(|k| dkim::KeyEntry {
            domain: k.domain.value.trim().to_ascii_lowercase(),
            selector: k.selector.value.trim().to_string(),
            record: k.record.value.clone(),
        })
        .collect();
    if let Some(file) = &config.dkim.keys_file {
        let path = crate::config::expand_home(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("the DKIM keys file {}: {e}", path.display()))?;
        keys.extend(dkim::parse_keys_file(&text));
    }
    Ok(keys)
}

fn dkim_evidence(config: &Config, b: &Bounce<'_>, ev: &mut Vec<Evidence>) {
    let Some(o) = b.original else {
        return;
    };
    if (config.dkim.keys.is_empty() && config.dkim.keys_file.is_none()) || o.headers.is_empty() {
        return;
    }
    let keys = match dkim_keys(config) {
        Ok(k) => k,
        Err(e) => {
            ev.push(Evidence::new(0, DKIM_UNKNOWN_KEY, e));
            return;
        }
    };
    let domains: Vec<&str> = keys.iter().map(|k| k.domain.as_str()).collect();
    let is_own = |d: &str| domains.contains(&d);
    let outcomes = dkim::verify_own(&o.headers, &keys, is_own);
    let signs_all = config.dkim.signs_all;
    if let Some(dkim::Outcome::Valid {
        domain,
        selector,
        headers,
    }) = outcomes
        .iter()
        .find(|o| matches!(o, dkim::Outcome::Valid { .. }))
    {
        ev.push(Evidence::new(
            PROOF_POINTS,
            DKIM_VALID,
            format!(
                "the original carries a valid DKIM signature of own domain {domain} \
                 (s={selector}) over {headers}"
            ),
        ));
        return;
    }
    for o in &outcomes {
        let (points, tag, text) = match (o, signs_all) {
            (dkim::Outcome::Invalid { domain, why }, true) => (
                -PROOF_POINTS,
                DKIM_INVALID_REQUIRED,
                format!(
                    "the own DKIM signature of {domain} is invalid ({why}), and you sign all mail"
                ),
            ),
            (dkim::Outcome::Invalid { domain, why }, false) => (
                -1,
                DKIM_INVALID,
                format!("the own DKIM signature of {domain} is invalid ({why})"),
            ),
            (dkim::Outcome::UnknownKey { domain, selector }, true) => (
                -PROOF_POINTS,
                DKIM_INVALID_REQUIRED,
                format!(
                    "the original claims a signature of own domain {domain} with selector \
                     {selector:?}, which is none of your keys, and you sign all mail"
                ),
            ),
            (dkim::Outcome::UnknownKey { domain, selector }, false) => (
                0,
                DKIM_UNKNOWN_KEY,
                format!(
                    "no key is configured for the own signature {selector}._domainkey.{domain} \
                     (backstop dkim-keys fetch adds it)"
                ),
            ),
            (dkim::Outcome::Valid { .. }, _) => continue,
        };
        ev.push(Evidence::new(points, tag, text));
        return;
    }
    // No own signature at all. Only a whole original or its whole header part can say so:
    // pasted header blocks are often cut.
    let from_domain = o
        .from
        .as_deref()
        .and_then(|f| f.rsplit('<').next())
        .and_then(|a| a.trim_end_matches('>').rsplit_once('@'))
        .map(|(_, d)| d.trim().to_ascii_lowercase());
    let whole = matches!(o.form, Form::Attached | Form::Headers);
    if let Some(d) = from_domain.filter(|d| signs_all && whole && is_own(d)) {
        ev.push(Evidence::new(
            -PROOF_POINTS,
            DKIM_MISSING_REQUIRED,
            format!(
                "the original is from own signing domain {d} but carries no signature of it, \
                 and you sign all mail"
            ),
        ));
    }
}

fn batv_evidence(config: &Config, b: &Bounce<'_>, ev: &mut Vec<Evidence>) {
    if config.batv.secrets.is_empty() {
        return;
    }
    let secrets: Vec<String> = config
        .batv
        .secrets
        .iter()
        .map(|s| s.value.clone())
        .collect();
    let today = b.now.div_euclid(86_400);
    let mut bad: Option<(String, batv::Check)> = None;
    for addr in &b.addressed_to {
        let Some(tag) = batv::parse(addr) else {
            continue;
        };
        match batv::check(&tag, &secrets, today) {
            batv::Check::Valid => {
                ev.push(Evidence::new(
                    PROOF_POINTS,
                    BATV_VALID,
                    format!("the bounce came to {addr}, a valid BATV address of yours"),
                ));
                return;
            }
            other => {
                bad.get_or_insert((addr.clone(), other));
            }
        }
    }
    let why = match &bad {
        Some((addr, batv::Check::Expired)) => format!("its BATV tag {addr} has expired"),
        Some((addr, _)) => format!("its BATV tag {addr} is not one of yours"),
        None if b.addressed_to.is_empty() => "no address it was sent to is known".to_string(),
        None => format!(
            "it came to {}, which has no BATV tag",
            b.addressed_to.join(", ")
        ),
    };
    if config.batv.required {
        ev.push(Evidence::new(
            -PROOF_POINTS,
            BATV_INVALID_REQUIRED,
            format!("{why}, and batv.required says every bounce comes to a tagged address"),
        ));
    } else if let Some((_, check)) = bad {
        let points = if check == batv::Check::Forged { -1 } else { 0 };
        ev.push(Evidence::new(points, BATV_INVALID, why));
    }
}

/// The addresses a bounce was sent to: the envelope recipient variables, then its
/// Delivered-To and X-Original-To fields (at most 20).
pub fn addressed_to(mail: &mail_parser::Message<'_>, env: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = env.iter().map(|(_, v)| clean_address(v)).collect();
    for name in ["Delivered-To", "X-Original-To"] {
        out.extend(
            crate::message::header_values(mail, name)
                .iter()
                .map(|v| clean_address(v)),
        );
    }
    out.retain(|a| a.contains('@'));
    out.dedup();
    out.truncate(20);
    out
}

/// The message's Date in Unix seconds (the delivery parser keeps Date raw, so it is parsed
/// here, for the bounces that need it).
pub fn date_of(mail: &mail_parser::Message<'_>) -> Option<i64> {
    let raw = crate::message::header_values(mail, "Date")
        .into_iter()
        .next()?;
    let field = format!("Date: {}\n\n", crate::util::text::cut_at_char(&raw, 200));
    let parsed = mail_parser::MessageParser::new().parse_headers(field.as_bytes())?;
    parsed.date().map(|d| d.to_timestamp())
}

fn clean_address(text: &str) -> String {
    let t = text.trim();
    let t = t.split(char::is_whitespace).next().unwrap_or(t);
    t.trim_matches(['<', '>']).to_string()
}

/// Checks what `Config::from_str` leaves to `lint`: every DKIM key (inline and in the keys
/// file) parses as a public key.
pub fn lint(config: &Config) -> Result<(), String> {
    for k in dkim_keys(config)? {
        dkim::parse_key(&k.record)
            .map_err(|e| format!("the DKIM key {}._domainkey.{}: {e}", k.selector, k.domain))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fake(Result<Option<String>, String>);

    impl spec::SharedLedger for Fake {
        fn find(&self, _ids: &[String]) -> Result<Option<String>, String> {
            self.0.clone()
        }
    }

    #[test]
    fn the_shared_ledger_proves_what_it_holds_and_nothing_else() {
        let ids = vec!["<a@example.org>".to_string()];
        let tags = |answer: Result<Option<String>, String>| {
            let mut ev = Vec::new();
            shared_ledger_evidence(&Fake(answer), &ids, &mut ev);
            ev.iter().map(|e| (e.tag, e.points)).collect::<Vec<_>>()
        };
        assert_eq!(
            tags(Ok(Some(ids[0].clone()))),
            vec![(LEDGER_SENT, PROOF_POINTS)]
        );
        assert_eq!(tags(Ok(None)), vec![(LEDGER_UNKNOWN, 0)]);
        assert_eq!(tags(Err("down".into())), vec![(LEDGER_UNKNOWN, 0)]);
    }
}

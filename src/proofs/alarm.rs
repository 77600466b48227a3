//! The alarm: legitimate bounces in a wave mean that your account or server is sending mail
//! you did not write.
//!
//! The rule: at least `alarm.bounces` (10) legitimate bounces within `alarm.window_minutes`
//! (60), whose originals went to at least `alarm.recipients` (5) distinct addresses. One alarm
//! per wave: a wave ends when a whole window passes with no legitimate bounce. A steady trickle
//! of real bounces (a mistyped address a day) never rings; a run of bounces to one address
//! (a mailing list that bounces each post) does not either, unless `alarm.recipients` is 1.
//!
//! The state is a small text file (`alarm` in the data folder): a header line, then one line
//! per bounce still inside the window. Each delivery that adds a line holds an exclusive lock
//! (`alarm.lock`), writes a new file, syncs it and renames it over the old one, so a crash
//! leaves the old state or the new one. It holds at most [`MAX_ENTRIES`] lines.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, Inbox};
use crate::evidence::original::Original;
use crate::evidence::received::{HopRole, JudgedHop};
use crate::store::{self, Payload};

/// The state keeps at most this many bounces.
pub const MAX_ENTRIES: usize = 1000;

/// What the alarm records of one legitimate bounce.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct WaveFacts {
    /// The original's recipients (To and Cc), at most 5.
    pub recipients: Vec<String>,
    /// The relays the original passed (the hops' `by` hosts, and own senders), at most 5.
    pub relays: Vec<String>,
    pub subject: Option<String>,
}

/// The facts of one bounce, for the alarm.
pub fn facts(original: &Original, judged: &[JudgedHop]) -> WaveFacts {
    let mut relays: Vec<String> = Vec::new();
    for h in judged.iter().filter(|h| h.role != HopRole::Ignored) {
        let from_own = h.from.own_by.is_some();
        let names = [
            h.hop.by.clone(),
            from_own
                .then(|| {
                    h.hop
                        .from_rdns
                        .clone()
                        .or_else(|| h.hop.from_name.clone())
                        .or_else(|| h.hop.from_ip.map(|i| i.to_string()))
                })
                .flatten(),
        ];
        for n in names.into_iter().flatten() {
            if !relays.contains(&n) && relays.len() < 5 {
                relays.push(n);
            }
        }
    }
    WaveFacts {
        recipients: original.recipients.iter().take(5).cloned().collect(),
        relays,
        subject: original.subject.clone(),
    }
}

/// One bounce in the state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    time: i64,
    recipient: String,
    relay: String,
    subject: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct State {
    /// An alarm was raised in the current wave.
    alarmed: bool,
    entries: Vec<Entry>,
}

const HEADER: &str = "backstop-alarm 1";

fn field(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::util::text::cut_at_char(clean.trim(), 200).to_string()
}

fn parse_state(text: &str) -> State {
    let mut lines = text.lines();
    let mut st = State::default();
    match lines.next() {
        Some(h) if h.starts_with(HEADER) => st.alarmed = h.ends_with(" alarmed"),
        _ => return st,
    }
    for l in lines.take(MAX_ENTRIES) {
        let mut p = l.splitn(4, '\t');
        let (Some(t), Some(r), Some(y), Some(s)) = (p.next(), p.next(), p.next(), p.next()) else {
            continue;
        };
        if let Ok(time) = t.parse() {
            st.entries.push(Entry {
                time,
                recipient: r.into(),
                relay: y.into(),
                subject: s.into(),
            });
        }
    }
    st
}

fn render_state(st: &State) -> String {
    let mut out = String::from(HEADER);
    if st.alarmed {
        out.push_str(" alarmed");
    }
    out.push('\n');
    for e in &st.entries {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            e.time, e.recipient, e.relay, e.subject
        ));
    }
    out
}

/// The rule's numbers.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub bounces: usize,
    pub window_secs: i64,
    pub recipients: usize,
}

impl Rule {
    pub fn from_config(config: &Config) -> Rule {
        Rule {
            bounces: config.alarm.bounces.value as usize,
            window_secs: i64::from(config.alarm.window_minutes.value) * 60,
            recipients: config.alarm.recipients.value as usize,
        }
    }
}

/// Adds a bounce to the state; returns the alarm text when this bounce makes a wave.
fn add(st: &mut State, rule: Rule, facts: &WaveFacts, now: i64) -> Option<String> {
    let since = now - rule.window_secs;
    st.entries.retain(|e| e.time > since);
    if st.entries.is_empty() {
        // A whole window without a legitimate bounce: the last wave is over.
        st.alarmed = false;
    }
    st.entries.push(Entry {
        time: now,
        recipient: field(facts.recipients.first().map_or("", String::as_str)),
        relay: field(&facts.relays.join(" ")),
        subject: field(facts.subject.as_deref().unwrap_or("")),
    });
    if st.entries.len() > MAX_ENTRIES {
        let extra = st.entries.len() - MAX_ENTRIES;
        st.entries.drain(..extra);
    }
    let mut distinct: Vec<&str> = st
        .entries
        .iter()
        .map(|e| e.recipient.as_str())
        .filter(|r| !r.is_empty())
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    if st.alarmed || st.entries.len() < rule.bounces || distinct.len() < rule.recipients {
        return None;
    }
    st.alarmed = true;
    Some(alarm_text(&st.entries, distinct.len(), now))
}

fn top<'a>(items: impl Iterator<Item = &'a str>, n: usize) -> Vec<(usize, &'a str)> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for i in items.filter(|i| !i.is_empty()) {
        *counts.entry(i).or_default() += 1;
    }
    let mut v: Vec<(usize, &str)> = counts.into_iter().map(|(k, c)| (c, k)).collect();
    v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    v.truncate(n);
    v
}

fn date(t: i64) -> String {
    mail_parser::DateTime::from_timestamp(t).to_rfc822()
}

/// The alarm message.
fn alarm_text(entries: &[Entry], distinct: usize, now: i64) -> String {
    let first = entries.first().map_or(now, |e| e.time);
    let mut body = format!(
        "backstop has filed {} bounces of mail sent as you (verdict legit-bounce) since {},\n\
         for {distinct} different recipients. Real bounces in a wave are the first sign that your\n\
         account or your server is sending mail you did not write.\n",
        entries.len(),
        date(first)
    );
    let mut section = |title: &str, list: Vec<(usize, &str)>| {
        body.push_str(&format!("\n{title}:\n"));
        if list.is_empty() {
            body.push_str("  (none recorded)\n");
        }
        for (n, item) in list {
            body.push_str(&format!("  {n:4}  {item}\n"));
        }
    };
    section(
        "The relays the returned originals name",
        top(entries.iter().flat_map(|e| e.relay.split(' ')), 5),
    );
    section(
        "Top subjects of the originals",
        top(entries.iter().map(|e| e.subject.as_str()), 5),
    );
    section(
        "Top recipients of the originals",
        top(entries.iter().map(|e| e.recipient.as_str()), 5),
    );
    body.push_str(
        "\nWhat to check first:\n\
         \x20 1. Your mail password: change it, then read your provider's or server's login\n\
         \x20    history for logins you did not make.\n\
         \x20 2. Your server's mail queue and log (postqueue -p, exim -bp, the mail log): which\n\
         \x20    login or local user submitted these messages (sasl_username=, uid=, A=)?\n\
         \x20 3. Scripts and web forms on your server that send mail (contact forms, CMS plugins).\n\
         \x20 4. If the relays above are not yours, the bounces are forged after all: run\n\
         \x20    backstop explain on one of them, and check your ledger, DKIM and BATV setup.\n\
         \n\
         This is one alarm for this wave; the next comes after an hour without such bounces\n\
         (alarm.window_minutes). The alarm: settings in backstop.yaml(5) change or silence it.\n",
    );
    let head = format!(
        "From: backstop <MAILER-DAEMON@localhost>\n\
         Subject: backstop alarm: {} bounces of mail sent as you since {}\n\
         Date: {}\n\
         Message-ID: <alarm.{now}.{}@backstop.invalid>\n\
         Auto-Submitted: auto-generated\n\
         X-Backstop-Alarm: wave\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: 8bit\n\n",
        entries.len(),
        date(first),
        date(now),
        std::process::id()
    );
    head + &body
}

/// The state file, from the config or the data folder.
fn state_path(config: &Config) -> Option<PathBuf> {
    match &config.alarm.state {
        Some(p) => Some(crate::config::expand_home(p)),
        None => {
            directories::ProjectDirs::from("", "", "backstop").map(|d| d.data_dir().join("alarm"))
        }
    }
}

/// Records a legitimate bounce and, when it makes a wave, files the alarm (or runs the
/// command). Errors are reported, never fatal: the bounce itself is already stored.
pub fn note(config: &Config, inbox: &Inbox, facts: &WaveFacts, now: i64) -> Result<bool, String> {
    if !config.alarm.enabled {
        return Ok(false);
    }
    let path = state_path(config).ok_or("no data folder for the alarm state")?;
    let text = update(&path, Rule::from_config(config), facts, now)
        .map_err(|e| format!("alarm state {}: {e}", path.display()))?;
    let Some(text) = text else {
        return Ok(false);
    };
    match &config.alarm.command {
        Some(argv) => run_command(argv, &text)?,
        None => file_alarm(config, inbox, &text)?,
    }
    Ok(true)
}

fn update(path: &Path, rule: Rule, facts: &WaveFacts, now: i64) -> io::Result<Option<String>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(PathBuf::from(lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    let old = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut st = parse_state(&old);
    let alarm = add(&mut st, rule, facts, now);
    super::ledger::replace_file(path, ".tmp", render_state(&st).as_bytes())?;
    Ok(alarm)
}

fn file_alarm(config: &Config, inbox: &Inbox, text: &str) -> Result<(), String> {
    let payload = Payload {
        head: &[],
        body: text.as_bytes(),
        tail: None,
    };
    let stored = match inbox {
        Inbox::Maildir(root) => store::maildir::deliver(root, None, config.layout, payload),
        Inbox::Mbox(path) => store::mbox::deliver(path, None, &config.mbox_locks, payload),
    };
    stored
        .map(drop)
        .map_err(|e| format!("cannot file the alarm: {e}"))
}

fn run_command(argv: &[String], text: &str) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("alarm.command is empty")?;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run the alarm command {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(text.as_bytes());
    }
    let status = child
        .wait()
        .map_err(|e| format!("the alarm command {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the alarm command {program} failed ({status})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: Rule = Rule {
        bounces: 3,
        window_secs: 3600,
        recipients: 2,
    };

    fn bounce(to: &str) -> WaveFacts {
        WaveFacts {
            recipients: vec![to.into()],
            relays: vec!["mx.example.org".into()],
            subject: Some("Cheap\tpills".into()),
        }
    }

    #[test]
    fn one_alarm_per_wave_of_enough_bounces_to_enough_recipients() {
        let mut st = State::default();
        let t = 1_800_000_000;
        assert_eq!(add(&mut st, RULE, &bounce("a@x"), t), None);
        assert_eq!(add(&mut st, RULE, &bounce("a@x"), t + 1), None);
        assert_eq!(
            add(&mut st, RULE, &bounce("a@x"), t + 2),
            None,
            "three bounces, but to one recipient"
        );
        let text = add(&mut st, RULE, &bounce("b@x"), t + 3).expect("the wave rings");
        assert!(text.contains("filed 4 bounces"), "{text}");
        assert!(text.contains("mx.example.org"), "{text}");
        assert!(text.contains("Cheap pills"), "{text}");
        assert!(text.contains("What to check first"), "{text}");
        assert_eq!(
            add(&mut st, RULE, &bounce("c@x"), t + 4),
            None,
            "once per wave"
        );
        // Saved and read back, the state goes on.
        let mut st = parse_state(&render_state(&st));
        assert_eq!(add(&mut st, RULE, &bounce("d@x"), t + 3000), None);
        // A quiet window ends the wave; a new one rings again.
        let later = t + 3000 + 3601;
        assert_eq!(add(&mut st, RULE, &bounce("a@x"), later), None);
        assert_eq!(add(&mut st, RULE, &bounce("b@x"), later + 1), None);
        assert!(add(&mut st, RULE, &bounce("c@x"), later + 2).is_some());
    }

    #[test]
    fn bounces_spread_wider_than_the_window_never_ring() {
        let mut st = State::default();
        for i in 0..50 {
            let to = format!("{i}@x");
            assert_eq!(add(&mut st, RULE, &bounce(&to), i * 1800), None);
        }
    }

    #[test]
    fn the_state_file_survives_and_stays_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("d/alarm");
        let rule = Rule {
            bounces: 2000,
            ..RULE
        };
        for i in 0..(MAX_ENTRIES as i64 + 10) {
            update(&path, rule, &bounce("a@x"), 1_800_000_000 + i).unwrap();
        }
        let st = parse_state(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(st.entries.len(), MAX_ENTRIES);
        assert_eq!(st.entries[0].subject, "Cheap pills");
    }
}

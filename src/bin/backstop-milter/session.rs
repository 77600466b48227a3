//! One milter connection's state: what the MTA told us of the client and the message, and
//! what to answer at each step. No IO here: `handle` takes a packet and gives the replies.
//!
//! At the end of the message:
//! - outbound (the client is in `own.networks`, or authenticated: `{auth_authen}`): add the
//!   `X-Bounce-Stamp` field, learn the Message-ID into the ledger (the file, or the shared one
//!   in Redis) when asked, and BATV-sign an own envelope sender when asked;
//! - inbound to a local recipient (a domain of `own.domains`; every recipient when none is
//!   set): judge it with the same `evaluate` as `deliver`. Backscatter is rejected with
//!   550 5.7.1 and the reason, quarantined, or tagged, as `milter.backscatter` says; other
//!   bounces are tagged and accepted; clean mail is accepted untouched.
//!
//! Any internal error accepts the message (or tempfails it, `milter.on_error`), and is logged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use backstop::budget::evaluate_keeping_rules;
use backstop::config::Config;
use backstop::message::EnvVars;
use backstop::proofs::spec::{MilterBackscatter, MilterOnError};
use backstop::proofs::{batv, ledger, stamp};
use backstop::rules::RuleSet;
use backstop::verdict::{Evaluation, Verdict};

use crate::protocol::{cmd, negotiate, no_reply_step, reply, strings};
use crate::shared_ledger::RedisLedger;

/// What the daemon shares between connections.
pub struct Site {
    pub config: Arc<Config>,
    /// The signing key (the first of the keys file), when stamping.
    pub stamp_key: Option<stamp::Key>,
    /// Rule sets ready for use: their regexes compile as they are first needed, so a set is
    /// handed from message to message rather than built for each connection.
    pub rules: Mutex<Vec<RuleSet>>,
    /// The ledger shared by the fleet (`ledger.redis`), learnt into instead of the file.
    pub shared: Option<Arc<RedisLedger>>,
}

/// The most idle rule sets kept.
const MAX_IDLE_RULES: usize = 64;

impl Site {
    pub fn new(
        config: Config,
        stamp_key: Option<stamp::Key>,
        shared: Option<Arc<RedisLedger>>,
    ) -> Site {
        Site {
            config: Arc::new(config),
            stamp_key,
            rules: Mutex::new(Vec::new()),
            shared,
        }
    }

    fn take_rules(&self) -> Option<RuleSet> {
        self.rules.lock().ok()?.pop()
    }

    fn give_back(&self, rules: RuleSet) {
        if let Ok(mut idle) = self.rules.lock()
            && idle.len() < MAX_IDLE_RULES
        {
            idle.push(rules);
        }
    }
}

/// The replies to one packet (in order), and whether to close the connection after them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replies {
    pub packets: Vec<(u8, Vec<u8>)>,
    pub close: bool,
}

impl Replies {
    fn one(code: u8, data: &[u8]) -> Replies {
        Replies {
            packets: vec![(code, data.to_vec())],
            close: false,
        }
    }
    fn none() -> Replies {
        Replies::default()
    }
}

/// One connection.
pub struct Session {
    site: Arc<Site>,
    /// The protocol steps negotiated: the commands of an `NR_*` step get no reply.
    steps: u32,
    macros: HashMap<String, String>,
    client: Option<IpAddr>,
    sender: Option<String>,
    recipients: Vec<String>,
    /// The header fields as the MTA passed them, in order.
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    size: u64,
    oversize: bool,
}

impl Session {
    pub fn new(site: Arc<Site>) -> Session {
        Session {
            site,
            steps: 0,
            macros: HashMap::new(),
            client: None,
            sender: None,
            recipients: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
            size: 0,
            oversize: false,
        }
    }

    /// Forgets the message (after its end, or an abort); the connection stays.
    fn reset_message(&mut self) {
        self.clear_content();
        self.macros
            .retain(|k, _| !MESSAGE_MACROS.contains(&k.as_str()));
    }

    /// Forgets the envelope and content, not the macros (those of MAIL come just before it).
    fn clear_content(&mut self) {
        self.sender = None;
        self.recipients.clear();
        self.headers.clear();
        self.body = Vec::new();
        self.size = 0;
        self.oversize = false;
    }

    /// The fail-open (or tempfail) answer to the end of a message that could not be judged.
    pub fn on_error(&mut self) -> Replies {
        self.reset_message();
        match self.site.config.milter.on_error {
            MilterOnError::Accept => Replies::one(reply::ACCEPT, b""),
            MilterOnError::Tempfail => Replies::one(reply::TEMPFAIL, b""),
        }
    }

    /// The answer to a command whose handling panicked: the on_error answer at the end of
    /// the message, nothing for the commands that get no reply, else continue.
    pub fn after_panic(&mut self, code: u8) -> Replies {
        match code {
            cmd::BODYEOB => self.on_error(),
            cmd::MACRO | cmd::ABORT | cmd::QUIT_NC => Replies::none(),
            cmd::OPTNEG | cmd::QUIT => Replies {
                packets: Vec::new(),
                close: true,
            },
            _ => self.go_on(code),
        }
    }

    /// "Continue", unless the step of the command was negotiated as one without replies.
    fn go_on(&self, code: u8) -> Replies {
        if self.steps & no_reply_step(code) != 0 {
            Replies::none()
        } else {
            Replies::one(reply::CONTINUE, b"")
        }
    }

    /// Answers one packet.
    pub fn handle(&mut self, code: u8, data: &[u8]) -> Replies {
        match code {
            cmd::OPTNEG => match negotiate(data) {
                Some((answer, steps)) => {
                    self.steps = steps;
                    Replies::one(reply::OPTNEG, &answer)
                }
                None => Replies {
                    packets: Vec::new(),
                    close: true,
                },
            },
            cmd::MACRO => {
                let parts = strings(data.get(1..).unwrap_or_default());
                for pair in parts.chunks(2) {
                    if let [name, value] = pair {
                        let name = String::from_utf8_lossy(name);
                        let name = name.trim_start_matches('{').trim_end_matches('}');
                        self.macros
                            .insert(name.to_string(), String::from_utf8_lossy(value).into());
                    }
                }
                Replies::none()
            }
            cmd::CONNECT => {
                self.client = connect_address(data);
                self.go_on(code)
            }
            cmd::MAIL => {
                self.clear_content();
                self.sender = strings(data)
                    .first()
                    .map(|s| bare_address(&String::from_utf8_lossy(s)));
                self.go_on(code)
            }
            cmd::RCPT => {
                if let Some(r) = strings(data).first()
                    && self.recipients.len() < 1000
                {
                    self.recipients
                        .push(bare_address(&String::from_utf8_lossy(r)));
                }
                self.go_on(code)
            }
            cmd::HEADER => {
                let parts = strings(data);
                if let [name, value, ..] = parts[..] {
                    self.count(name.len() + value.len() + 3);
                    if !self.oversize {
                        self.headers
                            .push((String::from_utf8_lossy(name).into(), value.to_vec()));
                    }
                }
                self.go_on(code)
            }
            cmd::BODY => {
                self.count(data.len());
                if !self.oversize {
                    self.body.extend_from_slice(data);
                }
                self.go_on(code)
            }
            cmd::BODYEOB => {
                if !data.is_empty() {
                    self.count(data.len());
                    if !self.oversize {
                        self.body.extend_from_slice(data);
                    }
                }
                let out = self.end_of_message();
                self.reset_message();
                out
            }
            cmd::ABORT => {
                self.reset_message();
                Replies::none()
            }
            cmd::QUIT => Replies {
                packets: Vec::new(),
                close: true,
            },
            cmd::QUIT_NC => {
                self.reset_message();
                self.macros.clear();
                self.client = None;
                Replies::none()
            }
            // HELO, end of headers, DATA, unknown commands, and anything newer: go on.
            _ => self.go_on(code),
        }
    }

    fn count(&mut self, n: usize) {
        self.size = self.size.saturating_add(n as u64);
        if self.size > self.site.config.max_size && !self.oversize {
            self.oversize = true;
            self.headers = Vec::new();
            self.body = Vec::new();
        }
    }

    /// The message as the MTA passed it: header fields, an empty line, the body.
    fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(self.body.len() + 64 * self.headers.len());
        for (name, value) in &self.headers {
            m.extend_from_slice(name.as_bytes());
            m.push(b':');
            if !value.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                m.push(b' ');
            }
            m.extend_from_slice(value);
            m.extend_from_slice(b"\r\n");
        }
        m.extend_from_slice(b"\r\n");
        m.extend_from_slice(&self.body);
        m
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    fn queue_id(&self) -> &str {
        self.macros.get("i").map_or("-", String::as_str)
    }

    fn outbound(&self) -> bool {
        let authenticated = self
            .macros
            .get("auth_authen")
            .is_some_and(|a| !a.trim().is_empty());
        authenticated
            || self
                .client
                .is_some_and(|ip| self.site.config.own(None).is_own_ip(ip))
    }

    fn local_recipients(&self) -> Vec<String> {
        let own = self.site.config.own(None);
        self.recipients
            .iter()
            .filter(|r| {
                own.domains.is_empty()
                    || r.rsplit_once('@')
                        .is_some_and(|(_, d)| own.is_own_domain(&d.to_ascii_lowercase()))
            })
            .cloned()
            .collect()
    }

    fn end_of_message(&mut self) -> Replies {
        let id = self.queue_id().to_string();
        if self.oversize {
            say(&format!(
                "{id}: larger than max_size ({} bytes): accepted unjudged",
                self.site.config.max_size
            ));
            return Replies::one(reply::CONTINUE, b"");
        }
        if self.outbound() {
            return self.outbound_end(&id);
        }
        let local = self.local_recipients();
        if local.is_empty() {
            return Replies::one(reply::CONTINUE, b"");
        }
        self.inbound_end(&id, local)
    }

    fn outbound_end(&mut self, id: &str) -> Replies {
        let mut out = Replies::none();
        let (from, date, msgid) = (
            self.header("From"),
            self.header("Date"),
            self.header("Message-ID"),
        );
        let config = &self.site.config;
        if let (Some(key), Some(from), Some(date), Some(msgid)) =
            (&self.site.stamp_key, from, date, msgid)
            && config.milter.stamp_outbound.unwrap_or(true)
        {
            let value = stamp::make(key, backstop::proofs::now(), from, date, msgid);
            out.packets
                .push((reply::ADDHEADER, zstrings(&[stamp::FIELD, &value])));
            say(&format!("{id}: outbound: stamped with key {}", key.id));
        } else if self.site.stamp_key.is_some() {
            say(&format!(
                "{id}: outbound: not stamped (no From, Date or Message-ID field yet)"
            ));
        }
        if config.milter.learn_outbound
            && let Some(msgid) = msgid
        {
            self.learn(id, msgid);
        }
        if let Some(tagged) = self.batv_sender() {
            say(&format!("{id}: outbound: envelope sender BATV-signed"));
            out.packets
                .push((reply::CHGFROM, zstrings(&[&format!("<{tagged}>")])));
        }
        out.packets.push((reply::CONTINUE, Vec::new()));
        out
    }

    /// The BATV-signed envelope sender, when `milter.batv_sign` asks for it and the sender is
    /// of an own domain (all are with no own domains set); never for the null sender or an
    /// address already tagged.
    fn batv_sender(&self) -> Option<String> {
        let config = &self.site.config;
        if !config.milter.batv_sign {
            return None;
        }
        let secret = config.batv.secrets.get(config.milter.batv_key)?;
        let sender = self.sender.as_deref()?;
        let (local, domain) = sender.rsplit_once('@')?;
        let own = config.own(None);
        if local.is_empty()
            || batv::parse(sender).is_some()
            || !(own.domains.is_empty() || own.is_own_domain(&domain.to_ascii_lowercase()))
        {
            return None;
        }
        let today = backstop::proofs::now().div_euclid(86_400);
        Some(batv::sign(
            secret.value.as_bytes(),
            config.milter.batv_key,
            today,
            sender,
        ))
    }

    fn learn(&self, id: &str, msgid: &[u8]) {
        let config = &self.site.config;
        if let Some(shared) = &self.site.shared {
            let msgid = String::from_utf8_lossy(msgid);
            if let Err(e) = shared.learn(&msgid, backstop::proofs::now()) {
                say(&format!(
                    "{id}: outbound: not learnt into the shared ledger: {e}"
                ));
            }
            return;
        }
        let Some(paths) = ledger::Paths::from_config(config.ledger.path.as_deref()) else {
            return;
        };
        let Some(norm) = ledger::normalize_id(&String::from_utf8_lossy(msgid)) else {
            return;
        };
        let now = backstop::proofs::now();
        let expire = config
            .ledger
            .expire_days
            .as_ref()
            .map_or(ledger::DEFAULT_EXPIRE_DAYS, |d| d.value);
        let sent = [ledger::Sent {
            id: norm,
            date: now,
        }];
        if let Err(e) = ledger::learn(&paths, &sent, &[ledger::Mark::Hook], now, expire) {
            say(&format!(
                "{id}: outbound: cannot learn into the ledger {}: {e}",
                paths.ledger.display()
            ));
        }
    }

    fn inbound_end(&mut self, id: &str, local: Vec<String>) -> Replies {
        let config = self.site.config.clone();
        let rules = match self.site.take_rules() {
            Some(r) => r,
            None => match RuleSet::build(&config.user_rules, "milter config") {
                Ok(r) => r,
                Err(e) => {
                    say(&format!("{id}: cannot build the rules: {e}: on_error"));
                    return self.on_error();
                }
            },
        };
        let env = EnvVars {
            sender: self.sender.clone(),
            recipient: local.first().map(|r| ("RCPT".to_string(), r.clone())),
            recipients: local
                .iter()
                .map(|r| ("RCPT".to_string(), r.clone()))
                .collect(),
        };
        let raw = Arc::new(self.message());
        let (eval, rules) = evaluate_keeping_rules(&raw, &config, rules, &env);
        if let Some(r) = rules {
            self.site.give_back(r);
        }
        if let Some(error) = &eval.error {
            say(&format!("{id}: not judged ({error}): on_error"));
            if config.milter.on_error == MilterOnError::Accept {
                // Fail open, and say so in the message.
                let mut out = Replies::none();
                out.packets.extend(self.tags(&eval));
                out.packets.push((reply::CONTINUE, Vec::new()));
                return out;
            }
            return self.on_error();
        }
        say(&format!(
            "{id}: inbound: {} ({})",
            eval.verdict.as_str(),
            eval.reasons.last().map_or("", String::as_str)
        ));
        if eval.verdict == Verdict::Clean {
            return Replies::one(reply::CONTINUE, b"");
        }
        let mut out = Replies::none();
        if eval.verdict == Verdict::Backscatter {
            match config.milter.backscatter {
                MilterBackscatter::Reject => {
                    let text = format!("550 5.7.1 backscatter refused: {}", reason(&eval));
                    return Replies::one(reply::REPLYCODE, &zstrings(&[&text]));
                }
                MilterBackscatter::Quarantine => out
                    .packets
                    .push((reply::QUARANTINE, zstrings(&[&reason(&eval)]))),
                MilterBackscatter::Tag => {}
            }
        }
        out.packets.extend(self.tags(&eval));
        out.packets.push((reply::CONTINUE, Vec::new()));
        out
    }

    /// Removes the `X-Backstop-*` fields the message came with (anyone can write them), and
    /// adds ours.
    fn tags(&self, eval: &Evaluation) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut seen: HashMap<String, u32> = HashMap::new();
        for (name, _) in &self.headers {
            if name.len() > 10 && name[..10].eq_ignore_ascii_case("X-Backstop") {
                let n = seen.entry(name.to_ascii_lowercase()).or_insert(0);
                *n += 1;
                let mut data = n.to_be_bytes().to_vec();
                data.extend(zstrings(&[name, ""]));
                out.push((reply::CHGHEADER, data));
            }
        }
        let lines = backstop::trace::trace_headers(b"\n", eval);
        for line in String::from_utf8_lossy(&lines).lines() {
            if let Some((name, value)) = line.split_once(": ") {
                out.push((reply::ADDHEADER, zstrings(&[name, value])));
            }
        }
        out
    }
}

/// The macros that belong to one message, forgotten at its end.
const MESSAGE_MACROS: &[&str] = &[
    "i",
    "auth_type",
    "auth_authen",
    "auth_author",
    "mail_addr",
    "mail_host",
    "mail_mailer",
    "rcpt_addr",
    "rcpt_host",
    "rcpt_mailer",
];

/// The reason for a reply line: one line of printable ASCII, at most 300 characters.
fn reason(eval: &Evaluation) -> String {
    let text = eval.reasons.last().map_or("", String::as_str);
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let words: Vec<&str> = clean.split_whitespace().collect();
    let line = words.join(" ").replace('%', "%%");
    backstop::util::text::cut_at_char(&line, 300).to_string()
}

/// Zero-terminated strings.
fn zstrings(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend(p.bytes().filter(|&b| b != 0));
        out.push(0);
    }
    out
}

/// `<a@b>` (and any ESMTP parameters after it) to `a@b`; `<>` to the empty string.
fn bare_address(text: &str) -> String {
    let t = text.trim();
    let t = t.split(char::is_whitespace).next().unwrap_or(t);
    t.trim_start_matches('<').trim_end_matches('>').to_string()
}

/// The client address of a CONNECT packet: host name, family, port, address.
fn connect_address(data: &[u8]) -> Option<IpAddr> {
    let nul = data.iter().position(|&b| b == 0)?;
    let family = *data.get(nul + 1)?;
    if family != b'4' && family != b'6' {
        return None;
    }
    let addr = data.get(nul + 4..)?;
    let addr = addr.strip_suffix(b"\0").unwrap_or(addr);
    let text = std::str::from_utf8(addr).ok()?;
    let text = text.strip_prefix("IPv6:").unwrap_or(text);
    text.parse().ok()
}

fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "backstop-milter: {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "k1 0123456789abcdef0123\n";

    fn site(yaml: &str) -> Arc<Site> {
        let config = Config::from_str(yaml, "test").expect("config");
        Arc::new(Site::new(
            config,
            Some(stamp::parse_keys(KEY).expect("key")[0].clone()),
            None,
        ))
    }

    fn connect(s: &mut Session, addr: &str) {
        let mut c = b"client.example\x004\x00\x19".to_vec();
        c.extend_from_slice(addr.as_bytes());
        c.push(0);
        assert_eq!(s.handle(cmd::CONNECT, &c).packets[0].0, reply::CONTINUE);
    }

    fn send(
        s: &mut Session,
        sender: &str,
        rcpt: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Replies {
        s.handle(cmd::MAIL, &zstrings(&[&format!("<{sender}>")]));
        s.handle(cmd::RCPT, &zstrings(&[&format!("<{rcpt}>")]));
        for (n, v) in headers {
            s.handle(cmd::HEADER, &zstrings(&[n, v]));
        }
        s.handle(cmd::EOH, b"");
        s.handle(cmd::BODY, body.as_bytes());
        s.handle(cmd::BODYEOB, b"")
    }

    const CONFIG: &str = "own:\n  domains: [example.org]\n  networks: [192.0.2.0/24]\n";

    #[test]
    fn outbound_mail_is_stamped_and_the_stamp_verifies() {
        let site = site(CONFIG);
        let mut s = Session::new(site.clone());
        connect(&mut s, "192.0.2.7");
        let headers = [
            ("From", "Me <me@example.org>"),
            ("Date", "Sun, 6 Dec 2026 09:00:00 +0000"),
            ("Message-ID", "<1@example.org>"),
        ];
        let r = send(
            &mut s,
            "me@example.org",
            "you@example.net",
            &headers,
            "hi\r\n",
        );
        assert_eq!(r.packets.len(), 2);
        let (code, data) = &r.packets[0];
        assert_eq!(*code, reply::ADDHEADER);
        let parts = strings(data);
        assert_eq!(parts[0], stamp::FIELD.as_bytes());
        let block = format!(
            "From: Me <me@example.org>\nDate: Sun, 6 Dec 2026 09:00:00 +0000\nMessage-ID: <1@example.org>\n{}: {}\n\n",
            stamp::FIELD,
            String::from_utf8_lossy(parts[1])
        );
        let keys = stamp::parse_keys(KEY).expect("key");
        assert!(matches!(
            stamp::verify(block.as_bytes(), &keys),
            stamp::Outcome::Valid { .. }
        ));
        assert_eq!(r.packets[1].0, reply::CONTINUE);
    }

    #[test]
    fn authentication_makes_a_foreign_client_outbound() {
        let mut s = Session::new(site(CONFIG));
        connect(&mut s, "198.51.100.1");
        s.handle(
            cmd::MACRO,
            &[b'M']
                .iter()
                .copied()
                .chain(zstrings(&["{auth_authen}", "me"]))
                .collect::<Vec<_>>(),
        );
        let headers = [
            ("From", "me@example.org"),
            ("Date", "Sun, 6 Dec 2026 09:00:00 +0000"),
            ("Message-ID", "<2@example.org>"),
        ];
        let r = send(
            &mut s,
            "me@example.org",
            "you@example.net",
            &headers,
            "hi\r\n",
        );
        assert_eq!(r.packets[0].0, reply::ADDHEADER);
    }

    #[test]
    fn inbound_clean_mail_is_untouched() {
        let mut s = Session::new(site(CONFIG));
        connect(&mut s, "198.51.100.1");
        let headers = [
            ("From", "friend@example.net"),
            ("To", "me@example.org"),
            ("Subject", "lunch?"),
        ];
        let r = send(
            &mut s,
            "friend@example.net",
            "me@example.org",
            &headers,
            "At noon.\r\n",
        );
        assert_eq!(r.packets, vec![(reply::CONTINUE, Vec::new())]);
    }

    #[test]
    fn the_packaged_site_config_parses_with_its_milter_settings() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/milter/milter.yaml");
        let text = std::fs::read_to_string(path).expect("packaging/milter/milter.yaml");
        let config = Config::from_str(&text, path).expect("parses");
        assert_eq!(config.milter.backscatter, MilterBackscatter::Reject);
        assert_eq!(config.milter.on_error, MilterOnError::Accept);
        assert!(config.stamp.key_file.is_some());
        let own = config.own(None);
        assert!(own.is_own_ip("192.0.2.9".parse().expect("ip")));
        assert!(!own.is_own_ip("198.51.100.9".parse().expect("ip")));
    }

    #[test]
    fn tag_policy_accepts_backscatter_with_headers_and_drops_forged_ones() {
        let yaml = "own:\n  domains: [example.jp]\n  hosts: [mail.own.example]\n  \
                    networks: [198.51.100.0/24]\nthreshold: 8\nmilter:\n  backscatter: tag\n";
        let mut s = Session::new(site(yaml));
        connect(&mut s, "203.0.113.5");
        let raw = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/corpus/bounces/sisimai-bsd/lhost-postfix-02.eml"
        ))
        .expect("fixture");
        let text = String::from_utf8_lossy(&raw).replace("\r\n", "\n");
        let (head, body) = text.split_once("\n\n").expect("header and body");
        s.handle(cmd::MAIL, &zstrings(&["<>"]));
        s.handle(cmd::RCPT, &zstrings(&["<kijitora@example.jp>"]));
        s.handle(cmd::HEADER, &zstrings(&["X-Backstop-Verdict", "clean"]));
        for field in head
            .split('\n')
            .fold(Vec::<String>::new(), |mut acc, line| {
                if line.starts_with([' ', '\t']) {
                    if let Some(last) = acc.last_mut() {
                        last.push('\n');
                        last.push_str(line);
                    }
                } else {
                    acc.push(line.to_string());
                }
                acc
            })
        {
            let (name, value) = field.split_once(':').expect("field");
            s.handle(cmd::HEADER, &zstrings(&[name, value.trim_start()]));
        }
        s.handle(cmd::BODY, body.as_bytes());
        let r = s.handle(cmd::BODYEOB, b"");
        let codes: Vec<u8> = r.packets.iter().map(|p| p.0).collect();
        assert_eq!(
            codes,
            vec![
                reply::CHGHEADER,
                reply::ADDHEADER,
                reply::ADDHEADER,
                reply::CONTINUE
            ],
            "{r:?}"
        );
        assert_eq!(&r.packets[0].1[..4], &1u32.to_be_bytes());
        assert!(
            String::from_utf8_lossy(&r.packets[1].1).starts_with("X-Backstop-Verdict\0backscatter"),
            "{r:?}"
        );
    }

    #[test]
    fn a_panic_gets_the_on_error_answer_and_no_reply_where_none_is_due() {
        let mut s = Session::new(site(CONFIG));
        assert_eq!(
            s.after_panic(cmd::BODYEOB).packets,
            vec![(reply::ACCEPT, Vec::new())]
        );
        assert!(s.after_panic(cmd::MACRO).packets.is_empty());
        assert!(s.after_panic(cmd::OPTNEG).close);
        let mut t = Session::new(site(&format!("{CONFIG}milter:\n  on_error: tempfail\n")));
        assert_eq!(
            t.after_panic(cmd::BODYEOB).packets,
            vec![(reply::TEMPFAIL, Vec::new())]
        );
    }

    #[test]
    fn learn_outbound_puts_the_message_id_in_the_ledger() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger_path = dir.path().join("ledger");
        let yaml = format!(
            "{CONFIG}ledger:\n  path: {}\nmilter:\n  learn_outbound: true\n",
            ledger_path.display()
        );
        let mut s = Session::new(site(&yaml));
        connect(&mut s, "192.0.2.7");
        let headers = [
            ("From", "me@example.org"),
            ("Date", "Sun, 6 Dec 2026 09:00:00 +0000"),
            ("Message-ID", "<learned-1@example.org>"),
        ];
        send(
            &mut s,
            "me@example.org",
            "you@example.net",
            &headers,
            "hi\r\n",
        );
        let paths = ledger::Paths::new(ledger_path);
        let now = backstop::proofs::now();
        let ids = |id: &str| vec![ledger::normalize_id(id).expect("id")];
        let found = ledger::lookup(&paths, &ids("<learned-1@example.org>"), now, 60)
            .expect("lookup")
            .expect("a ledger");
        assert!(found.found.is_some(), "{:?}", found.found);
        let other = ledger::lookup(&paths, &ids("<other@example.org>"), now, 60)
            .expect("lookup")
            .expect("a ledger");
        assert!(other.found.is_none());
    }

    #[test]
    fn batv_signs_own_senders_only_and_leaves_null_and_tagged_ones() {
        let yaml = format!(
            "{CONFIG}batv:\n  secrets: [zero, one-secret]\nmilter:\n  batv_sign: true\n  batv_key: 1\n"
        );
        let site = site(&yaml);
        let headers = [
            ("From", "me@example.org"),
            ("Date", "Sun, 6 Dec 2026 09:00:00 +0000"),
            ("Message-ID", "<batv-1@example.org>"),
        ];
        let chgfrom = |sender: &str| {
            let mut s = Session::new(site.clone());
            connect(&mut s, "192.0.2.7");
            let r = send(&mut s, sender, "you@example.net", &headers, "hi\r\n");
            assert_eq!(r.packets.last().map(|p| p.0), Some(reply::CONTINUE));
            r.packets
                .iter()
                .find(|p| p.0 == reply::CHGFROM)
                .map(|p| String::from_utf8_lossy(&p.1).into_owned())
        };
        let tagged = chgfrom("me@example.org").expect("an own sender is signed");
        let address = tagged
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix(">\0"))
            .expect("<address> and a zero byte");
        let tag = batv::parse(address).expect("a prvs tag");
        assert_eq!((tag.key, tag.address.as_str()), (1, "me@example.org"));
        let secrets = vec!["zero".to_string(), "one-secret".to_string()];
        let today = backstop::proofs::now().div_euclid(86_400);
        assert_eq!(batv::check(&tag, &secrets, today), batv::Check::Valid);
        assert_eq!(chgfrom(""), None, "the null sender");
        assert_eq!(chgfrom(address), None, "already tagged");
        assert_eq!(chgfrom("someone@example.net"), None, "not an own domain");
    }

    #[test]
    fn the_commands_of_no_reply_steps_get_no_reply() {
        let optneg = |steps: u32| {
            let mut o = Vec::new();
            for word in [6u32, 0x1ff, steps] {
                o.extend_from_slice(&word.to_be_bytes());
            }
            o
        };
        let headers = [("From", "friend@example.net"), ("Subject", "lunch?")];
        let commands = |s: &mut Session| {
            let mut c = b"client.example\x004\x00\x19198.51.100.1\x00".to_vec();
            let mut replies = vec![s.handle(cmd::CONNECT, &c).packets];
            c = zstrings(&["<friend@example.net>"]);
            replies.push(s.handle(cmd::MAIL, &c).packets);
            c = zstrings(&["<me@example.org>"]);
            replies.push(s.handle(cmd::RCPT, &c).packets);
            for (n, v) in headers {
                replies.push(s.handle(cmd::HEADER, &zstrings(&[n, v])).packets);
            }
            replies.push(s.handle(cmd::EOH, b"").packets);
            replies.push(s.handle(cmd::BODY, b"At noon.\r\n").packets);
            (replies, s.handle(cmd::BODYEOB, b"").packets)
        };
        let go_on = vec![(reply::CONTINUE, Vec::new())];
        // Postfix offers every step: only the end of the message is answered.
        let mut s = Session::new(site(CONFIG));
        let answer = s.handle(cmd::OPTNEG, &optneg(0x1f_ffff)).packets;
        assert_eq!(answer[0].0, reply::OPTNEG);
        let (replies, end) = commands(&mut s);
        assert!(replies.iter().all(Vec::is_empty), "{replies:?}");
        assert_eq!(end, go_on);
        // An MTA that offers none: every command is answered.
        let mut s = Session::new(site(CONFIG));
        s.handle(cmd::OPTNEG, &optneg(0));
        let (replies, end) = commands(&mut s);
        assert_eq!(replies.len(), 7);
        assert!(replies.iter().all(|r| *r == go_on), "{replies:?}");
        assert_eq!(end, go_on);
        // Nor when a session panics in a command without replies.
        let mut s = Session::new(site(CONFIG));
        s.handle(cmd::OPTNEG, &optneg(0x1f_ffff));
        assert!(s.after_panic(cmd::HEADER).packets.is_empty());
        assert_eq!(s.after_panic(cmd::BODYEOB).packets[0].0, reply::ACCEPT);
    }

    #[test]
    fn connect_addresses() {
        assert_eq!(
            connect_address(b"h\x004\x00\x19127.0.0.2\x00"),
            Some("127.0.0.2".parse().expect("ip"))
        );
        assert_eq!(
            connect_address(b"h\x006\x00\x19IPv6:::1\x00"),
            Some("::1".parse().expect("ip"))
        );
        assert_eq!(connect_address(b"h\x00L\x00\x00/sock\x00"), None);
        assert_eq!(connect_address(b"h"), None);
    }

    #[test]
    fn oversize_messages_are_accepted_unjudged() {
        let mut s = Session::new(site("max_size: 100\nown:\n  domains: [example.org]\n"));
        connect(&mut s, "198.51.100.1");
        let body = "x".repeat(500);
        let r = send(
            &mut s,
            "",
            "me@example.org",
            &[("Subject", "Undelivered Mail")],
            &body,
        );
        assert_eq!(r.packets, vec![(reply::CONTINUE, Vec::new())]);
        assert!(s.body.is_empty());
    }
}

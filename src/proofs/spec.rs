//! The proof sections of the config file (`ledger`, `dkim`, `batv`, `alarm`) as written: a leaf
//! that `config.rs` reads, so that nothing here imports the config back.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// `ledger:` the record of sent mail (see [`crate::proofs::ledger`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSpec {
    /// The ledger file; its key sits beside it as `FILE.key` (default:
    /// `$XDG_DATA_HOME/backstop/ledger`).
    #[serde(default)]
    pub path: Option<String>,
    /// Days an entry is kept (default 60).
    #[serde(default)]
    pub expire_days: Option<Spanned<u32>>,
    /// True (the default) when the ledger sees every message the user sends, so that a
    /// Message-ID it should know but does not is evidence of forgery. False: absence says nothing.
    #[serde(default)]
    pub complete: Option<bool>,
    /// `backstop-milter` only: the ledger shared by a fleet of MTAs, in Redis or Valkey
    /// (`redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` or `unix:/PATH`), instead of the file.
    #[serde(default)]
    pub redis: Option<String>,
    /// The key of the keyed hashes (default: the ledger file's `.key`); with `redis`, every
    /// MTA of the fleet needs the same key.
    #[serde(default)]
    pub key_file: Option<String>,
    /// The connect and read timeout for `redis`, in milliseconds (default 200).
    #[serde(default)]
    pub timeout_ms: Option<Spanned<u64>>,
}

/// The connect and read timeout for `ledger.redis` when `ledger.timeout_ms` is not set.
pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 200;

/// A ledger kept outside the process (`backstop-milter`'s shared one in Redis), asked for the
/// Message-IDs of a returned original. It holds only what was learnt while it could be
/// reached, so its absence of an ID proves nothing.
pub trait SharedLedger: Send + Sync + std::fmt::Debug {
    /// The first of `ids` that it holds; Err when it cannot answer now.
    fn find(&self, ids: &[String]) -> Result<Option<String>, String>;
}

/// One published DKIM key, as in DNS at `SELECTOR._domainkey.DOMAIN`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKeySpec {
    pub domain: Spanned<String>,
    pub selector: Spanned<String>,
    /// The TXT record: `v=DKIM1; k=rsa; p=MIIB...`.
    pub record: Spanned<String>,
}

/// `dkim:` the user's signing domains and their public keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSpec {
    #[serde(default)]
    pub keys: Vec<DkimKeySpec>,
    /// A file of `SELECTOR._domainkey.DOMAIN RECORD` lines (`backstop dkim-keys fetch` writes
    /// it), read only when a returned original carries an own signature.
    #[serde(default)]
    pub keys_file: Option<String>,
    /// True when every message from the signing domains is signed: a returned original from
    /// one of them with no valid own signature is then evidence of forgery.
    #[serde(default)]
    pub signs_all: bool,
}

/// `batv:` Exim-style `prvs=` tags on the envelope sender.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatvSpec {
    /// The secrets; the tag's key digit picks one (0 is the first).
    #[serde(default)]
    pub secrets: Vec<Spanned<String>>,
    /// True when every bounce must come to a valid tag: an untagged or badly tagged one is
    /// backscatter.
    #[serde(default)]
    pub required: bool,
}

/// `stamp:` the site keys of the `X-Bounce-Stamp` field (see [`crate::proofs::stamp`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StampSpec {
    /// The keys file (`KEYID SECRET` lines; the first key signs), read only when a returned
    /// original carries a stamp. It must be readable by the mail user.
    #[serde(default)]
    pub key_file: Option<String>,
    /// Days a stamp stays valid (default 60, as the ledger's expiry).
    #[serde(default)]
    pub max_age_days: Option<Spanned<u32>>,
}

/// What the milter does with backscatter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MilterBackscatter {
    /// Refuse it at the end of DATA with 550 5.7.1 and the reason.
    #[default]
    Reject,
    /// Put it on hold (Postfix's quarantine).
    Quarantine,
    /// Add the `X-Backstop-*` fields and accept it.
    Tag,
}

/// What the milter does when it cannot judge a message (an internal error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MilterOnError {
    /// Accept the message (fail open).
    #[default]
    Accept,
    /// Answer 451 4.3.0: the sender tries again later.
    Tempfail,
}

/// `milter:` the site settings of `backstop-milter` (the per-user commands ignore them).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MilterSpec {
    #[serde(default)]
    pub backscatter: MilterBackscatter,
    #[serde(default)]
    pub on_error: MilterOnError,
    /// Stamp outbound mail (default true when `stamp.key_file` is set).
    #[serde(default)]
    pub stamp_outbound: Option<bool>,
    /// Learn the Message-IDs of outbound mail into the ledger (`ledger.path`; default false).
    #[serde(default)]
    pub learn_outbound: bool,
    /// BATV-sign the envelope sender of outbound mail from an own domain (`prvs=`), with the
    /// secret `batv_key` (a key digit, default 0) of `batv.secrets`.
    #[serde(default)]
    pub batv_sign: bool,
    #[serde(default)]
    pub batv_key: usize,
}

/// `alarm:` the warning filed when legitimate bounces come in a wave.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// At least this many legitimate bounces within the window...
    #[serde(default = "AlarmSpec::default_bounces")]
    pub bounces: Spanned<u32>,
    #[serde(default = "AlarmSpec::default_window")]
    pub window_minutes: Spanned<u32>,
    /// ...for at least this many distinct recipients of the originals.
    #[serde(default = "AlarmSpec::default_recipients")]
    pub recipients: Spanned<u32>,
    /// Run this program (no shell; the alarm text on its standard input) instead of filing the
    /// alarm into the inbox.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// The state file (default: `$XDG_DATA_HOME/backstop/alarm`).
    #[serde(default)]
    pub state: Option<String>,
}

fn yes() -> bool {
    true
}

fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(
        value,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

impl AlarmSpec {
    fn default_bounces() -> Spanned<u32> {
        unspanned(10)
    }
    fn default_window() -> Spanned<u32> {
        unspanned(60)
    }
    fn default_recipients() -> Spanned<u32> {
        unspanned(5)
    }
}

impl Default for AlarmSpec {
    fn default() -> AlarmSpec {
        AlarmSpec {
            enabled: true,
            bounces: AlarmSpec::default_bounces(),
            window_minutes: AlarmSpec::default_window(),
            recipients: AlarmSpec::default_recipients(),
            command: None,
            state: None,
        }
    }
}

/// A config error: line, column and message.
pub type SpecError = (u64, u64, String);

fn at<T>(spanned: &Spanned<T>, message: String) -> SpecError {
    (
        spanned.referenced.line(),
        spanned.referenced.column(),
        message,
    )
}

/// Checks the proof sections for values that cannot work (a full key check is `lint`'s).
pub fn check(
    ledger: &LedgerSpec,
    dkim: &DkimSpec,
    batv: &BatvSpec,
    alarm: &AlarmSpec,
    stamp: &StampSpec,
) -> Result<(), SpecError> {
    if let Some(days) = &ledger.expire_days
        && !(1..=3650).contains(&days.value)
    {
        return Err(at(
            days,
            "ledger.expire_days must be between 1 and 3650 (bounces come within days; the \
             default is 60)"
                .into(),
        ));
    }
    for key in &dkim.keys {
        for part in [&key.domain, &key.selector] {
            let v = part.value.trim();
            if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '@' || c == '/') {
                return Err(at(part, format!("invalid DKIM domain or selector {v:?}")));
            }
        }
        if !key.record.value.contains("p=") {
            return Err(at(
                &key.record,
                "a DKIM key record needs its p= tag (the public key), as published in DNS".into(),
            ));
        }
    }
    if let Some(t) = &ledger.timeout_ms
        && !(10..=10_000).contains(&t.value)
    {
        return Err(at(
            t,
            "ledger.timeout_ms must be between 10 and 10000 (the default is 200)".into(),
        ));
    }
    if batv.secrets.len() > 10 {
        return Err(at(
            &batv.secrets[10],
            "batv.secrets holds at most 10 secrets (key digits 0 to 9)".into(),
        ));
    }
    if let Some(s) = batv.secrets.iter().find(|s| s.value.is_empty()) {
        return Err(at(s, "a BATV secret must not be empty".into()));
    }
    if batv.required && batv.secrets.is_empty() {
        return Err((
            0,
            0,
            "batv.required needs batv.secrets: without a secret no tag can be valid".into(),
        ));
    }
    if let Some(days) = &stamp.max_age_days
        && !(1..=3650).contains(&days.value)
    {
        return Err(at(
            days,
            "stamp.max_age_days must be between 1 and 3650 (the default is 60)".into(),
        ));
    }
    if alarm.bounces.value < 2 {
        return Err(at(
            &alarm.bounces,
            "alarm.bounces must be at least 2 (one bounce is not a wave)".into(),
        ));
    }
    if !(1..=10_080).contains(&alarm.window_minutes.value) {
        return Err(at(
            &alarm.window_minutes,
            "alarm.window_minutes must be between 1 and 10080 (a week)".into(),
        ));
    }
    if alarm.command.as_ref().is_some_and(|c| c.is_empty()) {
        return Err((
            0,
            0,
            "alarm.command needs at least the program to run".into(),
        ));
    }
    Ok(())
}

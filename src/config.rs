//! The user's configuration: own domains, hosts and networks, actions and delivery targets.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::error::ConfigError;
use crate::evidence::own::{HostPattern, Own, parse_network};
use crate::proofs::spec::{
    AlarmSpec, BatvSpec, DkimSpec, LedgerSpec, MilterSpec, SharedLedger, StampSpec,
};
use crate::rules::RuleSpec;
use crate::store::maildir::Layout;
use crate::store::mbox::{DEFAULT_LOCKS, Lock};

/// Default limit above which a message is delivered to the inbox without being parsed.
pub const DEFAULT_MAX_SIZE: u64 = 32 * 1024 * 1024;

/// What to do with a message of a given verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The inbox.
    Inbox,
    /// The backscatter folder (`folder:` in the config).
    Folder,
    /// Thrown away. Allowed only for backscatter.
    Discard,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Inbox => "inbox",
            Action::Folder => "folder",
            Action::Discard => "discard",
        }
    }
}

/// Per-verdict actions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Actions {
    #[serde(default = "Actions::folder")]
    pub backscatter: Spanned<Action>,
    #[serde(default = "Actions::folder")]
    pub unverified_bounce: Spanned<Action>,
}

impl Actions {
    fn folder() -> Spanned<Action> {
        Spanned::new(
            Action::Folder,
            serde_saphyr::Location::UNKNOWN,
            serde_saphyr::Location::UNKNOWN,
        )
    }
}

impl Default for Actions {
    fn default() -> Actions {
        Actions {
            backscatter: Actions::folder(),
            unverified_bounce: Actions::folder(),
        }
    }
}

/// The user's own mail infrastructure, as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnSpec {
    #[serde(default)]
    pub domains: Vec<Spanned<String>>,
    #[serde(default)]
    pub message_id_domains: Vec<Spanned<String>>,
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    #[serde(default)]
    pub networks: Vec<Spanned<String>>,
}

/// The config file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub own: OwnSpec,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    #[serde(default)]
    pub actions: Option<Actions>,
    /// Score at or above which a message counts as a bounce or automatic reply.
    #[serde(default)]
    pub threshold: Option<Spanned<i32>>,
    #[serde(default)]
    pub maildir: Option<String>,
    #[serde(default)]
    pub mbox: Option<String>,
    #[serde(default)]
    pub folder: Option<Spanned<String>>,
    #[serde(default)]
    pub layout: Option<Layout>,
    #[serde(default)]
    pub mbox_locks: Option<Vec<Lock>>,
    /// The backscatter mbox, when the inbox is an mbox.
    #[serde(default)]
    pub mbox_folder: Option<String>,
    #[serde(default)]
    pub log: Option<String>,
    #[serde(default)]
    pub max_size: Option<Spanned<Size>>,
    /// Milliseconds of CPU time that judging one message may take.
    #[serde(default)]
    pub cpu_budget_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub trace_headers: Option<bool>,
    /// The proofs (see `crate::proofs`).
    #[serde(default)]
    pub ledger: LedgerSpec,
    #[serde(default)]
    pub dkim: DkimSpec,
    #[serde(default)]
    pub batv: BatvSpec,
    #[serde(default)]
    pub alarm: AlarmSpec,
    #[serde(default)]
    pub stamp: StampSpec,
    /// The site settings of `backstop-milter`.
    #[serde(default)]
    pub milter: MilterSpec,
}

/// Where delivered mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbox {
    Maildir(PathBuf),
    Mbox(PathBuf),
}

/// The effective configuration: the file (if any) merged over the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, or None for built-in defaults only.
    pub path: Option<PathBuf>,
    pub own: OwnSpec,
    /// `own`, ready to match against: built once, when first asked for (see [`Config::own`]);
    /// clean mail never needs it.
    own_built: OnceLock<Own>,
    pub user_rules: Vec<RuleSpec>,
    pub actions: Actions,
    pub threshold: i32,
    pub inbox: Option<Inbox>,
    pub folder: String,
    pub layout: Layout,
    pub mbox_locks: Vec<Lock>,
    pub mbox_folder: PathBuf,
    pub log: Option<PathBuf>,
    pub max_size: u64,
    pub cpu_budget_ms: u64,
    pub trace_headers: bool,
    pub ledger: LedgerSpec,
    pub dkim: DkimSpec,
    pub batv: BatvSpec,
    pub alarm: AlarmSpec,
    pub stamp: StampSpec,
    pub milter: MilterSpec,
    /// The ledger shared by a fleet (set by `backstop-milter` when `ledger.redis` is given):
    /// asked instead of the ledger file.
    pub shared_ledger: Option<Arc<dyn SharedLedger>>,
    /// Paths the file gave relative, as written: resolved against the home directory.
    pub relative_paths: Vec<(&'static str, String)>,
}

/// The range `cpu_budget_ms` may take: under 10 ms even clean mail would go unjudged on a
/// busy machine; over 60 s a host's own time limit (Postfix's command_time_limit, Dovecot's
/// exec timeout) may strike first.
const MIN_CPU_BUDGET_MS: u64 = 10;
const MAX_CPU_BUDGET_MS: u64 = 60_000;

/// The default CPU budget (`cpu_budget_ms`), in milliseconds of CPU time for judging one message.
pub const DEFAULT_CPU_BUDGET_MS: u64 = 2000;

/// Default bounce score threshold.
pub const DEFAULT_THRESHOLD: i32 = 5;

impl Default for Config {
    fn default() -> Config {
        Config {
            path: None,
            own: OwnSpec::default(),
            own_built: OnceLock::new(),
            user_rules: Vec::new(),
            actions: Actions::default(),
            threshold: DEFAULT_THRESHOLD,
            inbox: None,
            folder: "Backscatter".to_string(),
            layout: Layout::default(),
            mbox_locks: DEFAULT_LOCKS.to_vec(),
            mbox_folder: expand_home("~/mail/Backscatter"),
            log: default_log(),
            max_size: DEFAULT_MAX_SIZE,
            cpu_budget_ms: DEFAULT_CPU_BUDGET_MS,
            trace_headers: true,
            ledger: LedgerSpec::default(),
            dkim: DkimSpec::default(),
            batv: BatvSpec::default(),
            alarm: AlarmSpec::default(),
            stamp: StampSpec::default(),
            milter: MilterSpec::default(),
            shared_ledger: None,
            relative_paths: Vec::new(),
        }
    }
}

impl Config {
    /// The default config file: `~/.config/backstop/config.yaml` on Linux.
    pub fn default_path() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "backstop")
            .map(|d| d.config_dir().join("config.yaml"))
    }

    /// The file `$BACKSTOP_CONFIG` names, if set: a site's every-user router or a host's
    /// environment can point all its users at one file. Like `--config`, it must exist.
    pub fn env_path() -> Option<PathBuf> {
        std::env::var_os("BACKSTOP_CONFIG")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    }

    /// Loads `path`, else `$BACKSTOP_CONFIG`, else the default file when it exists, else the
    /// built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path.map(Path::to_path_buf).or_else(Config::env_path) {
            Some(p) => Config::from_file(&p),
            None => match Config::default_path() {
                Some(p) if p.exists() => Config::from_file(&p),
                _ => Ok(Config::default()),
            },
        }
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        crate::perms::check_config_file(path).map_err(|why| ConfigError {
            untrusted: true,
            ..ConfigError::whole(&name, why)
        })?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::whole(&name, format!("cannot read: {e}")))?;
        let mut config = Config::from_str(&text, &name)?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and checks a config text; `name` is used in error messages.
    pub fn from_str(text: &str, name: &str) -> Result<Config, ConfigError> {
        let options = serde_saphyr::options! { strict_booleans: true };
        let file: ConfigFile = if text.trim().is_empty() {
            ConfigFile::default()
        } else {
            serde_saphyr::from_str_with_options(text, options)
                .map_err(|e| ConfigError::from_yaml(name, &e, text))?
        };
        let mut config = Config::default();
        for (key, value) in [
            ("maildir", &file.maildir),
            ("mbox", &file.mbox),
            ("mbox_folder", &file.mbox_folder),
            ("log", &file.log),
        ] {
            if let Some(v) = value
                && v != "off"
                && !v.starts_with('/')
                && !v.starts_with("~/")
            {
                config.relative_paths.push((key, v.clone()));
            }
        }
        // Every error the file has, in one run.
        let mut errors = check_own(&file.own, name);
        for rule in &file.rules {
            if let Err(e) = rule.check(name) {
                errors.push(e);
            }
        }
        if let Some(actions) = file.actions {
            if actions.unverified_bounce.value == Action::Discard {
                errors.push(ConfigError::at(
                    name,
                    &actions.unverified_bounce,
                    "only backscatter may be discarded; unverified bounces may be real",
                ));
            }
            config.actions = actions;
        }
        if let Some(t) = file.threshold {
            if t.value < 1 {
                errors.push(ConfigError::at(name, &t, "threshold must be at least 1"));
            }
            config.threshold = t.value;
        }
        config.inbox = match (file.maildir, file.mbox) {
            (Some(_), Some(_)) => {
                errors.push(ConfigError::whole(
                    name,
                    "give either maildir or mbox, not both",
                ));
                None
            }
            (Some(m), None) => Some(Inbox::Maildir(expand_home(&m))),
            (None, Some(m)) => Some(Inbox::Mbox(expand_home(&m))),
            (None, None) => None,
        };
        config.layout = file.layout.unwrap_or_default();
        if let Some(folder) = file.folder {
            if let Err(why) = check_folder(&folder.value, config.layout) {
                errors.push(ConfigError::at(name, &folder, why));
            }
            config.folder = folder.value;
        }
        if let Some(locks) = file.mbox_locks {
            config.mbox_locks = locks;
        }
        if let Some(f) = file.mbox_folder {
            config.mbox_folder = expand_home(&f);
        }
        if let Some(l) = file.log {
            config.log = log_path(&l);
        }
        config.max_size = file.max_size.map_or(DEFAULT_MAX_SIZE, |s| s.value.0);
        if let Some(b) = file.cpu_budget_ms {
            if !(MIN_CPU_BUDGET_MS..=MAX_CPU_BUDGET_MS).contains(&b.value) {
                errors.push(ConfigError::at(
                    name,
                    &b,
                    format!(
                        "cpu_budget_ms must be between {MIN_CPU_BUDGET_MS} and {MAX_CPU_BUDGET_MS} \
                         (milliseconds of CPU time for judging one message; the default is {})",
                        DEFAULT_CPU_BUDGET_MS
                    ),
                ));
            }
            config.cpu_budget_ms = b.value;
        }
        config.trace_headers = file.trace_headers.unwrap_or(true);
        if let Err((line, column, message)) = crate::proofs::spec::check(
            &file.ledger,
            &file.dkim,
            &file.batv,
            &file.alarm,
            &file.stamp,
        ) {
            errors.push(ConfigError {
                line,
                column,
                message,
                ..ConfigError::whole(name, "")
            });
        }
        if let Some(e) = ConfigError::all(errors) {
            return Err(e);
        }
        config.ledger = file.ledger;
        config.dkim = file.dkim;
        config.batv = file.batv;
        config.alarm = file.alarm;
        config.stamp = file.stamp;
        config.milter = file.milter;
        config.own = file.own;
        config.user_rules = file.rules;
        Ok(config)
    }

    /// What a valid config may still get wrong, for `lint` to say (one sentence each).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.actions.backscatter.value == Action::Discard && self.log.is_none() {
            w.push(
                "actions.backscatter is discard but the log is off: a discard must leave a \
                 record, so backscatter will be filed in the backscatter folder instead"
                    .to_string(),
            );
        }
        for h in &self.own.hosts {
            let fixed = h.value.trim().trim_start_matches(['*', '.']);
            if !fixed.contains('.') {
                w.push(format!(
                    "own.hosts {:?} matches far too many hosts: every bounce that passed one \
                     would count as yours; name your relays, e.g. *.out.example.org",
                    h.value
                ));
            }
        }
        if self.max_size == 0 {
            w.push(
                "max_size is 0: every message is larger, so nothing is filtered (the default \
                 is 32M)"
                    .to_string(),
            );
        }
        for (key, value) in &self.relative_paths {
            w.push(format!(
                "{key} {value:?} is relative: it is taken from your home directory, as \
                 procmail and maildrop do; write ~/{value} to say so"
            ));
        }
        w
    }

    /// The user's own infrastructure for one message: the one the config describes (built
    /// once per config), with the envelope recipient's domain as the own domain when the
    /// config names none.
    pub fn own(&self, recipient_domain: Option<&str>) -> Own {
        let mut own = self.own_built.get_or_init(|| build_own(&self.own)).clone();
        if own.domains.is_empty()
            && let Some(d) = recipient_domain
        {
            own.domains.push(normalize_domain(d));
            own.origin
                .insert(0, format!("own domain {d} from the envelope recipient"));
            if !own.message_id_domains_configured {
                own.message_id_domains = own.domains.clone();
            }
        }
        own
    }
}

/// The user's own infrastructure as far as the config and this machine say: the domains, message-id domains, hosts and networks written, and this machine's
/// host name when no relay is.
fn build_own(spec: &OwnSpec) -> Own {
    let domains: Vec<String> = spec
        .domains
        .iter()
        .map(|d| normalize_domain(&d.value))
        .collect();
    let mut origin = Vec::new();
    if !domains.is_empty() {
        origin.push("own domains from the config".to_string());
    }
    let mut message_id_domains: Vec<String> = spec
        .message_id_domains
        .iter()
        .map(|d| normalize_domain(&d.value))
        .collect();
    let message_id_domains_configured = !message_id_domains.is_empty();
    if message_id_domains.is_empty() {
        message_id_domains = domains.clone();
    }
    let mut hosts: Vec<HostPattern> = spec
        .hosts
        .iter()
        .map(|h| HostPattern::new(&h.value))
        .collect();
    let networks: Vec<_> = spec
        .networks
        .iter()
        .filter_map(|n| parse_network(&n.value))
        .collect();
    let relays_configured = !hosts.is_empty() || !networks.is_empty();
    if !relays_configured && let Some(host) = this_host_name() {
        origin.push(format!("own host {host}: this machine's name"));
        hosts.push(HostPattern::new(host));
    }
    Own {
        domains,
        message_id_domains,
        hosts,
        networks,
        relays_configured,
        message_id_domains_configured,
        origin,
    }
}

fn normalize_domain(d: &str) -> String {
    d.trim()
        .trim_start_matches('@')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// This machine's host name, if it has a dotted one (asked of the kernel once per process).
fn this_host_name() -> Option<&'static str> {
    static NAME: OnceLock<Option<String>> = OnceLock::new();
    NAME.get_or_init(|| {
        let uname = rustix::system::uname();
        let name = uname.nodename().to_str().ok()?.to_string();
        name.contains('.').then_some(name)
    })
    .as_deref()
}

fn check_own(own: &OwnSpec, name: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for n in &own.networks {
        if parse_network(&n.value).is_none() {
            errors.push(ConfigError::at(
                name,
                n,
                format!(
                    "invalid network {:?}: expected an IP address or a CIDR such as 192.0.2.0/24",
                    n.value
                ),
            ));
        }
    }
    for d in own.domains.iter().chain(&own.message_id_domains) {
        let v = normalize_domain(&d.value);
        if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '@' || c == '/') {
            errors.push(ConfigError::at(
                name,
                d,
                format!(
                    "invalid domain {:?}: expected a name such as example.org",
                    d.value
                ),
            ));
        }
    }
    for h in &own.hosts {
        let v = h.value.trim();
        if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
            errors.push(ConfigError::at(
                name,
                h,
                format!(
                    "invalid host name {:?}: expected a name such as mail.example.org or *.out.example.org",
                    h.value
                ),
            ));
        }
    }
    errors
}

/// A size in bytes: a whole number, or one with a suffix K, M or G (powers of 1024; KiB,
/// MB and the like are read the same), as `max_size: 32M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl Size {
    /// Reads `32M`, `512 KiB`, `1G`, `1000`.
    pub fn parse(text: &str) -> Option<Size> {
        let t = text.trim();
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let number: u64 = t[..digits].parse().ok()?;
        let unit = t[digits..].trim().to_ascii_lowercase();
        let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
            "" => 0,
            "k" => 10,
            "m" => 20,
            "g" => 30,
            _ => return None,
        };
        number.checked_mul(1 << shift).map(Size)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size in bytes, or with a suffix K, M or G, e.g. 32M")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v).map(Size).map_err(|_| {
                    E::custom("max_size takes a size of 0 or more, e.g. max_size: 32M")
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                Size::parse(v).ok_or_else(|| {
                    E::custom(format!(
                        "invalid size {v:?}: expected bytes, or a number with K, M or G \
                         (powers of 1024), e.g. max_size: 32M"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A folder name may have `.` or `/` as separators but no empty, `.` or `..` part, and no
/// control character (a newline or tab in a name breaks every tool that lists folders).
pub fn valid_folder(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains(char::is_control)
        && name.split(['/', '.']).all(|p| !p.is_empty() && p != "..")
}

/// Checks a backscatter folder name for the layout it is made in.
fn check_folder(name: &str, layout: Layout) -> Result<(), String> {
    if !valid_folder(name) {
        return Err(format!(
            "folder {name:?} must be a plain name such as Backscatter or Junk.Backscatter \
             (no control characters, no empty, \".\" or \"..\" part, not absolute)"
        ));
    }
    // What the Maildir writer accepts (in the fs layout, no cur, new or tmp level).
    crate::store::maildir::folder_levels(name, layout)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The value of a top-level `key: value` line, read leniently from a config that failed to
/// load: quotes and a trailing comment are dropped. A broken file must not send mail to a
/// mailbox nobody reads, so the inbox (`maildir:`, `mbox:`) and `log:` keys survive an error.
pub fn lenient_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        let v = match v.find(" #") {
            Some(i) => &v[..i],
            None => v,
        };
        let v = v.trim().trim_matches(['"', '\'']);
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// The inbox a config that failed to load names, read leniently (see [`lenient_value`]);
/// None when it names none, or both a Maildir and an mbox.
pub fn lenient_inbox(text: &str) -> Option<Inbox> {
    match (lenient_value(text, "maildir"), lenient_value(text, "mbox")) {
        (Some(m), None) => Some(Inbox::Maildir(expand_home(&m))),
        (None, Some(m)) => Some(Inbox::Mbox(expand_home(&m))),
        _ => None,
    }
}

/// The default decision log: `$XDG_STATE_HOME/backstop/log.jsonl`, that is
/// `~/.local/state/backstop/log.jsonl` unless XDG_STATE_HOME names another absolute directory.
pub fn default_log() -> Option<PathBuf> {
    let dirs = directories::BaseDirs::new()?;
    Some(dirs.state_dir()?.join("backstop").join("log.jsonl"))
}

/// A `log:` value: `off` for no log, else a path (see [`expand_home`]).
pub fn log_path(value: &str) -> Option<PathBuf> {
    (value.trim() != "off").then(|| expand_home(value.trim()))
}

/// Expands a leading `~/` to the home directory ($HOME, else the password database:
/// procmail and some hosts clear the environment), and resolves a relative path against it,
/// as procmail, maildrop and Dovecot do: the mail agent's working directory is no place to
/// file mail in.
pub fn expand_home(path: &str) -> PathBuf {
    let rest = match path.strip_prefix("~/") {
        Some(rest) => Some(rest),
        None if Path::new(path).is_relative() && !path.is_empty() => Some(path),
        None => None,
    };
    match (rest, directories::BaseDirs::new()) {
        (Some(rest), Some(dirs)) => dirs.home_dir().join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_line_and_column() {
        let err = Config::from_str("own:\n  networks: [192.0.2.0/24, not-a-net]\n", "c.yaml")
            .unwrap_err();
        assert_eq!((err.line, err.column), (2, 28), "{err}");
        let err = Config::from_str("own:\n  domain: [x]\n", "c.yaml").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.to_string().starts_with("c.yaml:2:"), "{err}");
    }

    #[test]
    fn own_takes_the_recipient_domain_only_when_the_config_names_none() {
        let c = Config::from_str("own:\n  hosts: [mx.own.example]\n", "c.yaml").unwrap();
        let own = c.own(Some("Own.Example."));
        assert_eq!(own.domains, ["own.example"]);
        assert_eq!(own.message_id_domains, ["own.example"]);
        assert_eq!(
            own.origin,
            ["own domain Own.Example. from the envelope recipient"]
        );
        assert!(own.relays_configured && !own.message_id_domains_configured);
        // Built once, the config's part is not changed by one message's recipient.
        assert!(c.own(None).domains.is_empty());
        let c = Config::from_str(
            "own:\n  domains: [a.example]\n  message_id_domains: [id.example]\n",
            "c.yaml",
        )
        .unwrap();
        let own = c.own(Some("b.example"));
        assert_eq!(own.domains, ["a.example"]);
        assert_eq!(own.message_id_domains, ["id.example"]);
        assert_eq!(
            own.origin.first().map(String::as_str),
            Some("own domains from the config")
        );
        // Without relays, this machine's dotted name (if it has one) is the own host, last.
        assert!(!own.relays_configured);
        assert_eq!(own.hosts.len(), usize::from(this_host_name().is_some()));
    }
}

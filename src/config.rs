//! The configuration: own domains, hosts and networks, actions and delivery targets; the
//! site file (/etc/backstop/config.yaml) with the user's merged over it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::error::ConfigError;
use crate::evidence::own::{HostPattern, Own, parse_network};
use crate::proofs::spec::{
    AlarmSpec, BatvSpec, DkimSpec, LedgerSpec, MilterSpec, SharedLedger, StampSpec,
};
use crate::rules::{Kind, RuleSpec};
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

/// Per-verdict actions, each for every kind or per kind.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Actions {
    #[serde(default = "Actions::folder")]
    pub backscatter: Spanned<VerdictAction>,
    #[serde(default = "Actions::folder")]
    pub unverified_bounce: Spanned<VerdictAction>,
}

impl Actions {
    fn folder() -> Spanned<VerdictAction> {
        Spanned::new(
            VerdictAction::All(Action::Folder),
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

/// The action of one verdict: one word for every kind (`backscatter: folder`), or a map of
/// kinds (`unverified-bounce: {dsn: folder, auto-reply: inbox}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictAction {
    All(Action),
    ByKind(Box<KindActions>),
    /// A word that is no action, kept until the config is checked so that the error points at
    /// it (an error raised while parsing would point at its key).
    Unknown(String),
}

/// The action per kind of bounce. A kind not named takes `other`, else the folder (the
/// default of both verdicts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KindActions {
    #[serde(default)]
    pub dsn: Option<Spanned<Action>>,
    #[serde(default)]
    pub ndr: Option<Spanned<Action>>,
    #[serde(default)]
    pub auto_reply: Option<Spanned<Action>>,
    #[serde(default)]
    pub challenge_response: Option<Spanned<Action>>,
    #[serde(default)]
    pub virus_notice: Option<Spanned<Action>>,
    #[serde(default)]
    pub feedback_report: Option<Spanned<Action>>,
    /// Every kind not named.
    #[serde(default)]
    pub other: Option<Spanned<Action>>,
}

impl KindActions {
    /// The action given for `kind`, if any (not `other`).
    fn named(&self, kind: Kind) -> Option<&Spanned<Action>> {
        match kind {
            Kind::Dsn => self.dsn.as_ref(),
            Kind::Ndr => self.ndr.as_ref(),
            Kind::AutoReply => self.auto_reply.as_ref(),
            Kind::ChallengeResponse => self.challenge_response.as_ref(),
            Kind::VirusNotice => self.virus_notice.as_ref(),
            Kind::FeedbackReport => self.feedback_report.as_ref(),
        }
    }

    /// Every action written, with its place in the file.
    fn written(&self) -> impl Iterator<Item = &Spanned<Action>> {
        ALL_KINDS
            .iter()
            .filter_map(|k| self.named(*k))
            .chain(self.other.as_ref())
    }
}

/// Every kind of bounce or automatic reply, in the order the docs give them.
pub const ALL_KINDS: [Kind; 6] = [
    Kind::Dsn,
    Kind::Ndr,
    Kind::AutoReply,
    Kind::ChallengeResponse,
    Kind::VirusNotice,
    Kind::FeedbackReport,
];

impl VerdictAction {
    /// The action for a message of this kind (None: no kind known, which takes `other`).
    pub fn for_kind(&self, kind: Option<Kind>) -> Action {
        match self {
            VerdictAction::All(a) => *a,
            VerdictAction::Unknown(_) => Action::Folder,
            VerdictAction::ByKind(k) => kind
                .and_then(|kind| k.named(kind))
                .or(k.other.as_ref())
                .map_or(Action::Folder, |a| a.value),
        }
    }

    /// Whether any kind is discarded.
    pub fn discards(&self) -> bool {
        match self {
            VerdictAction::All(a) => *a == Action::Discard,
            VerdictAction::Unknown(_) => false,
            VerdictAction::ByKind(k) => k.written().any(|a| a.value == Action::Discard),
        }
    }

    /// As written in the config, e.g. `folder` or `{dsn: folder, auto-reply: inbox, other: folder}`
    /// (the kinds not named shown with what they get).
    pub fn describe(&self) -> String {
        match self {
            VerdictAction::All(a) => a.as_str().to_string(),
            VerdictAction::Unknown(word) => word.clone(),
            VerdictAction::ByKind(_) => {
                let parts: Vec<String> = ALL_KINDS
                    .iter()
                    .map(|k| format!("{}: {}", k.as_str(), self.for_kind(Some(*k)).as_str()))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
        }
    }
}

impl<'de> Deserialize<'de> for VerdictAction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<VerdictAction, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = VerdictAction;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "an action (inbox, folder or discard), or one per kind, e.g. \
                     {dsn: folder, auto-reply: inbox}",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<VerdictAction, E> {
                use serde::de::IntoDeserializer;
                let d: serde::de::value::StrDeserializer<'_, E> = v.into_deserializer();
                Ok(Action::deserialize(d).map_or_else(
                    |_| VerdictAction::Unknown(v.to_string()),
                    VerdictAction::All,
                ))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                map: M,
            ) -> Result<VerdictAction, M::Error> {
                KindActions::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|k| VerdictAction::ByKind(Box::new(k)))
            }
        }
        d.deserialize_any(V)
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
    /// Also send one line per decision to the system log (facility mail).
    #[serde(default)]
    pub syslog: Option<bool>,
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

/// The effective configuration: the user's file (if any) merged over the site's (if any),
/// merged over the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// The user's file, or None when there is none.
    pub path: Option<PathBuf>,
    /// The site's file merged under it (see [`Config::site_path`]), or None.
    pub site_path: Option<PathBuf>,
    /// The files read, site first, with their text: where each setting came from
    /// (`backstop config`).
    pub layers: Vec<Layer>,
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
    pub syslog: bool,
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
            site_path: None,
            layers: Vec::new(),
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
            syslog: false,
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

    /// The site config, merged under every user's: `$BACKSTOP_SITE_CONFIG` when set (empty:
    /// none), else [`SITE_CONFIG`]. Used only when the file exists.
    pub fn site_path() -> Option<PathBuf> {
        match std::env::var_os("BACKSTOP_SITE_CONFIG") {
            Some(p) if p.is_empty() => None,
            Some(p) => Some(PathBuf::from(p)),
            None => Some(PathBuf::from(SITE_CONFIG)),
        }
    }

    /// The user's config file: `path`, else `$BACKSTOP_CONFIG`, else the default file when it
    /// exists.
    pub fn user_path(path: Option<&Path>) -> Option<PathBuf> {
        path.map(Path::to_path_buf)
            .or_else(Config::env_path)
            .or_else(|| Config::default_path().filter(|p| p.exists()))
    }

    /// Loads the user's config (see [`Config::user_path`]) merged over the site config (see
    /// [`Config::site_path`]), else either alone, else the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let site = Config::site_path().filter(|p| p.exists());
        Config::load_files(site.as_deref(), Config::user_path(path).as_deref())
    }

    /// Loads the user's file merged over the site's; either may be absent. The same file named
    /// as both is read once, as the user's.
    pub fn load_files(site: Option<&Path>, user: Option<&Path>) -> Result<Config, ConfigError> {
        let site = site.filter(|s| user.is_none_or(|u| !same_file(s, u)));
        match (site, user) {
            (None, None) => Ok(Config::default()),
            (None, Some(user)) => Config::from_file(user),
            (Some(site), None) => {
                let mut config = Config::from_file(site)?;
                config.site_path = config.path.take();
                if let Some(layer) = config.layers.first_mut() {
                    layer.site = true;
                }
                Ok(config)
            }
            (Some(site), Some(user)) => Config::merged(site, user),
        }
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = read_trusted(path)?;
        let mut config = Config::from_str(&text, &name)?;
        tag_rules(&mut config.user_rules, &name);
        config.path = Some(path.to_path_buf());
        config.layers = vec![Layer {
            path: path.to_path_buf(),
            text,
            site: false,
        }];
        Ok(config)
    }

    /// The user's file merged over the site's. Each is checked alone first, so that an error
    /// names the file and line it is in; then own.* lists and rules of both are taken (the
    /// site's first) and every other key the user gives replaces the site's.
    fn merged(site: &Path, user: &Path) -> Result<Config, ConfigError> {
        let (site_name, user_name) = (site.display().to_string(), user.display().to_string());
        let site_text = read_trusted(site)?;
        let user_text = read_trusted(user)?;
        let (site_config, user_config) = match (
            Config::from_str(&site_text, &site_name),
            Config::from_str(&user_text, &user_name),
        ) {
            (Ok(s), Ok(u)) => (s, u),
            (s, u) => {
                let errors = [s.err(), u.err()].into_iter().flatten().collect();
                return Err(ConfigError::all(errors).unwrap_or_else(|| {
                    ConfigError::whole(&user_name, "cannot be merged with the site config")
                }));
            }
        };
        let mut value = yaml_value(&site_text, &site_name)?;
        merge_over(&mut value, yaml_value(&user_text, &user_name)?);
        let both = format!("{site_name} and {user_name}");
        // Read back as YAML (JSON is YAML): one parser of the config in the binary, not a
        // second copy of it for serde_json's values (150 KB more code).
        let text = serde_json::to_string(&value)
            .map_err(|e| ConfigError::whole(&both, format!("cannot be merged: {e}")))?;
        let mut config = Config::from_str(&text, &both)?;
        let mut rules = site_config.user_rules;
        tag_rules(&mut rules, &site_name);
        let mut user_rules = user_config.user_rules;
        tag_rules(&mut user_rules, &user_name);
        rules.extend(user_rules);
        config.user_rules = rules;
        config.path = Some(user.to_path_buf());
        config.site_path = Some(site.to_path_buf());
        config.layers = vec![
            Layer {
                path: site.to_path_buf(),
                text: site_text,
                site: true,
            },
            Layer {
                path: user.to_path_buf(),
                text: user_text,
                site: false,
            },
        ];
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
        Config::build(file, name)
    }

    /// Checks a config as parsed and merges it over the defaults.
    fn build(file: ConfigFile, name: &str) -> Result<Config, ConfigError> {
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
            for a in [&actions.backscatter, &actions.unverified_bounce] {
                if let VerdictAction::Unknown(word) = &a.value {
                    errors.push(ConfigError::at(
                        name,
                        a,
                        crate::error::unknown_choice(
                            "value",
                            word,
                            &["inbox", "folder", "discard"],
                        ),
                    ));
                }
            }
            if actions.unverified_bounce.value.discards() {
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
        config.syslog = file.syslog.unwrap_or(false);
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
        if self.actions.backscatter.value.discards() && self.log.is_none() {
            let what = match self.actions.backscatter.value {
                VerdictAction::All(_) => "is discard",
                _ => "discards some kinds",
            };
            w.push(format!(
                "actions.backscatter {what} but the log is off: a discard must leave a \
                 record, so backscatter will be filed in the backscatter folder instead"
            ));
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

/// The site config every user's config is merged over (see [`Config::site_path`]).
pub const SITE_CONFIG: &str = "/etc/backstop/config.yaml";

/// A config file read: where a setting came from.
#[derive(Debug, Clone)]
pub struct Layer {
    pub path: PathBuf,
    pub text: String,
    /// The site config (else the user's).
    pub site: bool,
}

/// The own.* lists: a user's entries are added to the site's (every other key the user gives
/// replaces the site's).
pub const EXTENDED_LISTS: [&str; 4] = [
    "own.domains",
    "own.message_id_domains",
    "own.hosts",
    "own.networks",
];

/// Reads a config file once it is trusted (see [`crate::perms::check_config_file`]).
fn read_trusted(path: &Path) -> Result<String, ConfigError> {
    let name = path.display().to_string();
    crate::perms::check_config_file(path).map_err(|why| ConfigError {
        untrusted: true,
        ..ConfigError::whole(&name, why)
    })?;
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::whole(&name, format!("cannot read: {e}")))
}

/// Whether two paths name one file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Marks each rule with the file it was written in.
fn tag_rules(rules: &mut [RuleSpec], name: &str) {
    let name: std::sync::Arc<str> = name.into();
    for rule in rules {
        rule.file.get_or_insert_with(|| name.clone());
    }
}

/// A config text as a tree of values (the `rules:` key left out: rules are merged with
/// their origins, see [`Config::merged`]), for merging and for `backstop config`.
pub fn yaml_value(text: &str, name: &str) -> Result<serde_json::Value, ConfigError> {
    let options = serde_saphyr::options! { strict_booleans: true };
    let mut value = if text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_saphyr::from_str_with_options(text, options)
            .map_err(|e| ConfigError::from_yaml(name, &e, text))?
    };
    if value.is_null() {
        value = serde_json::Value::Object(Default::default());
    }
    if let Some(map) = value.as_object_mut() {
        map.remove("rules");
    }
    Ok(value)
}

/// Merges the user's tree `over` the site's `base`: maps key by key, the [`EXTENDED_LISTS`]
/// added to, every other value replaced. An inbox the user names (maildir or mbox) replaces
/// the site's, whichever kind it is.
fn merge_over(base: &mut serde_json::Value, over: serde_json::Value) {
    if let (Some(b), Some(o)) = (base.as_object_mut(), over.as_object())
        && (o.contains_key("maildir") || o.contains_key("mbox"))
    {
        b.remove("maildir");
        b.remove("mbox");
    }
    merge_at(base, over, "");
}

fn merge_at(base: &mut serde_json::Value, over: serde_json::Value, path: &str) {
    use serde_json::Value;
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (key, v) in o {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match b.get_mut(&key) {
                    Some(slot) => merge_at(slot, v, &at),
                    None => {
                        b.insert(key, v);
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(o)) if EXTENDED_LISTS.contains(&path) => {
            for v in o {
                if !b.contains(&v) {
                    b.push(v);
                }
            }
        }
        (slot, v) => *slot = v,
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
    fn the_users_file_is_merged_over_the_sites() {
        let t = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = t.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let site = write(
            "site.yaml",
            "own:\n  domains: [a.example]\n  hosts: [mx.a.example]\nmbox: /var/mail/x\n\
             threshold: 6\nactions:\n  unverified-bounce: {dsn: inbox, ndr: inbox}\n\
             rules:\n  - {id: site-rule, field: subject, match: [x], score: 1}\n",
        );
        let user = write(
            "user.yaml",
            "own:\n  domains: [b.example, a.example]\nmaildir: /m\n\
             actions:\n  unverified-bounce: {ndr: folder}\n  backscatter: inbox\n\
             rules:\n  - {id: user-rule, field: subject, match: [y], score: 1}\n",
        );
        let c = Config::load_files(Some(&site), Some(&user)).unwrap();
        let values = |v: &[Spanned<String>]| v.iter().map(|s| s.value.clone()).collect::<Vec<_>>();
        // Lists under own extended (no duplicate), scalars from the site kept unless replaced.
        assert_eq!(values(&c.own.domains), ["a.example", "b.example"]);
        assert_eq!(values(&c.own.hosts), ["mx.a.example"]);
        assert_eq!(c.threshold, 6);
        // The user's Maildir replaces the site's mbox.
        assert_eq!(c.inbox, Some(Inbox::Maildir("/m".into())));
        // A kind map merges kind by kind; a word replaces.
        let unverified = &c.actions.unverified_bounce.value;
        assert_eq!(unverified.for_kind(Some(Kind::Dsn)), Action::Inbox);
        assert_eq!(unverified.for_kind(Some(Kind::Ndr)), Action::Folder);
        assert_eq!(unverified.for_kind(Some(Kind::AutoReply)), Action::Folder);
        assert_eq!(
            c.actions.backscatter.value,
            VerdictAction::All(Action::Inbox)
        );
        // Rules of both, the site's first, each with its file.
        let rules: Vec<_> = c
            .user_rules
            .iter()
            .map(|r| (r.id.value.as_str(), r.file.as_deref().unwrap_or("")))
            .collect();
        let (s, u) = (site.display().to_string(), user.display().to_string());
        assert_eq!(
            rules,
            [("site-rule", s.as_str()), ("user-rule", u.as_str())]
        );
        assert_eq!(
            (c.site_path.as_deref(), c.path.as_deref()),
            (Some(&*site), Some(&*user))
        );
        // The site alone, for a user with no file; the same file twice is read once.
        let alone = Config::load_files(Some(&site), None).unwrap();
        assert_eq!(
            (alone.site_path.as_deref(), alone.path.as_deref()),
            (Some(&*site), None)
        );
        assert_eq!(alone.inbox, Some(Inbox::Mbox("/var/mail/x".into())));
        let once = Config::load_files(Some(&site), Some(&site)).unwrap();
        assert_eq!(once.user_rules.len(), 1);
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

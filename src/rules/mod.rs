//! Bounce rules: the YAML rule format, the built-in default set, and their evaluation.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::sync::{Arc, Mutex, OnceLock};

mod facts;
mod pattern;

pub use facts::Facts;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::error::ConfigError;
use crate::util::text::shorten;
use pattern::{Found, Haystack, Inst, Look, Needle, Pattern};

/// The default rule set, compiled into the binary.
pub const DEFAULT_RULES: &str = include_str!("../../rules/default.yaml");
/// The name the default rules go by in messages.
pub const DEFAULT_RULES_NAME: &str = "rules/default.yaml";

/// What a bounce or automatic reply is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Dsn,
    Ndr,
    AutoReply,
    ChallengeResponse,
    VirusNotice,
    FeedbackReport,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dsn => "dsn",
            Kind::Ndr => "ndr",
            Kind::AutoReply => "auto-reply",
            Kind::ChallengeResponse => "challenge-response",
            Kind::VirusNotice => "virus-notice",
            Kind::FeedbackReport => "feedback-report",
        }
    }
}

/// One rule as written in YAML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: Spanned<String>,
    #[serde(default)]
    pub describe: Option<String>,
    /// What the rule looks at; None only for `disabled: true` overrides.
    #[serde(default)]
    pub field: Option<Spanned<String>>,
    /// Regular expressions; the rule matches when any does.
    #[serde(default, rename = "match")]
    pub patterns: Vec<Spanned<String>>,
    /// Matches when the field is present (true) or absent (false).
    #[serde(default)]
    pub exists: Option<bool>,
    /// Matches when the field is present and empty (the null sender `<>`).
    #[serde(default)]
    pub empty: Option<bool>,
    #[serde(default)]
    pub score: Option<Spanned<i32>>,
    #[serde(default)]
    pub kind: Option<Kind>,
    #[serde(default)]
    pub case_sensitive: bool,
    #[serde(default)]
    pub disabled: bool,
    /// The fast path of the patterns, parsed once for both the check and the rule set.
    #[serde(skip)]
    fast: OnceLock<Option<Arc<Fast>>>,
    /// The file the rule was written in, when the config knows it (a site config's rules and
    /// the user's, merged: see [`crate::config`]); else the name [`RuleSet::build`] is given.
    #[serde(skip)]
    pub file: Option<Arc<str>>,
}

/// The parts of a message a rule can look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The envelope sender (SENDER, Return-Path, or the mbox From_ line); empty for `<>`.
    EnvelopeSender,
    Subject,
    /// The From header: display name and address.
    From,
    /// Any header, by name; every occurrence is tried.
    Header(String),
    /// `type/subtype` of the top level.
    ContentType,
    /// The `report-type` of a top-level multipart/report.
    ReportType,
    /// `type/subtype` of every part of the message (not of attached messages).
    PartType,
    /// The text of the message (not of attached messages), decoded, first 64 KiB.
    Body,
}

impl Field {
    fn parse(text: &str) -> Option<Field> {
        let lower = text.trim().to_ascii_lowercase();
        Some(match lower.as_str() {
            "envelope-sender" => Field::EnvelopeSender,
            "subject" => Field::Subject,
            "from" => Field::From,
            "content-type" => Field::ContentType,
            "report-type" => Field::ReportType,
            "part-type" => Field::PartType,
            "body" => Field::Body,
            _ => {
                let name = lower.strip_prefix("header:")?.trim();
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                    return None;
                }
                Field::Header(name.to_string())
            }
        })
    }

    pub fn name(&self) -> String {
        match self {
            Field::EnvelopeSender => "envelope-sender".into(),
            Field::Subject => "subject".into(),
            Field::From => "from".into(),
            Field::Header(h) => format!("header:{h}"),
            Field::ContentType => "content-type".into(),
            Field::ReportType => "report-type".into(),
            Field::PartType => "part-type".into(),
            Field::Body => "body".into(),
        }
    }
}

/// How a rule tests its field.
#[derive(Debug)]
enum Matcher {
    /// One alternation of the rule's patterns, compiled on first use.
    Regex {
        source: Cow<'static, str>,
        case_sensitive: bool,
        compiled: OnceCell<Option<Regex>>,
        /// When every pattern is in the fast subset: the way to skip compiling.
        fast: Option<Arc<Fast>>,
    },
    Exists(bool),
    Empty,
}

/// A rule ready to evaluate.
#[derive(Debug)]
pub struct Rule {
    pub id: Cow<'static, str>,
    pub describe: Cow<'static, str>,
    pub field: Field,
    pub score: i32,
    pub kind: Option<Kind>,
    /// Where it was written: `file:line:col`.
    pub origin: Cow<'static, str>,
    matcher: Matcher,
}

/// The field values of one message, as rules see them.
pub trait FieldSource {
    /// Every value of the field; None when the message lacks it.
    fn values(&self, field: &Field) -> Option<Vec<std::borrow::Cow<'_, str>>>;
}

/// The outcome of one rule on one message.
#[derive(Debug, Clone, Serialize)]
pub struct RuleHit {
    pub id: String,
    pub field: String,
    pub score: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// What matched (cut to a readable length).
    pub matched: String,
    pub describe: String,
}

/// The values of the fields rules looked at, kept for the rest of one evaluation: a field's
/// values are asked for once, and texts are prepared once for the literal checks.
struct Seen<'s> {
    source: &'s dyn FieldSource,
    fields: Vec<(Field, Option<Vec<Value<'s>>>)>,
}

/// One field value, with its literal-check form made on first use.
struct Value<'s> {
    text: Cow<'s, str>,
    hay: OnceCell<Haystack>,
}

impl Value<'_> {
    fn hay(&self) -> &Haystack {
        self.hay.get_or_init(|| Haystack::new(&self.text))
    }
}

impl<'s> Seen<'s> {
    fn new(source: &'s dyn FieldSource) -> Seen<'s> {
        Seen {
            source,
            fields: Vec::new(),
        }
    }

    fn values(&mut self, field: &Field) -> Option<&[Value<'s>]> {
        let i = match self.fields.iter().position(|(f, _)| f == field) {
            Some(i) => i,
            None => {
                let values = self.source.values(field).map(|v| {
                    v.into_iter()
                        .map(|text| Value {
                            text,
                            hay: OnceCell::new(),
                        })
                        .collect()
                });
                self.fields.push((field.clone(), values));
                self.fields.len() - 1
            }
        };
        self.fields[i].1.as_deref()
    }
}

impl Rule {
    /// Tests the rule; `Some(text that matched)` on a match.
    pub fn test(&self, source: &dyn FieldSource) -> Option<String> {
        self.test_seen(&mut Seen::new(source))
    }

    /// Tests the rule on values kept for the evaluation.
    fn test_seen(&self, seen: &mut Seen<'_>) -> Option<String> {
        let values = seen.values(&self.field);
        match &self.matcher {
            Matcher::Exists(want) => match (values, want) {
                (Some(v), true) => Some(v.first().map(|s| s.text.to_string()).unwrap_or_default()),
                (None, false) => Some("(absent)".to_string()),
                _ => None,
            },
            Matcher::Empty => values?
                .iter()
                .any(|v| v.text.trim().trim_matches(['<', '>']).trim().is_empty())
                .then(|| "<>".to_string()),
            Matcher::Regex {
                source,
                case_sensitive,
                compiled,
                fast,
            } => {
                // An absent field matches nothing: nothing to compile.
                let values = values?;
                if let Some(fast) = fast {
                    return values
                        .iter()
                        .find_map(|v| fast.find(&v.text, v.hay(), *case_sensitive));
                }
                let re = compiled
                    .get_or_init(|| build_regex(source, *case_sensitive).ok())
                    .as_ref()?;
                values
                    .iter()
                    .find_map(|v| re.find(&v.text).map(|m| m.as_str().to_string()))
            }
        }
    }

    /// Compiles the rule's regex now, to report errors early (lint).
    pub fn compile(&self) -> Result<(), String> {
        match &self.matcher {
            Matcher::Regex {
                source,
                case_sensitive,
                ..
            } => build_regex(source, *case_sensitive)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }
}

/// Regex size limit: generous for real rules, small enough to stop a rule file from eating memory.
const REGEX_SIZE_LIMIT: usize = 8 << 20;

/// A rule's patterns on the fast path (see the `pattern` module): each pattern's necessary
/// literals skip it on text that cannot match, ASCII text is searched without a regex, and other
/// text by a regex of only the patterns whose literals it holds. The answer is the one the
/// rule's whole alternation gives: its leftmost-first match is the leftmost start among the
/// patterns, the earliest pattern on a tie, and a pattern that cannot match changes nothing.
#[derive(Debug)]
struct Fast {
    patterns: Cow<'static, [Pattern]>,
    /// Each pattern as it stands in the rule's alternation, `(?:p)`.
    pieces: Cow<'static, [Cow<'static, str>]>,
    /// The regexes built for non-ASCII text, by the patterns they hold: `scan` meets the same
    /// selection again and again. Shared by the clones of a rule set (one per worker).
    regexes: Mutex<Vec<(Selection, Regex)>>,
}

/// Which patterns of a [`Fast`] a regex holds (bit i: pattern i), and its case sensitivity.
type Selection = (Vec<u64>, bool);

/// At most this many regexes are kept per rule: the selections a mailbox gives are few, and
/// memory stays bounded whatever the messages hold.
const REGEX_CACHE: usize = 16;

impl Fast {
    /// The fast path for these patterns, when all are in the subset and the whole rule is
    /// certain to compile within the size limit.
    fn new(patterns: &[Spanned<String>], case_sensitive: bool) -> Option<Fast> {
        let parsed = patterns
            .iter()
            .map(|p| Pattern::parse_lazy(&p.value, !case_sensitive))
            .collect::<Option<Vec<_>>>()?;
        let bound: usize = parsed.iter().map(|p| p.bound).sum();
        (bound <= REGEX_SIZE_LIMIT).then(|| Fast {
            patterns: Cow::Owned(parsed),
            pieces: patterns
                .iter()
                .map(|p| Cow::Owned(format!("(?:{})", p.value)))
                .collect(),
            regexes: Mutex::default(),
        })
    }

    /// The text the rule's alternation matches in `value` (`hay` is made from it), if any.
    fn find(&self, value: &str, hay: &Haystack, case_sensitive: bool) -> Option<String> {
        if !hay.is_ascii() {
            return self.find_by_regex(value, hay, case_sensitive);
        }
        let mut best: Option<(usize, usize)> = None;
        for p in self.patterns.iter() {
            // A later pattern wins only by starting further left.
            let max_start = match best {
                Some((0, _)) => break,
                Some((s, _)) => s - 1,
                None => usize::MAX,
            };
            if !p.may_match(hay) {
                continue;
            }
            match p.find_ascii(value.as_bytes(), max_start) {
                Found::At(s, e) => best = Some((s, e)),
                Found::Nothing => {}
                Found::TooLong => return self.find_by_regex(value, hay, case_sensitive),
            }
        }
        best.map(|(s, e)| value[s..e].to_string())
    }

    /// The regex way: the alternation of the patterns whose literals `value` holds, built
    /// once per selection of patterns (see [`Fast::regexes`]).
    fn find_by_regex(&self, value: &str, hay: &Haystack, case_sensitive: bool) -> Option<String> {
        // Letters that fold to ASCII ones (the Kelvin sign, the long s) hide ASCII literals.
        let bypass = !case_sensitive && (value.contains('\u{212A}') || value.contains('\u{17F}'));
        let mut bits = vec![0u64; self.patterns.len().div_ceil(64)];
        for (i, p) in self.patterns.iter().enumerate() {
            if bypass || p.may_match(hay) {
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        if bits.iter().all(|&w| w == 0) {
            return None;
        }
        let key = (bits, case_sensitive);
        let cached = self.regexes.lock().ok().and_then(|list| {
            list.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, re)| re.clone())
        });
        let re = match cached {
            Some(re) => re,
            None => {
                let source = self
                    .pieces
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| key.0[i / 64] & (1 << (i % 64)) != 0)
                    .map(|(_, piece)| piece.as_ref())
                    .collect::<Vec<_>>()
                    .join("|");
                let re = build_regex(&source, case_sensitive).ok()?;
                if let Ok(mut list) = self.regexes.lock()
                    && list.len() < REGEX_CACHE
                {
                    list.push((key, re.clone()));
                }
                re
            }
        };
        re.find(value).map(|m| m.as_str().to_string())
    }
}

fn build_regex(source: &str, case_sensitive: bool) -> Result<Regex, regex::Error> {
    RegexBuilder::new(source)
        .case_insensitive(!case_sensitive)
        .multi_line(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

impl RuleSpec {
    /// Checks what can be checked without the rest of the set.
    pub fn check(&self, file: &str) -> Result<(), ConfigError> {
        self.compile(file)?.map_or(Ok(()), |rule| {
            if let Matcher::Regex { fast: Some(_), .. } = &rule.matcher {
                // Every pattern parsed in the fast subset, whose patterns are all valid, and
                // the whole rule's size is bounded below the limit: it compiles.
                return Ok(());
            }
            // Report the exact pattern at fault, then what only the whole rule shows.
            for p in &self.patterns {
                if Pattern::parse_lazy(&p.value, !self.case_sensitive)
                    .is_some_and(|x| x.bound <= REGEX_SIZE_LIMIT)
                {
                    continue;
                }
                build_regex(&p.value, self.case_sensitive).map_err(|e| {
                    ConfigError::at(
                        file,
                        p,
                        format!("invalid regex {:?}: {}", p.value, one_line(&e.to_string())),
                    )
                })?;
            }
            rule.compile().map_err(|e| {
                let at = self.patterns.first().map_or(&self.id, |p| p);
                ConfigError::at(
                    file,
                    at,
                    format!("invalid regex in rule {}: {}", self.id.value, one_line(&e)),
                )
            })
        })
    }

    /// Turns the spec into a rule; None for a `disabled: true` entry.
    fn compile(&self, file: &str) -> Result<Option<Rule>, ConfigError> {
        let id = self.id.value.trim();
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(ConfigError::at(
                file,
                &self.id,
                "a rule id is letters, digits, '-', '_' or '.'",
            ));
        }
        if self.disabled {
            return Ok(None);
        }
        let field_spec = self
            .field
            .as_ref()
            .ok_or_else(|| ConfigError::at(file, &self.id, format!("rule {id} needs a field")))?;
        let field = Field::parse(&field_spec.value).ok_or_else(|| {
            ConfigError::at(
                file,
                field_spec,
                format!(
                    "unknown field {:?}: expected envelope-sender, subject, from, header:NAME, \
                     content-type, report-type, part-type or body",
                    field_spec.value
                ),
            )
        })?;
        let score = self
            .score
            .as_ref()
            .ok_or_else(|| ConfigError::at(file, &self.id, format!("rule {id} needs a score")))?;
        let ways = usize::from(!self.patterns.is_empty())
            + usize::from(self.exists.is_some())
            + usize::from(self.empty == Some(true));
        if ways != 1 {
            return Err(ConfigError::at(
                file,
                &self.id,
                format!("rule {id} needs exactly one of match, exists or empty: true"),
            ));
        }
        let matcher = if let Some(want) = self.exists {
            Matcher::Exists(want)
        } else if self.empty == Some(true) {
            Matcher::Empty
        } else {
            let source = self
                .patterns
                .iter()
                .map(|p| format!("(?:{})", p.value))
                .collect::<Vec<_>>()
                .join("|");
            Matcher::Regex {
                source: Cow::Owned(source),
                case_sensitive: self.case_sensitive,
                compiled: OnceCell::new(),
                fast: self
                    .fast
                    .get_or_init(|| Fast::new(&self.patterns, self.case_sensitive).map(Arc::new))
                    .clone(),
            }
        };
        Ok(Some(Rule {
            id: Cow::Owned(id.to_string()),
            describe: Cow::Owned(self.describe.clone().unwrap_or_default()),
            field,
            score: score.value,
            kind: self.kind,
            origin: Cow::Owned(format!(
                "{file}:{}:{}",
                self.id.referenced.line(),
                self.id.referenced.column()
            )),
            matcher,
        }))
    }
}

/// A default rule as build.rs writes it from rules/default.yaml (checked there, and equal to
/// reading the file: `tests::static_defaults_equal_the_yaml`).
struct StaticRule {
    id: &'static str,
    describe: &'static str,
    field: &'static str,
    score: i32,
    kind: Option<Kind>,
    /// `rules/default.yaml:line:col`
    origin: &'static str,
    matcher: StaticMatcher,
}

enum StaticMatcher {
    Regex {
        source: &'static str,
        pieces: &'static [Cow<'static, str>],
        case_sensitive: bool,
        fast: Option<&'static [Pattern]>,
    },
    Exists(bool),
    Empty,
}

/// The default rules.
static DEFAULTS: &[StaticRule] = include!(concat!(env!("OUT_DIR"), "/default_rules.rs"));

impl StaticRule {
    fn rule(&self) -> Rule {
        let matcher = match &self.matcher {
            StaticMatcher::Regex {
                source,
                pieces,
                case_sensitive,
                fast,
            } => Matcher::Regex {
                source: Cow::Borrowed(source),
                case_sensitive: *case_sensitive,
                compiled: OnceCell::new(),
                fast: fast.map(|f| {
                    Arc::new(Fast {
                        patterns: Cow::Borrowed(f),
                        pieces: Cow::Borrowed(pieces),
                        regexes: Mutex::default(),
                    })
                }),
            },
            StaticMatcher::Exists(want) => Matcher::Exists(*want),
            StaticMatcher::Empty => Matcher::Empty,
        };
        Rule {
            id: Cow::Borrowed(self.id),
            describe: Cow::Borrowed(self.describe),
            field: Field::parse(self.field).expect("build.rs checks the fields"),
            score: self.score,
            kind: self.kind,
            origin: Cow::Borrowed(self.origin),
            matcher,
        }
    }
}

/// The rules file format: a list under `rules:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rules: Vec<RuleSpec>,
}

/// Parses a rules file (`rules:` list).
pub fn parse_rules(text: &str, file: &str) -> Result<Vec<RuleSpec>, ConfigError> {
    let options = serde_saphyr::options! { strict_booleans: true };
    let parsed: RulesFile = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| ConfigError::from_yaml(file, &e, text))?;
    Ok(parsed.rules)
}

/// An ordered rule set: the defaults, then the user's rules (a user rule with a
/// default rule's id replaces it; `disabled: true` removes it).
#[derive(Debug)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

impl RuleSet {
    pub fn build(user: &[RuleSpec], user_file: &str) -> Result<RuleSet, ConfigError> {
        let mut rules: Vec<Rule> = Vec::with_capacity(DEFAULTS.len() + user.len());
        rules.extend(DEFAULTS.iter().map(StaticRule::rule));
        for spec in user {
            let user_file = spec.file.as_deref().unwrap_or(user_file);
            let id = spec.id.value.trim();
            let new = spec.compile(user_file)?;
            match (rules.iter().position(|r| r.id == id), new) {
                (Some(i), Some(rule)) => rules[i] = rule,
                (Some(i), None) => {
                    rules.remove(i);
                }
                (None, Some(rule)) => rules.push(rule),
                (None, None) => {
                    return Err(ConfigError::at(
                        user_file,
                        &spec.id,
                        format!("no rule {id} to disable"),
                    ));
                }
            }
        }
        Ok(RuleSet { rules })
    }

    /// Evaluates every rule; returns the hits in rule order.
    pub fn evaluate(&self, source: &dyn FieldSource) -> Vec<RuleHit> {
        let mut seen = Seen::new(source);
        self.rules
            .iter()
            .filter_map(|rule| {
                rule.test_seen(&mut seen).map(|matched| RuleHit {
                    id: rule.id.to_string(),
                    field: rule.field.name(),
                    score: rule.score,
                    kind: rule.kind,
                    matched: shorten(&matched, 80),
                    describe: rule.describe.to_string(),
                })
            })
            .collect()
    }
}

/// The last line of a multi-line error (regex errors draw the pattern and a caret first).
fn one_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Rule {
        /// The rule's answer by its whole regex, as without the fast path.
        fn test_by_regex(&self, source: &dyn FieldSource) -> Option<String> {
            self.test_by(self.whole_regex().as_ref(), source)
        }

        /// The rule's whole regex, compiled as without the fast path (None for the other
        /// matchers).
        fn whole_regex(&self) -> Option<Regex> {
            match &self.matcher {
                Matcher::Regex {
                    source: re,
                    case_sensitive,
                    ..
                } => Some(build_regex(re, *case_sensitive).expect("compiles")),
                _ => None,
            }
        }

        /// The rule's answer by `re`, its `whole_regex` (compiled once for many messages).
        fn test_by(&self, re: Option<&Regex>, source: &dyn FieldSource) -> Option<String> {
            match re {
                Some(re) => source
                    .values(&self.field)?
                    .iter()
                    .find_map(|v| re.find(v).map(|m| m.as_str().to_string())),
                None => self.test(source),
            }
        }

        fn fast(&self) -> Option<&Fast> {
            match &self.matcher {
                Matcher::Regex { fast, .. } => fast.as_deref(),
                _ => None,
            }
        }
    }

    /// A rule with many patterns, of the kind users write (also in benches/stages.rs).
    fn user_patterns() -> Vec<String> {
        (0..500)
            .map(|i| match i % 5 {
                0 => format!("^\\s*ticket #{i}\\b"),
                1 => format!("invoice\\s+\\d+ from vendor{i}"),
                2 => format!("^\\[list-{i}\\]"),
                3 => format!("newsletter (weekly|monthly) edition {i}"),
                _ => format!("alert: host{i}\\.example\\.(com|net) is down"),
            })
            .collect()
    }

    fn fixture_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                fixture_files(&p, out);
            } else if p.extension().is_some_and(|e| e == "eml") {
                out.push(p);
            }
        }
    }

    /// Non-ASCII text is searched by a regex of the patterns its literals allow: built once
    /// per selection and kept, so a mailbox of such messages compiles each selection once.
    #[test]
    fn regexes_for_non_ascii_text_are_built_once_per_selection() {
        let spanned = |p: &str| {
            Spanned::new(
                p.to_string(),
                serde_saphyr::Location::UNKNOWN,
                serde_saphyr::Location::UNKNOWN,
            )
        };
        let fast = Fast::new(&[spanned("undeliverable"), spanned("returned mail")], false)
            .expect("both patterns are in the fast subset");
        let find = |text: &str| fast.find(text, &Haystack::new(text), false);
        let cached = || fast.regexes.lock().unwrap().len();
        assert_eq!(
            find("Ünzustellbar: Undeliverable"),
            Some("Undeliverable".into())
        );
        assert_eq!(cached(), 1);
        assert_eq!(
            find("Ärger: undeliverable again"),
            Some("undeliverable".into())
        );
        assert_eq!(cached(), 1, "the same selection compiled again");
        assert_eq!(find("Ärger: Returned mail"), Some("Returned mail".into()));
        assert_eq!(cached(), 2);
        assert_eq!(find("Ärger: nothing here"), None);
        assert_eq!(cached(), 2, "no pattern selected, no regex built");
    }
    #[test]
    fn static_defaults_equal_the_yaml() {
        let specs = parse_rules(DEFAULT_RULES, DEFAULT_RULES_NAME).expect("parses");
        let from_yaml: Vec<Rule> = specs
            .iter()
            .filter_map(|s| s.compile(DEFAULT_RULES_NAME).expect("compiles"))
            .collect();
        let from_static = RuleSet::build(&[], "x").expect("builds").rules;
        assert_eq!(from_yaml.len(), from_static.len());
        for (a, b) in from_yaml.iter().zip(&from_static) {
            assert_eq!(
                (&a.id, &a.describe, &a.field, a.score, a.kind, &a.origin),
                (&b.id, &b.describe, &b.field, b.score, b.kind, &b.origin)
            );
            match (&a.matcher, &b.matcher) {
                (Matcher::Exists(x), Matcher::Exists(y)) => assert_eq!(x, y),
                (Matcher::Empty, Matcher::Empty) => {}
                (
                    Matcher::Regex {
                        source: s1,
                        case_sensitive: c1,
                        fast: f1,
                        ..
                    },
                    Matcher::Regex {
                        source: s2,
                        case_sensitive: c2,
                        fast: f2,
                        ..
                    },
                ) => {
                    assert_eq!((s1, c1), (s2, c2), "{}", a.id);
                    let f1 = f1.as_ref().expect("fast");
                    let f2 = f2.as_ref().expect("fast");
                    assert_eq!(f1.patterns.len(), f2.patterns.len(), "{}", a.id);
                    for (p1, p2) in f1.patterns.iter().zip(f2.patterns.iter()) {
                        assert_eq!(
                            (&p1.needles, p1.bound, p1.program()),
                            (&p2.needles, p2.bound, p2.program()),
                            "{}",
                            a.id
                        );
                    }
                    assert_eq!(f1.pieces, f2.pieces, "{}", a.id);
                }
                _ => panic!("{}: matchers differ", a.id),
            }
        }
    }

    #[test]
    fn every_default_rule_takes_the_fast_path_within_its_size_bound() {
        let set = RuleSet::build(&[], "user.yaml").expect("default rules load");
        for rule in &set.rules {
            let Matcher::Regex {
                source,
                case_sensitive,
                ..
            } = &rule.matcher
            else {
                continue;
            };
            let fast = rule
                .fast()
                .unwrap_or_else(|| panic!("{} is not on the fast path", rule.id));
            let bound: usize = fast.patterns.iter().map(|p| p.bound).sum();
            RegexBuilder::new(source)
                .case_insensitive(!case_sensitive)
                .multi_line(true)
                .size_limit(bound)
                .build()
                .unwrap_or_else(|e| panic!("{}: the bound {bound} is too small: {e}", rule.id));
        }
        let joined = user_patterns()
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|");
        let bound: usize = user_patterns()
            .iter()
            .map(|p| Pattern::parse(p, true).expect("subset").bound)
            .sum();
        RegexBuilder::new(&joined)
            .case_insensitive(true)
            .multi_line(true)
            .size_limit(bound)
            .build()
            .expect("bound");
    }

    /// Every rule gives the same answer on the fast path as by its whole regex, on every
    /// fixture message (and on `$BACKSTOP_CORPUS`, a directory of .eml files, when set).
    #[test]
    fn fast_path_answers_like_the_regex_on_the_fixtures() {
        let set = RuleSet::build(&[], "user.yaml").expect("default rules load");
        let mut files = Vec::new();
        fixture_files(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus"),
            &mut files,
        );
        assert!(files.len() > 100);
        if let Some(dir) = std::env::var_os("BACKSTOP_CORPUS") {
            let fixtures = files.len();
            fixture_files(std::path::Path::new(&dir), &mut files);
            // A wrong path must not quietly leave the corpus out.
            assert!(
                files.len() > fixtures,
                "no .eml under BACKSTOP_CORPUS={dir:?}"
            );
        }
        let whole: Vec<Option<Regex>> = set.rules.iter().map(Rule::whole_regex).collect();
        let mut compared = 0;
        for f in &files {
            let raw = std::fs::read(f).expect("reads");
            let (_, bytes) = crate::message::split_from_line(&raw);
            let Some(mail) = crate::message::parse(bytes) else {
                continue;
            };
            compared += 1;
            let facts = Facts::new(&mail, Some(""));
            for (rule, re) in set.rules.iter().zip(&whole) {
                assert_eq!(
                    rule.test(&facts),
                    rule.test_by(re.as_ref(), &facts),
                    "{} on {}",
                    rule.id,
                    f.display()
                );
            }
        }
        eprintln!(
            "fast path compared with the regex on {compared} of {} messages",
            files.len()
        );
        assert!(
            compared * 10 >= files.len() * 9,
            "{compared} of {}",
            files.len()
        );
    }

    struct Values(Vec<String>);

    impl FieldSource for Values {
        fn values(&self, _: &Field) -> Option<Vec<std::borrow::Cow<'_, str>>> {
            Some(
                self.0
                    .iter()
                    .map(|v| std::borrow::Cow::Borrowed(v.as_str()))
                    .collect(),
            )
        }
    }

    fn rule_of(patterns: &[String], case_sensitive: bool) -> Option<Rule> {
        let spec = RuleSpec {
            id: Spanned::new(
                "r".into(),
                serde_saphyr::Location::UNKNOWN,
                serde_saphyr::Location::UNKNOWN,
            ),
            describe: None,
            field: Some(Spanned::new(
                "subject".into(),
                serde_saphyr::Location::UNKNOWN,
                serde_saphyr::Location::UNKNOWN,
            )),
            patterns: patterns
                .iter()
                .map(|p| {
                    Spanned::new(
                        p.clone(),
                        serde_saphyr::Location::UNKNOWN,
                        serde_saphyr::Location::UNKNOWN,
                    )
                })
                .collect(),
            exists: None,
            empty: None,
            score: Some(Spanned::new(
                1,
                serde_saphyr::Location::UNKNOWN,
                serde_saphyr::Location::UNKNOWN,
            )),
            kind: None,
            case_sensitive,
            disabled: false,
            fast: OnceLock::new(),
            file: None,
        };
        spec.compile("t").ok().flatten()
    }

    #[test]
    fn user_rules_take_the_fast_path() {
        let rule = rule_of(&user_patterns(), false).expect("rule");
        assert!(rule.fast().is_some());
        for subject in [
            "Ticket #250 opened",
            "invoice 42 from vendor1",
            "[LIST-7] x",
            "alert: host4.example.net is down",
            "Re: hi",
            "Ticket #250 opened K",
        ] {
            let v = Values(vec![subject.to_string()]);
            assert_eq!(rule.test(&v), rule.test_by_regex(&v), "{subject}");
        }
    }

    mod differential {
        use super::*;
        use proptest::prelude::*;

        /// Patterns from pieces of the subset (and some outside it, which must be refused).
        fn pattern() -> impl Strategy<Value = String> {
            let atom = prop::sample::select(vec![
                "a", "b", "k", "K", "s", "ab", "ba", "é", "ж", "中", "\u{212A}", ".", "\\s", "\\S",
                "\\w", "\\d", "[ab]", "[^a]", "[a-c]", "[\\w.-]", "[ée]", "[^\\n]", " ", "-", ":",
                "\\.", "\\[", "\\n",
            ]);
            let look = prop::sample::select(vec!["\\b", "\\B", "^", "$", "$", "^"]);
            let quant = prop::sample::select(vec!["", "", "", "?", "*", "+", "??", "*?", "+?"]);
            let piece = prop_oneof![3 => (atom, quant).prop_map(|(a, q)| format!("{a}{q}")), 1 => look.prop_map(String::from)];
            let seq = prop::collection::vec(piece, 0..5).prop_map(|v| v.concat());
            let group = (seq.clone(), seq.clone(), any::<bool>()).prop_map(|(x, y, cap)| {
                if cap {
                    format!("({x}|{y})")
                } else {
                    format!("(?:{x}|{y})")
                }
            });
            (
                prop::collection::vec(prop_oneof![seq, group], 1..4),
                prop::sample::select(vec!["", "", "?", "+", "*"]),
            )
                .prop_map(|(v, q)| {
                    if q.is_empty() {
                        v.concat()
                    } else {
                        format!("({}){q}", v.concat())
                    }
                })
        }

        fn text() -> impl Strategy<Value = String> {
            let piece = prop::sample::select(vec![
                "a", "b", "A", "B", "k", "K", "s", "S", "ab", "é", "É", "ж", "Ж", "中", "\u{212A}",
                "\u{17F}", " ", "\n", "\n", "-", ":", ".", "[", "]", "1", "_",
            ]);
            prop::collection::vec(piece, 0..16).prop_map(|v| v.concat())
        }

        /// Patterns in the subset answer as their regex does, and the regex crate accepts
        /// them. Most generated patterns fall outside the subset (and are refused): the test
        /// counts the cases it compared, so that it cannot pass by comparing nothing.
        #[test]
        fn fast_path_equals_regex() {
            use proptest::test_runner::{Config, TestRunner};
            const CASES: u32 = 8_192;
            let compared = std::cell::Cell::new(0u32);
            let mut runner = TestRunner::new(Config::with_cases(CASES));
            let cases = (
                prop::collection::vec(pattern(), 1..4),
                text(),
                any::<bool>(),
            );
            let result = runner.run(&cases, |(pats, hay, cs)| {
                if let Some(rule) = rule_of(&pats, cs)
                    && rule.fast().is_some()
                {
                    for p in &pats {
                        prop_assert!(build_regex(p, cs).is_ok(), "{p:?}");
                    }
                    let v = Values(vec![hay.clone()]);
                    prop_assert_eq!(
                        rule.test(&v),
                        rule.test_by_regex(&v),
                        "{:?} on {:?}",
                        pats,
                        hay
                    );
                    compared.set(compared.get() + 1);
                }
                Ok(())
            });
            if let Err(e) = result {
                panic!("{e}");
            }
            eprintln!(
                "fast path compared with the regex in {} of {CASES} cases",
                compared.get()
            );
            assert!(
                compared.get() >= CASES / 4,
                "only {} of {CASES} cases compared",
                compared.get()
            );
        }
    }

    #[test]
    fn default_rules_parse_and_compile() {
        let set = RuleSet::build(&[], "user.yaml").expect("default rules load");
        assert!(set.rules.len() > 10);
        for rule in &set.rules {
            rule.compile()
                .unwrap_or_else(|e| panic!("{}: {e}", rule.origin));
        }
    }

    #[test]
    fn user_rules_override_and_disable_defaults() {
        let text = "rules:\n  - id: null-sender\n    disabled: true\n  - id: mine\n    field: subject\n    match: ['^ALERT']\n    score: 7\n";
        let specs = parse_rules(text, "u.yaml").expect("parses");
        let set = RuleSet::build(&specs, "u.yaml").expect("builds");
        assert!(!set.rules.iter().any(|r| r.id == "null-sender"));
        assert_eq!(set.rules.last().map(|r| r.id.as_ref()), Some("mine"));
    }

    #[test]
    fn bad_regex_is_reported_at_its_position() {
        let text = "rules:\n  - id: x\n    field: subject\n    match:\n      - 'ok'\n      - '(unclosed'\n    score: 1\n";
        let specs = parse_rules(text, "u.yaml").expect("parses");
        let err = specs[0].check("u.yaml").unwrap_err();
        assert_eq!((err.line, err.column), (6, 9), "{err}");
    }

    #[test]
    fn unknown_field_is_reported() {
        let text = "rules:\n  - id: x\n    field: subjekt\n    match: [a]\n    score: 1\n";
        let specs = parse_rules(text, "u.yaml").expect("parses");
        let err = specs[0].check("u.yaml").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
    }
}

//! Bounce rules: the YAML rule format, the built-in default set, and their evaluation.

use std::cell::OnceCell;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::config::ConfigError;

/// The default rule set, compiled into the binary.
pub const DEFAULT_RULES: &str = include_str!("../rules/default.yaml");
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
        source: String,
        case_sensitive: bool,
        compiled: OnceCell<Option<Regex>>,
    },
    Exists(bool),
    Empty,
}

/// A rule ready to evaluate.
#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub describe: String,
    pub field: Field,
    pub score: i32,
    pub kind: Option<Kind>,
    /// Where it was written: `file:line:col`.
    pub origin: String,
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

impl Rule {
    /// Tests the rule; `Some(text that matched)` on a match.
    pub fn test(&self, source: &dyn FieldSource) -> Option<String> {
        let values = source.values(&self.field);
        match &self.matcher {
            Matcher::Exists(want) => match (values, want) {
                (Some(v), true) => Some(v.first().map(|s| s.to_string()).unwrap_or_default()),
                (None, false) => Some("(absent)".to_string()),
                _ => None,
            },
            Matcher::Empty => values?
                .iter()
                .any(|v| v.trim().trim_matches(['<', '>']).trim().is_empty())
                .then(|| "<>".to_string()),
            Matcher::Regex {
                source,
                case_sensitive,
                compiled,
            } => {
                let re = compiled
                    .get_or_init(|| build_regex(source, *case_sensitive).ok())
                    .as_ref()?;
                values?
                    .iter()
                    .find_map(|v| re.find(v).map(|m| m.as_str().to_string()))
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
            // Report the exact pattern at fault, then what only the whole rule shows.
            for p in &self.patterns {
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
                source,
                case_sensitive: self.case_sensitive,
                compiled: OnceCell::new(),
            }
        };
        Ok(Some(Rule {
            id: id.to_string(),
            describe: self.describe.clone().unwrap_or_default(),
            field,
            score: score.value,
            kind: self.kind,
            origin: format!(
                "{file}:{}:{}",
                self.id.referenced.line(),
                self.id.referenced.column()
            ),
            matcher,
        }))
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
        .map_err(|e| ConfigError::from_yaml(file, &e))?;
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
        let defaults = parse_rules(DEFAULT_RULES, DEFAULT_RULES_NAME)?;
        let mut rules: Vec<Rule> = Vec::with_capacity(defaults.len() + user.len());
        for spec in &defaults {
            rules.extend(spec.compile(DEFAULT_RULES_NAME)?);
        }
        for spec in user {
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
        self.rules
            .iter()
            .filter_map(|rule| {
                rule.test(source).map(|matched| RuleHit {
                    id: rule.id.clone(),
                    field: rule.field.name(),
                    score: rule.score,
                    kind: rule.kind,
                    matched: shorten(&matched, 80),
                    describe: rule.describe.clone(),
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

/// Cuts `text` to at most `max` characters on one line.
pub fn shorten(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    if trimmed.chars().count() <= max {
        trimmed.to_string()
    } else {
        let cut: String = trimmed.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(set.rules.last().map(|r| r.id.as_str()), Some("mine"));
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

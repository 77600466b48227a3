//! `backstop config`: the effective configuration, every setting with its value and where it
//! came from (built in, the site file or the user's file), then the rules in effect, as
//! `postconf -n` and `dovecot -n` show theirs.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::ConfigArgs;
use crate::config::{Config, EXTENDED_LISTS, Inbox, Layer, yaml_value};
use crate::exit::Exit;
use crate::proofs::spec::{MilterBackscatter, MilterOnError};
use crate::rules::{DEFAULT_RULES_NAME, RuleSet};
use crate::store::maildir::Layout;
use crate::util::text::for_terminal;

/// Runs `config`.
pub fn run(args: &ConfigArgs) -> ExitCode {
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            say!("{e}");
            return ExitCode::from(Exit::Error);
        }
    };
    let rules_name = config
        .path
        .as_ref()
        .map_or_else(|| "(defaults)".to_string(), |p| p.display().to_string());
    let rules = match RuleSet::build(&config.user_rules, &rules_name) {
        Ok(r) => r,
        Err(e) => {
            say!("{e}");
            return ExitCode::from(Exit::Error);
        }
    };
    let text = report(&config, &rules, args.non_default);
    let mut out = std::io::stdout().lock();
    match out
        .write_all(for_terminal(&text).as_bytes())
        .and_then(|()| out.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say!("backstop: cannot write the configuration: {e}");
            ExitCode::from(Exit::Error)
        }
    }
}

/// The whole report: a header naming the files, one `key = value  # origin` line per
/// setting, then one line per rule (only what differs from the built-in defaults with
/// `non_default`).
pub fn report(config: &Config, rules: &RuleSet, non_default: bool) -> String {
    let mut out = String::new();
    let name = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map_or_else(|| "none".to_string(), |p| p.display().to_string())
    };
    out.push_str(&format!(
        "# site config: {}\n# user config: {}\n",
        name(&config.site_path),
        name(&config.path)
    ));
    let trees: Vec<(&Layer, serde_json::Value)> = config
        .layers
        .iter()
        .filter_map(|l| {
            yaml_value(&l.text, &l.path.display().to_string())
                .ok()
                .map(|v| (l, v))
        })
        .collect();
    let lines: Vec<(String, String)> = settings(config)
        .into_iter()
        .filter_map(|(key, value)| {
            let origin = origin(key, &trees);
            (!non_default || origin.is_some()).then(|| {
                (
                    format!("{key} = {value}"),
                    origin.unwrap_or_else(|| "default".to_string()),
                )
            })
        })
        .collect();
    let width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let width = width.min(48);
    for (line, origin) in lines {
        out.push_str(&format!("{line:<width$}  # {origin}\n"));
    }
    let shown: Vec<String> = rules
        .rules
        .iter()
        .filter(|r| !(non_default && r.origin.starts_with(DEFAULT_RULES_NAME)))
        .map(|r| {
            let origin = if r.origin.starts_with(DEFAULT_RULES_NAME) {
                format!("built in ({})", r.origin)
            } else {
                r.origin.to_string()
            };
            let kind = r.kind.map_or("-", |k| k.as_str());
            format!(
                "rule {} = score {:+}, kind {kind}, field {}  # {origin}\n",
                r.id,
                r.score,
                r.field.name()
            )
        })
        .collect();
    out.push_str(&format!("# rules: {} in effect\n", rules.rules.len()));
    for line in shown {
        out.push_str(&line);
    }
    for spec in config.user_rules.iter().filter(|s| s.disabled) {
        let file = spec.file.as_deref().unwrap_or("(config)");
        out.push_str(&format!(
            "rule {} = disabled  # {file}:{}:{}\n",
            spec.id.value.trim(),
            spec.id.referenced.line(),
            spec.id.referenced.column()
        ));
    }
    out
}

/// Where a setting came from: the files that give it (every one for a list the user adds
/// to, else the last), as `file:line`; None when neither does (the built-in default).
fn origin(key: &str, trees: &[(&Layer, serde_json::Value)]) -> Option<String> {
    let path: Vec<&str> = key.split('.').collect();
    // An inbox the user names replaces the site's, whichever kind it is.
    let user_inbox = trees
        .iter()
        .any(|(l, v)| !l.site && (v.get("maildir").is_some() || v.get("mbox").is_some()));
    let mut from: Vec<String> = trees
        .iter()
        .filter(|(l, _)| !(l.site && user_inbox && matches!(key, "maildir" | "mbox")))
        .filter(|(_, v)| path.iter().try_fold(v, |v, k| v.get(k)).is_some())
        .map(|(l, _)| {
            let file = l.path.display();
            match key_line(&l.text, &path) {
                Some(n) => format!("{file}:{n}"),
                None => file.to_string(),
            }
        })
        .collect();
    if !EXTENDED_LISTS.contains(&key) && from.len() > 1 {
        from.drain(..from.len() - 1);
    }
    (!from.is_empty()).then(|| from.join(", "))
}

/// The line (1-based) where `path` (`["own", "domains"]`) is written in a config text, for a
/// block or a flow mapping: the top key's line at the start of a line, then the inner key on
/// it or on an indented line below; the top key's line when the inner one is not found.
fn key_line(text: &str, path: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let starts_key = |l: &str, key: &str| {
        l.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    };
    let top = lines.iter().position(|l| starts_key(l, path[0]))?;
    let Some(inner) = path.get(1) else {
        return Some(top + 1);
    };
    if lines[top].contains(&format!("{inner}:")) {
        return Some(top + 1);
    }
    for (i, l) in lines.iter().enumerate().skip(top + 1) {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.len() == l.len() {
            break;
        }
        if starts_key(t, inner) {
            return Some(i + 1);
        }
    }
    Some(top + 1)
}

/// Every setting, by its key as written in the file, with its effective value.
fn settings(c: &Config) -> Vec<(&'static str, String)> {
    let list = |v: &[serde_saphyr::Spanned<String>]| {
        format!(
            "[{}]",
            v.iter()
                .map(|s| s.value.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let path_or = |p: Option<&String>, default: Option<std::path::PathBuf>| match p {
        Some(p) => crate::config::expand_home(p).display().to_string(),
        None => default.map_or_else(|| "-".to_string(), |d| d.display().to_string()),
    };
    let data = |file: &str| {
        directories::ProjectDirs::from("", "", "backstop").map(|d| d.data_dir().join(file))
    };
    let inbox = |want_mbox: bool| match &c.inbox {
        Some(Inbox::Maildir(p)) if !want_mbox => p.display().to_string(),
        Some(Inbox::Mbox(p)) if want_mbox => p.display().to_string(),
        None if !want_mbox => "- (deliver's argument, else ~/Maildir)".to_string(),
        _ => "-".to_string(),
    };
    let yes = |b: bool| if b { "true" } else { "false" }.to_string();
    vec![
        ("own.domains", list(&c.own.domains)),
        ("own.message_id_domains", list(&c.own.message_id_domains)),
        ("own.hosts", list(&c.own.hosts)),
        ("own.networks", list(&c.own.networks)),
        ("threshold", c.threshold.to_string()),
        (
            "actions.backscatter",
            c.actions.backscatter.value.describe(),
        ),
        (
            "actions.unverified-bounce",
            c.actions.unverified_bounce.value.describe(),
        ),
        ("maildir", inbox(false)),
        ("mbox", inbox(true)),
        ("folder", c.folder.clone()),
        (
            "layout",
            match c.layout {
                Layout::MaildirPlusPlus => "maildir++",
                Layout::Fs => "fs",
            }
            .to_string(),
        ),
        (
            "mbox_locks",
            format!(
                "[{}]",
                c.mbox_locks
                    .iter()
                    .map(|l| format!("{l:?}").to_ascii_lowercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        ("mbox_folder", c.mbox_folder.display().to_string()),
        (
            "log",
            c.log
                .as_deref()
                .map_or_else(|| "off".to_string(), |p| p.display().to_string()),
        ),
        ("syslog", yes(c.syslog)),
        ("max_size", c.max_size.to_string()),
        ("cpu_budget_ms", c.cpu_budget_ms.to_string()),
        ("trace_headers", yes(c.trace_headers)),
        (
            "ledger.path",
            path_or(c.ledger.path.as_ref(), data("ledger")),
        ),
        (
            "ledger.expire_days",
            c.ledger
                .expire_days
                .as_ref()
                .map_or(crate::proofs::ledger::DEFAULT_EXPIRE_DAYS, |d| d.value)
                .to_string(),
        ),
        ("ledger.complete", yes(c.ledger.complete.unwrap_or(true))),
        (
            "ledger.redis",
            // The address may carry a password: say only whether one is set.
            c.ledger.redis.as_ref().map_or_else(
                || "- (the file; backstop-milter only)".to_string(),
                |_| "(set, not shown: it may hold a password)".to_string(),
            ),
        ),
        ("ledger.key_file", path_or(c.ledger.key_file.as_ref(), None)),
        (
            "ledger.timeout_ms",
            c.ledger
                .timeout_ms
                .as_ref()
                .map_or(crate::proofs::spec::DEFAULT_REDIS_TIMEOUT_MS, |t| t.value)
                .to_string(),
        ),
        (
            "dkim.keys",
            format!(
                "[{}]",
                c.dkim
                    .keys
                    .iter()
                    .map(|k| format!("{}._domainkey.{}", k.selector.value, k.domain.value))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        ("dkim.keys_file", path_or(c.dkim.keys_file.as_ref(), None)),
        ("dkim.signs_all", yes(c.dkim.signs_all)),
        (
            "batv.secrets",
            format!("({} given, not shown)", c.batv.secrets.len()),
        ),
        ("batv.required", yes(c.batv.required)),
        ("alarm.enabled", yes(c.alarm.enabled)),
        ("alarm.bounces", c.alarm.bounces.value.to_string()),
        (
            "alarm.window_minutes",
            c.alarm.window_minutes.value.to_string(),
        ),
        ("alarm.recipients", c.alarm.recipients.value.to_string()),
        (
            "alarm.command",
            c.alarm.command.as_ref().map_or_else(
                || "- (filed in the inbox)".to_string(),
                |v| format!("{v:?}"),
            ),
        ),
        (
            "alarm.state",
            path_or(c.alarm.state.as_ref(), data("alarm")),
        ),
        ("stamp.key_file", path_or(c.stamp.key_file.as_ref(), None)),
        (
            "stamp.max_age_days",
            c.stamp
                .max_age_days
                .as_ref()
                .map_or(crate::proofs::DEFAULT_STAMP_MAX_AGE_DAYS, |d| d.value)
                .to_string(),
        ),
        (
            "milter.backscatter",
            match c.milter.backscatter {
                MilterBackscatter::Reject => "reject",
                MilterBackscatter::Quarantine => "quarantine",
                MilterBackscatter::Tag => "tag",
            }
            .to_string(),
        ),
        (
            "milter.on_error",
            match c.milter.on_error {
                MilterOnError::Accept => "accept",
                MilterOnError::Tempfail => "tempfail",
            }
            .to_string(),
        ),
        (
            "milter.stamp_outbound",
            yes(c
                .milter
                .stamp_outbound
                .unwrap_or(c.stamp.key_file.is_some())),
        ),
        ("milter.learn_outbound", yes(c.milter.learn_outbound)),
        ("milter.batv_sign", yes(c.milter.batv_sign)),
        ("milter.batv_key", c.milter.batv_key.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_found_in_block_and_flow_style() {
        let text = "# c\nown:\n  hosts: [a.example]\n\n  domains:\n    - x.example\nthreshold: 6\nactions: {backscatter: discard}\n";
        assert_eq!(key_line(text, &["own", "domains"]), Some(5));
        assert_eq!(key_line(text, &["own", "hosts"]), Some(3));
        assert_eq!(key_line(text, &["threshold"]), Some(7));
        assert_eq!(key_line(text, &["actions", "backscatter"]), Some(8));
        assert_eq!(key_line(text, &["own", "networks"]), Some(2));
        assert_eq!(key_line(text, &["log"]), None);
    }
}

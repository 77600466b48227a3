//! `backstop check`: print the verdict for each message given (a file, several, or every
//! message of an mbox), with no side effects.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::budget::{evaluate_keeping_rules, over_budget, run_within};
use crate::cli::{CheckArgs, Format};
use crate::cmd::scan::{for_judging, split_mbox};
use crate::exit::Exit;
use crate::rules::RuleSet;
use crate::run::{env_vars, evaluate_bytes, load, read_limited};
use crate::util::text::for_terminal;
use crate::verdict::{Evaluation, Verdict, evaluate};

/// Runs `check`.
pub fn run(args: &CheckArgs) -> ExitCode {
    let (config, rules) = match load(args.common.config.as_deref()) {
        Ok((config, rules)) => (Arc::new(config), rules),
        Err(e) => {
            say!("backstop: {e}");
            return ExitCode::from(Exit::Error);
        }
    };
    let env = env_vars(&args.common);
    let files: Vec<Option<PathBuf>> = if args.files.is_empty() {
        vec![None]
    } else {
        args.files.iter().cloned().map(Some).collect()
    };
    // The output is locked only to write: past the CPU budget, the watchdog prints.
    let mut out = std::io::stdout();
    let (mut any_backscatter, mut failed) = (false, false);
    // A single message (as Sieve and procmail give it) is judged on this thread.
    let alone = (files.len() == 1).then_some((args.format, args.exit_status));
    for file in &files {
        let name = file
            .as_deref()
            .map_or_else(|| "-".to_string(), |p| p.display().to_string());
        let as_mbox = args.mbox
            || file
                .as_deref()
                .and_then(Path::extension)
                .is_some_and(|e| e.eq_ignore_ascii_case("mbox"));
        let evals = match judge_file(file.as_deref(), as_mbox, &config, &rules, &env, alone) {
            Ok(e) => e,
            Err(msg) => {
                say!("backstop: {msg}");
                failed = true;
                continue;
            }
        };
        // One message alone prints as it always has (Sieve and procmail read it); several
        // are each named: the file, and the message's number in an mbox.
        let named = files.len() > 1 || evals.len() > 1;
        for (i, eval) in evals.iter().enumerate() {
            any_backscatter |= eval.verdict == Verdict::Backscatter;
            let label = match (named, evals.len() > 1) {
                (false, _) => None,
                (true, false) => Some(name.clone()),
                (true, true) => Some(format!("{name}#{}", i + 1)),
            };
            let text = match render(eval, args.format, label.as_deref()) {
                Ok(t) => t,
                Err(e) => {
                    say!("backstop: cannot write JSON: {e}");
                    return ExitCode::from(Exit::Error);
                }
            };
            let text = match args.format {
                Format::Text => for_terminal(&text),
                _ => std::borrow::Cow::Borrowed(text.as_str()),
            };
            if let Err(e) = out.write_all(text.as_bytes()) {
                say!("backstop: cannot write the verdict: {e}");
                return ExitCode::from(Exit::Error);
            }
        }
    }
    if let Err(e) = out.flush() {
        say!("backstop: cannot write the verdict: {e}");
        return ExitCode::from(Exit::Error);
    }
    if failed {
        return ExitCode::from(Exit::Error);
    }
    if args.exit_status {
        return ExitCode::from(if any_backscatter {
            Exit::Success
        } else {
            Exit::NotBackscatter
        });
    }
    ExitCode::SUCCESS
}

/// The evaluations of one input: one message, or each message of an mbox (read whole).
fn judge_file(
    file: Option<&Path>,
    as_mbox: bool,
    config: &Arc<crate::config::Config>,
    rules: &RuleSet,
    env: &crate::message::EnvVars,
    alone: Option<(Format, bool)>,
) -> Result<Vec<Evaluation>, String> {
    let (mut raw, rest) = read_limited(file, config.max_size).map_err(|e| e.to_string())?;
    // Each message within the size limit and the CPU budget, as `deliver` judges it.
    // The budget's thread takes a rule set of its own (built as `load` built this one) and
    // gives it back when it ends in time: one spare, built again only after an overrun.
    let mut spare: Option<RuleSet> = None;
    let mut judge = |bytes: Vec<u8>| {
        if bytes.len() as u64 > config.max_size {
            return evaluate_bytes(&bytes, config, rules, env);
        }
        let own = match spare.take() {
            Some(own) => own,
            None => match RuleSet::build(&config.user_rules, "(config)") {
                Ok(own) => own,
                Err(_) => return evaluate_bytes(&bytes, config, rules, env),
            },
        };
        let (eval, back) = evaluate_keeping_rules(&Arc::new(bytes), config, own, env);
        spare = back;
        eval
    };
    if !as_mbox {
        if rest.is_some() {
            return Ok(vec![evaluate_bytes(&raw, config, rules, env)]);
        }
        if let Some((format, exit_status)) = alone {
            let budget = Duration::from_millis(config.cpu_budget_ms);
            let eval = run_within(
                budget,
                || evaluate(&raw, config, rules, env),
                // Past the budget: the verdict of a message not judged, and the end.
                move || {
                    let text = render(&over_budget(budget), format, None).unwrap_or_default();
                    let mut out = std::io::stdout().lock();
                    if out
                        .write_all(for_terminal(&text).as_bytes())
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        return Exit::Error.code();
                    }
                    if exit_status {
                        Exit::NotBackscatter.code()
                    } else {
                        Exit::Success.code()
                    }
                },
            );
            return Ok(vec![eval]);
        }
        return Ok(vec![judge(raw)]);
    }
    if let Some(mut rest) = rest {
        let what = file.map_or_else(|| "standard input".to_string(), |p| p.display().to_string());
        rest.read_to_end(&mut raw)
            .map_err(|e| format!("cannot read the message {what}: {e}"))?;
    }
    let ranges = split_mbox(&raw)?;
    Ok(ranges
        .into_iter()
        .map(|r| judge(for_judging(&raw[r]).into_owned()))
        .collect())
}

/// One verdict in the format asked for, labelled when there are several.
fn render(eval: &Evaluation, format: Format, label: Option<&str>) -> serde_json::Result<String> {
    let prefix = label.map_or_else(String::new, |l| format!("{l}: "));
    Ok(match format {
        Format::Word if label.is_none() => eval.verdict.as_str().to_string(),
        Format::Word => format!("{prefix}{}\n", eval.verdict.as_str()),
        Format::Json => {
            let mut j = serde_json::to_value(eval)?;
            if let (Some(l), Some(obj)) = (label, j.as_object_mut()) {
                obj.insert("file".into(), l.into());
            }
            serde_json::to_string(&j)? + "\n"
        }
        Format::Text => {
            let kind = eval.kind.map_or("-", |k| k.as_str());
            let mut t = format!(
                "{prefix}{} {} {}\n",
                eval.verdict.as_str(),
                kind,
                eval.action.as_str()
            );
            for r in &eval.reasons {
                t.push_str(&format!("  {r}\n"));
            }
            t
        }
    })
}

//! `backstop deliver`: decide and file one message durably; exit only 0 or 75.
//!
//! Every path out of here is either "the message is safely stored (or, for
//! backscatter the config says to discard, consciously dropped)" with exit 0,
//! or exit 75 (EX_TEMPFAIL) so that the MTA keeps the message and retries.
//! Any other status would make Postfix or Exim bounce the message, and that
//! bounce would go to a sender who is, as often as not, forged.

use std::borrow::Cow;
use std::io::{BufRead, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::budget::{over_budget, run_within};
use crate::cli::{CommonArgs, DeliverArgs};
use crate::config::{Action, Config, Inbox, expand_home, lenient_inbox, lenient_value, log_path};
use crate::error::ConfigError;
use crate::exit::Exit;
use crate::log;
use crate::perms::check_mailbox_owner;
use crate::run::{env_vars, fault_point, load, quiet_panics};
use crate::store::{self, Payload, Stored};
use crate::trace::{trace_headers, trace_line, without_incoming};
use crate::verdict::{Evaluation, evaluate};

impl DeliverArgs {
    /// The inbox: the flags, else the config's, else ~/Maildir.
    fn inbox(&self, from_config: Option<Inbox>) -> Inbox {
        if let Some(m) = self.maildir.as_ref().or(self.maildir_path.as_ref()) {
            return Inbox::Maildir(m.clone());
        }
        if let Some(m) = &self.mbox {
            return Inbox::Mbox(m.clone());
        }
        from_config.unwrap_or_else(|| Inbox::Maildir(expand_home("~/Maildir")))
    }
}

/// Runs `deliver`. Returns 0 or 75, whatever happens (a panic included).
pub fn run(args: &DeliverArgs) -> ExitCode {
    // Quiet panics: the message goes to stderr in our words, never starting with a status code.
    quiet_panics();
    match catch_unwind(AssertUnwindSafe(|| deliver(args))) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(msg)) => {
            let _ = writeln!(std::io::stderr(), "backstop: {msg}; the MTA will try again");
            ExitCode::from(Exit::TempFail)
        }
        Err(_) => ExitCode::from(Exit::TempFail),
    }
}

/// The input: what fits in memory, and the unread rest for messages over the limit.
#[derive(Clone)]
struct Input {
    /// Shared with the evaluating thread (see [`crate::budget`]).
    bytes: Arc<Vec<u8>>,
    oversized: bool,
    /// The length of a leading mbox From_ line (without its line end), split off once here.
    from_line: Option<usize>,
    /// Where the message to store starts: after the From_ line and its line end. A From_ line
    /// whose end was not read (longer than the limit plus [`FIRST_LINES_MAX`]) is kept rather
    /// than cut in two, since its rest is in the tail.
    start: usize,
    /// The envelope sender for an mbox `From ` line: --sender or $SENDER, else the input's
    /// From_ line; None (MAILER-DAEMON) when neither says.
    sender: Option<String>,
}

/// How far past the size limit the input is read to see its first lines whole.
const FIRST_LINES_MAX: u64 = 64 * 1024;

fn read_input(limit: u64) -> std::io::Result<Input> {
    let mut bytes = Vec::new();
    let mut stdin = std::io::stdin().lock();
    let cap = limit.saturating_add(1);
    (&mut stdin).take(cap).read_to_end(&mut bytes)?;
    let oversized = bytes.len() as u64 >= cap;
    if oversized {
        // The limit may cut the From_ line (to strip) or the first header line (whose line end
        // the trace headers copy): read on to their ends, within a bound. The rest is the tail.
        let mut more = (&mut stdin).take(FIRST_LINES_MAX);
        loop {
            let want = if bytes.starts_with(b"From ") { 2 } else { 1 };
            if memchr::memchr_iter(b'\n', &bytes).take(want).count() >= want
                || more.read_until(b'\n', &mut bytes)? == 0
            {
                break;
            }
        }
    }
    let (line, rest) = crate::message::split_from_line(&bytes);
    let from_line = line.map(<[u8]>::len);
    let start = if oversized && from_line == Some(bytes.len()) {
        0
    } else {
        bytes.len() - rest.len()
    };
    Ok(Input {
        oversized,
        from_line,
        start,
        bytes: Arc::new(bytes),
        sender: None,
    })
}

fn deliver(args: &DeliverArgs) -> Result<(), String> {
    let loaded = load(args.common.config.as_deref());
    let limit = loaded
        .as_ref()
        .map_or(crate::config::DEFAULT_MAX_SIZE, |(c, _)| c.max_size);
    let mut input = read_input(limit).map_err(|e| format!("cannot read the message: {e}"))?;
    input.sender = mbox_sender(&args.common, &input);
    let (config, rules) = match loaded {
        Ok((config, rules)) => (Arc::new(config), rules),
        Err(err) => return deliver_unfiltered(args, &err, &input),
    };
    let inbox = args.inbox(config.inbox.clone());
    check_home_known(inbox_path(&inbox))?;
    check_mailbox_owner(inbox_path(&inbox))?;
    let eval = if input.oversized {
        let note = format!(
            "the message is larger than max_size ({} bytes): not parsed, goes to the inbox",
            config.max_size
        );
        Evaluation::unparsed(note, Default::default())
    } else {
        fault_point("evaluate");
        let env = env_vars(&args.common);
        let budget = Duration::from_millis(config.cpu_budget_ms);
        let (to, into, message) = (config.clone(), inbox.clone(), input.clone());
        run_within(
            budget,
            || evaluate(&input.bytes, &config, &rules, &env),
            // Past the budget: the inbox, unjudged and marked, and the process ends there.
            move || match file_message(&over_budget(budget), &to, &into, &message) {
                Ok(()) => Exit::Success.code(),
                Err(msg) => {
                    say!("backstop: {msg}; the MTA will try again");
                    Exit::TempFail.code()
                }
            },
        )
    };
    file_message(&eval, &config, &inbox, &input)
}

/// A config that failed to load must not stop mail: the inbox, unfiltered, with a header
/// saying why. The inbox and log keys of a broken file are still read leniently (a user whose
/// config says `mbox: /var/mail/me` must not lose sight of new mail over a typo elsewhere);
/// nothing is read from a file someone else could have written.
fn deliver_unfiltered(args: &DeliverArgs, err: &ConfigError, input: &Input) -> Result<(), String> {
    let _ = writeln!(
        std::io::stderr(),
        "backstop: {err}; delivering to the inbox unfiltered"
    );
    // The user's file, then the site's: whichever names an inbox or a log first. A file that
    // is not trusted is not read at all.
    let untrusted = |p: &Path| err.untrusted && err.file == p.display().to_string();
    let texts: Vec<String> = [
        args.common
            .config
            .clone()
            .or_else(Config::env_path)
            .or_else(Config::default_path),
        Config::site_path(),
    ]
    .into_iter()
    .flatten()
    .filter(|p| !untrusted(p))
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .collect();
    let inbox = args.inbox(texts.iter().find_map(|t| lenient_inbox(t)));
    check_home_known(inbox_path(&inbox))?;
    check_mailbox_owner(inbox_path(&inbox))?;
    let head = trace_line(
        &input.bytes,
        "X-Backstop-Error",
        &format!("config error, not filtered: {err}"),
    );
    let stored = store_inbox(&inbox, &Config::default(), &head, input)?;
    let log = texts
        .iter()
        .find_map(|t| lenient_value(t, "log"))
        .map_or_else(crate::config::default_log, |v| log_path(&v));
    let entry = log::Entry::error(&err.to_string(), &stored);
    if let Some(path) = log {
        log::append_entry(&path, &entry).unwrap_or_else(|e| log::warn(&path, &e));
    }
    let syslog = texts.iter().find_map(|t| lenient_value(t, "syslog"));
    to_syslog(syslog.as_deref() == Some("true"), &entry);
    Ok(())
}

/// Sends the decision to the system log when the config asks; a failure is said on stderr
/// and changes nothing else.
fn to_syslog(on: bool, entry: &log::Entry) {
    if on && let Err(e) = crate::syslog::send(entry) {
        say!("backstop: cannot write to the system log {e}");
    }
}

/// Writes the message where its verdict sends it, then logs the decision. The action the
/// trace header and the log give is the one taken: a discard that could not be recorded is
/// filed in the folder, and a folder that could not be written gives way to the inbox.
fn file_message(
    eval: &Evaluation,
    config: &Config,
    inbox: &Inbox,
    input: &Input,
) -> Result<(), String> {
    let mut eval = Cow::Borrowed(eval);
    let mut fallback = None;
    if eval.action == Action::Discard {
        // A discard always leaves a record: the log, else the message itself.
        let entry = log::Entry::new(&eval, None);
        let why = match &config.log {
            Some(path) => match log::append_entry(path, &entry) {
                Ok(()) => {
                    to_syslog(config.syslog, &entry);
                    note_wave(&eval, config, inbox);
                    return Ok(());
                }
                Err(e) => format!("cannot write the log {}: {e}", path.display()),
            },
            None => "the log is off (log: off), so a discard would leave no record".to_string(),
        };
        let _ = writeln!(
            std::io::stderr(),
            "backstop: not discarded: {why}; filed in the backscatter folder instead"
        );
        fallback = Some(format!("not discarded: {why}"));
        eval.to_mut().action = Action::Folder;
    }
    let head = |eval: &Evaluation| {
        if config.trace_headers {
            trace_headers(&input.bytes, eval)
        } else {
            Vec::new()
        }
    };
    let stored = match eval.action {
        Action::Inbox | Action::Discard => store_inbox(inbox, config, &head(&eval), input)?,
        // When in doubt, the inbox. If that fails too, both reasons make the one line
        // the MTA logs (Exim logs only the first line of a command's output).
        Action::Folder => match store_folder(inbox, config, &head(&eval), input) {
            Ok(s) => s,
            Err(e) => {
                eval.to_mut().action = Action::Inbox;
                match store_inbox(inbox, config, &head(&eval), input) {
                    Ok(s) => {
                        let _ = writeln!(
                            std::io::stderr(),
                            "backstop: {e}; filed in the inbox instead"
                        );
                        fallback = Some(format!("{e}; filed in the inbox instead"));
                        s
                    }
                    Err(inbox_error) => {
                        return Err(format!("{e}, nor into the inbox: {inbox_error}"));
                    }
                }
            }
        },
    };
    if config.log.is_some() || config.syslog {
        let mut entry = log::Entry::new(&eval, Some(&stored));
        entry.fallback = fallback;
        if let Some(path) = &config.log
            && let Err(e) = log::append_entry(path, &entry)
        {
            log::warn(path, &e);
        }
        to_syslog(config.syslog, &entry);
    }
    note_wave(&eval, config, inbox);
    Ok(())
}

/// Tells the wave alarm of a legitimate bounce. The bounce is stored (or consciously
/// discarded): the alarm's trouble must not make the MTA deliver it again.
fn note_wave(eval: &Evaluation, config: &Config, inbox: &Inbox) {
    if let Some(facts) = &eval.wave
        && let Err(e) = crate::proofs::alarm::note(config, inbox, facts, crate::proofs::now())
    {
        let _ = writeln!(std::io::stderr(), "backstop: {e}");
    }
}

fn store_inbox(
    inbox: &Inbox,
    config: &Config,
    head: &[u8],
    input: &Input,
) -> Result<Stored, String> {
    let body = body_for_store(input);
    let sender = input.sender.as_deref();
    let mut stdin = std::io::stdin().lock();
    let payload = Payload {
        head,
        body: &body,
        tail: input.oversized.then_some(&mut stdin as &mut dyn Read),
    };
    fault_point("store");
    let result = match inbox {
        Inbox::Maildir(root) => store::maildir::deliver(root, None, config.layout, payload),
        Inbox::Mbox(path) => store::mbox::deliver(path, sender, &config.mbox_locks, payload),
    };
    result.map_err(|e| format!("cannot deliver to {}: {e}", inbox_path(inbox).display()))
}

/// Files the message in the backscatter folder; the error names the folder.
fn store_folder(
    inbox: &Inbox,
    config: &Config,
    head: &[u8],
    input: &Input,
) -> Result<Stored, String> {
    let folder = match inbox {
        Inbox::Maildir(root) => {
            match crate::store::maildir::folder_levels(&config.folder, config.layout) {
                Ok(Some(levels))
                    if config.layout == crate::store::maildir::Layout::MaildirPlusPlus =>
                {
                    root.join(format!(".{}", levels.join(".")))
                }
                Ok(Some(levels)) => root.join(levels.join("/")),
                _ => root.join(&config.folder),
            }
        }
        Inbox::Mbox(_) => config.mbox_folder.clone(),
    };
    store_folder_io(inbox, config, head, input).map_err(|e| {
        format!(
            "cannot file into the backscatter folder {}: {e}",
            folder.display()
        )
    })
}

fn store_folder_io(
    inbox: &Inbox,
    config: &Config,
    head: &[u8],
    input: &Input,
) -> std::io::Result<Stored> {
    if input.oversized {
        // Never reached (oversized messages are not parsed, so they go to the inbox), but a
        // folder delivery has no tail: it must not store a message cut at the size limit.
        return Err(std::io::Error::other(
            "an oversized message goes to the inbox",
        ));
    }
    let body = body_for_store(input);
    let payload = Payload {
        head,
        body: &body,
        tail: None,
    };
    fault_point("store");
    if let Inbox::Mbox(_) = inbox {
        check_mailbox_owner(&config.mbox_folder).map_err(std::io::Error::other)?;
        make_parent(&config.mbox_folder)?;
    }
    match inbox {
        Inbox::Maildir(root) => {
            store::maildir::deliver(root, Some(&config.folder), config.layout, payload)
        }
        Inbox::Mbox(_) => store::mbox::deliver(
            &config.mbox_folder,
            input.sender.as_deref(),
            &config.mbox_locks,
            payload,
        ),
    }
}

/// Makes the directory of the backscatter mbox (`~/mail` for `~/mail/Backscatter`) when it is
/// missing, as the Maildir code makes the backscatter folder: the last level only (mode 0700),
/// so that an unmounted home directory defers mail instead of growing a stray tree; the
/// directory above is synced so that the new one survives a crash.
fn make_parent(mbox: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let Some(dir) = mbox.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            if let Some(above) = dir.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(above)?.sync_all()?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("cannot make {}: {e}", dir.display()),
        )),
    }
}

/// Refuses an inbox under a home directory nobody could find (`HOME` unset and no password
/// entry for this user): `~/Maildir` would otherwise be a folder named `~` in whatever
/// directory the mail system runs in, where nobody looks.
fn check_home_known(inbox: &Path) -> Result<(), String> {
    if !inbox.starts_with("~") {
        return Ok(());
    }
    Err(format!(
        "cannot find the home directory for {}: HOME is unset and uid {} has no password \
         entry; give the inbox as an absolute path (--maildir or --mbox, or maildir: or mbox: \
         in the config)",
        inbox.display(),
        rustix::process::geteuid().as_raw()
    ))
}

fn inbox_path(inbox: &Inbox) -> &Path {
    match inbox {
        Inbox::Maildir(p) | Inbox::Mbox(p) => p,
    }
}

/// The bytes to store: [`split_for_store`] less the `X-Backstop-*` fields the message came
/// with (see [`crate::trace`]).
fn body_for_store(input: &Input) -> Cow<'_, [u8]> {
    without_incoming(split_for_store(input))
}

/// The bytes to store: the input in memory less a leading mbox From_ line (see
/// [`Input::start`]).
fn split_for_store(input: &Input) -> &[u8] {
    &input.bytes[input.start..]
}

/// The sender for an mbox `From ` line: the envelope the host gave (--sender, $SENDER), else
/// the input's own From_ line. `<>` and "" mean the null sender (written MAILER-DAEMON).
fn mbox_sender(args: &CommonArgs, input: &Input) -> Option<String> {
    let from_line = || {
        let line = input.from_line.map(|end| &input.bytes[..end]);
        line.and_then(crate::message::from_line_sender)
    };
    let sender = env_vars(args).sender.or_else(from_line)?;
    Some(
        sender
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string(),
    )
}

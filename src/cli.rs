//! The command line, as clap types only: every command's arguments. `main.rs` parses them and
//! runs the command in `cmd`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Stops e-mail backscatter: tells bounces of your own mail from forged ones.
#[derive(Debug, Parser)]
#[command(
    name = "backstop",
    version = crate::VERSION,
    about = "Stops e-mail backscatter: tells bounces of your own mail from forged ones.",
    after_help = "See man backstop for hook-ups, verdicts and exit codes, and man backstop.yaml for the config."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the verdict for one message (no side effects).
    Check(CheckArgs),
    /// Print the path the decision took, step by step.
    Explain(InputArgs),
    /// Check a config or rules file without reading any message.
    Lint(LintArgs),
    /// Print the effective configuration: every setting, its value and where it came from
    /// (built in, the site config or yours), then the rules in effect and where each is written.
    Config(ConfigArgs),
    /// Decide and deliver one message from standard input (exit 0 or 75 only).
    Deliver(DeliverArgs),
    /// Print the message with X-Backstop-Verdict and X-Backstop-Reason headers added.
    ///
    /// Any X-Backstop-* header the message came with is removed, so that the rules after it
    /// act on backstop's own verdict alone.
    Filter(InputArgs),
    /// Classify a Maildir or mbox, list its backscatter, move it away (--apply) or back (--undo).
    Scan(ScanArgs),
    /// Summarise the decision log: verdicts per day (text, CSV, SVG), top senders, the wave.
    Stats(StatsArgs),
    /// Record the Message-IDs of mail you sent in the ledger (one message on stdin, or Sent folders).
    Learn(LearnArgs),
    /// Manage the DKIM public keys backstop checks returned originals with.
    DkimKeys(DkimKeysArgs),
    /// Propose your own domains, hosts and networks from mail you sent, and write a config.
    Init(InitArgs),
}

/// `deliver`'s help line when it is parsed alone (the same as its doc line above: a test).
const DELIVER_ABOUT: &str =
    "Decide and deliver one message from standard input (exit 0 or 75 only)";

/// Options every message-reading command takes.
#[derive(Debug, Args, Clone)]
pub struct InputArgs {
    /// The message file; standard input when absent or "-".
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The config file and the envelope, for every command that decides on a message.
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// The config file (default: ~/.config/backstop/config.yaml when it exists).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The envelope sender, overriding $SENDER ("" for the null sender).
    #[arg(long, value_name = "ADDRESS")]
    pub sender: Option<String>,
    /// The envelope recipient, overriding $RECIPIENT.
    #[arg(long, value_name = "ADDRESS")]
    pub recipient: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A line with the verdict, kind and action, then the reasons.
    Text,
    /// One JSON object.
    Json,
    /// The verdict word alone, with no newline (for Sieve execute :output).
    Word,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The message files (standard input when none is given, or for "-"). A file named
    /// *.mbox, or any with --mbox, is read as an mbox: message by message, one verdict each.
    pub files: Vec<PathBuf>,
    /// Read every input as an mbox (a returned original may hold a From_ line of its own, so
    /// a single message is never split unasked).
    #[arg(long)]
    pub mbox: bool,
    #[command(flatten)]
    pub common: CommonArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Exit 0 when the message (any of them, for several) is backscatter and 1 when it is not
    /// (like grep -q).
    #[arg(long)]
    pub exit_status: bool,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// The config or rules file (default: the default config file).
    pub file: Option<PathBuf>,
    /// The config file, as every other command takes it.
    #[arg(long, short = 'c', value_name = "FILE", conflicts_with = "file")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The config file (default: ~/.config/backstop/config.yaml when it exists), merged over
    /// the site config.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Only the settings a config file gives and the rules that are not built in (as
    /// postconf -n).
    #[arg(long, short = 'n')]
    pub non_default: bool,
}

/// The arguments of `deliver` (`args` starts with the word `deliver`), parsed by the same
/// definitions as in the whole command line.
pub fn parse_deliver<I, T>(args: I) -> Result<DeliverArgs, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::FromArgMatches;
    // The flattened CommonArgs would lend its doc line: the about comes after.
    DeliverArgs::augment_args(clap::Command::new("deliver"))
        .bin_name("backstop deliver")
        .about(DELIVER_ABOUT)
        .try_get_matches_from(args)
        .and_then(|m| DeliverArgs::from_arg_matches(&m))
}

#[derive(Debug, Args)]
pub struct DeliverArgs {
    /// The inbox Maildir (default: the config's, else ~/Maildir).
    pub maildir_path: Option<PathBuf>,
    /// The inbox Maildir.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["mbox", "maildir_path"])]
    pub maildir: Option<PathBuf>,
    /// The inbox mbox file, instead of a Maildir.
    #[arg(long, value_name = "FILE", conflicts_with = "maildir_path")]
    pub mbox: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Tables and a bar chart for people.
    Text,
    /// One JSON object for scripts.
    Json,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// A Maildir folder (its cur/ and new/) or an mbox file.
    pub path: PathBuf,
    /// Scan the whole Maildir tree under PATH: every folder but the backscatter folder.
    #[arg(long, short = 'r')]
    pub recursive: bool,
    /// Move the backscatter into the backscatter folder (without it nothing changes).
    #[arg(long)]
    pub apply: bool,
    /// Move unverified bounces too.
    #[arg(long)]
    pub include_unverified: bool,
    /// Put back what the last --apply on PATH moved (it kept a record for this).
    #[arg(long, conflicts_with_all = ["apply", "recursive", "include_unverified", "since", "days"])]
    pub undo: bool,
    /// Only bounces that arrived on DATE (YYYY-MM-DD, UTC) or later are listed, charted and moved.
    #[arg(long, value_name = "DATE", conflicts_with = "days")]
    pub since: Option<String>,
    /// Only bounces that arrived in the last N days (today included).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub days: Option<u32>,
    /// How to print the report.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// The config file (default: ~/.config/backstop/config.yaml when it exists).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Worker threads (default: the number of cores).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<NonZeroUsize>,
}

/// The default `--wave-min` of `stats`.
pub const DEFAULT_WAVE_MIN: u32 = 10;

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The decision log (default: the config's `log:` path).
    pub logfile: Option<PathBuf>,
    /// The config file (default: ~/.config/backstop/config.yaml when it exists).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How to print the report.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Print the days as CSV instead (date and the count of each verdict, every day of the span).
    #[arg(long, conflicts_with = "format")]
    pub csv: bool,
    /// Also write a per-day chart of backscatter and legitimate bounces to FILE (SVG).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Only the days from DATE (YYYY-MM-DD, UTC) to today.
    #[arg(long, value_name = "DATE", conflicts_with = "days")]
    pub since: Option<String>,
    /// Only the last N days (today included).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub days: Option<u32>,
    /// How many bounce senders, forged senders and originating addresses to list.
    #[arg(long, value_name = "N", default_value = "10")]
    pub top: usize,
    /// The least backscatter in a day that can start a wave.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_WAVE_MIN, value_parser = clap::value_parser!(u32).range(1..))]
    pub wave_min: u32,
}

#[derive(Debug, Args)]
pub struct LearnArgs {
    /// Sent folders to read (Maildir or mbox). Without any, one message is read from standard
    /// input, and the exit status is 0 or 75 only (for MTA hooks).
    pub folders: Vec<PathBuf>,
    /// The config file (default: ~/.config/backstop/config.yaml when it exists).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The ledger file (default: the config's ledger.path, else ~/.local/share/backstop/ledger).
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
    /// Read every message of the folders again, not only what is new since the last run.
    #[arg(long)]
    pub full: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Mail you sent: a Sent folder (Maildir or mbox), message files, or bounces of your mail.
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<PathBuf>,
    /// Write the proposal as a new config file (never over an existing one).
    #[arg(long)]
    pub write: bool,
    /// The config file to write (default: $BACKSTOP_CONFIG, else ~/.config/backstop/config.yaml).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DkimKeysArgs {
    #[command(subcommand)]
    pub action: DkimKeysAction,
}

#[derive(Debug, Subcommand)]
pub enum DkimKeysAction {
    /// Fetch the published keys of your selectors into the keys file.
    Fetch(FetchArgs),
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Your signing domain (the d= of your signatures).
    #[arg(long)]
    pub domain: String,
    /// A selector (the s= of your signatures); give one for each key you sign with.
    #[arg(long = "selector", required = true)]
    pub selectors: Vec<String>,
    /// The keys file to write (default: the config's dkim.keys_file, else
    /// ~/.config/backstop/dkim-keys).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The DNS server to ask, as ADDRESS:PORT (default: the first nameserver of
    /// /etc/resolv.conf, port 53).
    #[arg(long, value_name = "ADDRESS:PORT")]
    pub server: Option<SocketAddr>,
    /// The config file (default: ~/.config/backstop/config.yaml when it exists).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `deliver` parsed alone reads every argument vector as the whole command line does.
    #[test]
    fn deliver_alone_parses_as_the_whole_command_line() {
        let cases: &[&[&str]] = &[
            &["deliver"],
            &["deliver", "/home/u/Maildir"],
            &["deliver", "--maildir", "/m", "-c", "/etc/b.yaml"],
            &[
                "deliver",
                "--mbox=/var/mail/u",
                "--sender",
                "",
                "--recipient",
                "u@x.example",
            ],
            &["deliver", "-c/etc/b.yaml", "--", "/m"],
            &["deliver", "--maildir", "/m", "/n"],
            &["deliver", "--mbox", "/b", "/m"],
            &["deliver", "--bogus"],
            &["deliver", "--help"],
            &["deliver", "--version"],
            &["deliver", "a", "b"],
        ];
        for args in cases {
            let whole =
                Cli::try_parse_from(std::iter::once("backstop").chain(args.iter().copied()));
            let alone = parse_deliver(args.iter().copied());
            match (whole, alone) {
                (Ok(w), Ok(a)) => {
                    let Command::Deliver(w) = w.command else {
                        panic!("{args:?}: not deliver");
                    };
                    assert_eq!(format!("{w:?}"), format!("{a:?}"), "{args:?}");
                }
                (Err(w), Err(a)) => {
                    assert_eq!(w.kind(), a.kind(), "{args:?}");
                    assert_eq!(w.to_string(), a.to_string(), "{args:?}");
                }
                (w, a) => panic!("{args:?}: whole {w:?}, alone {a:?}"),
            }
        }
    }
}

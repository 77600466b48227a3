//! `backstop learn`: records the Message-IDs of mail the user sent in the ledger of sent mail.
//!
//! Two ways in: one message on standard input (a Postfix `sender_bcc_maps` pipe, a Dovecot
//! IMAPSieve script on the Sent folder, any MTA hook; exit 0 or 75 only, as `deliver`), or Sent
//! folders, Maildir or mbox, read incrementally (a Maildir's files changed since the last run,
//! an mbox from where the last run stopped) and idempotently, for cron.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mail_parser::MessageParser;

use crate::cli::LearnArgs;
use crate::config::Config;
use crate::exit::Exit;
use crate::proofs::ledger::{self, Learned, Mark, Paths, Sent};

/// At most this much of a message's header is read.
const MAX_HEADER: usize = 256 * 1024;
/// A Maildir file changed this long before the last run is read again (clock steps, races).
const RESCAN_SLACK: i64 = 120;

/// Runs `learn`.
pub fn run(args: &LearnArgs) -> ExitCode {
    let hook = args.folders.is_empty();
    let fail = |msg: String| {
        if hook {
            say!("backstop: {msg}; the MTA will try again");
            ExitCode::from(Exit::TempFail)
        } else {
            say!("backstop: {msg}");
            ExitCode::from(Exit::Error)
        }
    };
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        // A hook must not hold sent mail's copies back over a config typo: the defaults
        // (the default ledger) serve until the config is fixed.
        Err(e) if hook && !e.untrusted => {
            say!("backstop: {e}; learning with the default settings");
            Config::default()
        }
        Err(e) => return fail(e.to_string()),
    };
    let paths = match &args.ledger {
        Some(p) => Paths::new(p.clone()),
        None => match Paths::from_config(config.ledger.path.as_deref()) {
            Some(p) => p,
            None => return fail("no home folder for the ledger; give --ledger".into()),
        },
    };
    let expire = config
        .ledger
        .expire_days
        .as_ref()
        .map_or(ledger::DEFAULT_EXPIRE_DAYS, |d| d.value);
    let result = if hook {
        learn_stdin(&paths, &config, expire)
    } else {
        learn_folders(&paths, &args.folders, args.full, expire)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn learn_stdin(paths: &Paths, config: &Config, expire: u32) -> Result<(), String> {
    let mut bytes = Vec::new();
    let mut stdin = std::io::stdin().lock();
    (&mut stdin)
        .take(config.max_size.min(MAX_HEADER as u64 * 4))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the message: {e}"))?;
    // Read the rest too: a host whose command exits before taking the whole message may count
    // the broken pipe as a failure.
    std::io::copy(&mut stdin, &mut std::io::sink())
        .map_err(|e| format!("cannot read the message: {e}"))?;
    let now = crate::proofs::now();
    let (_, message) = crate::message::split_from_line(&bytes);
    let sent: Vec<Sent> = sent_of(header_of(message), now).into_iter().collect();
    if sent.is_empty() {
        say!("backstop: the message has no Message-ID: nothing to learn");
    }
    ledger::learn(paths, &sent, &[Mark::Hook], now, expire)
        .map(drop)
        .map_err(|e| format!("cannot write the ledger {}: {e}", paths.ledger.display()))
}

/// The header block of a message (up to the first empty line, at most [`MAX_HEADER`]).
fn header_of(message: &[u8]) -> &[u8] {
    let cut = &message[..message.len().min(MAX_HEADER)];
    let end = cut
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| i + 2)
        .or_else(|| cut.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4));
    &cut[..end.unwrap_or(cut.len())]
}

/// The Message-ID and date of a sent message's header; the date defaults to `fallback`.
fn sent_of(header: &[u8], fallback: i64) -> Option<Sent> {
    let parsed = MessageParser::new().parse_headers(header)?;
    let id = parsed.message_id()?.to_string();
    let date = parsed.date().map_or(fallback, |d| d.to_timestamp());
    Some(Sent { id, date })
}

/// Counts for one folder.
#[derive(Debug, Default)]
struct Tally {
    read: usize,
    no_id: usize,
    learned: Learned,
}

fn learn_folders(
    paths: &Paths,
    folders: &[PathBuf],
    full: bool,
    expire: u32,
) -> Result<(), String> {
    for folder in folders {
        let abs = std::fs::canonicalize(folder)
            .map_err(|e| format!("cannot read the folder {}: {e}", folder.display()))?;
        let key = abs.to_string_lossy().into_owned();
        let mark = if full {
            None
        } else {
            ledger::folder_mark(paths, &key)
                .map_err(|e| format!("cannot read the ledger {}: {e}", paths.ledger.display()))?
        };
        let now = crate::proofs::now();
        let (sent, tally, offset) = if abs.is_dir() {
            let since = mark.map(|(t, _)| t - RESCAN_SLACK);
            let (sent, tally) = read_maildir(&abs, since, now)
                .map_err(|e| format!("cannot read the Maildir {}: {e}", abs.display()))?;
            (sent, tally, 0)
        } else {
            let from = mark.map_or(0, |(_, o)| o);
            read_mbox(&abs, from, now)
                .map_err(|e| format!("cannot read the mbox {}: {e}", abs.display()))?
        };
        let marks = [Mark::Folder { path: key, offset }];
        let learned = ledger::learn(paths, &sent, &marks, now, expire)
            .map_err(|e| format!("cannot write the ledger {}: {e}", paths.ledger.display()))?;
        let tally = Tally { learned, ..tally };
        let line = format!(
            "{}: {} messages read, {} learnt, {} known already, {} too old, {} without a Message-ID",
            folder.display(),
            tally.read,
            tally.learned.added,
            tally.learned.known,
            tally.learned.too_old,
            tally.no_id
        );
        let mut out = std::io::stdout().lock();
        let _ = std::io::Write::write_all(&mut out, format!("{line}\n").as_bytes());
    }
    Ok(())
}

/// Reads the messages of a Maildir (its cur and new, or the folder itself when it has neither)
/// changed since `since`.
fn read_maildir(dir: &Path, since: Option<i64>, now: i64) -> std::io::Result<(Vec<Sent>, Tally)> {
    let subs: Vec<PathBuf> = ["cur", "new"]
        .iter()
        .map(|s| dir.join(s))
        .filter(|p| p.is_dir())
        .collect();
    let subs = if subs.is_empty() {
        vec![dir.to_path_buf()]
    } else {
        subs
    };
    let mut sent = Vec::new();
    let mut tally = Tally::default();
    for sub in subs {
        for entry in std::fs::read_dir(&sub)? {
            let entry = entry?;
            let Ok(meta) = entry.metadata() else {
                continue; // moved away meanwhile
            };
            if !meta.is_file() || since.is_some_and(|s| meta.ctime() < s) {
                continue;
            }
            let Ok(file) = File::open(entry.path()) else {
                continue;
            };
            let mut head = Vec::new();
            file.take(MAX_HEADER as u64).read_to_end(&mut head)?;
            tally.read += 1;
            match sent_of(header_of(&head), meta.mtime().min(now)) {
                Some(s) => sent.push(s),
                None => tally.no_id += 1,
            }
        }
    }
    Ok((sent, tally))
}

/// Reads an mbox from byte `from` (from the start when the file no longer has a message
/// there); returns the offset through which it was read whole.
fn read_mbox(path: &Path, from: u64, now: i64) -> std::io::Result<(Vec<Sent>, Tally, u64)> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut start = 0;
    if from > 0 && from <= len {
        file.seek(SeekFrom::Start(from))?;
        let mut first = Vec::new();
        (&mut file).take(5).read_to_end(&mut first)?;
        if from == len || first == b"From " {
            start = from;
        }
    }
    file.seek(SeekFrom::Start(start))?;
    let mut reader = BufReader::new(file);
    let mut sent = Vec::new();
    let mut tally = Tally::default();
    let mut pos = start;
    // The header of the message being read, while in its header.
    let mut header: Option<Vec<u8>> = None;
    let mut after_blank = true;
    let mut through = start;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        let here = pos;
        pos += n as u64;
        if after_blank && line.starts_with(b"From ") {
            if header.is_some() {
                // The previous message ended inside its header.
                tally.read += 1;
                tally.no_id += 1;
            }
            through = here;
            header = Some(Vec::new());
            after_blank = false;
            continue;
        }
        let blank = line == b"\n" || line == b"\r\n";
        after_blank = blank;
        if let Some(h) = header.as_mut() {
            if blank {
                h.extend_from_slice(&line);
                tally.read += 1;
                match sent_of(h, now) {
                    Some(s) => sent.push(s),
                    None => tally.no_id += 1,
                }
                header = None;
            } else if h.len() < MAX_HEADER {
                h.extend_from_slice(&line);
            }
        }
    }
    // A message still in its header at the end may be being written: read it next time.
    if header.is_none() {
        through = pos;
    }
    Ok((sent, tally, through))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_is_read_whole_and_then_from_where_it_stopped() {
        let tmp = tempfile::tempdir().unwrap();
        let mbox = tmp.path().join("Sent");
        let one = "From me Fri Jan  2 00:00:00 2026\nMessage-ID: <1@x>\nDate: Fri, 2 Jan 2026 00:00:00 +0000\n\n>From the body, quoted.\n\n";
        let two = "From me Fri Jan  2 00:00:00 2026\nSubject: no id\n\nbody\n\n";
        std::fs::write(&mbox, format!("{one}{two}")).unwrap();
        let (sent, tally, through) = read_mbox(&mbox, 0, 5).unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].id, "1@x");
        assert_eq!(sent[0].date, 1_767_312_000);
        assert_eq!((tally.read, tally.no_id), (2, 1));
        assert_eq!(through, (one.len() + two.len()) as u64);
        // Appended later: only the new message is read.
        let three = "From me Sat Jan  3 00:00:00 2026\nMessage-ID: <3@x>\n\nbody\n";
        let mut all = std::fs::read(&mbox).unwrap();
        all.extend_from_slice(three.as_bytes());
        std::fs::write(&mbox, &all).unwrap();
        let (sent, tally, _) = read_mbox(&mbox, through, 5).unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].id, "3@x");
        assert_eq!(tally.read, 1);
        // A file rewritten shorter is read from the start.
        std::fs::write(&mbox, three).unwrap();
        let (sent, _, _) = read_mbox(&mbox, through, 5).unwrap();
        assert_eq!(sent[0].id, "3@x");
    }

    #[test]
    fn a_message_cut_in_its_header_is_left_for_the_next_run() {
        let tmp = tempfile::tempdir().unwrap();
        let mbox = tmp.path().join("Sent");
        let one = "From me Fri Jan  2 00:00:00 2026\nMessage-ID: <1@x>\n\nbody\n\n";
        std::fs::write(
            &mbox,
            format!("{one}From me Fri Jan  2 00:00:00 2026\nMessage-ID: <2@x>\n"),
        )
        .unwrap();
        let (sent, _, through) = read_mbox(&mbox, 0, 5).unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(through, one.len() as u64);
    }
}

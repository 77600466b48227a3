//! The ledger of sent mail: keyed hashes of the Message-IDs the user sent, with the dates sent.
//!
//! A spammer can write any Message-ID, but cannot know which ones the user sent. So a returned
//! original whose Message-ID is in the ledger was sent by the user (or replayed: a spammer who
//! resends a message the user really sent, with its Message-ID, passes; that is the known limit).
//!
//! The file stores no Message-ID, only HMAC-SHA256 tags keyed with a per-user secret (the
//! `.key` file beside it, mode 0600, made on first use): a stolen ledger reveals nothing.
//!
//! # Format, and why
//!
//! An append-only file of fixed-size 48-byte records: a 32-byte tag, the time (i64, little
//! endian, Unix seconds), a kind byte, 3 zero bytes, and the first 4 bytes of the SHA-256 of
//! the 44 bytes before them. An embedded database crate would be more code than this whole
//! module for what is a set of hashes, and a fixed record size makes every failure visible:
//! - Writers (`learn`) hold an exclusive `flock` on the `.lock` file beside the ledger, append
//!   their records in one `write` on an `O_APPEND` descriptor, then `fdatasync`. A writer killed
//!   at any point leaves at most a torn record at the end: the next writer cuts the file back to
//!   whole records (under the lock), and readers skip records whose check bytes do not match.
//! - Readers (`deliver`) take no lock and never wait: they see whole appended records or a
//!   torn tail they skip, and a compacted file is swapped in by `rename`, which they see whole
//!   or not at all.
//! - Bounded: entries older than the expiry are dropped by the next `learn` that finds at least
//!   as many dead records as live ones (a rewrite to a temporary file, `fsync`, `rename`,
//!   `fsync` of the folder). Ten thousand messages a month take under 1 MB.
//!
//! Besides the sent records, the file says what it has seen: when learning started, when each
//! folder was last read (and, for an mbox, how far), and when the stdin hook last ran. Those
//! give the window in which a Message-ID *not* found is evidence of forgery.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The size of one record.
pub const RECORD: usize = 48;
/// Days a sent message is remembered, unless the config says otherwise.
pub const DEFAULT_EXPIRE_DAYS: u32 = 60;
/// Clock skew and queue delays allowed at both ends of the window the ledger covers.
pub const SLACK_SECS: i64 = 300;
/// With the hook, a message is learnt as it leaves: the hook's copy is delivered locally while
/// the message itself still has to reach a remote server, fail, and come back, so the ledger
/// covers up to the present moment with no margin.
pub const HOOK_SLACK_SECS: i64 = 0;
/// A ledger larger than this is not read (about 1.4 million records).
const MAX_FILE: u64 = 64 << 20;
/// Compaction waits until at least this many records are dead.
const MIN_DEAD: usize = 1024;

const SENT: u8 = 1;
const STARTED: u8 = 2;
const FOLDER: u8 = 3;
const HOOK: u8 = 4;

/// The ledger file and the files beside it.
#[derive(Debug, Clone)]
pub struct Paths {
    pub ledger: PathBuf,
    pub key: PathBuf,
    pub lock: PathBuf,
}

impl Paths {
    pub fn new(ledger: PathBuf) -> Paths {
        let with = |ext: &str| {
            let mut p = ledger.clone().into_os_string();
            p.push(ext);
            PathBuf::from(p)
        };
        Paths {
            key: with(".key"),
            lock: with(".lock"),
            ledger,
        }
    }

    /// The config's ledger, else `$XDG_DATA_HOME/backstop/ledger`.
    pub fn from_config(path: Option<&str>) -> Option<Paths> {
        match path {
            Some(p) => Some(Paths::new(crate::config::expand_home(p))),
            None => directories::ProjectDirs::from("", "", "backstop")
                .map(|d| Paths::new(d.data_dir().join("ledger"))),
        }
    }
}

/// One sent message to learn.
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    /// When it was sent (its Date), Unix seconds.
    pub date: i64,
}

/// What a learning run has seen, besides the messages.
#[derive(Debug, Clone)]
pub enum Mark {
    /// A message from the hook (every sent message passes it).
    Hook,
    /// A folder read through `offset` bytes (mbox) or wholly (Maildir, offset 0).
    Folder { path: String, offset: u64 },
}

/// What a learning run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Learned {
    pub added: usize,
    pub known: usize,
    /// Older than the expiry, so not kept.
    pub too_old: usize,
}

/// The window in which the ledger has seen every sent message (Unix seconds, both ends
/// inclusive, slack already taken off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    pub from: i64,
    pub through: i64,
}

/// The answer for a set of Message-IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The first ID found, and the date it was sent.
    pub found: Option<(String, i64)>,
    pub coverage: Option<Coverage>,
    /// The number of live sent records.
    pub entries: usize,
}

struct Record {
    tag: [u8; 32],
    time: i64,
    kind: u8,
}

impl Record {
    fn encode(&self) -> [u8; RECORD] {
        let mut b = [0u8; RECORD];
        b[..32].copy_from_slice(&self.tag);
        b[32..40].copy_from_slice(&self.time.to_le_bytes());
        b[40] = self.kind;
        let sum = Sha256::digest(&b[..44]);
        b[44..].copy_from_slice(&sum[..4]);
        b
    }

    /// The record in `b` when its check bytes match.
    fn decode(b: &[u8]) -> Option<Record> {
        let b: &[u8; RECORD] = b.try_into().ok()?;
        if Sha256::digest(&b[..44])[..4] != b[44..] {
            return None;
        }
        let mut tag = [0u8; 32];
        tag.copy_from_slice(&b[..32]);
        let mut time = [0u8; 8];
        time.copy_from_slice(&b[32..40]);
        Some(Record {
            tag,
            time: i64::from_le_bytes(time),
            kind: b[40],
        })
    }
}

/// The form of a Message-ID that is hashed: no angle brackets or blanks, lower case (bouncers
/// and clients do not always keep the case of the domain).
pub fn normalize_id(id: &str) -> Option<String> {
    let id = id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!id.is_empty() && id.len() <= 998).then(|| id.to_lowercase())
}

fn mac(key: &[u8; 32], what: &[u8]) -> [u8; 32] {
    // A 32-byte key is always accepted.
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(what);
    m.finalize().into_bytes().into()
}

/// The keyed hash of a normalized Message-ID (the shared ledger stores it too).
pub fn id_tag(key: &[u8; 32], normalized: &str) -> [u8; 32] {
    mac(key, format!("id:{normalized}").as_bytes())
}

/// A folder's tag: 24 bytes of its keyed hash, then the offset read through.
fn folder_tag(key: &[u8; 32], path: &str, offset: u64) -> [u8; 32] {
    let mut tag = mac(key, format!("folder:{path}").as_bytes());
    tag[24..].copy_from_slice(&offset.to_le_bytes());
    tag
}

/// Reads a ledger key (64 hex digits).
pub fn read_key(path: &Path) -> io::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)?;
    let hex = text.trim();
    let bad = || io::Error::other(format!("{}: not a ledger key", path.display()));
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut key = [0u8; 32];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(key)
}

/// The key, made on first use: 32 random bytes written to a temporary file (mode 0600,
/// synced) and linked into place, so that two first learners agree on one key and a crash
/// leaves either no key or a whole one.
fn key_or_create(path: &Path) -> io::Result<[u8; 32]> {
    match read_key(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let mut key = [0u8; 32];
    File::open("/dev/urandom")?.read_exact(&mut key)?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(format!("{hex}\n").as_bytes())?;
    f.sync_all()?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(path)?;
            Ok(key)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key(path),
        Err(e) => Err(e),
    }
}

/// Replaces the file at `path` with `bytes` as a crash leaves it either whole or as it was:
/// written to `path` + `suffix` (mode 0600), synced, renamed over `path`, the folder synced.
pub(super) fn replace_file(path: &Path, suffix: &str, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(suffix);
    crate::store::replace_durably(&PathBuf::from(tmp), path, bytes)
}

/// The key and the ledger's bytes; None while either does not exist yet (nothing is known).
fn read_ledger(paths: &Paths) -> io::Result<Option<([u8; 32], Vec<u8>)>> {
    let key = match read_key(&paths.key) {
        Ok(k) => k,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match File::open(&paths.ledger) {
        Ok(mut f) => Ok(Some((key, read_all(&mut f)?))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

fn read_all(file: &mut File) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(io::Error::other(format!(
            "the ledger is larger than {MAX_FILE} bytes"
        )));
    }
    Ok(bytes)
}

/// The ledger's records as read, with what learning has seen.
struct State {
    sent: HashSet<[u8; 32]>,
    sent_times: Vec<i64>,
    started: Option<i64>,
    hook: Option<i64>,
    /// Folder tags (first 24 bytes) with the latest time and offset.
    folders: Vec<([u8; 24], i64, u64)>,
    records: usize,
}

fn scan(bytes: &[u8], keep_tags: bool) -> State {
    let mut st = State {
        sent: HashSet::new(),
        sent_times: Vec::new(),
        started: None,
        hook: None,
        folders: Vec::new(),
        records: 0,
    };
    for chunk in bytes.chunks_exact(RECORD) {
        st.records += 1;
        // Sent records are checked only when they matter (a match): see `lookup`.
        if chunk[40] == SENT && !keep_tags {
            continue;
        }
        let Some(r) = Record::decode(chunk) else {
            continue;
        };
        match r.kind {
            SENT => {
                st.sent.insert(r.tag);
                st.sent_times.push(r.time);
            }
            STARTED => st.started = Some(st.started.map_or(r.time, |t| t.min(r.time))),
            HOOK => st.hook = Some(st.hook.map_or(r.time, |t| t.max(r.time))),
            FOLDER => {
                let mut head = [0u8; 24];
                head.copy_from_slice(&r.tag[..24]);
                let mut off = [0u8; 8];
                off.copy_from_slice(&r.tag[24..]);
                let offset = u64::from_le_bytes(off);
                match st.folders.iter_mut().find(|(h, _, _)| *h == head) {
                    Some(f) if r.time >= f.1 => (f.1, f.2) = (r.time, offset),
                    Some(_) => {}
                    None => st.folders.push((head, r.time, offset)),
                }
            }
            _ => {}
        }
    }
    st
}

fn expiry_cut(now: i64, expire_days: u32) -> i64 {
    now - i64::from(expire_days) * 86_400
}

/// Records sent messages (and what the run has seen). Idempotent: a Message-ID already in the
/// ledger is not added again.
pub fn learn(
    paths: &Paths,
    sent: &[Sent],
    marks: &[Mark],
    now: i64,
    expire_days: u32,
) -> io::Result<Learned> {
    if let Some(dir) = paths.ledger.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let key = key_or_create(&paths.key)?;
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&paths.lock)?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&paths.ledger)?;
    let bytes = read_all(&mut file)?;
    let whole = bytes.len() - bytes.len() % RECORD;
    if whole != bytes.len() {
        // A writer was killed mid-record: cut back to whole records.
        file.set_len(whole as u64)?;
    }
    let mut st = scan(&bytes[..whole], true);
    let cut = expiry_cut(now, expire_days);
    let mut out: Vec<u8> = Vec::new();
    if st.started.is_none() {
        out.extend(
            Record {
                tag: [0; 32],
                time: now,
                kind: STARTED,
            }
            .encode(),
        );
        st.started = Some(now);
    }
    let mut done = Learned::default();
    for s in sent {
        let Some(id) = normalize_id(&s.id) else {
            continue;
        };
        let tag = id_tag(&key, &id);
        if st.sent.contains(&tag) {
            done.known += 1;
        } else if s.date < cut {
            done.too_old += 1;
        } else {
            st.sent.insert(tag);
            st.sent_times.push(s.date);
            out.extend(
                Record {
                    tag,
                    time: s.date,
                    kind: SENT,
                }
                .encode(),
            );
            done.added += 1;
        }
    }
    for m in marks {
        let (tag, kind) = match m {
            Mark::Hook => ([0; 32], HOOK),
            Mark::Folder { path, offset } => (folder_tag(&key, path, *offset), FOLDER),
        };
        out.extend(
            Record {
                tag,
                time: now,
                kind,
            }
            .encode(),
        );
    }
    file.write_all(&out)?;
    file.sync_data()?;
    let total = whole / RECORD + out.len() / RECORD;
    let live_sent = st.sent_times.iter().filter(|&&t| t >= cut).count();
    let live = 1 + live_sent + st.folders.len() + marks.len() + 1;
    if total.saturating_sub(live) >= MIN_DEAD.max(live) {
        compact(paths, &key, cut)?;
    }
    Ok(done)
}

/// Rewrites the ledger without expired entries and superseded marks (under the lock).
fn compact(paths: &Paths, key: &[u8; 32], cut: i64) -> io::Result<()> {
    let _ = key;
    let bytes = std::fs::read(&paths.ledger)?;
    let st = scan(&bytes, true);
    let mut out = Vec::new();
    let started = st.started.unwrap_or(cut).max(cut);
    out.extend(
        Record {
            tag: [0; 32],
            time: started,
            kind: STARTED,
        }
        .encode(),
    );
    for chunk in bytes.chunks_exact(RECORD) {
        if let Some(r) = Record::decode(chunk)
            && r.kind == SENT
            && r.time >= cut
        {
            out.extend_from_slice(chunk);
        }
    }
    if let Some(t) = st.hook {
        out.extend(
            Record {
                tag: [0; 32],
                time: t,
                kind: HOOK,
            }
            .encode(),
        );
    }
    for (head, time, offset) in &st.folders {
        let mut tag = [0u8; 32];
        tag[..24].copy_from_slice(head);
        tag[24..].copy_from_slice(&offset.to_le_bytes());
        out.extend(
            Record {
                tag,
                time: *time,
                kind: FOLDER,
            }
            .encode(),
        );
    }
    replace_file(&paths.ledger, ".compact", &out)
}

/// The time and offset through which a folder was last read, if it was.
pub fn folder_mark(paths: &Paths, path: &str) -> io::Result<Option<(i64, u64)>> {
    let Some((key, bytes)) = read_ledger(paths)? else {
        return Ok(None);
    };
    let head = folder_tag(&key, path, 0);
    Ok(scan(&bytes, false)
        .folders
        .iter()
        .find(|(h, _, _)| h[..] == head[..24])
        .map(|(_, t, o)| (*t, *o)))
}

/// Looks the IDs up. None when there is no ledger (or no key) yet: nothing is known.
pub fn lookup(
    paths: &Paths,
    ids: &[String],
    now: i64,
    expire_days: u32,
) -> io::Result<Option<Lookup>> {
    let Some((key, bytes)) = read_ledger(paths)? else {
        return Ok(None);
    };
    let st = scan(&bytes, false);
    let cut = expiry_cut(now, expire_days);
    let wanted: Vec<(String, [u8; 32])> = ids
        .iter()
        .filter_map(|id| normalize_id(id).map(|n| (id.clone(), id_tag(&key, &n))))
        .collect();
    let mut found = None;
    let mut entries = 0;
    for chunk in bytes.chunks_exact(RECORD) {
        if chunk[40] != SENT {
            continue;
        }
        entries += 1;
        if found.is_some() {
            continue;
        }
        if let Some((id, _)) = wanted.iter().find(|(_, t)| chunk[..32] == t[..])
            && let Some(r) = Record::decode(chunk)
            && r.time >= cut
        {
            found = Some((id.clone(), r.time));
        }
    }
    let coverage = st.started.map(|started| {
        let last_read = st.folders.iter().map(|f| f.1).max();
        // The hook sees each message as it is sent: it covers up to now.
        let through = if st.hook.is_some() {
            now - HOOK_SLACK_SECS
        } else {
            last_read.unwrap_or(started) - SLACK_SECS
        };
        Coverage {
            from: started.max(cut) + SLACK_SECS,
            through,
        }
    });
    Ok(Some(Lookup {
        found,
        coverage,
        entries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> Paths {
        Paths::new(dir.join("sub/ledger"))
    }

    fn sent(id: &str, date: i64) -> Sent {
        Sent {
            id: id.into(),
            date,
        }
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn learnt_ids_are_found_and_stored_only_as_keyed_hashes() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        assert_eq!(lookup(&p, &["<a@x>".into()], NOW, 60).unwrap(), None);
        let l = learn(
            &p,
            &[sent("<A@X.example>", NOW - 10)],
            &[Mark::Hook],
            NOW,
            60,
        )
        .unwrap();
        assert_eq!(l.added, 1);
        let again = learn(&p, &[sent("a@x.example", NOW - 10)], &[], NOW, 60).unwrap();
        assert_eq!((again.added, again.known), (0, 1), "idempotent");
        let got = lookup(&p, &["<other@x>".into(), "<a@x.example>".into()], NOW, 60)
            .unwrap()
            .unwrap();
        assert_eq!(got.found, Some(("<a@x.example>".into(), NOW - 10)));
        assert_eq!(got.entries, 1);
        let raw = std::fs::read(&p.ledger).unwrap();
        assert_eq!(raw.len() % RECORD, 0);
        assert!(!raw.windows(9).any(|w| w == b"x.example"), "no plain IDs");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn coverage_runs_from_the_start_to_now_with_a_hook_and_to_the_last_read_without() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        let folder = Mark::Folder {
            path: "/m/Sent".into(),
            offset: 0,
        };
        learn(&p, &[], &[folder], NOW - 1000, 60).unwrap();
        let cov = lookup(&p, &[], NOW, 60).unwrap().unwrap().coverage.unwrap();
        assert_eq!(cov.from, NOW - 1000 + SLACK_SECS);
        assert_eq!(
            cov.through,
            NOW - 1000 - SLACK_SECS,
            "only read once, at the start"
        );
        learn(&p, &[], &[Mark::Hook], NOW - 500, 60).unwrap();
        let cov = lookup(&p, &[], NOW, 60).unwrap().unwrap().coverage.unwrap();
        assert_eq!(cov.through, NOW - HOOK_SLACK_SECS);
        assert_eq!(folder_mark(&p, "/m/Sent").unwrap(), Some((NOW - 1000, 0)));
        assert_eq!(folder_mark(&p, "/m/Other").unwrap(), None);
    }

    #[test]
    fn a_torn_tail_is_skipped_by_readers_and_cut_by_the_next_writer() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        learn(&p, &[sent("<a@x>", NOW)], &[Mark::Hook], NOW, 60).unwrap();
        // A writer killed after 20 bytes of its record.
        let mut f = OpenOptions::new().append(true).open(&p.ledger).unwrap();
        f.write_all(&[0xAB; 20]).unwrap();
        drop(f);
        let got = lookup(&p, &["<a@x>".into()], NOW, 60).unwrap().unwrap();
        assert!(got.found.is_some());
        learn(&p, &[sent("<b@x>", NOW)], &[], NOW, 60).unwrap();
        assert_eq!(
            std::fs::metadata(&p.ledger).unwrap().len() % RECORD as u64,
            0
        );
        let got = lookup(&p, &["<b@x>".into()], NOW, 60).unwrap().unwrap();
        assert!(got.found.is_some());
        // A corrupted record is not believed.
        let mut raw = std::fs::read(&p.ledger).unwrap();
        let last = raw.len() - RECORD;
        raw[last + 33] ^= 1;
        std::fs::write(&p.ledger, &raw).unwrap();
        let got = lookup(&p, &["<b@x>".into()], NOW, 60).unwrap().unwrap();
        assert_eq!(got.found, None);
    }

    #[test]
    fn expired_entries_are_not_found_and_are_compacted_away() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        let old: Vec<Sent> = (0..3000).map(|i| sent(&format!("<{i}@x>"), NOW)).collect();
        learn(&p, &old, &[Mark::Hook], NOW, 60).unwrap();
        let later = NOW + 61 * 86_400;
        let got = lookup(&p, &["<5@x>".into()], later, 60).unwrap().unwrap();
        assert_eq!(got.found, None, "expired");
        assert_eq!(got.coverage.unwrap().from, later - 60 * 86_400 + SLACK_SECS);
        learn(&p, &[sent("<new@x>", later)], &[Mark::Hook], later, 60).unwrap();
        let size = std::fs::metadata(&p.ledger).unwrap().len() as usize;
        assert!(size < 10 * RECORD, "compacted to {size} bytes");
        let got = lookup(&p, &["<new@x>".into()], later, 60).unwrap().unwrap();
        assert!(got.found.is_some());
        assert_eq!(got.entries, 1);
        assert_eq!(got.coverage.unwrap().through, later - HOOK_SLACK_SECS);
    }
}

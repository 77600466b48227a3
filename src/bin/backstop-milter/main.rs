//! `backstop-milter`: backstop as a milter for Postfix and Sendmail, a binary of its own so that
//! `backstop deliver` loads none of it. It stamps outbound mail and judges inbound bounces at
//! the end of DATA (see `session.rs`).
//!
//! ```text
//! backstop-milter --listen inet:127.0.0.1:8894 | unix:/run/backstop/milter.sock
//!                 [--config /etc/backstop/milter.yaml]
//! ```
//!
//! One thread per connection (at most `MAX_CONNECTIONS`; more are closed at once, and the MTA
//! applies its `milter_default_action`), each with read and write timeouts. A panic in a
//! session ends that message with the fail-open answer (`milter.on_error`).

mod protocol;
mod redis;
mod session;
mod shared_ledger;

use std::io::{BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backstop::config::Config;

use protocol::{read_packet, write_packet};
use session::{Session, Site};
use shared_ledger::RedisLedger;

/// Connections served at once.
const MAX_CONNECTIONS: usize = 512;
/// The longest wait for the MTA's next packet (Postfix's own command timeout is 30 s, its
/// content timeout 300 s, and it keeps idle connections for reuse).
const READ_TIMEOUT: Duration = Duration::from_secs(600);
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// The read buffer of a connection: a body chunk of Postfix or Sendmail (64 KiB) and its
/// header in one read.
const READ_BUFFER: usize = 64 * 1024 + 16;

fn main() -> ExitCode {
    let mut listen = None;
    let mut config_path: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next(),
            "--config" => config_path = args.next().map(PathBuf::from),
            "--version" => {
                println!("backstop-milter {}", backstop::VERSION);
                return ExitCode::SUCCESS;
            }
            "--help" | "-h" => {
                println!(
                    "usage: backstop-milter --listen inet:HOST:PORT|unix:PATH [--config FILE]"
                );
                return ExitCode::SUCCESS;
            }
            other => return fail(&format!("unknown argument {other:?} (see --help)")),
        }
    }
    let Some(listen) = listen else {
        return fail("--listen inet:HOST:PORT or unix:PATH is required");
    };
    let mut config = match Config::load(config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    if config.milter.batv_sign && config.batv.secrets.get(config.milter.batv_key).is_none() {
        return fail(&format!(
            "milter.batv_sign needs batv.secrets to hold key digit milter.batv_key ({})",
            config.milter.batv_key
        ));
    }
    let shared = match shared_ledger(&config) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if let Some(s) = &shared {
        config.shared_ledger = Some(s.clone());
    }
    let stamp_key = match backstop::proofs::stamp_keys(&config) {
        None => None,
        Some(Ok(keys)) => keys.into_iter().next(),
        Some(Err(e)) => return fail(&e),
    };
    let site = Arc::new(Site::new(config, stamp_key, shared));
    backstop::run::quiet_panics();
    let result = if let Some(addr) = listen.strip_prefix("inet:") {
        std::net::TcpListener::bind(addr).and_then(|l| {
            say(&format!("listening on {listen}"));
            serve(site, || l.accept().map(|(s, _)| s))
        })
    } else if let Some(path) = listen.strip_prefix("unix:") {
        bind_unix(Path::new(path)).and_then(|l| {
            say(&format!("listening on {listen}"));
            serve(site, || l.accept().map(|(s, _)| s))
        })
    } else {
        return fail("--listen takes inet:HOST:PORT or unix:PATH");
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{listen}: {e}")),
    }
}

/// The shared ledger in Redis when `ledger.redis` is set. Its key must exist (every MTA of the
/// fleet needs the same one, so none is made here); the server need not be up yet.
fn shared_ledger(config: &Config) -> Result<Option<Arc<RedisLedger>>, String> {
    let Some(url) = &config.ledger.redis else {
        return Ok(None);
    };
    let address = redis::Address::parse(url)?;
    let key_path = match &config.ledger.key_file {
        Some(f) => backstop::config::expand_home(f),
        None => backstop::proofs::ledger::Paths::from_config(config.ledger.path.as_deref())
            .map(|p| p.key)
            .ok_or("ledger.redis needs ledger.key_file (no home directory for the default)")?,
    };
    let key = backstop::proofs::ledger::read_key(&key_path).map_err(|e| {
        format!(
            "the ledger key {}: {e} (every MTA sharing the ledger needs the same key: make \
             one with `openssl rand -hex 32`, and copy it to each)",
            key_path.display()
        )
    })?;
    let timeout = config
        .ledger
        .timeout_ms
        .as_ref()
        .map_or(backstop::proofs::spec::DEFAULT_REDIS_TIMEOUT_MS, |t| {
            t.value
        });
    let expire = config
        .ledger
        .expire_days
        .as_ref()
        .map_or(backstop::proofs::ledger::DEFAULT_EXPIRE_DAYS, |d| d.value);
    let ledger = RedisLedger::new(address, Duration::from_millis(timeout), key, expire);
    match ledger.ping() {
        Ok(()) => say(&format!("the shared ledger is {}", ledger.shown())),
        Err(e) => say(&format!("the shared ledger {}: {e}", ledger.shown())),
    }
    Ok(Some(Arc::new(ledger)))
}

/// A stream the sessions can use.
trait Conn: Read + Write + Send + 'static {
    fn timeouts(&self) -> std::io::Result<()>;
    /// Acknowledges what was read at once (TCP), after each read.
    fn ack_now(&self) {}
}

impl Conn for std::net::TcpStream {
    fn timeouts(&self) -> std::io::Result<()> {
        // Replies are small writes: with Nagle's algorithm on, one that follows data not yet
        // acknowledged waits for the MTA's delayed ACK (40 ms on Linux); it did when each
        // packet of an answer was a write of its own. Measured by
        // benches/process/milter-bench.sh.
        self.set_nodelay(true)?;
        self.set_read_timeout(Some(READ_TIMEOUT))?;
        self.set_write_timeout(Some(WRITE_TIMEOUT))
    }

    /// The MTA streams the packets we do not answer (header fields, body chunks) as small
    /// writes with Nagle's algorithm on (Postfix does not turn it off): each one after the
    /// first waits until we acknowledge the one before, and an acknowledgement that rides on
    /// no reply is delayed (40 ms on Linux). Quick-ACK mode sends it now; Linux leaves that
    /// mode by itself, so it is set again after every read (few: reads are buffered).
    fn ack_now(&self) {
        let _ = std::os::linux::net::TcpStreamExt::set_quickack(self, true);
    }
}

impl Conn for std::os::unix::net::UnixStream {
    fn timeouts(&self) -> std::io::Result<()> {
        self.set_read_timeout(Some(READ_TIMEOUT))?;
        self.set_write_timeout(Some(WRITE_TIMEOUT))
    }
}

/// Binds a Unix socket, replacing a stale socket (never any other kind of file), mode 0660 so
/// that the MTA's group can connect.
fn bind_unix(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        std::fs::remove_file(path)?;
    }
    let l = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

fn serve<C: Conn>(
    site: Arc<Site>,
    mut accept: impl FnMut() -> std::io::Result<C>,
) -> std::io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let conn = match accept() {
            Ok(c) => c,
            Err(e) => {
                say(&format!("accept: {e}"));
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            say("too many connections: closing one (the MTA applies milter_default_action)");
            continue;
        }
        let slot = Slot::take(&active);
        let site = site.clone();
        let spawned = std::thread::Builder::new()
            .name("session".into())
            .spawn(move || {
                let _slot = slot;
                if let Err(e) = conn.timeouts().and_then(|()| run_session(conn, site)) {
                    say(&format!("session ended: {e}"));
                }
            });
        if let Err(e) = spawned {
            say(&format!("no thread for a connection: {e}"));
        }
    }
}

/// One of the `MAX_CONNECTIONS`, given back when dropped (also when a session panics, or its
/// thread cannot start).
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Slot {
        active.fetch_add(1, Ordering::SeqCst);
        Slot(active.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads through a buffer (a packet's length and its data, and the packets the MTA streams
/// without waiting for replies, in as few reads as they came), and writes the replies to one
/// packet in one write.
fn run_session(conn: impl Conn, site: Arc<Site>) -> std::io::Result<()> {
    let mut session = Session::new(site);
    let mut conn = BufReader::with_capacity(READ_BUFFER, Acking(conn));
    let mut out = Vec::new();
    while let Some(p) = read_packet(&mut conn)? {
        let replies = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            session.handle(p.cmd, &p.data)
        }))
        .unwrap_or_else(|_| {
            say("internal error in a session: the message gets the on_error answer");
            session.after_panic(p.cmd)
        });
        out.clear();
        for (code, data) in &replies.packets {
            write_packet(&mut out, *code, data)?;
        }
        if !out.is_empty() {
            conn.get_mut().0.write_all(&out)?;
            conn.get_mut().0.flush()?;
        }
        if replies.close {
            break;
        }
    }
    Ok(())
}

/// A connection whose reads are acknowledged at once (`Conn::ack_now`).
struct Acking<C>(C);

impl<C: Conn> Read for Acking<C> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.0.ack_now();
        Ok(n)
    }
}

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "backstop-milter: {line}");
}

fn fail(why: &str) -> ExitCode {
    say(why);
    ExitCode::from(1)
}

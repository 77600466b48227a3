//! A minimal blocking Redis (and Valkey) client: the RESP commands the shared ledger needs
//! (`SET key value EX seconds`, `EXISTS`, `PING`, and `AUTH`/`SELECT` on connecting), over TCP
//! or a Unix socket, with connect, read and write timeouts.
//!
//! Ours rather than the `redis` crate (BSD-3-Clause, which would fit our licence): its sync
//! client with default features off still brings about 45 crates (`url`, `idna` and the ICU
//! Unicode tables among them, `combine`, `socket2`) for what is here one small file, and this
//! one is part of the milter binary only, so `backstop deliver` cannot link it.
//!
//! When the server cannot be reached, the client says so at once for a while (1 s, doubling
//! up to 30 s) instead of waiting out a timeout for every message, and logs only the change.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest reply line or bulk string accepted.
const MAX_REPLY: usize = 64 * 1024;
/// Idle connections kept for reuse.
const MAX_IDLE: usize = 16;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `host:port`
    Tcp(String),
    Unix(PathBuf),
}

/// A parsed `redis://` or `unix:` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub target: Target,
    /// `AUTH [user] password`.
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

impl Address {
    /// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` or `unix:/PATH`.
    pub fn parse(text: &str) -> Result<Address, String> {
        let bad = |why: &str| format!("ledger.redis {text:?}: {why}");
        if let Some(path) = text.strip_prefix("unix:") {
            let path = path.trim_start_matches("//");
            if !path.starts_with('/') {
                return Err(bad("a unix: address takes an absolute path"));
            }
            return Ok(Address {
                target: Target::Unix(PathBuf::from(path)),
                user: None,
                password: None,
                db: 0,
            });
        }
        let rest = text
            .strip_prefix("redis://")
            .ok_or_else(|| bad("expected redis://HOST[:PORT][/DB] or unix:/PATH"))?;
        let (authority, db) = match rest.split_once('/') {
            Some((a, "")) => (a, 0),
            Some((a, d)) => (a, d.parse().map_err(|_| bad("the database is a number"))?),
            None => (rest, 0),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (
                    (!user.is_empty()).then(|| user.to_string()),
                    Some(pass.to_string()),
                ),
                None => (None, Some(u.to_string())),
            },
        };
        if hostport.is_empty() {
            return Err(bad("no host"));
        }
        let has_port = match hostport.strip_prefix('[') {
            Some(v6) => v6.contains("]:"),
            None => hostport.contains(':'),
        };
        let hostport = if has_port {
            hostport.to_string()
        } else {
            format!("{hostport}:6379")
        };
        Ok(Address {
            target: Target::Tcp(hostport),
            user,
            password,
            db,
        })
    }

    /// The address without its password, for messages.
    pub fn shown(&self) -> String {
        match &self.target {
            Target::Unix(p) => format!("unix:{}", p.display()),
            Target::Tcp(h) => format!("redis://{h}/{}", self.db),
        }
    }
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

type Conn = BufReader<Stream>;

/// Whether the server is reachable, and when to try again if not.
struct Health {
    retry_at: Option<Instant>,
    backoff: Duration,
}

/// The client: connections are made as needed and kept for reuse (sessions run on threads of
/// their own; each command takes a connection for its duration).
pub struct Client {
    address: Address,
    timeout: Duration,
    idle: Mutex<Vec<Conn>>,
    health: Mutex<Health>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({})", self.address.shown())
    }
}

/// A command failed: the server said no (`Refused`, the connection stays good) or could not be
/// talked to (`Down`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Refused(String),
    Down(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Refused(e) => write!(f, "Redis refused: {e}"),
            Error::Down(e) => write!(f, "Redis unreachable: {e}"),
        }
    }
}

impl Client {
    pub fn new(address: Address, timeout: Duration) -> Client {
        Client {
            address,
            timeout,
            idle: Mutex::new(Vec::new()),
            health: Mutex::new(Health {
                retry_at: None,
                backoff: FIRST_BACKOFF,
            }),
        }
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Runs one command. A kept connection that fails is replaced by a new one once (the
    /// server may have restarted); a new one that fails marks the server down.
    pub fn command(&self, args: &[&[u8]]) -> Result<Value, Error> {
        if let Some(at) = self.health.lock().ok().and_then(|h| h.retry_at)
            && Instant::now() < at
        {
            return Err(Error::Down("down, not retried yet".into()));
        }
        let kept = self.idle.lock().ok().and_then(|mut i| i.pop());
        if let Some(mut conn) = kept {
            match exchange(&mut conn, args) {
                Ok(v) => return self.done(conn, v),
                Err(Fail::Refused(e)) => {
                    self.give_back(conn);
                    return Err(Error::Refused(e));
                }
                Err(Fail::Io(_)) => {}
            }
        }
        let result = self
            .connect()
            .and_then(|mut conn| match exchange(&mut conn, args) {
                Ok(v) => Ok((conn, v)),
                Err(Fail::Refused(e)) => {
                    self.give_back(conn);
                    Err(Fail::Refused(e))
                }
                Err(e) => Err(e),
            });
        match result {
            Ok((conn, v)) => self.done(conn, v),
            Err(Fail::Refused(e)) => Err(Error::Refused(e)),
            Err(Fail::Io(e)) => {
                self.mark_down(&e);
                Err(Error::Down(e))
            }
        }
    }

    fn done(&self, conn: Conn, v: Value) -> Result<Value, Error> {
        self.give_back(conn);
        if let Ok(mut h) = self.health.lock()
            && h.retry_at.is_some()
        {
            h.retry_at = None;
            h.backoff = FIRST_BACKOFF;
            crate::say(&format!(
                "the shared ledger {} answers again",
                self.address.shown()
            ));
        }
        Ok(v)
    }

    fn give_back(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
    }

    fn mark_down(&self, why: &str) {
        let Ok(mut h) = self.health.lock() else {
            return;
        };
        let first = h.retry_at.is_none();
        let wait = h.backoff;
        h.retry_at = Some(Instant::now() + wait);
        h.backoff = (wait * 2).min(MAX_BACKOFF);
        if first {
            crate::say(&format!(
                "the shared ledger {} cannot be reached ({why}): mail is judged without it \
                 (never tempfailed) and not learnt; retrying with backoff",
                self.address.shown()
            ));
        }
    }

    fn connect(&self) -> Result<Conn, Fail> {
        let io = |e: io::Error| Fail::Io(e.to_string());
        let stream = match &self.address.target {
            Target::Tcp(hostport) => {
                let addr = hostport
                    .to_socket_addrs()
                    .map_err(io)?
                    .next()
                    .ok_or_else(|| Fail::Io(format!("{hostport}: no address")))?;
                let s = TcpStream::connect_timeout(&addr, self.timeout).map_err(io)?;
                s.set_read_timeout(Some(self.timeout)).map_err(io)?;
                s.set_write_timeout(Some(self.timeout)).map_err(io)?;
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
            Target::Unix(path) => {
                let s = UnixStream::connect(path).map_err(io)?;
                s.set_read_timeout(Some(self.timeout)).map_err(io)?;
                s.set_write_timeout(Some(self.timeout)).map_err(io)?;
                Stream::Unix(s)
            }
        };
        let mut conn = BufReader::new(stream);
        if let Some(pass) = &self.address.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &self.address.user {
                args.push(user.as_bytes());
            }
            args.push(pass.as_bytes());
            exchange(&mut conn, &args)?;
        }
        if self.address.db != 0 {
            let db = self.address.db.to_string();
            exchange(&mut conn, &[b"SELECT", db.as_bytes()])?;
        }
        Ok(conn)
    }
}

enum Fail {
    Refused(String),
    Io(String),
}

/// Sends one command and reads its reply.
fn exchange(conn: &mut Conn, args: &[&[u8]]) -> Result<Value, Fail> {
    conn.get_mut()
        .write_all(&encode(args))
        .map_err(|e| Fail::Io(e.to_string()))?;
    read_value(conn)
}

/// A command as RESP: an array of bulk strings.
fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one reply (not arrays: none of our commands gets one).
fn read_value(r: &mut impl BufRead) -> Result<Value, Fail> {
    let proto = |why: &str| Fail::Io(format!("protocol error: {why}"));
    let mut line = Vec::new();
    r.take(MAX_REPLY as u64)
        .read_until(b'\n', &mut line)
        .map_err(|e| Fail::Io(e.to_string()))?;
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return Err(if line.is_empty() {
            Fail::Io("connection closed".into())
        } else {
            proto("no line end")
        });
    };
    let (kind, rest) = body.split_first().ok_or_else(|| proto("empty line"))?;
    let text = String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Value::Simple(text)),
        b'-' => Err(Fail::Refused(text)),
        b':' => text
            .parse()
            .map(Value::Int)
            .map_err(|_| proto("bad integer")),
        b'$' => {
            let len: i64 = text.parse().map_err(|_| proto("bad length"))?;
            if len < 0 {
                return Ok(Value::Bulk(None));
            }
            let len = usize::try_from(len).map_err(|_| proto("bad length"))?;
            if len > MAX_REPLY {
                return Err(proto("reply too long"));
            }
            let mut buf = vec![0u8; len + 2];
            r.read_exact(&mut buf)
                .map_err(|e| Fail::Io(e.to_string()))?;
            buf.truncate(len);
            Ok(Value::Bulk(Some(buf)))
        }
        _ => Err(proto("unexpected reply type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        let a = Address::parse("redis://127.0.0.1:6380/2").expect("tcp");
        assert_eq!(a.target, Target::Tcp("127.0.0.1:6380".into()));
        assert_eq!((a.db, a.password.as_deref()), (2, None));
        let a = Address::parse("redis://:s3cret@cache.example").expect("password");
        assert_eq!(a.target, Target::Tcp("cache.example:6379".into()));
        assert_eq!((a.user, a.password.as_deref()), (None, Some("s3cret")));
        let a = Address::parse("redis://milter:pw@[::1]/0").expect("user and v6");
        assert_eq!(a.target, Target::Tcp("[::1]:6379".into()));
        assert_eq!(a.user.as_deref(), Some("milter"));
        assert!(!a.shown().contains("pw"));
        let a = Address::parse("unix:/run/redis/redis.sock").expect("unix");
        assert_eq!(a.target, Target::Unix("/run/redis/redis.sock".into()));
        assert!(Address::parse("unix:redis.sock").is_err());
        assert!(Address::parse("http://x").is_err());
        assert!(Address::parse("redis://h/x").is_err());
        assert!(Address::parse("redis://").is_err());
    }

    #[test]
    fn commands_encode_and_replies_decode() {
        assert_eq!(
            encode(&[b"SET", b"k", b"1"]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n"
        );
        let read = |bytes: &[u8]| read_value(&mut BufReader::new(bytes));
        assert!(matches!(read(b"+OK\r\n"), Ok(Value::Simple(s)) if s == "OK"));
        assert!(matches!(read(b":1\r\n"), Ok(Value::Int(1))));
        assert!(matches!(read(b"$-1\r\n"), Ok(Value::Bulk(None))));
        assert!(matches!(read(b"$2\r\nhi\r\n"), Ok(Value::Bulk(Some(b))) if b == b"hi"));
        assert!(matches!(read(b"-NOAUTH x\r\n"), Err(Fail::Refused(e)) if e == "NOAUTH x"));
        assert!(matches!(read(b""), Err(Fail::Io(_))));
        assert!(matches!(read(b"+OK"), Err(Fail::Io(_))));
        assert!(matches!(read(b"*1\r\n"), Err(Fail::Io(_))));
        assert!(matches!(read(b"$99999999\r\n"), Err(Fail::Io(_))));
        assert!(matches!(read(b"$5\r\nhi\r\n"), Err(Fail::Io(_))));
    }

    #[test]
    fn an_unreachable_server_is_marked_down_and_not_asked_again_at_once() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let address = Address::parse(&format!("redis://127.0.0.1:{port}")).expect("address");
        let client = Client::new(address, Duration::from_millis(200));
        assert!(
            matches!(client.command(&[b"PING"]), Err(Error::Down(e)) if !e.contains("not retried"))
        );
        assert!(
            matches!(client.command(&[b"PING"]), Err(Error::Down(e)) if e.contains("not retried"))
        );
    }
}

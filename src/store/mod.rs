//! Storage layer: durable final delivery of one message into a Maildir (`maildir`) or an mbox file (`mbox`).
//!
//! Both writers take the same [`Payload`] and write its bytes exactly as given (no re-encoding, no
//! line-ending changes; mbox only adds its `From ` line, `>` quoting and the separating empty line).
//! Both follow one rule: when they return `Ok`, the message is on stable storage; when they return
//! `Err`, the caller must exit 75 (EX_TEMPFAIL) so that the MTA keeps the message and retries.

pub mod maildir;
pub mod mbox;

use std::io;
use std::sync::OnceLock;

/// The bytes of one message to store: `head` (extra trace header lines, already formatted, may be empty),
/// then `body` (the message bytes held in memory), then whatever `tail` yields (the unread rest of stdin
/// for messages too large to hold; None normally). Bytes are written exactly as given: no re-encoding,
/// no line-ending changes.
pub struct Payload<'a> {
    pub head: &'a [u8],
    pub body: &'a [u8],
    pub tail: Option<&'a mut dyn std::io::Read>,
}

/// Where a message went (for the log and explain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub path: std::path::PathBuf,
    pub bytes: u64,
}

/// Size of the fixed buffer the tail is streamed through (and of the mbox output buffer).
pub(crate) const CHUNK: usize = 64 * 1024;

/// Feeds the payload to `sink` in order: `head`, `body`, then the tail in chunks of at most
/// [`CHUNK`] bytes read through one fixed buffer (the tail is never held in memory as a whole).
/// Empty pieces are skipped. The first error (from the tail reader or from `sink`) is returned.
pub(crate) fn for_each_chunk(
    payload: Payload<'_>,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    if !payload.head.is_empty() {
        sink(payload.head)?;
    }
    if !payload.body.is_empty() {
        sink(payload.body)?;
    }
    if let Some(tail) = payload.tail {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match tail.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => match buf.get(..n) {
                    Some(chunk) => sink(chunk)?,
                    None => {
                        return Err(io::Error::other(
                            "tail reader returned an impossible length",
                        ));
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// This host's name as used in Maildir unique names and in dotlock names: `uname().nodename()` with
/// `/` written as `\057` and `:` as `\072` (Maildir spec), "localhost" if the name is empty.
pub(crate) fn host_name() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let uname = rustix::system::uname();
        escape_host(&uname.nodename().to_string_lossy())
    })
}

fn escape_host(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '/' => out.push_str("\\057"),
            ':' => out.push_str("\\072"),
            c => out.push(c),
        }
    }
    if out.is_empty() {
        out.push_str("localhost");
    }
    out
}

/// fsyncs the directory that contains `path` (`.` for a bare relative name), to make a new
/// directory entry in it durable.
pub(crate) fn sync_parent(path: &std::path::Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    sync_dir(parent)
}

/// fsyncs a directory.
pub(crate) fn sync_dir(dir: &std::path::Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A tail that yields `good` bytes in reads of at most `chunk`, then fails (for tests).
#[cfg(test)]
pub(crate) struct FailingTail {
    pub good: usize,
    pub chunk: usize,
}

#[cfg(test)]
impl std::io::Read for FailingTail {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.good == 0 {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "stdin broke",
            ));
        }
        let n = self.good.min(buf.len()).min(self.chunk);
        buf[..n].fill(b'z');
        self.good -= n;
        Ok(n)
    }
}

/// A payload of `body` alone (for tests).
#[cfg(test)]
pub(crate) fn payload(body: &[u8]) -> Payload<'_> {
    Payload {
        head: b"",
        body,
        tail: None,
    }
}

/// The sorted names in a directory (for tests).
#[cfg(test)]
pub(crate) fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn host_escaping() {
        assert_eq!(escape_host("mail.example.org"), "mail.example.org");
        assert_eq!(escape_host("a/b:c"), "a\\057b\\072c");
        assert_eq!(escape_host(""), "localhost");
        let h = host_name();
        assert!(!h.is_empty());
        assert!(!h.contains('/') && !h.contains(':'));
    }

    /// A reader that hands out at most `step` bytes per call and reports EINTR once.
    struct Dribble<'a> {
        data: &'a [u8],
        step: usize,
        interrupted: bool,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.interrupted {
                self.interrupted = true;
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn chunks_in_order_and_retry_on_eintr() {
        let tail_data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut tail = Dribble {
            data: &tail_data,
            step: 70_000,
            interrupted: false,
        };
        let mut got = Vec::new();
        let mut max_chunk = 0;
        for_each_chunk(
            Payload {
                head: b"H: 1\n",
                body: b"B\n",
                tail: Some(&mut tail),
            },
            |c| {
                max_chunk = max_chunk.max(c.len());
                got.extend_from_slice(c);
                Ok(())
            },
        )
        .unwrap();
        let mut want = b"H: 1\nB\n".to_vec();
        want.extend_from_slice(&tail_data);
        assert_eq!(got, want);
        assert!(max_chunk <= CHUNK);
    }
}

//! The system log: one line per decision over the local syslog socket, facility mail, as
//! rsyslog, syslog-ng and journald all read it (`syslog: true` in the config).

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use crate::log::Entry;
use crate::util::text::{cut_at_char, for_terminal};

/// The local syslog socket.
pub const SOCKET: &str = "/dev/log";

/// The longest line sent: every syslog daemon takes this much (RFC 3164 asks for 1024 bytes).
const MAX_LINE: usize = 1024;

/// Facility mail (2) times 8, plus the severity: info (6) for a decision, warning (4) for a
/// message filed unfiltered or not where its verdict said.
const MAIL_INFO: u8 = 2 * 8 + 6;
const MAIL_WARNING: u8 = 2 * 8 + 4;

/// The socket: `$BACKSTOP_SYSLOG_SOCKET` when set (for tests), else [`SOCKET`].
pub fn socket_path() -> PathBuf {
    std::env::var_os("BACKSTOP_SYSLOG_SOCKET")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(SOCKET), PathBuf::from)
}

/// The line for one decision, in the form local daemons take (RFC 3164 without the time
/// stamp, which the daemon adds): `<22>backstop[PID]: verdict=backscatter kind=dsn
/// action=folder sender=<> message-id="<...>" stored="/home/u/Maildir/.Backscatter/new/..."`.
/// The message's own words (sender, Message-ID) are quoted with control characters escaped,
/// so that a line cannot be split or forged.
pub fn line(entry: &Entry) -> String {
    let warn = entry.error.is_some() || entry.fallback.is_some();
    let mut out = format!(
        "<{}>backstop[{}]: verdict={} kind={} action={}",
        if warn { MAIL_WARNING } else { MAIL_INFO },
        std::process::id(),
        entry.verdict,
        entry.kind.as_deref().unwrap_or("-"),
        entry.action
    );
    let fields = [
        ("sender", entry.sender.as_deref()),
        ("message-id", entry.message_id.as_deref()),
        ("stored", entry.stored.as_deref()),
        ("fallback", entry.fallback.as_deref()),
        ("error", entry.error.as_deref()),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            out.push_str(&format!(" {name}={}", quoted(v)));
        }
    }
    cut_at_char(&out, MAX_LINE).to_string()
}

/// A value in double quotes, with `"` and `\` escaped and no control character.
fn quoted(value: &str) -> String {
    let safe = for_terminal(value).replace('\n', "\\n");
    format!("\"{}\"", safe.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Sends the decision to the system log. Never blocks: a daemon that cannot keep up loses
/// the line (the caller says so on stderr), the delivery goes on.
pub fn send(entry: &Entry) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    let path = socket_path();
    socket
        .send_to(line(entry).as_bytes(), &path)
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: "2026-01-01T00:00:00Z".into(),
            verdict: "backscatter".into(),
            kind: Some("dsn".into()),
            action: "folder".into(),
            message_id: Some("<a\"b\x1b]0;x\x07@evil>".into()),
            from: None,
            subject: Some("secret".into()),
            sender: Some(String::new()),
            stored: Some("/m/.Backscatter/new/1".into()),
            reasons: vec![],
            error: None,
            fallback: None,
            original_from: None,
            original_ip: None,
        }
    }

    #[test]
    fn a_line_is_facility_mail_quoted_and_bounded() {
        let l = line(&entry());
        let pid = std::process::id();
        assert_eq!(
            l,
            format!(
                "<22>backstop[{pid}]: verdict=backscatter kind=dsn action=folder sender=\"\" \
                 message-id=\"<a\\\"b\\\\x1b]0;x\\\\x07@evil>\" stored=\"/m/.Backscatter/new/1\""
            )
        );
        assert!(
            !l.contains(char::is_control) && !l.contains("secret"),
            "{l}"
        );
        let mut long = entry();
        long.message_id = Some("x".repeat(5000));
        long.fallback = Some("no folder".into());
        let l = line(&long);
        assert!(l.len() <= MAX_LINE && l.starts_with("<20>"), "{l}");
    }
}

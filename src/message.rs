//! The message as read: the mbox `From ` line, line ends, the envelope, and the parsed MIME tree.

use std::borrow::Cow;
use std::mem::ManuallyDrop;
use std::ops::Deref;

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use crate::util::text::cut_at_char;

/// At most this many bytes of text are given to body rules.
pub const BODY_TEXT_LIMIT: usize = 64 * 1024;
/// Above this many nested messages, a parsed message is never freed (mail-parser 0.11
/// frees nested messages recursively and overflows the stack at about 100,000 levels).
const NESTING_LEAK_LIMIT: usize = 64;

/// Splits a leading mbox `From ` line off the message.
pub fn split_from_line(raw: &[u8]) -> (Option<&[u8]>, &[u8]) {
    if !raw.starts_with(b"From ") {
        return (None, raw);
    }
    match raw.iter().position(|&b| b == b'\n' || b == b'\r') {
        Some(end) => {
            let mut rest = end + 1;
            if raw[end] == b'\r' && raw.get(rest) == Some(&b'\n') {
                rest += 1;
            }
            (Some(&raw[..end]), &raw[rest..])
        }
        None => (Some(raw), &[]),
    }
}

/// The sender named in an mbox `From ` line (`From sender date`); empty for `<>`.
pub fn from_line_sender(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line.strip_prefix(b"From ")?).into_owned();
    if text.starts_with(char::is_whitespace) {
        // `From   Fri Nov 27 ...`: procmail -f '' writes the null sender as nothing.
        return Some(String::new());
    }
    let word = text.split_whitespace().next()?;
    let addr = word.trim_matches(['<', '>']);
    Some(if addr.eq_ignore_ascii_case("MAILER-DAEMON") {
        String::new()
    } else {
        addr.to_string()
    })
}

/// The bytes the parser should see: CR-only line ends (old Mac mail) become LF.
/// Deliveries always write the bytes as received; this copy is only for analysis.
pub fn for_analysis(message: &[u8]) -> Cow<'_, [u8]> {
    // The slice searches of core, not the memchr crate: its first call detects the CPU's
    // features, which costs a clean delivery more than the search (a tenth of a millisecond
    // under virtualisation).
    if message.contains(&b'\n') || !message.contains(&b'\r') {
        return Cow::Borrowed(message);
    }
    Cow::Owned(
        message
            .iter()
            .map(|&b| if b == b'\r' { b'\n' } else { b })
            .collect(),
    )
}

/// The envelope as the delivery agent gave it (environment variables), before
/// falling back to the message's own headers.
#[derive(Debug, Clone, Default)]
pub struct EnvVars {
    /// SENDER (Postfix, Exim, Dovecot, procmail's -f): Some("") is the null sender.
    pub sender: Option<String>,
    /// RECIPIENT, ORIGINAL_RECIPIENT or ORIG_RECIPIENT, with the variable's name.
    pub recipient: Option<(String, String)>,
    /// Every one of those that is set (BATV looks at each: the tag may be in any).
    pub recipients: Vec<(String, String)>,
}

/// The envelope sender and recipient, each with where it was learnt.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Envelope {
    /// Some("") is the null sender `<>`.
    pub sender: Option<String>,
    pub sender_source: Option<String>,
    pub recipient: Option<String>,
    pub recipient_source: Option<String>,
}

impl Envelope {
    /// Learns the envelope from the environment, then Return-Path, then the From_ line;
    /// the recipient from the environment, then Delivered-To and X-Original-To.
    pub fn learn(env: &EnvVars, mail: Option<&Message<'_>>, from_line: Option<&[u8]>) -> Envelope {
        let mut envelope = Envelope::default();
        if let Some(sender) = &env.sender {
            envelope.sender = Some(strip_brackets(sender));
            envelope.sender_source = Some("SENDER variable".into());
        } else if let Some(rp) = mail.and_then(|m| m.header_raw("Return-Path")) {
            envelope.sender = Some(strip_brackets(rp));
            envelope.sender_source = Some("Return-Path header".into());
        } else if let Some(s) = from_line.and_then(from_line_sender) {
            envelope.sender = Some(s);
            envelope.sender_source = Some("mbox From_ line".into());
        }
        if let Some((name, value)) = &env.recipient {
            envelope.recipient = Some(strip_brackets(value));
            envelope.recipient_source = Some(format!("{name} variable"));
        } else if let Some(m) = mail {
            for name in ["Delivered-To", "X-Original-To", "Envelope-To"] {
                if let Some(v) = m.header_raw(name).filter(|v| v.contains('@')) {
                    envelope.recipient = Some(strip_brackets(v));
                    envelope.recipient_source = Some(format!("{name} header"));
                    break;
                }
            }
        }
        envelope
    }

    pub fn recipient_domain(&self) -> Option<&str> {
        let r = self.recipient.as_deref()?;
        let domain = r.rsplit_once('@')?.1.trim();
        (!domain.is_empty()).then_some(domain)
    }
}

fn strip_brackets(text: &str) -> String {
    let t = text.trim();
    let t = t.split(|c: char| c.is_whitespace()).next().unwrap_or(t);
    t.trim_matches(['<', '>']).trim().to_string()
}

/// A parsed message that is never freed when it nests too deeply to free safely.
pub struct Mail<'x> {
    message: ManuallyDrop<Message<'x>>,
    leak: bool,
    /// Only the top-level headers were parsed (see `MAX_PARTS`).
    pub headers_only: bool,
}

impl<'x> Deref for Mail<'x> {
    type Target = Message<'x>;
    fn deref(&self) -> &Message<'x> {
        &self.message
    }
}

impl Drop for Mail<'_> {
    fn drop(&mut self) {
        if !self.leak {
            // SAFETY-free: ManuallyDrop::drop is unsafe, so take the value out instead.
            let message = std::mem::take(&mut *self.message);
            drop(message);
        }
    }
}

/// Parses a message; None when it has no header at all. A message with more MIME parts
/// than any report has (a memory bomb: each part costs the parser hundreds of bytes) is
/// read for its headers only.
pub fn parse(bytes: &[u8]) -> Option<Mail<'_>> {
    let headers_only = part_headers_exceed(bytes, MAX_PARTS);
    let parser = parser();
    let message = if headers_only {
        parser.parse_headers(bytes)?
    } else {
        parser.parse(bytes)?
    };
    let leak = nesting_exceeds(&message, NESTING_LEAK_LIMIT);
    Some(Mail {
        message: ManuallyDrop::new(message),
        leak,
        headers_only,
    })
}

/// A parser that parses the MIME headers, Subject, From and Message-ID (those whose parsed
/// values backstop reads) as mail-parser does by default, and keeps every other header raw:
/// those are read as text (`header_values`), and an original's Received chain from the
/// original parsed on its own (`original`). Parsing the message's own Received, To, Date and
/// List headers was about a tenth of a clean delivery's instructions.
fn parser() -> MessageParser {
    MessageParser::new()
        .with_mime_headers()
        .header_text(mail_parser::HeaderName::Subject)
        .header_address(mail_parser::HeaderName::From)
        .header_id(mail_parser::HeaderName::MessageId)
}

/// More `Content-Type:` lines than this and only the top headers are parsed.
pub const MAX_PARTS: usize = 10_000;

/// Whether more than `limit` lines start with `Content-Type:` (any case).
fn part_headers_exceed(bytes: &[u8], limit: usize) -> bool {
    const NAME: &[u8] = b"content-type:";
    // Each such line takes a line end and the name: shorter input cannot hold that many (and
    // is spared the scan, and the memchr crate's CPU feature detection).
    if bytes.len() < (limit + 1) * (NAME.len() + 1) {
        return false;
    }
    memchr::memchr_iter(b'\n', bytes)
        .filter(|&i| {
            bytes
                .get(i + 1..i + 1 + NAME.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(NAME))
        })
        .nth(limit)
        .is_some()
}

/// Whether messages nest more than `limit` deep in the parsed tree. Measured on the tree, not
/// guessed from the bytes: the parser also nests `message/ rfc822`, `message/"rfc822"`,
/// `message/(comment)rfc822` and the parts of a `multipart/digest`, which name no `/rfc822`.
/// Iterative, and it stops as soon as the limit is passed.
fn nesting_exceeds(message: &Message<'_>, limit: usize) -> bool {
    let mut stack = vec![(message, 0usize)];
    while let Some((m, depth)) = stack.pop() {
        if depth > limit {
            return true;
        }
        for part in &m.parts {
            if let PartType::Message(inner) = &part.body {
                stack.push((inner, depth + 1));
            }
        }
    }
    false
}

/// `type/subtype` of a part, lower case.
pub fn part_type(part: &mail_parser::MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => "text/plain".to_string(),
    }
}

/// The raw text of every header named `name` in the top-level header block.
pub fn header_values<'m>(mail: &'m Message<'_>, name: &str) -> Vec<Cow<'m, str>> {
    let raw = mail.raw_message();
    mail.root_part()
        .headers
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .filter_map(|h| raw.get(h.offset_start as usize..h.offset_end as usize))
        .map(|v| match String::from_utf8_lossy(v) {
            Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
            Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
        })
        .collect()
}

/// The From header as `Name <address>` (decoded), or its raw text.
pub fn from_text(mail: &Message<'_>) -> Option<String> {
    let mut out = Vec::new();
    if let Some(addrs) = mail.from() {
        for a in addrs.iter() {
            match (a.name(), a.address()) {
                (Some(n), Some(ad)) => out.push(format!("{n} <{ad}>")),
                (None, Some(ad)) => out.push(ad.to_string()),
                (Some(n), None) => out.push(n.to_string()),
                (None, None) => {}
            }
        }
    }
    if out.is_empty() {
        return header_values(mail, "From")
            .into_iter()
            .next()
            .map(|v| v.into_owned());
    }
    Some(out.join(", "))
}

/// The human-readable text of the message itself (not of attached messages, nor lines
/// quoted with `>`), cut to `limit`.
pub fn body_text(mail: &Message<'_>, limit: usize) -> String {
    let mut out = String::new();
    for part in &mail.parts {
        if out.len() >= limit {
            break;
        }
        let text = match &part.body {
            PartType::Text(t) => {
                let ty = part_type(part);
                if ty == "text/rfc822-headers" {
                    continue;
                }
                t.as_ref()
            }
            PartType::Html(h) => h.as_ref(),
            _ => continue,
        };
        // Quoted lines are what someone else wrote: people quote bounces and out-of-office notes.
        for line in text.lines().filter(|l| !l.trim_start().starts_with('>')) {
            if out.len() + line.len() + 1 > limit {
                out.push_str(cut_at_char(line, limit.saturating_sub(out.len())));
                return out;
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_line_is_split_for_lf_and_crlf() {
        let (line, rest) =
            split_from_line(b"From MAILER-DAEMON Fri Jan  2 00:00:00 2026\r\nSubject: x\r\n");
        assert_eq!(
            line,
            Some(&b"From MAILER-DAEMON Fri Jan  2 00:00:00 2026"[..])
        );
        assert_eq!(rest, b"Subject: x\r\n");
        assert_eq!(from_line_sender(line.unwrap()).as_deref(), Some(""));
        assert_eq!(
            from_line_sender(b"From   Fri Nov 27 07:55:37 2026").as_deref(),
            Some("")
        );
        assert_eq!(
            from_line_sender(b"From a@b.example Fri Nov 27 07:55:37 2026").as_deref(),
            Some("a@b.example")
        );
        let (line, rest) = split_from_line(b"Subject: From here\n");
        assert!(line.is_none());
        assert_eq!(rest, b"Subject: From here\n");
    }

    #[test]
    fn cr_only_messages_are_normalised_for_analysis_only() {
        assert_eq!(&*for_analysis(b"A: b\rC: d\r\rbody"), b"A: b\nC: d\n\nbody");
        assert!(matches!(for_analysis(b"A: b\r\n"), Cow::Borrowed(_)));
    }

    /// The headers whose parsed values backstop reads (the MIME ones also shape the parts).
    const PARSED_HEADERS: [mail_parser::HeaderName<'static>; 9] = {
        use mail_parser::HeaderName as H;
        [
            H::ContentType,
            H::ContentDisposition,
            H::ContentId,
            H::ContentDescription,
            H::ContentLocation,
            H::ContentTransferEncoding,
            H::Subject,
            H::From,
            H::MessageId,
        ]
    };

    /// The parser reads the same parts, bodies and header values as mail-parser's default one,
    /// but keeps the headers backstop does not parse raw.
    #[test]
    fn parser_is_the_default_for_what_backstop_reads() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/corpus");
        let mut files = vec![std::path::PathBuf::from(dir)];
        let mut seen = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.extension().is_none_or(|e| e != "eml") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let (Some(ours), Some(default)) = (
                parser().parse(bytes.as_slice()),
                MessageParser::new().parse(bytes.as_slice()),
            ) else {
                continue;
            };
            seen += 1;
            same_where_read(&ours, &default, &path);
        }
        assert!(seen > 100, "{seen} fixtures");
    }

    fn same_where_read(ours: &Message<'_>, default: &Message<'_>, path: &std::path::Path) {
        use mail_parser::HeaderValue;
        assert_eq!(ours.parts.len(), default.parts.len(), "{path:?}");
        for (a, b) in ours.parts.iter().zip(&default.parts) {
            assert_eq!(a.headers.len(), b.headers.len(), "{path:?}");
            for (x, y) in a.headers.iter().zip(&b.headers) {
                assert_eq!(x.name, y.name, "{path:?}");
                assert_eq!(
                    (x.offset_start, x.offset_end),
                    (y.offset_start, y.offset_end),
                    "{path:?}"
                );
                if PARSED_HEADERS.contains(&x.name) {
                    assert_eq!(x.value, y.value, "{path:?}");
                } else {
                    assert!(
                        matches!(x.value, HeaderValue::Text(_) | HeaderValue::Empty),
                        "{path:?}"
                    );
                }
            }
            match (&a.body, &b.body) {
                (PartType::Message(x), PartType::Message(y)) => same_where_read(x, y, path),
                (x, y) => assert_eq!(x, y, "{path:?}"),
            }
        }
    }

    #[test]
    fn nesting_is_counted_in_any_case() {
        let nest = |level: &str, n: usize| {
            let mut m = level.repeat(n).into_bytes();
            m.extend_from_slice(b"Subject: leaf\n\nbody\n");
            m
        };
        for level in [
            "Subject: x\nContent-Type: Message/RFC822\n\n",
            "Subject: x\nContent-Type: message/global\n\n",
            "Subject: x\nContent-Type: message/ rfc822\n\n",
            "Subject: x\nContent-Type: message/\"rfc822\"\n\n",
            "Subject: x\nContent-Type: multipart/digest; boundary=b\n\n--b\n\n",
        ] {
            let deep = nest(level, 70);
            let shallow = nest(level, 3);
            let parsed = MessageParser::new().parse(deep.as_slice()).unwrap();
            assert!(nesting_exceeds(&parsed, 64), "{level:?}");
            assert!(
                !nesting_exceeds(&MessageParser::new().parse(shallow.as_slice()).unwrap(), 64),
                "{level:?}"
            );
            assert!(parse(&deep).unwrap().leak, "{level:?}");
        }
    }
}

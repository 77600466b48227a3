//! Finds the returned original in a bounce: attached whole, headers only, or pasted inline.

use std::collections::HashSet;

use mail_parser::{Message, MessageParser, MessagePart, PartType};
use serde::Serialize;

use crate::evidence::received::Hop;
use crate::message::{from_text, header_values, part_type};
use crate::util::text::cut_at_char;

/// At most this many Message-IDs are read from In-Reply-To and References: a reply names
/// the message it answers first, and a thread's own References rarely pass a few dozen.
const MAX_REFERENCES: usize = 100;

/// At most this much text is searched for an inline original.
const INLINE_SCAN_LIMIT: usize = 512 * 1024;

/// How the original came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Form {
    /// message/rfc822 or message/global: the whole message.
    Attached,
    /// text/rfc822-headers or message/global-headers: its headers.
    Headers,
    /// Its headers pasted into the text of the report.
    Inline,
    /// Only In-Reply-To or References name it (automatic replies).
    Reference,
}

impl Form {
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Attached => "attached message",
            Form::Headers => "attached headers",
            Form::Inline => "headers pasted inline",
            Form::Reference => "In-Reply-To/References",
        }
    }
}

/// What was learnt of the original.
#[derive(Debug, Clone, Serialize)]
pub struct Original {
    pub form: Form,
    /// Where it was found (the part's type, or the marker line).
    pub found_in: String,
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    /// Its Received headers, top first.
    pub received: Vec<Hop>,
    /// Message-IDs it references (for automatic replies: In-Reply-To and References).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// For the proofs (`crate::proofs`): the original's header block as it came back (DKIM
    /// checks it), its Date in Unix seconds, and its To and Cc addresses.
    #[serde(skip)]
    pub headers: Vec<u8>,
    #[serde(skip)]
    pub date: Option<i64>,
    #[serde(skip)]
    pub recipients: Vec<String>,
}

impl Original {
    fn from_message(mail: &Message<'_>, form: Form, found_in: String) -> Option<Original> {
        let original = Original {
            form,
            found_in,
            message_id: mail.message_id().map(str::to_string),
            from: from_text(mail),
            subject: mail.subject().map(str::to_string),
            received: Hop::all(mail),
            references: Vec::new(),
            headers: header_block_of(mail).to_vec(),
            date: mail.date().map(|d| d.to_timestamp()),
            recipients: recipients_of(mail),
        };
        original.has_evidence().then_some(original)
    }

    /// True when it carries anything to judge by.
    pub fn has_evidence(&self) -> bool {
        self.message_id.is_some() || !self.received.is_empty() || self.from.is_some()
    }

    /// The domain of the Message-ID, lower case.
    pub fn message_id_domain(&self) -> Option<String> {
        id_domain(self.message_id.as_deref()?)
    }
}

/// The bytes of a parsed message's header block.
fn header_block_of<'a>(mail: &'a Message<'_>) -> &'a [u8] {
    let raw = mail.raw_message();
    raw.get(..mail.root_part().offset_body as usize)
        .unwrap_or(raw)
}

/// The To and Cc addresses of a message (at most 100).
fn recipients_of(mail: &Message<'_>) -> Vec<String> {
    [mail.to(), mail.cc()]
        .into_iter()
        .flatten()
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address.as_deref())
        .take(100)
        .map(str::to_string)
        .collect()
}

/// The domain part of a Message-ID (`<local@domain>`).
pub fn id_domain(id: &str) -> Option<String> {
    let id = id.trim().trim_matches(['<', '>']);
    let domain = id.rsplit_once('@')?.1.trim().trim_end_matches('.');
    (!domain.is_empty() && domain.contains('.')).then(|| domain.to_ascii_lowercase())
}

/// Looks for the original in the order: attached message, attached headers, inline text.
pub fn find(mail: &Message<'_>) -> Option<Original> {
    let mut headers_part = None;
    for (i, part) in mail.parts.iter().enumerate() {
        match &part.body {
            PartType::Message(inner) => {
                let found_in = format!("part {} ({})", i + 1, part_type(part));
                if let Some(o) =
                    parse_headers(attached_bytes(mail, part, inner), Form::Attached, found_in)
                {
                    return Some(o);
                }
            }
            PartType::Text(text) if headers_part.is_none() => {
                let ty = part_type(part);
                if ty == "text/rfc822-headers" {
                    headers_part = Some((i, ty, text.as_ref()));
                }
            }
            PartType::Binary(bytes) | PartType::InlineBinary(bytes)
                if headers_part.is_none() && part_type(part) == "message/global-headers" =>
            {
                if let Ok(text) = std::str::from_utf8(bytes) {
                    headers_part = Some((i, part_type(part), text));
                }
            }
            _ => {}
        }
    }
    if let Some((i, ty, text)) = headers_part {
        let found_in = format!("part {} ({ty})", i + 1);
        if let Some(o) = parse_headers(text.trim_start().as_bytes(), Form::Headers, found_in) {
            return Some(o);
        }
    }
    find_inline(mail)
}

/// The bytes of an attached message. mail-parser 0.11 gives a nested message either its
/// own bytes or the whole outer message, and header offsets into the outer one; so the
/// headers are read again from the right bytes.
fn attached_bytes<'a>(
    outer: &'a Message<'_>,
    part: &MessagePart<'_>,
    inner: &'a Message<'_>,
) -> &'a [u8] {
    let outer_raw = outer.raw_message();
    let inner_raw = inner.raw_message();
    if inner_raw.len() < outer_raw.len() {
        return inner_raw;
    }
    outer_raw
        .get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or(inner_raw)
}

fn parse_headers(bytes: &[u8], form: Form, found_in: String) -> Option<Original> {
    let inner = MessageParser::new().parse_headers(bytes)?;
    Original::from_message(&inner, form, found_in)
}

/// The message IDs an automatic reply refers to.
pub fn references(mail: &Message<'_>) -> Option<Original> {
    let mut ids: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    'read: for name in ["In-Reply-To", "References"] {
        for value in header_values(mail, name) {
            for word in value.split(|c: char| c.is_whitespace() || c == ',') {
                let w = word.trim();
                if w.contains('@') && !seen.contains(w) {
                    if ids.len() == MAX_REFERENCES {
                        break 'read;
                    }
                    seen.insert(w.to_string());
                    ids.push(w.to_string());
                }
            }
        }
    }
    if ids.is_empty() {
        return None;
    }
    Some(Original {
        form: Form::Reference,
        found_in: "In-Reply-To/References".to_string(),
        message_id: ids.first().cloned(),
        from: None,
        subject: None,
        received: Vec::new(),
        references: ids,
        headers: Vec::new(),
        date: None,
        recipients: Vec::new(),
    })
}

/// Header names that start or belong to a pasted header block.
const KEY_HEADERS: &[&str] = &["received", "message-id", "from", "return-path"];
const KNOWN_HEADERS: &[&str] = &[
    "received",
    "message-id",
    "from",
    "return-path",
    "to",
    "cc",
    "subject",
    "date",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "reply-to",
    "sender",
    "x-mailer",
    "user-agent",
    "delivered-to",
    "dkim-signature",
    "authentication-results",
    "x-originating-ip",
    "references",
    "in-reply-to",
    "list-id",
    "x-priority",
    "importance",
    "thread-index",
    "thread-topic",
    "x-ms-exchange-organization-authas",
];

/// Searches the text of the report (or its raw body when the MIME structure is
/// broken) for a block of the original's headers.
fn find_inline(mail: &Message<'_>) -> Option<Original> {
    let mut texts: Vec<(String, &str)> = Vec::new();
    for (i, part) in mail.parts.iter().enumerate() {
        if let PartType::Text(t) = &part.body {
            texts.push((format!("text of part {}", i + 1), t.as_ref()));
        }
    }
    let raw = mail.raw_message();
    let body_start = (mail.root_part().offset_body as usize).min(raw.len());
    let raw_body = String::from_utf8_lossy(&raw[body_start..]);
    texts.push(("raw body".to_string(), &raw_body));
    texts.into_iter().find_map(|(name, text)| {
        let block = header_block(cut_at_char(text, INLINE_SCAN_LIMIT))?;
        parse_headers(block.as_bytes(), Form::Inline, name)
    })
}

/// Strips quote markers (`>`, each with one optional space) from the start of a line.
fn dequote(line: &str) -> &str {
    let mut s = line;
    while let Some(rest) = s.strip_prefix('>') {
        s = rest.strip_prefix(' ').unwrap_or(rest);
    }
    s
}

/// Strips quoting and up to `indent` leading blanks: what is left of the block's text.
fn unindent(line: &str, indent: usize) -> &str {
    let d = dequote(line);
    let blanks = d.len() - d.trim_start_matches([' ', '\t']).len();
    &d[blanks.min(indent)..]
}

/// The header name of a `Name: value` line, lower case, if it looks like one.
fn header_name(line: &str) -> Option<String> {
    let (name, _) = line.split_once(':')?;
    (!name.is_empty()
        && name.len() <= 40
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    .then(|| name.to_ascii_lowercase())
}

/// Finds the first run of at least 3 header lines (with continuations) having at
/// least 2 known names and one of Received, Message-ID, From or Return-Path,
/// and returns it unquoted, ready to parse.
fn header_block(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let dequoted = dequote(lines[i]);
        let first = dequoted.trim_start_matches([' ', '\t']);
        let Some(name) = header_name(first) else {
            i += 1;
            continue;
        };
        if !KNOWN_HEADERS.contains(&name.as_str()) {
            i += 1;
            continue;
        }
        // The block's indentation: the blanks before the first header name.
        let indent = dequoted.len() - first.len();
        let mut block = String::new();
        let (mut known, mut key, mut count) = (0, false, 0);
        let mut j = i;
        while j < lines.len() {
            let body = unindent(lines[j], indent);
            if body.trim().is_empty() {
                break;
            }
            if body.starts_with([' ', '\t']) && count > 0 {
                block.push_str(body);
                block.push('\n');
            } else if let Some(n) = header_name(body) {
                count += 1;
                if KNOWN_HEADERS.contains(&n.as_str()) {
                    known += 1;
                }
                key |= KEY_HEADERS.contains(&n.as_str());
                block.push_str(body);
                block.push('\n');
            } else {
                break;
            }
            j += 1;
        }
        if count >= 3 && known >= 2 && key {
            block.push('\n');
            return Some(block);
        }
        i = j.max(i + 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_header_block_is_found() {
        let text = "Hi. This is the qmail-send program.\n\n--- Below this line is a copy of the message.\n\n> Received: from a.example (a.example [192.0.2.1])\n>\tby b.example; Fri, 2 Jan 2026 00:00:00 +0000\n> Message-ID: <x@a.example>\n> From: me@a.example\n> Subject: hi\n>\n> body\n";
        let block = header_block(text).unwrap();
        assert!(block.starts_with("Received: from a.example"));
        assert!(block.contains("\tby b.example"));
        assert!(block.contains("Message-ID: <x@a.example>"));
    }

    #[test]
    fn prose_with_colons_is_not_a_header_block() {
        assert!(header_block("Note: this\nReason: that\nAction: failed\n").is_none());
    }

    #[test]
    fn message_id_domains() {
        assert_eq!(
            id_domain("<a.b@Mail.Example.ORG>").as_deref(),
            Some("mail.example.org")
        );
        assert_eq!(id_domain("<nodomain>"), None);
    }
}

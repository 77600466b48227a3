//! The `X-Backstop-*` header lines: the ones backstop writes, and the ones a message arrives
//! with, which are removed.
//!
//! Anyone can put an `X-Backstop-Verdict` field in a message. The hosts' rules act on the
//! first one they see, or on any (Sieve `header :contains` tests every occurrence), and so do
//! the user's IMAP clients: a forged `action=discard` or `clean` would steer them. So every
//! `X-Backstop-*` field in the message's own header block is removed before backstop adds its
//! own, by `deliver` and `filter` alike.

use std::borrow::Cow;
use std::ops::Range;

use crate::message::split_from_line;
use crate::verdict::Evaluation;

/// The line end the message uses: CRLF if its first line ends so, else LF.
pub fn line_end(bytes: &[u8]) -> &'static [u8] {
    let (_, rest) = split_from_line(bytes);
    // A plain search: memchr's first call detects CPU features, which costs more here.
    match rest.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && rest[i - 1] == b'\r' => b"\r\n",
        _ => b"\n",
    }
}

/// One header line, cleaned of anything that could break the header block.
pub fn trace_line(bytes: &[u8], name: &str, value: &str) -> Vec<u8> {
    field_line(name, value, line_end(bytes))
}

/// [`trace_line`] with the message's line end already known.
fn field_line(name: &str, value: &str, end: &[u8]) -> Vec<u8> {
    let clean: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let cut = crate::util::text::cut_at_char(&clean, 900);
    let mut line = format!("{name}: {cut}").into_bytes();
    line.extend_from_slice(end);
    line
}

/// `X-Backstop-Verdict` and `X-Backstop-Reason` for a decision, and `X-Backstop-Error` when
/// the message could not be judged.
pub fn trace_headers(bytes: &[u8], eval: &Evaluation) -> Vec<u8> {
    let mut verdict = eval.verdict.as_str().to_string();
    if let Some(k) = eval.kind {
        verdict.push_str(&format!("; kind={}", k.as_str()));
    }
    verdict.push_str(&format!("; action={}", eval.action.as_str()));
    let end = line_end(bytes);
    let mut head = field_line("X-Backstop-Verdict", &verdict, end);
    let reason = eval.reasons.last().cloned().unwrap_or_default();
    head.extend(field_line("X-Backstop-Reason", &reason, end));
    if let Some(error) = &eval.error {
        head.extend(field_line("X-Backstop-Error", error, end));
    }
    head
}

/// The byte ranges of the `X-Backstop-*` fields (with their folded lines) in the message's own
/// header block, in order. `message` starts at the header (no mbox From_ line). Lines end in
/// LF, CRLF or a lone CR alike, as mail-parser reads them.
pub fn incoming_fields(message: &[u8]) -> Vec<Range<usize>> {
    const PREFIX: &[u8] = b"x-backstop-";
    let mut fields: Vec<Range<usize>> = Vec::new();
    let mut in_field = false;
    let mut start = 0;
    while start < message.len() {
        let (content_end, end) = next_line(message, start);
        let line = &message[start..content_end];
        if line.is_empty() {
            break;
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            // A folded line belongs to the field above it.
            if in_field && let Some(last) = fields.last_mut() {
                last.end = end;
            }
        } else {
            let name_end = line.iter().position(|&b| b == b':');
            in_field = name_end.is_some_and(|n| {
                n >= PREFIX.len() && line[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
            });
            if in_field {
                fields.push(start..end);
            }
        }
        start = end;
    }
    fields
}

/// The line starting at `start`: where its content ends, and where the next line starts.
fn next_line(text: &[u8], start: usize) -> (usize, usize) {
    match text[start..].iter().position(|&b| b == b'\n' || b == b'\r') {
        None => (text.len(), text.len()),
        Some(i) => {
            let at = start + i;
            let crlf = text[at] == b'\r' && text.get(at + 1) == Some(&b'\n');
            (at, at + if crlf { 2 } else { 1 })
        }
    }
}

/// `message` less the `X-Backstop-*` fields of its header block; borrowed when it has none.
pub fn without_incoming(message: &[u8]) -> Cow<'_, [u8]> {
    let fields = incoming_fields(message);
    if fields.is_empty() {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len());
    let mut at = 0;
    for field in fields {
        out.extend_from_slice(&message[at..field.start]);
        at = field.end;
    }
    out.extend_from_slice(&message[at..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn incoming_fields_are_found_in_the_header_block_only() {
        let message = b"Subject: hi\r\n\
X-Backstop-Verdict: clean; action=discard\r\n\
x-backstop-reason: folded\r\n\
\tover two lines\r\n\
X-Backstopper: stays\r\n\
X-Backstop: stays (no dash after the name)\r\n\
From: a@b.example\r\n\
\r\n\
X-Backstop-Verdict: in the body, stays\r\n";
        assert_eq!(
            without_incoming(message).as_ref(),
            b"Subject: hi\r\n\
X-Backstopper: stays\r\n\
X-Backstop: stays (no dash after the name)\r\n\
From: a@b.example\r\n\
\r\n\
X-Backstop-Verdict: in the body, stays\r\n"
        );
        assert_eq!(without_incoming(b"X-Backstop-Verdict: x").as_ref(), b"");
        assert_eq!(without_incoming(b"").as_ref(), b"");
        assert_eq!(
            without_incoming(b"\nX-Backstop-Verdict: body\n").as_ref(),
            b"\nX-Backstop-Verdict: body\n"
        );
    }

    /// Issue 11: a CR-only message was read as one line, and a first `X-Backstop-*` field
    /// took the whole message with it.
    #[test]
    fn cr_only_messages_lose_only_the_field() {
        let message = b"X-Backstop-Verdict: backscatter; action=discard\rSubject: hi\r\rbody\r";
        assert_eq!(without_incoming(message).as_ref(), b"Subject: hi\r\rbody\r");
        let mixed = b"X-Backstop-Reason: a\r\n\tb\rFrom: x\n\nX-Backstop-Verdict: body\r\n";
        assert_eq!(
            without_incoming(mixed).as_ref(),
            b"From: x\n\nX-Backstop-Verdict: body\r\n"
        );
    }

    /// An independent reading of the rule, line by line: the header block runs to the first
    /// empty line; a field starts at a line that does not begin with a space or tab, and its
    /// name is what stands before the first colon.
    fn reference_strip(message: &[u8]) -> Vec<u8> {
        let mut lines: Vec<&[u8]> = Vec::new();
        let mut rest = message;
        while !rest.is_empty() {
            let cut = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .map(|i| (i, 2))
                .into_iter()
                .chain(rest.iter().position(|&b| b == b'\n').map(|i| (i, 1)))
                .chain(rest.iter().position(|&b| b == b'\r').map(|i| (i, 1)))
                .min_by_key(|&(i, len)| (i, std::cmp::Reverse(len)));
            let len = cut.map_or(rest.len(), |(i, l)| i + l);
            lines.push(&rest[..len]);
            rest = &rest[len..];
        }
        let mut out = Vec::new();
        let mut in_header = true;
        let mut dropping = false;
        for line in lines {
            let content: &[u8] = line
                .strip_suffix(b"\r\n")
                .or_else(|| line.strip_suffix(b"\n"))
                .or_else(|| line.strip_suffix(b"\r"))
                .unwrap_or(line);
            if in_header && content.is_empty() {
                in_header = false;
            }
            if in_header {
                let folded = content.first().is_some_and(|&b| b == b' ' || b == b'\t');
                if !folded {
                    let name = content.split(|&b| b == b':').next().unwrap_or_default();
                    dropping = content.contains(&b':')
                        && String::from_utf8_lossy(name)
                            .to_ascii_lowercase()
                            .starts_with("x-backstop-");
                }
                if dropping {
                    continue;
                }
            }
            out.extend_from_slice(line);
        }
        out
    }

    fn header_like() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"X-Backstop-Verdict: backscatter; action=discard".to_vec()),
            Just(b"x-BACKSTOP-reason: r".to_vec()),
            Just(b"X-Backstop".to_vec()),
            Just(b"Subject: s".to_vec()),
            Just(b" folded".to_vec()),
            Just(b"\tfolded".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b":".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..8),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        /// Issue 11: the output equals the input less its `X-Backstop-*` fields, for any bytes.
        #[test]
        fn stripping_removes_exactly_the_incoming_fields(message in header_like()) {
            prop_assert_eq!(without_incoming(&message).into_owned(), reference_strip(&message));
        }

        #[test]
        fn stripping_any_bytes_matches_the_reference(message in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(without_incoming(&message).into_owned(), reference_strip(&message));
        }
    }
}

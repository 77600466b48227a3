//! The keyed stamp: an `X-Bounce-Stamp` header that a stamping MTA (`backstop-milter`) adds to
//! outbound mail, an HMAC-SHA256 over the message's From, Date and Message-ID with a site key.
//!
//! A bounce that returns the original's headers carries the stamp back, and anyone who holds
//! the key can check it with no shared state (haraka-plugin-bounce 2.0's design). The field is
//! `X-Bounce-Stamp: v=1; k=KEYID; t=UNIXTIME; h=BASE64`, where `h` is the HMAC over
//! `v=1`, the key id, the time, and the three fields unfolded with their runs of white space
//! made one space, each followed by a zero byte. A spammer cannot make one for a Message-ID of
//! their choice; a stamp copied onto another Message-ID, or made with another key, does not
//! verify. Replay is the limit, as for every proof: a stamped message resent as it was passes.
//!
//! The keys file holds `KEYID SECRET` lines (`#` starts a comment); the first key signs, every
//! key verifies (for rotation). Key ids are 1 to 32 letters, digits, `-` or `_`.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::proofs::dkim::fields;

/// The header field name.
pub const FIELD: &str = "X-Bounce-Stamp";

/// The most stamp fields looked at in one original.
const MAX_STAMPS: usize = 4;

/// One site key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub id: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({}, <secret>)", self.id)
    }
}

/// Parses a keys file: `KEYID SECRET` per line.
pub fn parse_keys(text: &str) -> Result<Vec<Key>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(id), Some(secret), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("line {}: expected `KEYID SECRET`", n + 1));
        };
        if !valid_id(id) {
            return Err(format!(
                "line {}: a key id is 1 to 32 letters, digits, - or _",
                n + 1
            ));
        }
        if secret.len() < 16 {
            return Err(format!(
                "line {}: the secret must be at least 16 characters",
                n + 1
            ));
        }
        keys.push(Key {
            id: id.to_string(),
            secret: secret.as_bytes().to_vec(),
        });
    }
    if keys.is_empty() {
        return Err("no key in the file".into());
    }
    Ok(keys)
}

fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A field value unfolded, its white space runs made one space, trimmed.
fn canonical(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut space = false;
    for &b in value {
        if b.is_ascii_whitespace() {
            space = !out.is_empty();
        } else {
            if space {
                out.push(b' ');
                space = false;
            }
            out.push(b);
        }
    }
    out
}

fn mac(key: &Key, time: i64, from: &[u8], date: &[u8], message_id: &[u8]) -> Hmac<Sha256> {
    let mut m =
        <Hmac<Sha256> as KeyInit>::new_from_slice(&key.secret).expect("HMAC takes any key length");
    m.update(format!("v=1\0{}\0{time}\0", key.id).as_bytes());
    for part in [from, date, message_id] {
        m.update(&canonical(part));
        m.update(b"\0");
    }
    m
}

/// The stamp field's value for a message with these From, Date and Message-ID values.
pub fn make(key: &Key, time: i64, from: &[u8], date: &[u8], message_id: &[u8]) -> String {
    let h = base64::engine::general_purpose::STANDARD.encode(
        mac(key, time, from, date, message_id)
            .finalize()
            .into_bytes(),
    );
    format!("v=1; k={}; t={time}; h={h}", key.id)
}

/// What the stamps of a returned original's header block say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No stamp field.
    None,
    /// A stamp of one of the keys verifies: made at `time`.
    Valid { key: String, time: i64 },
    /// A stamp names one of the keys but does not verify (another Message-ID, From or Date,
    /// or a changed time).
    Invalid { key: String },
    /// The stamps name no key of ours (another site's, or a made-up one).
    UnknownKey { key: String },
    /// A stamp that cannot be read.
    Malformed,
}

/// True when a header block has a stamp field.
pub fn present(block: &[u8]) -> bool {
    fields(block)
        .iter()
        .any(|f| f.name.eq_ignore_ascii_case(FIELD))
}

/// Checks the stamps in a header block against the keys.
pub fn verify(block: &[u8], keys: &[Key]) -> Outcome {
    let all = fields(block);
    let value_of = |name: &str| -> Option<&[u8]> {
        all.iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| &f.raw[f.name.len() + 1..])
    };
    let (from, date, id) = (
        value_of("From").unwrap_or_default(),
        value_of("Date").unwrap_or_default(),
        value_of("Message-ID").unwrap_or_default(),
    );
    let mut outcome = Outcome::None;
    let stamps = all
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case(FIELD))
        .take(MAX_STAMPS);
    for f in stamps {
        let value = String::from_utf8_lossy(&f.raw[f.name.len() + 1..]);
        let tags = crate::proofs::dkim::tag_list(&value);
        let get = |n: &str| tags.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let (Some("1"), Some(kid), Some(t), Some(h)) = (get("v"), get("k"), get("t"), get("h"))
        else {
            if outcome == Outcome::None {
                outcome = Outcome::Malformed;
            }
            continue;
        };
        let (Ok(time), Ok(given)) = (
            t.parse::<i64>(),
            base64::engine::general_purpose::STANDARD
                .decode(h.replace([' ', '\t', '\r', '\n'], "")),
        ) else {
            if outcome == Outcome::None {
                outcome = Outcome::Malformed;
            }
            continue;
        };
        let Some(key) = keys.iter().find(|k| k.id == kid) else {
            if matches!(outcome, Outcome::None | Outcome::Malformed) {
                outcome = Outcome::UnknownKey { key: kid.into() };
            }
            continue;
        };
        // Constant time.
        if mac(key, time, from, date, id).verify_slice(&given).is_ok() {
            return Outcome::Valid {
                key: key.id.clone(),
                time,
            };
        }
        outcome = Outcome::Invalid {
            key: key.id.clone(),
        };
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, secret: &str) -> Key {
        Key {
            id: id.into(),
            secret: secret.as_bytes().to_vec(),
        }
    }

    fn stamped(k: &Key, id: &str) -> String {
        let from = b" Me <me@example.org>";
        let date = b" Sun, 6 Dec 2026 09:00:00 +0000";
        let stamp = make(k, 1_796_547_600, from, date, id.as_bytes());
        format!(
            "From: Me <me@example.org>\nDate: Sun, 6 Dec 2026\n   09:00:00 +0000\nMessage-ID:{id}\n\
             {FIELD}: {stamp}\nSubject: hi\n\n"
        )
    }

    #[test]
    fn a_stamp_verifies_with_its_key_despite_refolding() {
        let k = key("k1", "0123456789abcdef0123");
        let block = stamped(&k, " <a@example.org>");
        assert_eq!(
            verify(block.as_bytes(), &[k]),
            Outcome::Valid {
                key: "k1".into(),
                time: 1_796_547_600
            }
        );
    }

    #[test]
    fn another_key_or_another_message_id_is_no_proof() {
        let k = key("k1", "0123456789abcdef0123");
        let block = stamped(&k, " <a@example.org>");
        let other = key("k1", "another secret of 20");
        assert_eq!(
            verify(block.as_bytes(), &[other]),
            Outcome::Invalid { key: "k1".into() }
        );
        let moved = block.replace("<a@example.org>", "<b@example.org>");
        assert_eq!(
            verify(moved.as_bytes(), std::slice::from_ref(&k)),
            Outcome::Invalid { key: "k1".into() }
        );
        let renamed = key("k2", "0123456789abcdef0123");
        assert_eq!(
            verify(block.as_bytes(), &[renamed]),
            Outcome::UnknownKey { key: "k1".into() }
        );
        let retimed = block.replace("t=1796547600", "t=1796547601");
        assert_eq!(
            verify(retimed.as_bytes(), &[k]),
            Outcome::Invalid { key: "k1".into() }
        );
    }

    #[test]
    fn no_stamp_and_bad_stamps() {
        let k = key("k1", "0123456789abcdef0123");
        assert_eq!(
            verify(b"From: a@b\n\n", std::slice::from_ref(&k)),
            Outcome::None
        );
        let bad = format!("From: a@b\n{FIELD}: v=1; k=k1; t=x; h=!!\n\n");
        assert_eq!(verify(bad.as_bytes(), &[k]), Outcome::Malformed);
    }

    #[test]
    fn keys_file() {
        let keys = parse_keys("# site keys\nk2 0123456789abcdef0123\nk1   fedcba9876543210xx\n")
            .expect("parses");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].id, "k2");
        assert!(parse_keys("k1 short\n").is_err());
        assert!(parse_keys("bad/id 0123456789abcdef0123\n").is_err());
        assert!(parse_keys("# nothing\n").is_err());
        assert!(format!("{:?}", keys[0]).contains("<secret>"));
    }
}

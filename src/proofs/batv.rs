//! BATV: Exim's `prvs=` tags on the envelope sender (draft-levine-smtp-batv).
//!
//! Exim's `${prvs{ADDRESS}{SECRET}{K}}` makes `prvs=KDDDHHHHHH=local@domain`: `K` is the key
//! digit, `DDD` the day the tag expires (days since 1970, mod 1000; 7 days after it was made),
//! and `HHHHHH` the hex of the first 3 bytes of HMAC-SHA1, keyed with the secret, over `K`,
//! `DDD` and the address. A bounce comes back to that address; a spammer who forged the user's
//! address as the sender cannot make a valid tag. Replay is the limit: a tag copied from mail
//! the user really sent is valid for its 7 days.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// Days a tag is valid after it was made (Exim's fixed period).
pub const VALID_DAYS: i64 = 7;

/// A tag found on an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub key: usize,
    pub day: u32,
    pub hash: String,
    /// The address without the tag.
    pub address: String,
}

/// What a tag is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Valid,
    /// The hash is right but the day has passed (or is further ahead than a tag is made).
    Expired,
    /// The hash does not match (or names a key digit with no secret).
    Forged,
}

/// Parses `prvs=KDDDHHHHHH=local@domain` (any case).
pub fn parse(address: &str) -> Option<Tag> {
    let a = address.trim().trim_start_matches('<').trim_end_matches('>');
    let prefix = a.get(..5)?;
    if !prefix.eq_ignore_ascii_case("prvs=") {
        return None;
    }
    let rest = &a[5..];
    let (tag, addr) = rest.split_once('=')?;
    let b = tag.as_bytes();
    if b.len() != 10
        || !b[..4].iter().all(u8::is_ascii_digit)
        || !b[4..].iter().all(u8::is_ascii_hexdigit)
    {
        return None;
    }
    let (local, domain) = addr.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some(Tag {
        key: usize::from(b[0] - b'0'),
        day: tag[1..4].parse().ok()?,
        hash: tag[4..].to_ascii_lowercase(),
        address: addr.to_string(),
    })
}

/// The hash Exim computes for key digit `key`, day stamp `day` and `address`.
pub fn hash(secret: &[u8], key: usize, day: u32, address: &str) -> String {
    let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(format!("{key}{day:03}{address}").as_bytes());
    let out = m.finalize().into_bytes();
    out[..3].iter().map(|b| format!("{b:02x}")).collect()
}

/// Tags `address` as Exim's `${prvs{ADDRESS}{SECRET}{KEY}}` does on day `today` (days since
/// 1970): `prvs=KDDDHHHHHH=address`, valid for `VALID_DAYS`. `key` is a digit (0 to 9).
pub fn sign(secret: &[u8], key: usize, today: i64, address: &str) -> String {
    let day = (today + VALID_DAYS).rem_euclid(1000) as u32;
    format!(
        "prvs={}{day:03}{}={address}",
        key % 10,
        hash(secret, key % 10, day, address)
    )
}

/// Checks a tag against the secrets (index = key digit) on day `today` (days since 1970).
pub fn check(tag: &Tag, secrets: &[String], today: i64) -> Check {
    let Some(secret) = secrets.get(tag.key) else {
        return Check::Forged;
    };
    let want = hash(secret.as_bytes(), tag.key, tag.day, &tag.address);
    // Constant time: the hmac crate's comparison, over the hex text.
    let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(b"compare").expect("any key length");
    m.update(want.as_bytes());
    if m.verify_slice(&compare_mac(&tag.hash)).is_err() {
        return Check::Forged;
    }
    // Days left until the tag expires, mod 1000 as the stamp is.
    let left = (i64::from(tag.day) - today).rem_euclid(1000);
    if left <= VALID_DAYS {
        Check::Valid
    } else {
        Check::Expired
    }
}

/// The MAC of the hash text, for a comparison that takes the same time whatever the bytes.
fn compare_mac(text: &str) -> Vec<u8> {
    let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(b"compare").expect("any key length");
    m.update(text.as_bytes());
    m.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by Debian's Exim (`exim -be '${prvs{user@vm.test}{s3cret}{1}}'`) on day 20793
    /// (2026-12-06): the stamp is 20800 mod 1000.
    const EXIM_TAG: &str = "prvs=1800ec4955=user@vm.test";

    #[test]
    fn exim_tags_parse_and_check() {
        let tag = parse(EXIM_TAG).unwrap();
        assert_eq!((tag.key, tag.day), (1, 800));
        assert_eq!(tag.address, "user@vm.test");
        let secrets = vec!["other".to_string(), "s3cret".to_string()];
        assert_eq!(check(&tag, &secrets, 20793), Check::Valid);
        assert_eq!(check(&tag, &secrets, 20800), Check::Valid, "last day");
        assert_eq!(check(&tag, &secrets, 20801), Check::Expired);
        assert_eq!(check(&tag, &secrets[..1], 20793), Check::Forged);
        let wrong = vec!["other".to_string(), "s3creT".to_string()];
        assert_eq!(check(&tag, &wrong, 20793), Check::Forged);
        let mut tampered = tag.clone();
        tampered.address = "boss@vm.test".into();
        assert_eq!(check(&tampered, &secrets, 20793), Check::Forged);
    }

    #[test]
    fn signing_makes_exims_tag_and_it_checks() {
        assert_eq!(sign(b"s3cret", 1, 20793, "user@vm.test"), EXIM_TAG);
        let secrets = vec!["a".to_string(), "b".to_string()];
        for today in [20793, 20999, 21000] {
            let tagged = sign(b"b", 1, today, "me@example.org");
            let tag = parse(&tagged).unwrap();
            assert_eq!(tag.address, "me@example.org");
            assert_eq!(check(&tag, &secrets, today), Check::Valid, "{tagged}");
            assert_eq!(
                check(&tag, &secrets, today + VALID_DAYS + 1),
                Check::Expired
            );
        }
    }

    #[test]
    fn stamps_wrap_at_1000_days() {
        let secrets = vec!["k".to_string()];
        let addr = "a@b.example";
        let tag = Tag {
            key: 0,
            day: 3,
            hash: hash(b"k", 0, 3, addr),
            address: addr.into(),
        };
        assert_eq!(check(&tag, &secrets, 20998), Check::Valid);
        assert_eq!(check(&tag, &secrets, 21003), Check::Valid);
        assert_eq!(check(&tag, &secrets, 21004), Check::Expired);
    }

    #[test]
    fn only_the_prvs_form_parses() {
        assert!(parse("user@vm.test").is_none());
        assert!(parse("prvs=1644c2a4e5user@vm.test").is_none());
        assert!(parse("prvs=x644c2a4e5=user@vm.test").is_none());
        assert!(parse("prvs=1644c2a4e5=@vm.test").is_none());
        assert!(parse("PRVS=1644C2A4E5=user@vm.test").is_some());
        assert!(parse("<prvs=1644c2a4e5=user@vm.test>").is_some());
        assert!(parse("prvs=").is_none());
        assert!(parse("prvsé").is_none());
    }
}

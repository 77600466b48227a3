//! DKIM on the returned original, checked on its header fields alone.
//!
//! The `b=` signature covers the header fields named in `h=` and the DKIM-Signature field
//! itself, `bh=` included. So a valid `b=` proves that the signer's key signed those headers,
//! even when the bouncer cut or dropped the body: the body hash is not checked. mail-auth's
//! verifier checks the body first and keeps its key check private, so this is our own code on
//! RustCrypto's `rsa` (PKCS#1 v1.5 with SHA-256), `sha2`, and `ed25519-compact`, with the
//! relaxed and simple header canonicalisation of RFC 6376 §3.4.1–3.4.2. Keys come from the
//! config, never from DNS at delivery time. `rsa-sha1` is not accepted (RFC 8301).

use base64::Engine;
use sha2::{Digest, Sha256};

/// At most this many DKIM-Signature fields of one original are checked.
const MAX_SIGNATURES: usize = 5;
/// At most this many header fields are read from a returned original.
const MAX_FIELDS: usize = 1000;

/// A public key as published.
#[derive(Debug, Clone)]
pub enum PublicKey {
    Rsa(Box<rsa::PublicKey>),
    Ed25519(ed25519_compact::PublicKey),
}

/// One configured key: `SELECTOR._domainkey.DOMAIN` and its TXT record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub domain: String,
    pub selector: String,
    pub record: String,
}

/// Parses a key record (`v=DKIM1; k=rsa; p=...`).
pub fn parse_key(record: &str) -> Result<PublicKey, String> {
    let tags = tag_list(record);
    if let Some(v) = tag(&tags, "v")
        && v != "DKIM1"
    {
        return Err(format!("v={v} is not DKIM1"));
    }
    if let Some(h) = tag(&tags, "h")
        && !h
            .split(':')
            .any(|a| a.trim().eq_ignore_ascii_case("sha256"))
    {
        return Err("the key allows no sha256 signatures".into());
    }
    let p: String = tag(&tags, "p")
        .ok_or("no p= tag")?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if p.is_empty() {
        return Err("the key is revoked (empty p=)".into());
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(p.as_bytes())
        .map_err(|e| format!("p= is not base64: {e}"))?;
    match tag(&tags, "k").unwrap_or("rsa") {
        "rsa" => {
            use rsa::pkcs1::DecodeRsaPublicKey;
            use rsa::pkcs8::DecodePublicKey;
            rsa::PublicKey::from_public_key_der(&der)
                .or_else(|_| rsa::PublicKey::from_pkcs1_der(&der))
                .map(|k| PublicKey::Rsa(Box::new(k)))
                .map_err(|e| format!("not an RSA public key: {e}"))
        }
        "ed25519" => ed25519_compact::PublicKey::from_slice(&der)
            .map(PublicKey::Ed25519)
            .map_err(|e| format!("not an Ed25519 public key: {e}")),
        k => Err(format!("unknown key type k={k}")),
    }
}

/// Reads a keys file: `SELECTOR._domainkey.DOMAIN RECORD` lines; `#` starts a comment line.
pub fn parse_keys_file(text: &str) -> Vec<KeyEntry> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let (name, record) = l.split_once(char::is_whitespace)?;
            let (selector, domain) = name.trim_end_matches('.').split_once("._domainkey.")?;
            Some(KeyEntry {
                domain: domain.to_ascii_lowercase(),
                selector: selector.to_string(),
                record: record.trim().to_string(),
            })
        })
        .collect()
}

/// A tag list (`a=b; c=d`) as (name, value) pairs, values trimmed.
pub fn tag_list(text: &str) -> Vec<(String, String)> {
    text.split(';')
        .filter_map(|t| {
            let (n, v) = t.split_once('=')?;
            Some((n.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn tag<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// One header field: its name and its raw bytes (continuation lines included, final line end
/// not).
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub name: &'a str,
    pub raw: &'a [u8],
}

/// Splits a header block into fields (stops at the first empty line).
pub fn fields(block: &[u8]) -> Vec<Field<'_>> {
    let mut out: Vec<Field<'_>> = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    while pos < block.len() && out.len() < MAX_FIELDS {
        let end = block[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(block.len(), |i| pos + i);
        let line = &block[pos..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if line.is_empty() || !continuation {
            if let Some(s) = start.take() {
                push_field(&mut out, &block[s..pos]);
            }
            if line.is_empty() {
                break;
            }
            start = Some(pos);
        }
        pos = end + 1;
    }
    if let Some(s) = start {
        push_field(&mut out, &block[s..block.len().min(pos)]);
    }
    out
}

fn push_field<'a>(out: &mut Vec<Field<'a>>, raw: &'a [u8]) {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let Some(colon) = raw.iter().position(|&b| b == b':') else {
        return;
    };
    if let Ok(name) = std::str::from_utf8(&raw[..colon]) {
        out.push(Field {
            name: name.trim_end_matches([' ', '\t']),
            raw,
        });
    }
}

/// RFC 6376 §3.4.2: lower-case name, unfolded value with runs of blanks made one space and
/// blanks at the ends removed; ends with CRLF.
fn relaxed(raw: &[u8], out: &mut Vec<u8>) {
    let Some(colon) = raw.iter().position(|&b| b == b':') else {
        return;
    };
    let name = &raw[..colon];
    let name_end = name
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    out.extend(name[..name_end].iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    let mut value: Vec<u8> = Vec::with_capacity(raw.len() - colon);
    let mut blank = false;
    for &b in &raw[colon + 1..] {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => blank = true,
            _ => {
                if blank && !value.is_empty() {
                    value.push(b' ');
                }
                blank = false;
                value.push(b);
            }
        }
    }
    out.extend(value);
    out.extend(b"\r\n");
}

/// RFC 6376 §3.4.1: the field as it is, with CRLF line ends.
fn simple(raw: &[u8], out: &mut Vec<u8>) {
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out.extend(b"\r\n");
}

/// The DKIM-Signature field with the value of its `b=` tag removed.
fn without_b(raw: &[u8]) -> Vec<u8> {
    let Some(colon) = raw.iter().position(|&b| b == b':') else {
        return raw.to_vec();
    };
    let mut out = raw[..=colon].to_vec();
    let value = &raw[colon + 1..];
    for (i, seg) in value.split(|&b| b == b';').enumerate() {
        if i > 0 {
            out.push(b';');
        }
        let eq = seg.iter().position(|&b| b == b'=');
        let name = eq.map(|e| seg[..e].trim_ascii());
        match (name, eq) {
            (Some(b"b"), Some(e)) => out.extend(&seg[..=e]),
            _ => out.extend(seg),
        }
    }
    out
}

/// The result for one own signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `b=` verifies with the configured key.
    Valid {
        domain: String,
        selector: String,
        headers: String,
    },
    /// It does not (or the signature cannot be read).
    Invalid { domain: String, why: String },
    /// No key is configured for its selector.
    UnknownKey { domain: String, selector: String },
}

/// Checks every DKIM-Signature of the header block whose `d=` is `own` (per `is_own`) with the
/// keys; other signatures are not looked at.
pub fn verify_own(block: &[u8], keys: &[KeyEntry], is_own: impl Fn(&str) -> bool) -> Vec<Outcome> {
    let all = fields(block);
    all.iter()
        .filter(|f| f.name.eq_ignore_ascii_case("dkim-signature"))
        .take(MAX_SIGNATURES)
        .filter_map(|sig| {
            let text = String::from_utf8_lossy(sig.raw);
            let value = text.split_once(':').map_or("", |(_, v)| v);
            let tags = tag_list(&unfold(value));
            let domain = tag(&tags, "d")?.to_ascii_lowercase();
            if !is_own(&domain) {
                return None;
            }
            let selector = tag(&tags, "s").unwrap_or("").to_string();
            let Some(entry) = keys
                .iter()
                .find(|k| k.domain == domain && k.selector == selector)
            else {
                return Some(Outcome::UnknownKey { domain, selector });
            };
            Some(match verify_one(&all, sig, &tags, &entry.record) {
                Ok(headers) => Outcome::Valid {
                    domain,
                    selector,
                    headers,
                },
                Err(why) => Outcome::Invalid { domain, why },
            })
        })
        .collect()
}

fn unfold(text: &str) -> String {
    text.replace(['\r', '\n'], "")
}

fn verify_one(
    all: &[Field<'_>],
    sig: &Field<'_>,
    tags: &[(String, String)],
    record: &str,
) -> Result<String, String> {
    if tag(tags, "v").is_some_and(|v| v != "1") {
        return Err("not a version 1 signature".into());
    }
    let algorithm = tag(tags, "a").ok_or("no a= tag")?;
    let (head_canon, _) = tag(tags, "c")
        .unwrap_or("simple/simple")
        .split_once('/')
        .unwrap_or((tag(tags, "c").unwrap_or("simple"), "simple"));
    let h = tag(tags, "h").ok_or("no h= tag")?;
    let names: Vec<String> = h
        .split(':')
        .map(|n| n.chars().filter(|c| !c.is_whitespace()).collect())
        .filter(|n: &String| !n.is_empty())
        .collect();
    if !names.iter().any(|n| n.eq_ignore_ascii_case("from")) {
        return Err("h= does not sign From".into());
    }
    let b: String = tag(tags, "b")
        .ok_or("no b= tag")?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(b.as_bytes())
        .map_err(|e| format!("b= is not base64: {e}"))?;
    let canon: fn(&[u8], &mut Vec<u8>) = match head_canon {
        "relaxed" => relaxed,
        "simple" => simple,
        c => return Err(format!("unknown canonicalization {c}")),
    };
    // Each name takes the last instance not yet used, from the bottom up (RFC 6376 §5.4.2).
    let mut used = vec![false; all.len()];
    let mut data = Vec::new();
    for name in &names {
        let pick = (0..all.len())
            .rev()
            .find(|&i| !used[i] && all[i].name.eq_ignore_ascii_case(name));
        if let Some(i) = pick {
            used[i] = true;
            canon(all[i].raw, &mut data);
        }
    }
    let mut own = Vec::new();
    canon(&without_b(sig.raw), &mut own);
    own.truncate(own.len() - 2); // no CRLF after the signature field itself
    data.extend(own);
    let digest = Sha256::digest(&data);
    let key = parse_key(record).map_err(|e| format!("the configured key: {e}"))?;
    let ok = match (algorithm, key) {
        ("rsa-sha256", PublicKey::Rsa(k)) => k
            .verify(
                rsa::Pkcs1v15Sign::new::<Sha256>(),
                digest.as_slice(),
                &signature,
            )
            .is_ok(),
        ("ed25519-sha256", PublicKey::Ed25519(k)) => {
            ed25519_compact::Signature::from_slice(&signature)
                .is_ok_and(|s| k.verify(digest.as_slice(), &s).is_ok())
        }
        ("rsa-sha1", _) => return Err("rsa-sha1 is not accepted (RFC 8301)".into()),
        (a, _) => return Err(format!("a={a} does not fit the configured key")),
    };
    if ok {
        Ok(names.join(":"))
    } else {
        Err("the signature does not verify over the signed header fields".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_canonicalisation_follows_rfc_6376() {
        // RFC 6376 §3.4.6's example.
        let mut out = Vec::new();
        relaxed(b"A: X", &mut out);
        relaxed(b"B : Y\t\r\n\tZ  ", &mut out);
        assert_eq!(out, b"a:X\r\nb:Y Z\r\n");
        let mut out = Vec::new();
        simple(b"B : Y\t\n\tZ  ", &mut out);
        assert_eq!(out, b"B : Y\t\r\n\tZ  \r\n");
    }

    #[test]
    fn fields_keep_continuations_and_stop_at_the_body() {
        let block = b"A: 1\r\nB: 2\r\n  more\r\nC:3\r\n\r\nbody: no\r\n";
        let f = fields(block);
        let names: Vec<&str> = f.iter().map(|f| f.name).collect();
        assert_eq!(names, ["A", "B", "C"]);
        assert_eq!(f[1].raw, b"B: 2\r\n  more");
    }

    #[test]
    fn b_value_is_removed_but_bh_kept() {
        let raw = b"DKIM-Signature: v=1; bh=abc=; b=xyz\r\n\t123; d=x";
        assert_eq!(
            without_b(raw),
            b"DKIM-Signature: v=1; bh=abc=; b=; d=x".to_vec()
        );
    }

    #[test]
    fn key_files_are_read() {
        let keys = parse_keys_file(
            "# made by backstop dkim-keys fetch\nsel._domainkey.Example.org v=DKIM1; p=AAAA\n\n",
        );
        assert_eq!(
            keys,
            [KeyEntry {
                domain: "example.org".into(),
                selector: "sel".into(),
                record: "v=DKIM1; p=AAAA".into()
            }]
        );
        assert!(parse_key("v=DKIM1; p=").unwrap_err().contains("revoked"));
        assert!(parse_key("v=DKIM1; k=rsa; p=AAAA").is_err());
    }
}

#[cfg(test)]
mod signed {
    use super::*;

    const KEYS: &str = include_str!("../../tests/fixtures/proofs/dkim-keys");
    const RSA: &[u8] = include_bytes!("../../tests/fixtures/proofs/signed-rsa.eml");
    const ED: &[u8] = include_bytes!("../../tests/fixtures/proofs/signed-ed.eml");

    fn check(message: &[u8]) -> Vec<Outcome> {
        verify_own(message, &parse_keys_file(KEYS), |d| d == "vm.test")
    }

    fn valid(out: &[Outcome]) -> bool {
        matches!(out, [Outcome::Valid { .. }])
    }

    /// Messages signed by python3-dkim (relaxed RSA, simple Ed25519) verify, with the body or
    /// without it, and not once a signed header is changed.
    #[test]
    fn real_signatures_verify_on_headers_alone() {
        for (name, msg) in [("rsa", RSA), ("ed25519", ED)] {
            assert!(valid(&check(msg)), "{name}: {:?}", check(msg));
            let text = String::from_utf8_lossy(msg).into_owned();
            let headers_only = &text[..text.find("\n\n").unwrap() + 2];
            assert!(
                valid(&check(headers_only.as_bytes())),
                "{name} headers only"
            );
            let crlf = text.replace('\n', "\r\n");
            assert!(valid(&check(crlf.as_bytes())), "{name} with CRLF");
            let tampered = text.replace("The quarterly figures", "The quarterly figures!");
            assert!(
                matches!(check(tampered.as_bytes())[..], [Outcome::Invalid { .. }]),
                "{name} tampered"
            );
            let foreign = verify_own(msg, &parse_keys_file(KEYS), |d| d == "other.example");
            assert!(
                foreign.is_empty(),
                "{name}: only own signatures are checked"
            );
            let unknown = verify_own(msg, &[], |d| d == "vm.test");
            assert!(matches!(unknown[..], [Outcome::UnknownKey { .. }]));
        }
    }
}

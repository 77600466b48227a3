//! Corpus scenarios shared by the integration tests and `examples/corpus_eval.rs`: the
//! manifest, the legit and backscatter configs built from it, and the forged-relay variant.

#![allow(dead_code)]

use std::path::Path;

/// Unrelated own relays for the backscatter scenario; the forged hop claims them.
pub const OWN_HOST: &str = "mail.own.example";

pub const OWN_NET: &str = "100.100.100.0/24";

pub const FORGED_IP: &str = "100.100.100.20";

pub struct Row {
    pub file: String,
    pub kind: String,
    pub orig_headers_found: bool,
    pub orig_from_domain: String,
    pub orig_received: Vec<String>,
    pub orig_received_ips: Vec<String>,
}

pub fn json(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The hosts (HELO and rDNS names) and IPs of the from-clauses of the original's Received headers.
pub fn from_clauses(row: &Row) -> (Vec<String>, Vec<String>) {
    let mut hosts = Vec::new();
    for r in &row.orig_received {
        // `from <host> (<rDNS name>) [<IP literals>] by <host>`
        let Some(rest) = r.strip_prefix("from ") else {
            continue;
        };
        let clause = rest.split(" by ").next().unwrap_or(rest);
        for word in clause.split(|c: char| c.is_whitespace() || "()[],".contains(c)) {
            let w = word.trim();
            if !w.is_empty()
                && w.parse::<std::net::IpAddr>().is_err()
                && w.contains(|c: char| c.is_ascii_alphabetic())
            {
                hosts.push(w.to_string());
            }
        }
    }
    hosts.sort();
    hosts.dedup();
    let mut ips: Vec<String> = row
        .orig_received_ips
        .iter()
        .filter(|i| i.parse::<std::net::IpAddr>().is_ok())
        .cloned()
        .collect();
    ips.sort();
    ips.dedup();
    (hosts, ips)
}

/// Inserts a forged `Received` line claiming own servers just below the last Received header in
/// the body (the bottom of the returned original's chain), keeping its quoting and line ends.
pub fn insert_forged_hop(raw: &[u8]) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(raw);
    if text.len() != raw.len() {
        // Not UTF-8: work on bytes by the same rules, via Latin-1 mapping.
        let latin: String = raw.iter().map(|&b| b as char).collect();
        let out = insert_into(&latin)?;
        return Some(out.chars().map(|c| c as u32 as u8).collect());
    }
    insert_into(&text).map(String::into_bytes)
}

pub fn insert_into(text: &str) -> Option<String> {
    let eol = if text.contains("\r\n") {
        "\r\n"
    } else if text.contains('\n') {
        "\n"
    } else {
        "\r"
    };
    let header_end = text.find(&format!("{eol}{eol}"))?;
    let lines: Vec<&str> = text.split(eol).collect();
    // Index of the first body line.
    let mut pos = 0;
    let mut first_body = lines.len();
    for (i, l) in lines.iter().enumerate() {
        if pos > header_end {
            first_body = i;
            break;
        }
        pos += l.len() + eol.len();
    }
    let is_received = |l: &str| {
        let t = l.trim_start_matches(['>', ' ', '\t']);
        t.len() >= 9 && t[..9].eq_ignore_ascii_case("received:")
    };
    let last = (first_body..lines.len())
        .rev()
        .find(|&i| is_received(lines[i]))?;
    let prefix_len = lines[last].len() - lines[last].trim_start_matches(['>', ' ', '\t']).len();
    let prefix = &lines[last][..prefix_len];
    let mut end = last + 1;
    while end < lines.len() {
        let rest = lines[end].get(prefix_len..).unwrap_or("");
        if lines[end].starts_with(prefix)
            && (rest.starts_with(' ') || rest.starts_with('\t'))
            && !rest.trim().is_empty()
        {
            end += 1;
        } else {
            break;
        }
    }
    let forged = format!(
        "{prefix}Received: from laptop.own.example ([{FORGED_IP}]) by {OWN_HOST} (Postfix) with ESMTPSA id X; Fri, 2 Jan 2026 00:00:01 +0000"
    );
    let mut out: Vec<&str> = lines[..end].to_vec();
    out.push(&forged);
    out.extend_from_slice(&lines[end..]);
    Some(out.join(eol))
}

pub fn read_manifest(path: &Path, set: &str) -> std::io::Result<Vec<Row>> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (
        Some(c_set),
        Some(c_file),
        Some(c_kind),
        Some(c_found),
        Some(c_from),
        Some(c_rcv),
        Some(c_ips),
    ) = (
        col("set"),
        col("file"),
        col("kind"),
        col("orig_headers_found"),
        col("orig_from_domain"),
        col("orig_received"),
        col("orig_received_ips"),
    )
    else {
        return Err(std::io::Error::other("manifest lacks a needed column"));
    };
    let list = |s: &str, sep: &str| -> Vec<String> {
        s.split(sep)
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(lines
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|f| f.len() == header.len() && (set == "all" || f[c_set] == set))
        .map(|f| Row {
            file: f[c_file].to_string(),
            kind: f[c_kind].to_string(),
            orig_headers_found: f[c_found] == "yes",
            orig_from_domain: f[c_from].to_string(),
            orig_received: list(f[c_rcv], " | "),
            orig_received_ips: list(f[c_ips], ","),
        })
        .collect())
}

/// The user's side of a legitimate bounce, read from the manifest alone (not from backstop):
/// the relay that handed the original to the bouncer, and every sender below it.
pub struct Handoff {
    /// Host names in the from-clauses of the hand-off hop and below.
    pub hosts: Vec<String>,
    /// Addresses in those from-clauses.
    pub ips: Vec<String>,
}

/// True for an address that can be a mail server's on the internet (not private, loopback,
/// link-local or unspecified).
fn public(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            !(v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_unspecified())
        }
        std::net::IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// The legit scenario of issue 13: going down the original's Received hops (top first), the
/// first whose from-clause carries a public address is where the bouncer received the message;
/// its sender is the relay that handed it over. That relay, and every sender below it, are
/// configured as own; the receiving hosts above it (the bouncer) are not. None when no hop
/// records a hand-off from a public address: the message was made inside the bouncing site
/// (a local submission, a sending API), or its hops were trimmed.
pub fn handoff(row: &Row) -> Option<Handoff> {
    let hops: Vec<(Vec<String>, Vec<std::net::IpAddr>, String)> = row
        .orig_received
        .iter()
        .map(|r| {
            let (from, by) = match r.rsplit_once(" by ") {
                Some((f, b)) => (f, b),
                None => (r.strip_prefix("by ").map_or(r.as_str(), |_| ""), r.as_str()),
            };
            let from = from.strip_prefix("from ").unwrap_or(from);
            let by = by.trim_start_matches("by ").trim().to_ascii_lowercase();
            let mut names = Vec::new();
            let mut ips = Vec::new();
            for word in from.split(|c: char| c.is_whitespace() || "()[],".contains(c)) {
                let w = word.trim().trim_end_matches('.');
                if let Ok(ip) = w.parse::<std::net::IpAddr>() {
                    // The manifest lists a receiving host's address among the sender's.
                    if w != by {
                        ips.push(ip);
                    }
                } else if w.contains('.') && w.contains(|c: char| c.is_ascii_alphabetic()) {
                    names.push(w.to_ascii_lowercase());
                }
            }
            (names, ips, by)
        })
        .collect();
    let k = hops.iter().position(|(_, ips, _)| ips.iter().any(public))?;
    let bouncer: Vec<&str> = hops[..=k].iter().map(|(_, _, by)| by.as_str()).collect();
    // A bounce the sender's own server wrote (it could not deliver) is no hand-off to a
    // bouncer elsewhere: the bouncer would be own.
    let org = |name: &str| backstop::evidence::anchor::registrable_domain(name);
    let sender_org = org(&row.orig_from_domain);
    if sender_org.is_some() && bouncer.iter().any(|b| org(b) == sender_org) {
        return None;
    }
    let mut hosts: Vec<String> = hops[k..]
        .iter()
        .flat_map(|(names, _, _)| names.iter().cloned())
        .filter(|n| !bouncer.contains(&n.as_str()))
        .collect();
    hosts.sort();
    hosts.dedup();
    let mut ips: Vec<String> = hops[k..]
        .iter()
        .flat_map(|(_, ips, _)| ips.iter().map(|i| i.to_string()))
        .collect();
    ips.sort();
    ips.dedup();
    Some(Handoff { hosts, ips })
}

//! The trust anchor: who wrote the bounce, from what the sender of the original cannot write.
//!
//! The returned original's Received lines are believed from the top down, starting at a hop
//! recorded by the bouncer. The bouncer is named by, strongest first:
//! 1. an own server, when the report was written here (all of the bounce's own hops are own);
//! 2. the host that delivered the bounce to an own server, as that server recorded it (its
//!    reverse-DNS name and address, never its HELO): the one thing a forged *report* cannot
//!    fake, so a fake bounce anchors only its own sender's organisation;
//! 3. the report's `Reporting-MTA` (RFC 3464);
//! 4. the host the report was made on, as the report's own first Received line names it
//!    (from loopback or naming no sender), bare names included (`by m-FILTER`);
//! 5. the report's From and Message-ID domains (weak, but written by the bouncer too).
//!
//! The top hop must also agree with what the report says of the bouncer's own line, where it
//! says anything: the host it received the original from (`Received-From-MTA`), and the queue
//! ID its line carries (`X-Postfix-Queue-ID`, or Postfix's MIME boundary). A bouncer that returns the original without a
//! line of its own leaves the sender's top line to be matched by name alone.
//!
//! An organisation is a registrable domain (the Public Suffix List, compiled in by the `psl`
//! crate): `mx1.mail.example.co.uk` and `out.example.co.uk` are one, `a.example` and
//! `b.example` are two. An own domain is never the anchor of a report written elsewhere.

use std::net::IpAddr;

use psl::Psl;
use serde::Serialize;

use crate::evidence::own::Own;

mod find;

/// Who wrote the report, and how that was learnt.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Anchor {
    /// Host names the bouncer goes by (lower case).
    pub hosts: Vec<String>,
    /// Addresses the bouncer was seen at.
    pub ips: Vec<IpAddr>,
    /// Its organisations: registrable domains.
    pub domains: Vec<String>,
    /// The report was written by an own server.
    pub own: bool,
    /// Where each part came from, for explain (`Reporting-MTA mx.remote.example`).
    pub sources: Vec<String>,
    /// The host the bouncer says it received the original from (a DSN's
    /// `Received-From-MTA`): the bouncer's writing, so a believed hop must agree with it.
    pub received_from: Option<ReceivedFrom>,
    /// The bouncer's queue ID for the original, where the report gives it (Postfix's
    /// `X-Postfix-Queue-ID`, or its MIME boundary): the ID its own Received line carries,
    /// which no sender can guess, so the believed top line must carry one of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub queue_ids: Vec<QueueId>,
}

/// A queue ID the report gives for the bouncer's own line, and where it gives it.
#[derive(Debug, Clone, Serialize)]
pub struct QueueId {
    pub id: String,
    /// `X-Postfix-Queue-ID`, or `the report's MIME boundary`.
    pub what: &'static str,
}

/// The client a bouncer recorded for the original (`Received-From-MTA: dns; relay.example
/// ([192.0.2.1])`): the names and addresses it gives.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReceivedFrom {
    /// Where the report gives it (`Received-From-MTA`), for explain.
    pub what: &'static str,
    /// The value, shortened, for explain.
    pub raw: String,
    /// Host names (lower case).
    pub names: Vec<String>,
    pub ips: Vec<IpAddr>,
}

/// The registrable domain of a host name (`mx1.mail.example.co.uk` -> `example.co.uk`); None
/// for an address, an unqualified name, or a bare public suffix.
pub fn registrable_domain(name: &str) -> Option<String> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if !name.contains('.')
        || name.parse::<IpAddr>().is_ok()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return None;
    }
    let domain = psl::List.domain(name.as_bytes())?;
    std::str::from_utf8(domain.as_bytes())
        .ok()
        .map(str::to_string)
}

impl Anchor {
    fn add_host(&mut self, name: &str) {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        if let Some(org) = registrable_domain(&name)
            && !self.domains.contains(&org)
        {
            self.domains.push(org);
        }
        if !self.hosts.contains(&name) {
            self.hosts.push(name);
        }
    }

    /// True when nothing names the bouncer.
    pub fn is_empty(&self) -> bool {
        !self.own && self.hosts.is_empty() && self.ips.is_empty()
    }

    /// How a receiving host (a hop's `by`) is the bouncer, if it is: the same host, the same
    /// address, or the same organisation.
    pub fn vouches_for(&self, by: &str, own: &Own) -> Option<String> {
        let by = by.trim_end_matches('.').to_ascii_lowercase();
        if self.own {
            return own_host(&by, own)
                .then(|| format!("{by} is an own server, which wrote the report"));
        }
        if let Ok(ip) = by.trim_matches(['[', ']']).parse::<IpAddr>() {
            return self
                .ips
                .contains(&crate::evidence::own::canonical_ip(ip))
                .then(|| format!("{by} is the bouncer's address"));
        }
        if self.hosts.contains(&by) {
            return Some(format!("{by} is the bouncer ({})", self.source_of(&by)));
        }
        let org = registrable_domain(&by)?;
        self.domains
            .contains(&org)
            .then(|| format!("{by} is in the bouncer's organisation {org}"))
    }

    /// True when `by` is inside the bouncer's organisation (or, for a report written here,
    /// an own server).
    pub fn inside(&self, by: &str, own: &Own) -> bool {
        self.vouches_for(by, own).is_some()
    }

    /// Where the report names `host`: the places in parentheses of its source.
    fn source_of(&self, host: &str) -> String {
        let source = self.sources.iter().find(|s| s.starts_with(host));
        source
            .and_then(|s| s.strip_prefix(host))
            .map(|s| {
                s.trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .to_string()
            })
            .unwrap_or_else(|| "named in the report".into())
    }

    /// The queue IDs and where the report gives them: `1C9F8ABBBE89 (X-Postfix-Queue-ID)`.
    pub fn describe_queue_ids(&self) -> String {
        let ids: Vec<String> = self
            .queue_ids
            .iter()
            .map(|q| format!("{} ({})", q.id, q.what))
            .collect();
        ids.join(" or ")
    }

    /// One line for explain.
    pub fn describe(&self) -> String {
        if self.is_empty() {
            return "nobody: the report names no bouncer".into();
        }
        let mut text = self.sources.join("; ");
        if let Some(rf) = &self.received_from {
            text.push_str(&format!(
                "; it received the original from {} ({})",
                rf.raw, rf.what
            ));
        }
        if !self.queue_ids.is_empty() {
            text.push_str(&format!(
                "; its queue ID for it is {}",
                self.describe_queue_ids()
            ));
        }
        text
    }
}

/// Reads a `Received-From-MTA` value (for tests of the hops judged against it).
#[cfg(test)]
pub fn received_from_value(value: &str) -> Option<ReceivedFrom> {
    find::received_from(value, "Received-From-MTA")
}

fn own_host(name: &str, own: &Own) -> bool {
    own.is_own_host(name)
        || name
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| own.is_own_ip(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_domains_follow_the_public_suffix_list() {
        assert_eq!(
            registrable_domain("mx1.mail.example.co.uk").as_deref(),
            Some("example.co.uk")
        );
        assert_eq!(
            registrable_domain("MX.Remote.Example.").as_deref(),
            Some("remote.example")
        );
        assert_eq!(registrable_domain("co.uk"), None);
        assert_eq!(registrable_domain("localhost"), None);
        assert_eq!(registrable_domain("192.0.2.1"), None);
        assert_eq!(registrable_domain("bad name.example"), None);
        assert_eq!(
            registrable_domain("a.b.blogspot.com").as_deref(),
            Some("b.blogspot.com"),
            "a private suffix of the list"
        );
    }
}

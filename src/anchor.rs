//! The trust anchor: who wrote the bounce, from what the sender of the original cannot write.
//!
//! The returned original's Received lines are believed from the top down, starting at a hop
//! recorded by the bouncer. The bouncer is named by, strongest first:
//! 1. an own server, when the report was written here (all of the bounce's own hops are own);
//! 2. the host that delivered the bounce to an own server, as that server recorded it (its
//!    reverse-DNS name and address, never its HELO): the one thing a forged *report* cannot
//!    fake, so a fake bounce anchors only its own sender's organisation;
//! 3. the report's `Reporting-MTA` (RFC 3464);
//! 4. the report's From and Message-ID domains (weak, but written by the bouncer too).
//!
//! An organisation is a registrable domain (the Public Suffix List, compiled in by the `psl`
//! crate): `mx1.mail.example.co.uk` and `out.example.co.uk` are one, `a.example` and
//! `b.example` are two. An own domain is never the anchor of a report written elsewhere.

use std::net::IpAddr;

use mail_parser::Message;
use psl::Psl;
use serde::Serialize;

use crate::config::Own;
use crate::original::id_domain;
use crate::received::{Hop, by_own, is_internal};

/// At most this many bytes of a delivery-status part are read for `Reporting-MTA`.
const REPORT_SCAN_LIMIT: usize = 64 * 1024;

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
    /// Finds who wrote the report `mail`.
    pub fn find(mail: &Message<'_>, own: &Own) -> Anchor {
        let mut anchor = Anchor::default();
        let hops = Hop::all(mail);
        if made_here(&hops, own) {
            anchor.own = true;
            anchor
                .sources
                .push("the report was written by an own server".into());
            return anchor;
        }
        // The user's own organisations: a report claiming to come from inside one was not
        // written by a configured own server, so it proves nothing (it may be forged, or
        // come from a part of the user's own site nobody listed).
        let own_orgs: Vec<String> = own
            .domains
            .iter()
            .filter_map(|d| registrable_domain(d).or_else(|| Some(d.clone())))
            .collect();
        let delivered_by = delivering_host(&hops, own).filter(|(name, _, _)| {
            name.as_deref()
                .and_then(registrable_domain)
                .is_none_or(|org| !own_orgs.contains(&org))
        });
        if let Some((name, ip, by)) = &delivered_by {
            if let Some(n) = name {
                anchor.add_host(n);
            }
            anchor.ips.push(*ip);
            anchor.sources.push(format!(
                "own server {by} received the report from {}[{ip}]",
                name.as_deref().map(|n| format!("{n} ")).unwrap_or_default()
            ));
        }
        let claims = [
            reporting_mta(mail).map(|m| (m, "Reporting-MTA")),
            from_domain(mail).map(|d| (d, "the report's From")),
            mail.message_id()
                .and_then(id_domain)
                .map(|d| (d, "the report's Message-ID")),
        ];
        for (name, what) in claims.into_iter().flatten() {
            let Some(org) = registrable_domain(&name) else {
                continue;
            };
            if own_orgs.contains(&org) || own.is_own_domain(&name) {
                // A report written elsewhere in an own domain's name proves nothing.
                continue;
            }
            // Claims outside the delivering host's organisation are kept: a provider's
            // reporting and outbound hosts often sit under two domains, and a forged report
            // gains nothing by them, since its sender's own organisation is anchored already.
            let host = name.trim_end_matches('.').to_ascii_lowercase();
            if anchor.hosts.contains(&host)
                && let Some(source) = anchor.sources.iter_mut().find(|s| s.starts_with(&host))
            {
                // One name the report gives in several places: one source, with each place.
                source.truncate(source.len() - 1);
                source.push_str(&format!(", {what})"));
                continue;
            }
            anchor.add_host(&host);
            anchor.sources.push(format!("{host} ({what})"));
        }
        anchor
    }

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
                .contains(&crate::config::canonical_ip(ip))
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

    /// One line for explain.
    pub fn describe(&self) -> String {
        if self.is_empty() {
            return "nobody: the report names no bouncer".into();
        }
        self.sources.join("; ")
    }
}

fn own_host(name: &str, own: &Own) -> bool {
    own.is_own_host(name)
        || name
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| own.is_own_ip(ip))
}

/// True when the report was written by an own server: its own Received chain has hops, all
/// recorded by own servers, none from a foreign address.
fn made_here(hops: &[Hop], own: &Own) -> bool {
    !hops.is_empty()
        && hops.iter().all(|h| {
            by_own(h, own)
                && h.from_ip
                    .is_none_or(|ip| own.is_own_ip(ip) || ip.is_loopback())
        })
}

/// The host that handed the report to an own server, as that server recorded it: the first
/// hop from the top that an own server recorded from an address that is not own. Its reverse
/// DNS name (looked up by our server) and address; the HELO name is the sender's choice.
fn delivering_host(hops: &[Hop], own: &Own) -> Option<(Option<String>, IpAddr, String)> {
    for h in hops {
        if !by_own(h, own) {
            return None;
        }
        let ip = h.from_ip?;
        if own.is_own_ip(ip) || is_internal(ip) {
            continue;
        }
        let name = h
            .from_rdns
            .clone()
            .filter(|n| registrable_domain(n).is_some());
        return Some((name, ip, h.by.clone().unwrap_or_default()));
    }
    None
}

/// The `Reporting-MTA` of a delivery-status report (`dns; mx.example.net`).
fn reporting_mta(mail: &Message<'_>) -> Option<String> {
    let raw = mail.raw_message();
    mail.parts.iter().find_map(|part| {
        let ty = crate::message::part_type(part);
        if ty != "message/delivery-status" && ty != "message/global-delivery-status" {
            return None;
        }
        let start = part.offset_body as usize;
        let end = (part.offset_end as usize).min(start.saturating_add(REPORT_SCAN_LIMIT));
        let body = String::from_utf8_lossy(raw.get(start..end)?);
        body.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            if !name.trim().eq_ignore_ascii_case("reporting-mta") {
                return None;
            }
            let host = value.split_once(';').map_or(value, |(_, h)| h).trim();
            (!host.is_empty() && registrable_domain(host).is_some()).then(|| host.to_string())
        })
    })
}

/// The domain of the report's From address.
fn from_domain(mail: &Message<'_>) -> Option<String> {
    let addr = mail.from()?.first()?.address()?;
    let domain = addr.rsplit_once('@')?.1.trim().trim_end_matches('.');
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
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

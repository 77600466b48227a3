//! Finding the anchor of one report: from its own Received chain, its `Reporting-MTA`, and
//! its From and Message-ID domains (see the `anchor` module comment for the order).

use std::net::IpAddr;

use mail_parser::{Message, MimeHeaders};

use super::{Anchor, QueueId, ReceivedFrom, registrable_domain};
use crate::evidence::original::id_domain;
use crate::evidence::own::Own;
use crate::evidence::received::{Hop, by_own, is_internal};

/// At most this many bytes of a delivery-status part are read for `Reporting-MTA`.
const REPORT_SCAN_LIMIT: usize = 64 * 1024;

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
        // (name, where the report gives it, whether a bare name without a domain counts)
        // The report's own fields, read in one pass.
        let [reporting, client, queue] = dsn_fields(
            mail,
            ["reporting-mta", "received-from-mta", "x-postfix-queue-id"],
        );
        let claims = [
            reporting
                .as_deref()
                .and_then(reporting_mta)
                .map(|m| (m, "Reporting-MTA", false)),
            created_on(&hops, own).map(|h| (h, "the report's first Received line", true)),
            from_domain(mail).map(|d| (d, "the report's From", false)),
            mail.message_id()
                .and_then(id_domain)
                .map(|d| (d, "the report's Message-ID", false)),
        ];
        for (name, what, bare_ok) in claims.into_iter().flatten() {
            match registrable_domain(&name) {
                Some(org) if own_orgs.contains(&org) || own.is_own_domain(&name) => {
                    // A report written elsewhere in an own domain's name proves nothing.
                    continue;
                }
                Some(_) => {}
                // A bare host name (an appliance's `m-FILTER`) says no organisation, but it is
                // a name the bouncer gave itself in its own Received line.
                None if bare_ok => {}
                None => continue,
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
        // (Sendmail's text "The original message was received at ... from HOST [IP]" was
        // tried as a second source: it cost 2 legit cases of the corpus, whose anonymised
        // addresses disagree with the lines; docs/trust.md.)
        anchor.received_from = client.and_then(|v| received_from(&v, "Received-From-MTA"));
        let fields = queue
            .and_then(|v| queue_id(&v))
            .map(|id| (id, "X-Postfix-Queue-ID"));
        let boundary = boundary_queue_id(mail, &hops).map(|id| (id, "the report's MIME boundary"));
        for (id, what) in [fields, boundary].into_iter().flatten() {
            if !anchor.queue_ids.iter().any(|q| q.id == id) {
                anchor.queue_ids.push(QueueId { id, what });
            }
        }
        anchor
    }
}

/// Reads a `Received-From-MTA` value (`dns; relay.example ([192.0.2.1])`): its host names and
/// addresses. None when it gives neither (`dns; user@example.net` names no host).
pub(super) fn received_from(value: &str, what: &'static str) -> Option<ReceivedFrom> {
    let text = value.split_once(';').map_or(value, |(_, v)| v).trim();
    let mut rf = ReceivedFrom {
        what,
        raw: crate::util::text::shorten(text, 120),
        ..ReceivedFrom::default()
    };
    for word in text.split(|c: char| c.is_whitespace() || "()[],;".contains(c)) {
        let word = word.trim_end_matches('.');
        if word.is_empty() {
            continue;
        }
        if let Ok(ip) = word.trim_start_matches("IPv6:").parse::<IpAddr>() {
            let ip = crate::evidence::own::canonical_ip(ip);
            if !rf.ips.contains(&ip) {
                rf.ips.push(ip);
            }
        } else if word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        {
            let name = word.to_ascii_lowercase();
            if !rf.names.contains(&name) {
                rf.names.push(name);
            }
        }
    }
    (!rf.names.is_empty() || !rf.ips.is_empty()).then_some(rf)
}

/// A queue ID as Postfix writes it: 5 to 32 letters and digits (hex short IDs, base-52 long
/// ones). None for anything else, so that a mangled field checks nothing.
fn queue_id(value: &str) -> Option<String> {
    let id = value.trim();
    ((5..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| id.to_string())
}

/// The queue ID in a Postfix report's MIME boundary. Postfix's bounce daemon writes the
/// boundary as `QUEUEID.TIME/HOST`, with the ID of the message it returns, and records the
/// report itself in a line of its own that names no sender (`Received: by HOST (Postfix) id
/// OTHERID`). Sendmail writes the same shape with the ID of the report (its own line, `from
/// localhost by HOST id THATID`): only a boundary whose host is that of the report's own line,
/// which names no sender and carries another ID, gives the original's. The sender of the
/// original writes none of the report.
fn boundary_queue_id(mail: &Message<'_>, hops: &[Hop]) -> Option<String> {
    let boundary = mail.content_type()?.attribute("boundary")?;
    let (id, rest) = boundary.split_once('.')?;
    let (time, host) = rest.split_once('/')?;
    let id = queue_id(id)?;
    let made = hops.iter().rev().find(|h| h.by.is_some() || h.has_from())?;
    let fits = (9..=11).contains(&time.len())
        && time.bytes().all(|b| b.is_ascii_digit())
        && !made.has_from()
        && made
            .by
            .as_deref()
            .is_some_and(|by| by.eq_ignore_ascii_case(host.trim_end_matches('.')))
        && made.id.as_deref().is_some_and(|own| own != id);
    fits.then_some(id)
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

/// The host the report was made on, as the report's own first (bottom) Received line names
/// it: a hop that names no sender or came from loopback (the bounce handed to the host's own
/// MTA), as `Received: from 127.0.0.1 by m-FILTER` or `Received: by mx.example.net (Postfix,
/// from userid 0)`. The bouncer wrote that line, not the sender of the original; the name may
/// be a bare one that no other field of the report gives. None for an own or loopback name.
fn created_on(hops: &[Hop], own: &Own) -> Option<String> {
    let bottom = hops.iter().rev().find(|h| h.by.is_some() || h.has_from())?;
    let made_here = !bottom.has_from() || bottom.from_ip.is_some_and(|ip| ip.is_loopback());
    let by = bottom
        .by
        .as_deref()?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let plain = !by.is_empty()
        && by.parse::<IpAddr>().is_err()
        && by
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    (made_here && plain && !is_loopback_name(&by) && !by_own(bottom, own)).then_some(by)
}

/// `localhost`, `localhost.localdomain` and the like.
fn is_loopback_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "localhost" || n.starts_with("localhost.")
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

/// The host of a `Reporting-MTA` value (`dns; mx.example.net`).
fn reporting_mta(value: &str) -> Option<String> {
    let host = value.split_once(';').map_or(value, |(_, h)| h).trim();
    (!host.is_empty() && registrable_domain(host).is_some()).then(|| host.to_string())
}

/// The first value of each field of `names` (lower case) in the report's delivery-status
/// parts, in one pass over them.
fn dsn_fields<const N: usize>(mail: &Message<'_>, names: [&str; N]) -> [Option<String>; N] {
    let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
    let raw = mail.raw_message();
    for part in &mail.parts {
        let ty = crate::message::part_type(part);
        if ty != "message/delivery-status" && ty != "message/global-delivery-status" {
            continue;
        }
        let start = part.offset_body as usize;
        let end = (part.offset_end as usize).min(start.saturating_add(REPORT_SCAN_LIMIT));
        let Some(bytes) = raw.get(start..end) else {
            continue;
        };
        for line in String::from_utf8_lossy(bytes).lines() {
            let Some((field, value)) = line.split_once(':') else {
                continue;
            };
            let field = field.trim();
            if let Some(k) = names.iter().position(|n| field.eq_ignore_ascii_case(n))
                && values[k].is_none()
            {
                values[k] = Some(value.trim().to_string());
            }
        }
        if values.iter().all(Option::is_some) {
            break;
        }
    }
    values
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
    use crate::evidence::own::HostPattern;

    fn own() -> Own {
        Own {
            domains: vec!["own.example".into()],
            hosts: vec![HostPattern::new("mx.own.example")],
            ..Own::default()
        }
    }

    fn anchor_of(headers: &str) -> Anchor {
        let text =
            format!("{headers}From: postmaster@remote.example\nSubject: failure notice\n\nbody\n");
        let mail = mail_parser::MessageParser::new()
            .parse(text.as_bytes())
            .expect("a message");
        Anchor::find(&mail, &own())
    }

    #[test]
    fn the_host_a_report_was_made_on_names_the_bouncer_even_by_a_bare_name() {
        let anchor = anchor_of(
            "Received: from mx12.remote.example (mx12.remote.example [192.0.2.90]) by mx.own.example; Thu, 29 Apr 2011 23:34:45 +0900\nReceived: from 127.0.0.1 (127.0.0.1) by m-FILTER with ESMTP; Thu, 29 Apr 2011 23:34:44 +0900\n",
        );
        assert!(anchor.hosts.iter().any(|h| h == "m-filter"), "{anchor:?}");
        assert!(
            anchor
                .describe()
                .contains("m-filter (the report's first Received line)"),
            "{}",
            anchor.describe()
        );
        // Written with no sender at all (`Received: by host (Postfix, from userid 0)`).
        let anchor = anchor_of(
            "Received: by relay.remote.example (Postfix, from userid 0) id 1; Thu, 29 Apr 2011 23:34:44 +0900\n",
        );
        assert!(
            anchor.hosts.iter().any(|h| h == "relay.remote.example"),
            "{anchor:?}"
        );
    }

    #[test]
    fn a_postfix_boundary_gives_the_queue_id_of_the_returned_message() {
        let report = |own_line: &str, boundary: &str| {
            anchor_of(&format!(
                "Received: from mx.remote.example (mx.remote.example [192.0.2.9]) by mx.own.example; Thu, 29 Apr 2011 23:34:46 +0900\n{own_line}\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\n"
            ))
        };
        // Postfix: the boundary holds the returned message's ID, its own line another.
        let anchor = report(
            "Received: by mx.remote.example (Postfix) id 42C71BDFA322; Thu, 29 Apr 2011 23:34:45 +0900",
            "1C9F8ABBBE89.1375653825/mx.remote.example",
        );
        let ids: Vec<&str> = anchor.queue_ids.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids, ["1C9F8ABBBE89"], "{anchor:?}");
        // Sendmail: the same shape, with the report's own ID: nothing about the original.
        let anchor = report(
            "Received: from localhost (localhost) by mx.remote.example (8.14.4/8.14.4) id r9G5FZh9018575; Thu, 29 Apr 2011 23:34:45 +0900",
            "r9G5FZh9018575.1381900535/mx.remote.example",
        );
        assert!(anchor.queue_ids.is_empty(), "{anchor:?}");
        // Another host than the report's own line, or no time: not Postfix's boundary.
        for boundary in [
            "1C9F8ABBBE89.1375653825/other.example",
            "1C9F8ABBBE89.abc/mx.remote.example",
        ] {
            let anchor = report(
                "Received: by mx.remote.example (Postfix) id 42C71BDFA322; Thu, 29 Apr 2011 23:34:45 +0900",
                boundary,
            );
            assert!(anchor.queue_ids.is_empty(), "{boundary}: {anchor:?}");
        }
    }

    #[test]
    fn the_client_the_bouncer_names_is_read_from_the_report() {
        let rf = received_from("dns; [127.0.0.1] (c10920.example.com [192.0.2.20])", "x")
            .expect("a client");
        assert_eq!(rf.names, ["c10920.example.com"]);
        assert_eq!(
            rf.ips,
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "192.0.2.20".parse().unwrap()
            ]
        );
        assert!(received_from("dns; sironeko@example.net", "x").is_none());
    }

    #[test]
    fn a_first_line_from_a_network_peer_or_an_own_host_names_no_bouncer() {
        // The bottom line received the report from elsewhere: it was not made there.
        let anchor = anchor_of(
            "Received: from 192.0.2.9 (192.0.2.9) by m-FILTER with ESMTP; Thu, 29 Apr 2011 23:34:44 +0900\n",
        );
        assert!(!anchor.hosts.iter().any(|h| h == "m-filter"), "{anchor:?}");
        // Made on an own host or on `localhost`: nothing about the bouncer.
        for by in ["mx.own.example", "localhost"] {
            // (A line above by another host, so that the report is not one made here.)
            let anchor = anchor_of(&format!(
                "Received: from relay.other.example (relay.other.example [192.0.2.91]) by inbound.other.example; Thu, 29 Apr 2011 23:34:45 +0900\nReceived: from 127.0.0.1 (127.0.0.1) by {by} with ESMTP; Thu, 29 Apr 2011 23:34:44 +0900\n"
            ));
            assert!(!anchor.own);
            assert!(!anchor.hosts.iter().any(|h| h == by), "{by}: {anchor:?}");
        }
    }
}

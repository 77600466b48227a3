//! The user's own hosts, networks and domains, and the pure matching against them. The config
//! builds an [`Own`] (see `Config::own`); the evidence code asks it questions.

use std::net::IpAddr;

use ipnet::IpNet;

/// A host name pattern: an exact name or a `*` glob, matched without regard to case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(String);

impl HostPattern {
    pub fn new(text: &str) -> HostPattern {
        HostPattern(text.trim().trim_end_matches('.').to_ascii_lowercase())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

/// `*` matches any run of characters (including dots); everything else is literal.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The user's own infrastructure, ready to match against.
#[derive(Debug, Clone, Default)]
pub struct Own {
    pub domains: Vec<String>,
    pub message_id_domains: Vec<String>,
    pub hosts: Vec<HostPattern>,
    pub networks: Vec<IpNet>,
    /// True when hosts or networks came from the config, not only from defaults.
    pub relays_configured: bool,
    /// True when message_id_domains came from the config.
    pub message_id_domains_configured: bool,
    /// Where each part came from, for explain.
    pub origin: Vec<String>,
}

impl Own {
    pub fn is_own_domain(&self, domain: &str) -> bool {
        domain_in(&self.domains, domain)
    }

    pub fn is_own_msgid_domain(&self, domain: &str) -> bool {
        domain_in(&self.message_id_domains, domain)
    }

    pub fn is_own_host(&self, name: &str) -> bool {
        self.hosts.iter().any(|h| h.matches(name))
    }

    pub fn is_own_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.networks.iter().any(|n| n.contains(&ip))
    }
}

/// Maps IPv4-mapped IPv6 addresses to IPv4, so that `::ffff:192.0.2.1` matches `192.0.2.0/24`.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// True when `domain` is one of `list` or a subdomain of one.
fn domain_in(list: &[String], domain: &str) -> bool {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    list.iter().any(|d| {
        domain == *d
            || (domain.len() > d.len()
                && domain.ends_with(d.as_str())
                && domain.as_bytes()[domain.len() - d.len() - 1] == b'.')
    })
}

/// Parses `192.0.2.0/24`, `2001:db8::/32` or a single address.
pub fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(net.trunc());
    }
    text.parse::<IpAddr>()
        .ok()
        .map(|ip| IpNet::from(canonical_ip(ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        let p = HostPattern::new("*.out.example.org");
        assert!(p.matches("a.out.example.org"));
        assert!(p.matches("A.B.OUT.example.org."));
        assert!(!p.matches("out.example.org"));
        assert!(!p.matches("a.out.example.org.evil"));
        assert!(HostPattern::new("mail.example.org").matches("MAIL.example.org"));
    }

    #[test]
    fn domains_match_subdomains_only_at_dots() {
        let list = vec!["example.org".to_string()];
        assert!(domain_in(&list, "example.org"));
        assert!(domain_in(&list, "mx.example.org"));
        assert!(!domain_in(&list, "badexample.org"));
    }

    #[test]
    fn networks_accept_addresses_and_cidrs() {
        assert!(parse_network("192.0.2.7").is_some());
        assert!(parse_network("2001:db8::/32").is_some());
        assert!(parse_network("192.0.2.0/33").is_none());
        let own = Own {
            networks: vec![parse_network("192.0.2.0/24").unwrap()],
            ..Own::default()
        };
        assert!(own.is_own_ip("::ffff:192.0.2.9".parse().unwrap()));
    }
}

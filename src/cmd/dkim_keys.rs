//! `backstop dkim-keys fetch`: copies the user's published DKIM keys from DNS into a file once,
//! so that `deliver` never queries DNS.
//!
//! A TXT query for `SELECTOR._domainkey.DOMAIN` over UDP (EDNS0, 4096 bytes), and over TCP
//! when the answer comes back truncated, to the first `nameserver` of /etc/resolv.conf or to
//! `--server`. Each record is checked as a key before the file is written (to a temporary file,
//! then renamed). Lines for other names in the file are kept.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{DkimKeysAction, DkimKeysArgs, FetchArgs};
use crate::config::Config;
use crate::exit::Exit;
use crate::proofs::dkim;

const TIMEOUT: Duration = Duration::from_secs(5);
const TXT: u16 = 16;

/// Runs `dkim-keys`.
pub fn run(args: &DkimKeysArgs) -> ExitCode {
    let DkimKeysAction::Fetch(f) = &args.action;
    match fetch(f) {
        Ok(lines) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(lines.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            say!("backstop: {e}");
            ExitCode::from(Exit::Error)
        }
    }
}

fn fetch(args: &FetchArgs) -> Result<String, String> {
    let config = Config::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    let output = match (&args.output, &config.dkim.keys_file) {
        (Some(o), _) => o.clone(),
        (None, Some(f)) => crate::config::expand_home(f),
        (None, None) => Config::default_path()
            .and_then(|p| p.parent().map(|d| d.join("dkim-keys")))
            .ok_or("no config folder; give --output")?,
    };
    let server = match args.server {
        Some(s) => s,
        None => resolv_conf_server()?,
    };
    let domain = args
        .domain
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let mut entries = Vec::new();
    for selector in &args.selectors {
        let name = format!("{}._domainkey.{domain}", selector.trim());
        let records = query_txt(server, &name).map_err(|e| format!("{name}: {e}"))?;
        let record = records
            .into_iter()
            .find(|r| r.contains("p="))
            .ok_or_else(|| format!("{name}: no DKIM key record in DNS"))?;
        dkim::parse_key(&record).map_err(|e| format!("{name}: {e}"))?;
        entries.push((name, record));
    }
    write_keys(&output, &entries)?;
    let mut said = String::new();
    for (name, _) in &entries {
        said.push_str(&format!("{name}: written to {}\n", output.display()));
    }
    Ok(said)
}

fn resolv_conf_server() -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("/etc/resolv.conf: {e}; give --server"))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
        .ok_or_else(|| "no nameserver in /etc/resolv.conf; give --server".to_string())
}

/// Replaces the lines of the names fetched, keeps the others.
fn write_keys(path: &Path, entries: &[(String, String)]) -> Result<(), String> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let mut text = String::new();
    if old.is_empty() {
        text.push_str("# DKIM keys for backstop: SELECTOR._domainkey.DOMAIN RECORD\n");
    }
    for line in old.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if !entries.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            text.push_str(line);
            text.push('\n');
        }
    }
    for (name, record) in entries {
        text.push_str(&format!("{name} {record}\n"));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    result.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A DNS query for the TXT records of `name`.
fn query(name: &str, id: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(64);
    q.extend(id.to_be_bytes());
    q.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]); // RD; 1 question, 1 additional (EDNS0)
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("bad DNS name {name:?}"));
        }
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.push(0);
    q.extend(TXT.to_be_bytes());
    q.extend(1u16.to_be_bytes());
    // OPT: root name, type 41, UDP size 4096, no flags, no data.
    q.extend([0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
    Ok(q)
}

/// The TXT records of `name` (each record's strings joined).
pub fn query_txt(server: SocketAddr, name: &str) -> Result<Vec<String>, String> {
    let id = (std::process::id() as u16) ^ (crate::proofs::now() as u16);
    let q = query(name, id)?;
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().map_err(|_| "address")?
    } else {
        "[::]:0".parse().map_err(|_| "address")?
    };
    let sock = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    let mut answer = None;
    for _ in 0..3 {
        sock.send_to(&q, server).map_err(|e| e.to_string())?;
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if from == server && n >= 12 && buf[..2] == id.to_be_bytes() => {
                answer = Some(buf[..n].to_vec());
                break;
            }
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let answer = answer.ok_or_else(|| format!("no answer from {server}"))?;
    let answer = if answer[2] & 0x02 != 0 {
        query_tcp(server, &q)?
    } else {
        answer
    };
    parse_txt(&answer, id)
}

fn query_tcp(server: SocketAddr, q: &[u8]) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect_timeout(&server, TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut msg = (q.len() as u16).to_be_bytes().to_vec();
    msg.extend(q);
    s.write_all(&msg).map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).map_err(|e| e.to_string())?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut answer).map_err(|e| e.to_string())?;
    Ok(answer)
}

/// Skips a (possibly compressed) name at `pos`; returns the position after it.
fn skip_name(m: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *m.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xC0 == 0xC0 => return Some(pos + 2),
            l => pos += 1 + usize::from(l),
        }
    }
}

fn be16(m: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(pos)?, *m.get(pos + 1)?]))
}

/// The TXT records of a DNS answer.
fn parse_txt(m: &[u8], id: u16) -> Result<Vec<String>, String> {
    let bad = || "a malformed DNS answer".to_string();
    if m.len() < 12 || m[..2] != id.to_be_bytes() {
        return Err(bad());
    }
    match m[3] & 0x0F {
        0 => {}
        3 => return Err("no such name in DNS (NXDOMAIN)".into()),
        r => return Err(format!("the DNS server answered with error {r}")),
    }
    let qd = be16(m, 4).ok_or_else(bad)?;
    let an = be16(m, 6).ok_or_else(bad)?;
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(m, pos).ok_or_else(bad)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        pos = skip_name(m, pos).ok_or_else(bad)?;
        let ty = be16(m, pos).ok_or_else(bad)?;
        let rdlen = usize::from(be16(m, pos + 8).ok_or_else(bad)?);
        let start = pos + 10;
        let rdata = m.get(start..start + rdlen).ok_or_else(bad)?;
        pos = start + rdlen;
        if ty != TXT {
            continue;
        }
        let mut text = Vec::new();
        let mut i = 0;
        while i < rdata.len() {
            let l = usize::from(rdata[i]);
            text.extend(rdata.get(i + 1..i + 1 + l).ok_or_else(bad)?);
            i += 1 + l;
        }
        out.push(String::from_utf8_lossy(&text).into_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_answers_are_read_with_compressed_names_and_split_strings() {
        let q = query("s._domainkey.example.org", 0x1234).unwrap();
        let mut a = q[..q.len() - 11].to_vec(); // the question, without the OPT record
        a[2] = 0x81;
        a[3] = 0x80;
        a[7] = 1; // one answer
        a[11] = 0; // no additional
        a.extend([0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60]);
        let strings: [&[u8]; 2] = [b"v=DKIM1; p=AB", b"CD"];
        let rdata: Vec<u8> = strings
            .iter()
            .flat_map(|s| std::iter::once(s.len() as u8).chain(s.iter().copied()))
            .collect();
        a.extend((rdata.len() as u16).to_be_bytes());
        a.extend(rdata);
        assert_eq!(parse_txt(&a, 0x1234).unwrap(), ["v=DKIM1; p=ABCD"]);
        assert!(parse_txt(&a[..a.len() - 1], 0x1234).is_err());
        assert!(parse_txt(&a, 0x4321).is_err());
    }
}

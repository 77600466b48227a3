//! The milter wire protocol (version 6, the subset backstop needs): packets are a 4-byte
//! big-endian length (the command byte included), a command byte, and the data.
//!
//! Written here rather than taken from `miltr-server` (MIT): that crate is async only (futures,
//! async-trait, asynchronous-codec, and a runtime such as tokio to drive it), several new
//! crates and minutes of build for a protocol whose subset is this one file; a blocking
//! thread-per-connection server is simpler to bound and to reason about.

use std::io::{self, Read, Write};

/// Commands from the MTA.
pub mod cmd {
    pub const ABORT: u8 = b'A';
    pub const BODY: u8 = b'B';
    pub const CONNECT: u8 = b'C';
    pub const MACRO: u8 = b'D';
    pub const BODYEOB: u8 = b'E';
    pub const HELO: u8 = b'H';
    pub const QUIT_NC: u8 = b'K';
    pub const HEADER: u8 = b'L';
    pub const MAIL: u8 = b'M';
    pub const EOH: u8 = b'N';
    pub const OPTNEG: u8 = b'O';
    pub const QUIT: u8 = b'Q';
    pub const RCPT: u8 = b'R';
    pub const DATA: u8 = b'T';
    pub const UNKNOWN: u8 = b'U';
}

/// Replies to the MTA.
pub mod reply {
    pub const ADDHEADER: u8 = b'h';
    pub const CHGHEADER: u8 = b'm';
    pub const CHGFROM: u8 = b'e';
    pub const ACCEPT: u8 = b'a';
    pub const CONTINUE: u8 = b'c';
    pub const QUARANTINE: u8 = b'q';
    pub const REPLYCODE: u8 = b'y';
    pub const TEMPFAIL: u8 = b't';
    pub const OPTNEG: u8 = b'O';
}

/// Actions the filter may take (negotiated): add headers, change headers, quarantine, change
/// the envelope sender (BATV signing).
pub const SMFIF_ADDHDRS: u32 = 0x01;
pub const SMFIF_CHGHDRS: u32 = 0x10;
pub const SMFIF_QUARANTINE: u32 = 0x20;
pub const SMFIF_CHGFROM: u32 = 0x40;

/// Protocol steps (negotiated): the MTA leaves out the commands of the stages we ignore
/// (`NO*`), and expects no reply to the commands we never answer but "continue" (`NR_*`), so
/// that it streams the message and waits once, at its end.
pub const SMFIP_NOHELO: u32 = 0x02;
pub const SMFIP_NOEOH: u32 = 0x40;
pub const SMFIP_NR_HDR: u32 = 0x80;
pub const SMFIP_NOUNKNOWN: u32 = 0x100;
pub const SMFIP_NODATA: u32 = 0x200;
pub const SMFIP_NR_CONN: u32 = 0x1000;
pub const SMFIP_NR_HELO: u32 = 0x2000;
pub const SMFIP_NR_MAIL: u32 = 0x4000;
pub const SMFIP_NR_RCPT: u32 = 0x8000;
pub const SMFIP_NR_DATA: u32 = 0x1_0000;
pub const SMFIP_NR_UNKN: u32 = 0x2_0000;
pub const SMFIP_NR_EOH: u32 = 0x4_0000;
pub const SMFIP_NR_BODY: u32 = 0x8_0000;

/// The steps we ask for. Not `SMFIP_HDR_LEADSPC`: it would change how the header fields we
/// add are written (the MTA would no longer put a space after the colon).
const WANTED_STEPS: u32 = SMFIP_NOHELO
    | SMFIP_NOEOH
    | SMFIP_NOUNKNOWN
    | SMFIP_NODATA
    | SMFIP_NR_CONN
    | SMFIP_NR_HELO
    | SMFIP_NR_MAIL
    | SMFIP_NR_RCPT
    | SMFIP_NR_DATA
    | SMFIP_NR_UNKN
    | SMFIP_NR_EOH
    | SMFIP_NR_BODY
    | SMFIP_NR_HDR;

/// The no-reply step that covers a command, if any.
pub fn no_reply_step(command: u8) -> u32 {
    match command {
        cmd::CONNECT => SMFIP_NR_CONN,
        cmd::HELO => SMFIP_NR_HELO,
        cmd::MAIL => SMFIP_NR_MAIL,
        cmd::RCPT => SMFIP_NR_RCPT,
        cmd::DATA => SMFIP_NR_DATA,
        cmd::UNKNOWN => SMFIP_NR_UNKN,
        cmd::EOH => SMFIP_NR_EOH,
        cmd::BODY => SMFIP_NR_BODY,
        cmd::HEADER => SMFIP_NR_HDR,
        _ => 0,
    }
}

/// The protocol version spoken.
pub const VERSION: u32 = 6;

/// The longest packet accepted. Postfix and Sendmail send body chunks of at most 64 KiB, and
/// headers well under this; a longer length is a broken or hostile peer.
pub const MAX_PACKET: usize = 1024 * 1024;

/// One packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub cmd: u8,
    pub data: Vec<u8>,
}

/// Reads one packet; None at a clean end of the stream (between packets).
pub fn read_packet(r: &mut impl Read) -> io::Result<Option<Packet>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_PACKET {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("packet length {len} out of range"),
        ));
    }
    let mut cmd = [0u8; 1];
    r.read_exact(&mut cmd)?;
    let mut data = vec![0u8; len - 1];
    r.read_exact(&mut data)?;
    Ok(Some(Packet { cmd: cmd[0], data }))
}

/// Writes one packet (into a buffer: the replies to one command go out in one write).
pub fn write_packet(w: &mut impl Write, cmd: u8, data: &[u8]) -> io::Result<()> {
    let len = u32::try_from(data.len() + 1)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet too long"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(&[cmd])?;
    w.write_all(data)
}

/// The zero-terminated strings of a packet's data.
pub fn strings(data: &[u8]) -> Vec<&[u8]> {
    let data = data.strip_suffix(b"\0").unwrap_or(data);
    if data.is_empty() {
        return Vec::new();
    }
    data.split(|&b| b == 0).collect()
}

/// Our answer to the MTA's option negotiation: version 6, the actions we use that it offers,
/// and the protocol steps we want that it offers (returned too: the session must then leave
/// the `NR_*` commands unanswered).
pub fn negotiate(data: &[u8]) -> Option<(Vec<u8>, u32)> {
    let word = |i: usize| -> Option<u32> {
        data.get(i * 4..i * 4 + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (version, actions) = (word(0)?, word(1)?);
    // Version 2 sends no step word: it offers none.
    let steps = word(2).unwrap_or(0) & WANTED_STEPS;
    if version < 2 {
        return None;
    }
    let wanted = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_CHGFROM;
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&version.min(VERSION).to_be_bytes());
    out.extend_from_slice(&(actions & wanted).to_be_bytes());
    out.extend_from_slice(&steps.to_be_bytes());
    Some((out, steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip_and_bad_lengths_are_refused() {
        let mut buf = Vec::new();
        write_packet(&mut buf, cmd::HEADER, b"From\0a@b\0").expect("write");
        assert_eq!(&buf[..5], &[0, 0, 0, 10, b'L']);
        let mut r = &buf[..];
        let p = read_packet(&mut r).expect("read").expect("packet");
        assert_eq!(p.cmd, cmd::HEADER);
        assert_eq!(strings(&p.data), vec![&b"From"[..], &b"a@b"[..]]);
        assert_eq!(read_packet(&mut r).expect("eof"), None);
        let huge = (MAX_PACKET as u32 + 1).to_be_bytes();
        assert!(read_packet(&mut &huge[..]).is_err());
        assert!(read_packet(&mut &[0u8, 0, 0, 0][..]).is_err());
        assert!(read_packet(&mut &[0u8, 0, 0, 9, b'L'][..]).is_err());
        assert!(read_packet(&mut &[0u8, 0][..]).is_err());
    }

    #[test]
    fn negotiation_takes_the_offered_actions_we_use() {
        let mut offer = Vec::new();
        offer.extend_from_slice(&6u32.to_be_bytes());
        offer.extend_from_slice(&0x1ffu32.to_be_bytes());
        offer.extend_from_slice(&0x1fffffu32.to_be_bytes());
        let (ours, steps) = negotiate(&offer).expect("answer");
        assert_eq!(&ours[..4], &6u32.to_be_bytes());
        assert_eq!(&ours[4..8], &0x71u32.to_be_bytes());
        // HELO, end of headers, unknown commands and DATA left out; no reply to connect,
        // MAIL, RCPT, header fields and body chunks (and to the left-out steps, should they
        // come); not HDR_LEADSPC (0x100000), nor the skip, reject-recipient or size steps.
        assert_eq!(steps, 0xff380 | 0x02 | 0x40);
        assert_eq!(&ours[8..], &steps.to_be_bytes());
        assert_eq!(negotiate(&[0, 0, 0, 6]), None);
    }

    #[test]
    fn negotiation_asks_only_for_the_steps_the_mta_offers() {
        let offer = |steps: &[u8]| {
            let mut o = Vec::new();
            o.extend_from_slice(&6u32.to_be_bytes());
            o.extend_from_slice(&0x1ffu32.to_be_bytes());
            o.extend_from_slice(steps);
            negotiate(&o).expect("answer")
        };
        // An older MTA that offers only the leave-out steps of milter version 2.
        let (ours, steps) = offer(&0x7fu32.to_be_bytes());
        assert_eq!(steps, SMFIP_NOHELO | SMFIP_NOEOH);
        assert_eq!(&ours[8..], &steps.to_be_bytes());
        let (ours, steps) = offer(&[]);
        assert_eq!((steps, &ours[8..]), (0, &[0u8, 0, 0, 0][..]));
        assert_eq!(no_reply_step(cmd::HEADER), SMFIP_NR_HDR);
        assert_eq!(no_reply_step(cmd::BODYEOB), 0);
    }
}

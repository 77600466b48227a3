//! The ledger of sent mail shared by a fleet of MTAs, in Redis or Valkey (`ledger.redis`): the
//! same keyed hashes as the ledger file (`backstop::proofs::ledger`), one key per sent
//! Message-ID, `backstop:ledger:HEX`, set with the ledger's retention as its time to live and
//! the time it was learnt as its value. Redis holds no Message-ID, only hashes keyed with the
//! fleet's ledger key, which never leaves the MTAs.
//!
//! Outbound mail is learnt with `SET ... EX`; a returned original's IDs are looked up with
//! `EXISTS`. Redis holds only what was learnt while it could be reached, so a Message-ID it
//! does not hold proves nothing (unlike the file's `ledger-not-sent`), and when it is down the
//! message is judged without it.

use std::time::Duration;

use backstop::proofs::ledger;
use backstop::proofs::spec::SharedLedger;

use crate::redis::{Address, Client, Error, Value};

/// The most IDs of one original looked up (an auto-reply's References can be long).
const MAX_IDS: usize = 20;

#[derive(Debug)]
pub struct RedisLedger {
    client: Client,
    key: [u8; 32],
    ttl_secs: u64,
}

impl RedisLedger {
    pub fn new(address: Address, timeout: Duration, key: [u8; 32], expire_days: u32) -> Self {
        RedisLedger {
            client: Client::new(address, timeout),
            key,
            ttl_secs: u64::from(expire_days) * 86_400,
        }
    }

    pub fn shown(&self) -> String {
        self.client.address().shown()
    }

    /// Asks the server once (at start, for the log).
    pub fn ping(&self) -> Result<(), Error> {
        self.client.command(&[b"PING"]).map(|_| ())
    }

    fn redis_key(&self, id: &str) -> Option<String> {
        let norm = ledger::normalize_id(id)?;
        let tag = ledger::id_tag(&self.key, &norm);
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        Some(format!("backstop:ledger:{hex}"))
    }

    /// Learns one sent Message-ID, at `now`.
    pub fn learn(&self, id: &str, now: i64) -> Result<(), Error> {
        let Some(key) = self.redis_key(id) else {
            return Ok(());
        };
        let (now, ttl) = (now.to_string(), self.ttl_secs.to_string());
        self.client
            .command(&[
                b"SET",
                key.as_bytes(),
                now.as_bytes(),
                b"EX",
                ttl.as_bytes(),
            ])
            .map(|_| ())
    }
}

impl SharedLedger for RedisLedger {
    fn find(&self, ids: &[String]) -> Result<Option<String>, String> {
        for id in ids.iter().take(MAX_IDS) {
            let Some(key) = self.redis_key(id) else {
                continue;
            };
            match self.client.command(&[b"EXISTS", key.as_bytes()]) {
                Ok(Value::Int(n)) if n > 0 => return Ok(Some(id.clone())),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(None)
    }
}

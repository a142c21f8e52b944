//! Client sessions: exactly-once execution of client requests.
//!
//! A client registers explicitly (a `register` operation through the log);
//! the op at which the registration committed is its `session`. Each client
//! has one request in flight and numbers requests 1, 2, 3, ... The table is
//! updated **only at commit** (TigerBeetle found that updating it with
//! uncommitted request numbers can lock a client out after a view change),
//! and keeps the last reply so a retried request gets the same answer.
//! At `clients_max` a registration evicts the session that committed least
//! recently; the table never grows beyond that.

use std::collections::BTreeMap;

use crate::vsr::message::{Message, HEADER_SIZE};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Op of the register that created this session.
    pub session: u64,
    /// Last committed request number.
    pub request: u32,
    /// Op of the last commit for this client (eviction order).
    pub op_last: u64,
    /// Reply to `request`, resent verbatim when the request is retried.
    pub reply: Message,
}

#[derive(Clone, Debug)]
pub struct ClientTable {
    sessions: BTreeMap<u128, Session>,
    clients_max: usize,
}

impl ClientTable {
    pub fn new(clients_max: usize) -> ClientTable {
        assert!(clients_max > 0);
        ClientTable { sessions: BTreeMap::new(), clients_max }
    }

    pub fn get(&self, client: u128) -> Option<&Session> {
        self.sessions.get(&client)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Register `client` at `op`. Returns the evicted client, if any.
    pub fn register(&mut self, client: u128, op: u64, reply: Message) -> Option<u128> {
        assert!(client != 0);
        let mut evicted = None;
        if !self.sessions.contains_key(&client) && self.sessions.len() == self.clients_max {
            let oldest =
                self.sessions.iter().min_by_key(|(id, s)| (s.op_last, **id)).map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.sessions.remove(&oldest);
                evicted = Some(oldest);
            }
        }
        self.sessions.insert(client, Session { session: op, request: 0, op_last: op, reply });
        assert!(self.sessions.len() <= self.clients_max);
        evicted
    }

    /// Record the committed `request` of `client` and its reply.
    pub fn commit(&mut self, client: u128, request: u32, op: u64, reply: Message) {
        let Some(session) = self.sessions.get_mut(&client) else {
            // The primary only prepares requests of registered clients, but a
            // session can be evicted between prepare and commit: then there is
            // nobody to reply to and nothing to record.
            return;
        };
        // (With the ClientTableBeforeCommit bug the number was already set.)
        assert!(request >= session.request, "client request numbers go back");
        assert!(op > session.op_last);
        session.request = request;
        session.op_last = op;
        session.reply = reply;
    }

    /// Only for the `ClientTableBeforeCommit` broken variant: record a
    /// request number that has not committed.
    #[cfg(feature = "sim-bugs")]
    pub fn bug_set_request(&mut self, client: u128, request: u32) {
        if let Some(session) = self.sessions.get_mut(&client) {
            session.request = session.request.max(request);
        }
    }

    #[cfg(not(feature = "sim-bugs"))]
    pub fn bug_set_request(&mut self, _client: u128, _request: u32) {}

    /// Canonical bytes (sorted by client id).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.sessions.len() as u32).to_le_bytes());
        for (client, session) in &self.sessions {
            out.extend_from_slice(&client.to_le_bytes());
            out.extend_from_slice(&session.session.to_le_bytes());
            out.extend_from_slice(&session.request.to_le_bytes());
            out.extend_from_slice(&session.op_last.to_le_bytes());
            let reply = session.reply.bytes();
            out.extend_from_slice(&(reply.len() as u32).to_le_bytes());
            out.extend_from_slice(reply);
        }
    }

    /// Decode from `bytes`, returning the table and the bytes consumed.
    pub fn decode(
        bytes: &[u8],
        clients_max: usize,
        message_size_max: usize,
    ) -> Result<(ClientTable, usize), &'static str> {
        let mut cursor = Cursor { bytes, offset: 0 };
        let count = u32::from_le_bytes(cursor.take()?) as usize;
        if count > clients_max {
            return Err("client table: more sessions than clients_max");
        }
        let mut table = ClientTable::new(clients_max);
        for _ in 0..count {
            let client = u128::from_le_bytes(cursor.take()?);
            let session = u64::from_le_bytes(cursor.take()?);
            let request = u32::from_le_bytes(cursor.take()?);
            let op_last = u64::from_le_bytes(cursor.take()?);
            let size = u32::from_le_bytes(cursor.take()?) as usize;
            if !(HEADER_SIZE..=message_size_max).contains(&size) {
                return Err("client table: reply size out of range");
            }
            let reply_bytes = cursor.slice(size)?;
            let reply = Message::parse(reply_bytes, message_size_max)
                .map_err(|_| "client table: corrupt reply")?;
            if client == 0
                || table
                    .sessions
                    .insert(client, Session { session, request, op_last, reply })
                    .is_some()
            {
                return Err("client table: duplicate or zero client");
            }
        }
        Ok((table, cursor.offset))
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn slice(&mut self, size: usize) -> Result<&'a [u8], &'static str> {
        let end = self.offset.checked_add(size).ok_or("client table: overflow")?;
        let slice = self.bytes.get(self.offset..end).ok_or("client table: truncated")?;
        self.offset = end;
        Ok(slice)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let slice = self.slice(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }
}

//! A simulated client of one replication group: registers a session, sends
//! one request at a time, follows the primary by rotating on timeouts, and
//! records what it observed for the linearizability checker.

use crate::sim::history::ObservedReply;
use crate::sim::prng::Prng;
use crate::vsr::message::{Command, Header, Message, OPERATION_REGISTER};
use crate::vsr::state_machine::{DeleteCondition, ObjectMeta, PutCondition, Request};

/// Ticks without a reply before the client retries at the next replica.
const REQUEST_TIMEOUT_TICKS: u64 = 30;
/// Keys per group: few, so that concurrent clients collide on keys.
const KEYS: u64 = 6;
/// Object writes in a batch request: 2 up to this.
const BATCH_SIZE_MAX: u64 = 8;
pub const BUCKET_ID: u64 = 1;

pub struct InFlight {
    pub message: Message,
    pub operation: u8,
    pub body: Vec<u8>,
    pub tick_invoked: u64,
    pub read_only: bool,
}

pub struct Client {
    pub id: u128,
    pub replica_count: u8,
    cluster: u128,
    group: u32,
    pub registered: bool,
    /// Last request number used for a write.
    request: u32,
    read_counter: u64,
    pub in_flight: Option<InFlight>,
    target: u8,
    tick_sent: u64,
    pub requests_done: u64,
    pub observed: Vec<ObservedReply>,
    /// Request checksums of every write sent: commits must trace to one.
    pub sent: Vec<u128>,
    pub evictions: u64,
    prng: Prng,
}

impl Client {
    pub fn new(id: u128, cluster: u128, group: u32, replica_count: u8, prng: Prng) -> Client {
        Client {
            id,
            replica_count,
            cluster,
            group,
            registered: false,
            request: 0,
            read_counter: 0,
            in_flight: None,
            target: (group % replica_count as u32) as u8,
            tick_sent: 0,
            requests_done: 0,
            observed: Vec::new(),
            sent: Vec::new(),
            evictions: 0,
            prng,
        }
    }

    fn header(&self, operation: u8, request: u32) -> Header {
        let mut header = Header::new(Command::Request);
        header.cluster.set(self.cluster);
        header.group.set(self.group);
        header.client.set(self.id);
        header.operation = operation;
        header.request.set(request);
        header.replica = u8::MAX; // Not a replica.
        header
    }

    /// Start the next request if idle. Returns the message to send, if any.
    pub fn next(&mut self, tick: u64, want_more: bool) -> Option<(u8, Message)> {
        if self.in_flight.is_some() {
            if tick < self.tick_sent + REQUEST_TIMEOUT_TICKS {
                return None;
            }
            // Retry the very same bytes at the next replica (exactly-once is
            // the replicas' job: the client table).
            self.target = (self.target + 1) % self.replica_count;
            self.tick_sent = tick;
            let message = self.in_flight.as_ref().map(|f| f.message.clone())?;
            return Some((self.target, message));
        }
        if !self.registered {
            let header = self.header(OPERATION_REGISTER, 0);
            let message = Message::new(header, &[]);
            self.in_flight = Some(InFlight {
                message: message.clone(),
                operation: OPERATION_REGISTER,
                body: Vec::new(),
                tick_invoked: tick,
                read_only: false,
            });
            self.tick_sent = tick;
            return Some((self.target, message));
        }
        if !want_more {
            return None;
        }
        let request = self.workload_request();
        let mut body = Vec::new();
        let operation = request.encode(&mut body);
        let read_only =
            crate::vsr::state_machine::Operation::from_u8(operation).is_some_and(|o| o.read_only());
        let number = if read_only { self.request.max(1) } else { self.request + 1 };
        let mut header = self.header(operation, number);
        if read_only {
            // Makes every read's checksum unique, so a late reply to an
            // earlier read can never be taken for this one.
            self.read_counter += 1;
            header.timestamp.set(self.read_counter);
        } else {
            self.request += 1;
        }
        let message = Message::new(header, &body);
        if !read_only {
            self.sent.push(message.checksum());
        }
        self.in_flight = Some(InFlight {
            message: message.clone(),
            operation,
            body,
            tick_invoked: tick,
            read_only,
        });
        self.tick_sent = tick;
        Some((self.target, message))
    }

    fn workload_request(&mut self) -> Request {
        let key = self.workload_key();
        let roll = self.prng.range_inclusive(0, 99);
        match roll {
            0..=29 => self.workload_put(key),
            30..=39 => self.workload_delete(key),
            // Batches: several object writes in one request and one prepare.
            40..=49 => {
                let count = self.prng.range_inclusive(2, BATCH_SIZE_MAX);
                let mut requests = Vec::new();
                for _ in 0..count {
                    let key = self.workload_key();
                    requests.push(if self.prng.range_inclusive(0, 3) == 0 {
                        self.workload_delete(key)
                    } else {
                        self.workload_put(key)
                    });
                }
                Request::Batch(requests)
            }
            50..=84 => Request::HeadObject { bucket_id: BUCKET_ID, key },
            85..=94 => Request::ListObjects {
                bucket_id: BUCKET_ID,
                prefix: b"key-".to_vec(),
                start_after: Vec::new(),
                limit: 4,
            },
            _ => Request::CreateBucket {
                name: format!("bucket-{}", self.prng.range_inclusive(0, 3)).into_bytes(),
            },
        }
    }

    fn workload_key(&mut self) -> Vec<u8> {
        format!("key-{}", self.prng.range_inclusive(0, KEYS - 1)).into_bytes()
    }

    fn workload_put(&mut self, key: Vec<u8>) -> Request {
        let etag = format!("etag-{}", self.prng.range_inclusive(0, 3)).into_bytes();
        let condition = match self.prng.range_inclusive(0, 9) {
            0 => PutCondition::IfNoneMatchStar,
            1 => PutCondition::IfMatch(
                format!("etag-{}", self.prng.range_inclusive(0, 3)).into_bytes(),
            ),
            _ => PutCondition::None,
        };
        let size = self.prng.range_inclusive(0, 64);
        let mut data = vec![0u8; size as usize];
        self.prng.bytes(&mut data);
        let object = ObjectMeta {
            size,
            etag,
            inline_data: data,
            content_type: b"application/octet-stream".to_vec(),
            ..ObjectMeta::default()
        };
        Request::PutObject { bucket_id: BUCKET_ID, key, condition, object }
    }

    fn workload_delete(&mut self, key: Vec<u8>) -> Request {
        let condition = if self.prng.range_inclusive(0, 4) == 0 {
            DeleteCondition::IfMatch(
                format!("etag-{}", self.prng.range_inclusive(0, 3)).into_bytes(),
            )
        } else {
            DeleteCondition::None
        };
        Request::DeleteObject { bucket_id: BUCKET_ID, key, condition }
    }

    /// A message for this client. Returns true if it completed a request.
    pub fn on_message(&mut self, message: &Message, tick: u64) -> bool {
        let header = message.header();
        if header.client.get() != self.id {
            return false;
        }
        let Some(in_flight) = &self.in_flight else { return false };
        match message.command() {
            Command::Eviction => {
                // Our session is gone: the outcome of an in-flight write is
                // unknown (it may or may not commit). Register again.
                self.evictions += 1;
                self.registered = false;
                self.in_flight = None;
                false
            }
            Command::Reply => {
                let matches = if in_flight.read_only {
                    header.context.get() == in_flight.message.checksum()
                } else {
                    header.request.get() == in_flight.message.header().request.get()
                        && header.operation == in_flight.operation
                };
                if !matches {
                    return false;
                }
                self.target = header.replica.min(self.replica_count - 1);
                let Some(done) = self.in_flight.take() else { return false };
                if done.operation == OPERATION_REGISTER {
                    self.registered = true;
                    self.request = 0;
                    return false;
                }
                self.observed.push(ObservedReply {
                    client: self.id,
                    request: done.message.header().request.get(),
                    operation: done.operation,
                    body: done.body,
                    reply: message.body().to_vec(),
                    tick_invoked: done.tick_invoked,
                    tick_completed: tick,
                    op: (!done.read_only).then(|| header.op.get()),
                });
                self.requests_done += 1;
                true
            }
            _ => false,
        }
    }
}

//! The object client on glommio: links to every replica of every group,
//! a pump task that feeds the sans-IO [`ObjectClient`] (messages, 10 ms
//! ticks) and delivers its completions, and async methods for the S3
//! front end and tools: metadata reads and writes, chunk reads and writes,
//! and whole-object put/get built on them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::transport::{
    self, Conn, ConnIds, Inbox, Link, LocalAcceptor, SharedInbox, TransportLimits,
};
use crate::client::cache::{CacheStats, ChunkCache};
use crate::client::{group_of, ClientConfig, ClientError, Handle, ObjectClient, Outcome};
use crate::vsr::message::{Message, HEADER_SIZE};
use crate::vsr::state_machine::{
    ChunkRef, DeleteCondition, Object, ObjectMeta, PutCondition, Reply, Request,
};

/// Chunks of one object written or read concurrently.
pub const OBJECT_CHUNKS_IN_FLIGHT: usize = 4;

#[derive(Default)]
struct Waiting {
    done: BTreeMap<Handle, Result<Outcome, ClientError>>,
    wakers: BTreeMap<Handle, Waker>,
}

pub struct ClientDriver {
    client: RefCell<ObjectClient>,
    /// links[group][replica].
    links: Vec<Vec<Rc<Link>>>,
    inbox: SharedInbox,
    waiting: RefCell<Waiting>,
    cache: RefCell<ChunkCache>,
    tick: Duration,
    pub options: DriverOptions,
}

/// A chunk read started by [`ClientDriver::chunk_read_start`].
pub enum ChunkRead {
    /// Served from this driver's chunk cache.
    Cached(Message),
    /// Sent to a replica; its answer is kept in the cache once verified.
    Pending(Result<Handle, ClientError>, ChunkRef),
}

/// How a driver lays out object data.
#[derive(Clone, Copy, Debug)]
pub struct DriverOptions {
    /// Object data up to this size travels inline in the metadata op.
    pub inline_size_max: usize,
    /// Chunk size of object data.
    pub chunk_size: usize,
    /// The node whose replicas are read first (this node's, for a front end).
    pub preferred_replica: u8,
    /// Bytes of verified chunks kept for later reads (0: none); see
    /// `client::cache`.
    pub chunk_cache_bytes: usize,
}

impl Default for DriverOptions {
    fn default() -> DriverOptions {
        DriverOptions {
            inline_size_max: 4096,
            chunk_size: 1 << 20,
            preferred_replica: 0,
            chunk_cache_bytes: 0,
        }
    }
}

/// Where shard `group` of node `node` listens: base port + group.
pub fn replica_addrs(peers: &[SocketAddr], groups: u32) -> Vec<Vec<SocketAddr>> {
    (0..groups)
        .map(|group| {
            peers
                .iter()
                .map(|base| SocketAddr::new(base.ip(), base.port().saturating_add(group as u16)))
                .collect()
        })
        .collect()
}

impl ClientDriver {
    /// Connect to `addrs[group][replica]` and start the pump. `local`:
    /// (group, replica, acceptor) of a replica on this executor, reached
    /// in process instead of through its address.
    pub fn start(
        config: ClientConfig,
        addrs: Vec<Vec<SocketAddr>>,
        limits: TransportLimits,
        seed: u128,
        options: DriverOptions,
        local: Option<(u32, u8, Rc<LocalAcceptor>)>,
    ) -> Rc<ClientDriver> {
        assert_eq!(addrs.len(), config.group_count as usize);
        let inbox = Inbox::new(&limits);
        let ids = Rc::new(ConnIds::default());
        let links = addrs
            .iter()
            .enumerate()
            .map(|(group, replicas)| {
                replicas
                    .iter()
                    .enumerate()
                    .map(|(replica, addr)| match &local {
                        Some((g, r, acceptor))
                            if *g as usize == group && *r as usize == replica =>
                        {
                            transport::link_start_local(
                                acceptor.clone(),
                                ids.clone(),
                                &inbox,
                                limits,
                                Rc::new(|_: &Conn| {}),
                            )
                        }
                        _ => transport::link_start(
                            *addr,
                            ids.clone(),
                            &inbox,
                            limits,
                            Rc::new(|_: &Conn| {}),
                        ),
                    })
                    .collect()
            })
            .collect();
        let driver = Rc::new(ClientDriver {
            client: RefCell::new(ObjectClient::new(config, seed)),
            links,
            inbox,
            waiting: RefCell::new(Waiting::default()),
            cache: RefCell::new(ChunkCache::new(options.chunk_cache_bytes)),
            tick: Duration::from_millis(10),
            options,
        });
        let pump = Rc::downgrade(&driver);
        glommio::spawn_local(async move {
            let mut tick_next = Instant::now();
            while let Some(driver) = pump.upgrade() {
                tick_next = driver.turn(tick_next);
                let wait = tick_next.saturating_duration_since(Instant::now());
                let inbox = driver.inbox.clone();
                drop(driver);
                let ready = poll_fn(|context| {
                    let mut inbox = inbox.borrow_mut();
                    if inbox.is_empty() {
                        inbox.register_owner(context.waker());
                        Poll::Pending
                    } else {
                        Poll::Ready(Ok::<(), glommio::GlommioError<()>>(()))
                    }
                });
                let _ = glommio::timer::timeout(wait.max(Duration::from_micros(1)), ready).await;
            }
        })
        .detach();
        driver
    }

    pub fn config(&self) -> ClientConfig {
        *self.client.borrow().config()
    }

    pub fn stats(&self) -> crate::client::ClientStats {
        self.client.borrow().stats
    }

    /// Links connected, of all replicas of all groups.
    pub fn links_connected(&self) -> (usize, usize) {
        let all: Vec<&Rc<Link>> = self.links.iter().flatten().collect();
        (all.iter().filter(|l| l.connected()).count(), all.len())
    }

    /// One pump turn: messages in, a tick if due, sends out, completions.
    fn turn(&self, mut tick_next: Instant) -> Instant {
        let (messages, _closed) = self.inbox.borrow_mut().drain();
        let mut client = self.client.borrow_mut();
        for (_, message) in messages {
            client.on_message(message);
        }
        let now = Instant::now();
        if now >= tick_next {
            client.on_tick();
            tick_next =
                if now > tick_next + self.tick { now + self.tick } else { tick_next + self.tick };
        }
        drop(client);
        self.flush();
        tick_next
    }

    /// Send what the client queued and hand out its completions.
    fn flush(&self) {
        let mut client = self.client.borrow_mut();
        for send in client.take_sends() {
            let link = &self.links[send.group as usize][send.replica as usize];
            // A dropped send is retried by the client's timeouts.
            let _ = link.send(send.message);
        }
        let completions = client.take_completions();
        drop(client);
        if completions.is_empty() {
            return;
        }
        let mut waiting = self.waiting.borrow_mut();
        for (handle, result) in completions {
            waiting.done.insert(handle, result);
            if let Some(waker) = waiting.wakers.remove(&handle) {
                waker.wake();
            }
        }
    }

    async fn wait(&self, handle: Result<Handle, ClientError>) -> Result<Outcome, ClientError> {
        let handle = handle?;
        self.flush();
        poll_fn(|context| {
            let mut waiting = self.waiting.borrow_mut();
            match waiting.done.remove(&handle) {
                Some(result) => Poll::Ready(result),
                None => {
                    waiting.wakers.insert(handle, context.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    async fn reply(&self, handle: Result<Handle, ClientError>) -> Result<Reply, ClientError> {
        match self.wait(handle).await? {
            Outcome::Reply(reply) => Ok(reply),
            _ => Err(ClientError::BadReply),
        }
    }

    pub async fn write(&self, group: u32, request: Request) -> Result<Reply, ClientError> {
        let handle = self.client.borrow_mut().write(group, request);
        self.reply(handle).await
    }

    /// Queue a metadata write now (so concurrent callers batch); `replied`
    /// waits for its reply.
    pub fn write_start(&self, group: u32, request: Request) -> Result<Handle, ClientError> {
        let handle = self.client.borrow_mut().write(group, request);
        self.flush();
        handle
    }

    pub async fn replied(&self, handle: Result<Handle, ClientError>) -> Result<Reply, ClientError> {
        self.reply(handle).await
    }

    pub async fn read(&self, group: u32, request: Request) -> Result<Reply, ClientError> {
        let handle = self.client.borrow_mut().read(group, request);
        self.reply(handle).await
    }

    /// Send a read now (several may be in flight); `replied` waits for it.
    pub fn read_start(&self, group: u32, request: Request) -> Result<Handle, ClientError> {
        let handle = self.client.borrow_mut().read(group, request);
        self.flush();
        handle
    }

    /// Start writing one chunk to every replica of `group` (sent at once:
    /// several may be in flight); `chunk_written` waits for its quorum.
    pub fn chunk_write_start(
        &self,
        group: u32,
        id: u128,
        data: &[u8],
    ) -> Result<Handle, ClientError> {
        // In a pooled frame (`frames`), as `chunk_write_frame_start` sends.
        let mut frame = super::frames::take(HEADER_SIZE + data.len());
        let Some(bytes) = Rc::get_mut(&mut frame) else {
            unreachable!("frames::take returns a unique frame")
        };
        bytes[HEADER_SIZE..].copy_from_slice(data);
        self.chunk_write_frame_start(group, id, frame)
    }

    /// `chunk_write_start` of a frame the caller filled after
    /// `HEADER_SIZE` bytes of header room (`Client::chunk_write_frame`).
    pub fn chunk_write_frame_start(
        &self,
        group: u32,
        id: u128,
        frame: Rc<[u8]>,
    ) -> Result<Handle, ClientError> {
        let handle = {
            let mut client = self.client.borrow_mut();
            let handle = client.chunk_write_frame(group, id, frame);
            if let Some(frame) = handle.as_ref().ok().and_then(|h| client.chunk_write_frame_of(*h))
            {
                super::frames::track(&frame);
            }
            handle
        };
        self.flush();
        handle
    }

    /// The frame a started chunk write sends (sealed: read-only from here).
    pub fn chunk_frame(&self, handle: &Result<Handle, ClientError>) -> Option<Rc<[u8]>> {
        let handle = handle.as_ref().ok()?;
        self.client.borrow().chunk_write_frame_of(*handle)
    }

    /// The crc32c of a chunk once a quorum has it durable.
    pub async fn chunk_written(
        &self,
        handle: Result<Handle, ClientError>,
    ) -> Result<u32, ClientError> {
        match self.wait(handle).await? {
            Outcome::ChunkWritten { crc32c } => Ok(crc32c),
            _ => Err(ClientError::BadReply),
        }
    }

    pub async fn chunk_write(&self, group: u32, id: u128, data: &[u8]) -> Result<u32, ClientError> {
        let handle = self.chunk_write_start(group, id, data);
        self.chunk_written(handle).await
    }

    /// Start reading one chunk; `chunk_read_done` waits for its bytes.
    pub fn chunk_read_start(&self, group: u32, chunk: ChunkRef) -> ChunkRead {
        if let Some(message) = self.cache.borrow_mut().get(&chunk) {
            return ChunkRead::Cached(message);
        }
        let handle =
            self.client.borrow_mut().chunk_read(group, chunk, self.options.preferred_replica);
        self.flush();
        ChunkRead::Pending(handle, chunk)
    }

    /// A chunk's verified bytes (the message's body).
    pub async fn chunk_read_done(&self, read: ChunkRead) -> Result<Message, ClientError> {
        let (handle, chunk) = match read {
            ChunkRead::Cached(message) => return Ok(message),
            ChunkRead::Pending(handle, chunk) => (handle, chunk),
        };
        match self.wait(handle).await? {
            Outcome::ChunkRead(message) => {
                // The object client verified length and crc32c already.
                self.cache.borrow_mut().insert(&chunk, message.clone());
                Ok(message)
            }
            _ => Err(ClientError::BadReply),
        }
    }

    pub async fn chunk_read(&self, group: u32, chunk: ChunkRef) -> Result<Message, ClientError> {
        let read = self.chunk_read_start(group, chunk);
        self.chunk_read_done(read).await
    }

    /// The chunk cache's counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.borrow().stats()
    }

    pub fn group_of(&self, bucket_id: u64, key: &[u8]) -> u32 {
        group_of(bucket_id, key, self.config().group_count)
    }

    // ------------------------------------------------------------------
    // Whole objects (tools and tests; the S3 front end streams instead).
    // ------------------------------------------------------------------

    /// Create a bucket (the catalog is group 0); returns its id.
    pub async fn bucket_create(&self, name: &[u8]) -> Result<Result<u64, Reply>, ClientError> {
        match self.write(0, Request::CreateBucket { name: name.to_vec() }).await? {
            Reply::BucketCreated { id } => Ok(Ok(id)),
            other => Ok(Err(other)),
        }
    }

    pub async fn bucket_id(&self, name: &[u8]) -> Result<Option<u64>, ClientError> {
        match self.read(0, Request::HeadBucket { name: name.to_vec() }).await? {
            Reply::Bucket { id, .. } => Ok(Some(id)),
            _ => Ok(None),
        }
    }

    /// Put a whole object: inline if small, else chunks (a few in flight)
    /// to a quorum, then the metadata op. Returns the commit's reply.
    pub async fn object_put(
        &self,
        bucket_id: u64,
        key: &[u8],
        data: &[u8],
        mut meta: ObjectMeta,
        chunk_ids: &mut dyn FnMut() -> u128,
    ) -> Result<Reply, ClientError> {
        let group = self.group_of(bucket_id, key);
        meta.size = data.len() as u64;
        if data.len() <= self.options.inline_size_max {
            meta.inline_data = data.to_vec();
        } else {
            meta.chunks = self.chunks_write(group, data, chunk_ids).await?;
        }
        let request = Request::PutObject {
            bucket_id,
            key: key.to_vec(),
            condition: PutCondition::None,
            object: meta,
        };
        self.write(group, request).await
    }

    async fn chunks_write(
        &self,
        group: u32,
        data: &[u8],
        chunk_ids: &mut dyn FnMut() -> u128,
    ) -> Result<Vec<ChunkRef>, ClientError> {
        let pieces: Vec<&[u8]> = data.chunks(self.options.chunk_size).collect();
        let ids: Vec<u128> = pieces.iter().map(|_| chunk_ids()).collect();
        let mut chunks = Vec::with_capacity(pieces.len());
        for (window, ids) in
            pieces.chunks(OBJECT_CHUNKS_IN_FLIGHT).zip(ids.chunks(OBJECT_CHUNKS_IN_FLIGHT))
        {
            let writes: Vec<_> = window
                .iter()
                .zip(ids)
                .map(|(piece, id)| self.chunk_write_start(group, *id, piece))
                .collect();
            for ((piece, id), write) in window.iter().zip(ids).zip(writes) {
                let crc32c = self.chunk_written(write).await?;
                chunks.push(ChunkRef { id: id.to_le_bytes(), length: piece.len() as u32, crc32c });
            }
        }
        Ok(chunks)
    }

    /// Get a whole object: its metadata (linearizable), then its data.
    pub async fn object_get(
        &self,
        bucket_id: u64,
        key: &[u8],
    ) -> Result<Option<(Object, Vec<u8>)>, ClientError> {
        let group = self.group_of(bucket_id, key);
        let reply = self.read(group, Request::HeadObject { bucket_id, key: key.to_vec() }).await?;
        let object = match reply {
            Reply::Object(object) => object,
            Reply::NoSuchKey => return Ok(None),
            _ => return Err(ClientError::BadReply),
        };
        if object.meta.chunks.is_empty() {
            let data = object.meta.inline_data.clone();
            return Ok(Some((object, data)));
        }
        let mut data = Vec::with_capacity(object.meta.size as usize);
        for window in object.meta.chunks.chunks(OBJECT_CHUNKS_IN_FLIGHT) {
            let reads: Vec<_> =
                window.iter().map(|chunk| self.chunk_read_start(group, *chunk)).collect();
            for read in reads {
                data.extend_from_slice(self.chunk_read_done(read).await?.body());
            }
        }
        Ok(Some((object, data)))
    }

    pub async fn object_delete(&self, bucket_id: u64, key: &[u8]) -> Result<Reply, ClientError> {
        let group = self.group_of(bucket_id, key);
        let request = Request::DeleteObject {
            bucket_id,
            key: key.to_vec(),
            condition: DeleteCondition::None,
        };
        self.write(group, request).await
    }

    pub fn stop(&self) {
        for link in self.links.iter().flatten() {
            link.stop();
        }
    }
}

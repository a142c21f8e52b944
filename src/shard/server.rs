//! One shard of a node: its group's replica on the replica file, its chunk
//! store on the chunk file, its sockets, and the event loop that joins
//! them on one glommio executor. Nothing is shared with other shards.
//!
//! The loop: take what the connections received, the WAL's durable writes
//! and the chunk file's completions; tick the replica and the chunk store
//! when 10 ms have passed (real time enters the sans-IO cores only as
//! ticks, plus the wall clock for prepare timestamps); execute every action
//! (sends into bounded connection queues, writes to the WAL driver, chunk
//! requests to the chunk driver); then sleep until any of them has more.
//!
//! Connections: the shard listens on its replica address for peers and
//! clients alike, and keeps one outbound link to each peer replica of its
//! group; replica messages go out on links, answers to clients go back on
//! the connection their request came on (found by client id for replies
//! the replica addresses to a client).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glommio::net::TcpListener;

use super::chunks::{ChunkDriver, ChunkFiles};
use super::log::Log;
use super::metrics::ShardStatus;
use super::storage::ReplicaFile;
use super::transport::{
    self, Conn, ConnId, ConnIds, ConnMap, Inbox, Link, SharedInbox, TransportLimits,
};
use super::wal::WalDriver;
use crate::chunkstore::service::{ChunkOut, ChunkService, ChunkServiceConfig};
use crate::chunkstore::{self, ChunkStore};
use crate::vsr::config::Config;
use crate::vsr::message::{Command, Message, HEADER_SIZE};
use crate::vsr::replica::{format, Action, Event, Replica, Status, Target};
use crate::vsr::state_machine::{ObjectStore, ObjectStoreLimits};

/// Everything one shard needs, decided by the process before it starts.
#[derive(Clone)]
pub struct ShardParams {
    pub cluster: u128,
    pub node: u8,
    pub group: u32,
    /// This shard's replica address on every node (index = node = replica).
    pub peers: Vec<SocketAddr>,
    pub data_dir: PathBuf,
    /// How replica-file writes become durable (`--wal-sync`).
    pub wal_sync: super::storage::WalSync,
    pub vsr: Config,
    pub limits: ObjectStoreLimits,
    pub chunks: chunkstore::Config,
    pub service: ChunkServiceConfig,
    pub tick: Duration,
    pub transport: TransportLimits,
    pub status: Arc<ShardStatus>,
    pub shutdown: Arc<AtomicBool>,
    /// How long a clean shutdown may wait for in-flight writes.
    pub shutdown_wait: Duration,
    /// Every node's base address (the object client of the S3 front end
    /// talks to every group) and the number of groups.
    pub peer_bases: Vec<SocketAddr>,
    pub group_count: u32,
    /// The S3 front end of this shard, if the node serves one.
    pub http: Option<(SocketAddr, super::s3::S3Config)>,
}

/// Client ids remembered for routing replies (bounded; a forgotten client
/// times out and resends, which teaches us its connection again).
const CLIENTS_ROUTED_MAX: usize = 65_536;

struct Shard {
    params: ShardParams,
    log: Log,
    replica: Replica<ObjectStore>,
    wal: WalDriver,
    store: ChunkStore,
    chunk_driver: ChunkDriver,
    service: ChunkService,
    inbox: SharedInbox,
    conns: ConnMap,
    links: Vec<Option<Rc<Link>>>,
    clients: BTreeMap<u128, ConnId>,
    conn_clients: BTreeMap<ConnId, Vec<u128>>,
    out: Vec<ChunkOut>,
    dropped: u64,
    view_last: u32,
    commit_started: BTreeMap<u64, Instant>,
}

/// Run one shard until shutdown or a fatal error (a failed disk write: the
/// process must exit and recover from its peers).
pub async fn run(params: ShardParams) -> Result<(), String> {
    let log = Log { node: params.node, shard: Some(params.group) };
    let dir = params.data_dir.clone();
    let layout = params.vsr.layout();
    if !ReplicaFile::exists(&dir) {
        log.info(format!(
            "formatting {} ({} MiB)",
            ReplicaFile::path_in(&dir).display(),
            super::storage::ZoneOffsets::new(&layout).total >> 20
        ));
        let formatted = format(&params.vsr, &ObjectStore::new(params.limits));
        ReplicaFile::create(&dir, layout, &formatted).await.map_err(|e| e.to_string())?;
    }
    let file =
        Rc::new(ReplicaFile::open(&dir, layout, params.wal_sync).await.map_err(|e| e.to_string())?);
    let mut reader = file.reader().map_err(|e| e.to_string())?;
    let seed = seed_from_os();
    let replica =
        Replica::open(params.vsr.clone(), ObjectStore::new(params.limits), &mut reader, seed)
            .map_err(|e| format!("{}: cannot open the replica: {e:?}", file.path().display()))?;
    if reader.errors > 0 {
        log.warn(format!(
            "{} read errors opening the replica file (repaired from peers)",
            reader.errors
        ));
    }
    if !ChunkFiles::exists(&dir) {
        log.info(format!(
            "formatting {} ({} MiB)",
            ChunkFiles::path_in(&dir).display(),
            super::chunks::file_size(&params.chunks) >> 20
        ));
        ChunkFiles::create(&dir, &params.chunks).await.map_err(|e| e.to_string())?;
    }
    let files = ChunkFiles::open(&dir, &params.chunks).await.map_err(|e| e.to_string())?;
    let recovered = files.recover().await.map_err(|e| e.to_string())?;
    log.info(format!("chunk store: {}", recovered.summary()));
    log.info(format!(
        "replica {} of group {}: view {} op {} commit {} checkpoint {}",
        params.node,
        params.group,
        replica.view(),
        replica.op(),
        replica.commit_min(),
        replica.checkpoint_op()
    ));
    let inbox = Inbox::new(&params.transport);
    let ids = Rc::new(ConnIds::default());
    let conns = Rc::new(RefCell::new(BTreeMap::new()));
    listen(&params, &log, &inbox, &ids, &conns)?;
    let links = params
        .peers
        .iter()
        .enumerate()
        .map(|(index, addr)| {
            (index != params.node as usize).then(|| {
                transport::link_start(
                    *addr,
                    ids.clone(),
                    &inbox,
                    params.transport,
                    Rc::new(|_: &Conn| {}),
                )
            })
        })
        .collect();
    if let Some((addr, config)) = &params.http {
        // This shard's own replica is on this executor: the front end
        // reaches it in process, not through loopback TCP.
        let local = transport::LocalAcceptor::new(
            params.peers[params.node as usize],
            &inbox,
            &ids,
            &conns,
            params.transport,
        );
        front_end_start(&params, *addr, config.clone(), local, &log)?;
    }
    let mut shard = Shard {
        service: ChunkService::new(params.service),
        chunk_driver: files.driver(params.tick),
        store: recovered.store,
        wal: WalDriver::new(file),
        replica,
        log,
        inbox,
        conns,
        links,
        clients: BTreeMap::new(),
        conn_clients: BTreeMap::new(),
        out: Vec::new(),
        dropped: 0,
        view_last: u32::MAX,
        commit_started: BTreeMap::new(),
        params,
    };
    shard.params.status.up.store(1, Ordering::Relaxed);
    let result = shard.event_loop().await;
    shard.params.status.up.store(0, Ordering::Relaxed);
    result
}

/// Start this shard's S3 front end: its own object client (sessions and
/// links to every group, this node's replicas read first) and listener.
fn front_end_start(
    params: &ShardParams,
    addr: SocketAddr,
    config: super::s3::S3Config,
    local: Rc<transport::LocalAcceptor>,
    log: &Log,
) -> Result<(), String> {
    use super::client_driver::{replica_addrs, ClientDriver, DriverOptions};
    let replica_count = params.peer_bases.len() as u8;
    let mut client =
        crate::client::ClientConfig::production(params.cluster, replica_count, params.group_count);
    client.message_size_max = params.vsr.message_size_max as usize;
    client.sessions_per_group = config.sessions_per_group;
    let options = DriverOptions {
        inline_size_max: config.inline_size_max,
        chunk_size: config.chunk_size,
        preferred_replica: params.node,
        chunk_cache_bytes: config.chunk_cache_bytes,
    };
    let seed = u128::from(seed_from_os()) << 64 | u128::from(seed_from_os());
    let driver = ClientDriver::start(
        client,
        replica_addrs(&params.peer_bases, params.group_count),
        params.transport,
        seed,
        options,
        Some((params.group, params.node, local)),
    );
    let context = super::s3::S3Context::new(driver, config, *log);
    // The front end's counters (chunk cache, MD5 lanes) join the shard's
    // metrics once a second.
    let (weak, status) = (Rc::downgrade(&context), params.status.clone());
    glommio::spawn_local(async move {
        while let Some(context) = weak.upgrade() {
            let stats = context.driver.cache_stats();
            let md5 = context.md5.stats();
            drop(context);
            status.chunk_cache_hits_total.store(stats.hits, Ordering::Relaxed);
            status.chunk_cache_misses_total.store(stats.misses, Ordering::Relaxed);
            status.chunk_cache_bytes.store(stats.bytes, Ordering::Relaxed);
            status.md5_bytes_total.store(md5.bytes_hashed, Ordering::Relaxed);
            status.md5_lane_passes_total.store(md5.lane_passes, Ordering::Relaxed);
            status.md5_lanes_used_total.store(md5.lanes_used, Ordering::Relaxed);
            status.md5_vector_bytes_total.store(md5.bytes_vector, Ordering::Relaxed);
            let (reused, allocated) = super::frames::stats();
            status.frames_reused_total.store(reused, Ordering::Relaxed);
            status.frames_allocated_total.store(allocated, Ordering::Relaxed);
            glommio::timer::sleep(Duration::from_secs(1)).await;
        }
    })
    .detach();
    super::s3::serve(addr, context)
}

/// Bind the replica address and accept. glommio binds with SO_REUSEPORT,
/// which would silently share the port with another process listening on
/// it (two nodes configured with one port), so a listener that answers a
/// connect first is refused. (A plain bind as the probe does not work: it
/// fails on the TIME_WAIT sockets a killed predecessor leaves behind.)
fn listen(
    params: &ShardParams,
    log: &Log,
    inbox: &SharedInbox,
    ids: &Rc<ConnIds>,
    conns: &ConnMap,
) -> Result<(), String> {
    let addr = params.peers[params.node as usize];
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        return Err(format!(
            "cannot listen on {addr} (replica port of shard {}): another process is listening \
             there; is another node using it? give each node its own base port in --peers",
            params.group
        ));
    }
    let listener = TcpListener::bind(addr).map_err(|e| format!("listen on {addr}: {e}"))?;
    log.info(format!("listening for replicas and clients on {addr}"));
    let (inbox, ids, conns, limits, log) =
        (inbox.clone(), ids.clone(), conns.clone(), params.transport, *log);
    glommio::spawn_local(async move {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    let conn = transport::connection_start(stream, ids.next(), &inbox, limits);
                    conns.borrow_mut().insert(conn.id, conn);
                }
                Err(error) => {
                    // EMFILE and the like: back off instead of spinning.
                    log.warn(format!("accept on {addr}: {error}"));
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .detach();
    Ok(())
}

fn seed_from_os() -> u64 {
    super::random::random_u128() as u64
}

fn realtime_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
}

impl Shard {
    async fn event_loop(&mut self) -> Result<(), String> {
        let tick = self.params.tick;
        let mut tick_next = Instant::now() + tick;
        let mut stopping_since: Option<Instant> = None;
        loop {
            self.receive();
            self.wal_completions()?;
            self.chunk_completions()?;
            let now = Instant::now();
            if now >= tick_next {
                // A late loop ticks once, not in a burst.
                tick_next = if now > tick_next + tick { now + tick } else { tick_next + tick };
                self.on_tick();
            }
            self.replica_actions();
            // Group commit that adapts to load: with no batch at the disk,
            // what this turn appended goes now; while one is in flight,
            // appends gather until it completes (or the batch fills, or
            // batch_delay_ticks pass). Waiting for the tick instead cost
            // every lone chunk write up to 10 ms (perf/knob.sh
            // --inline-max: 4 KiB PUTs as chunks at one connection).
            if self.store.batches_in_flight() == 0 && self.store.batch_open_records() > 0 {
                self.store.flush();
            }
            self.chunk_driver.submit(&mut self.store);
            self.send_out();
            if self.params.shutdown.load(Ordering::Relaxed) {
                let since = *stopping_since.get_or_insert_with(|| {
                    self.log.info("shutting down: finishing in-flight writes");
                    self.service.stop();
                    Instant::now()
                });
                let idle = self.wal.in_flight() == 0
                    && self.store.records_pending() == 0
                    && self.service.idle();
                if idle || since.elapsed() > self.params.shutdown_wait {
                    self.log.info(if idle {
                        "stopped cleanly: every write durable"
                    } else {
                        "stopped with writes still in flight (none acknowledged)"
                    });
                    return Ok(());
                }
            }
            self.wait(tick_next).await;
        }
    }

    /// Sleep until the inbox, the WAL or the chunk file has something, or
    /// the next tick is due.
    async fn wait(&self, tick_next: Instant) {
        let now = Instant::now();
        if tick_next <= now {
            return;
        }
        let ready = poll_fn(|context| {
            let mut inbox = self.inbox.borrow_mut();
            if !inbox.is_empty() || self.wal.has_durable() || self.chunk_driver.has_completions() {
                return Poll::Ready(Ok::<(), glommio::GlommioError<()>>(()));
            }
            inbox.register_owner(context.waker());
            self.wal.register_waker(context.waker());
            self.chunk_driver.register_waker(context.waker());
            Poll::Pending
        });
        let _ = glommio::timer::timeout(tick_next - now, ready).await;
    }

    fn receive(&mut self) {
        let (messages, closed) = self.inbox.borrow_mut().drain();
        for conn in closed {
            self.conns.borrow_mut().remove(&conn);
            for client in self.conn_clients.remove(&conn).unwrap_or_default() {
                if self.clients.get(&client) == Some(&conn) {
                    self.clients.remove(&client);
                }
            }
        }
        for (conn, message) in messages {
            self.on_message(conn, message);
        }
    }

    fn client_seen(&mut self, client: u128, conn: ConnId) {
        if client == 0 || self.clients.get(&client) == Some(&conn) {
            return;
        }
        if self.clients.len() >= CLIENTS_ROUTED_MAX && !self.clients.contains_key(&client) {
            return;
        }
        self.clients.insert(client, conn);
        self.conn_clients.entry(conn).or_default().push(client);
    }

    fn drop_message(&mut self) {
        self.dropped += 1;
    }

    fn on_message(&mut self, conn: ConnId, message: Message) {
        let header = *message.header();
        if header.cluster.get() != self.params.cluster || header.group.get() != self.params.group {
            return self.drop_message();
        }
        let replica_size_max = self.params.vsr.message_size_max as usize;
        match message.command() {
            Command::ChunkWrite => {
                self.client_seen(header.client.get(), conn);
                let mut out = std::mem::take(&mut self.out);
                self.service.on_write(&mut self.store, conn, message, &mut out);
                self.out = out;
            }
            Command::ChunkRead => {
                self.client_seen(header.client.get(), conn);
                let mut out = std::mem::take(&mut self.out);
                self.service.on_read(&mut self.store, conn, &message, &mut out);
                self.out = out;
            }
            Command::ChunkData | Command::ChunkMissing => {
                self.service.on_repair_answer(&mut self.store, &message)
            }
            Command::Reply
            | Command::Eviction
            | Command::ChunkWriteOk
            | Command::ChunkRefused
            | Command::Reserved => self.drop_message(),
            Command::Request => {
                self.client_seen(header.client.get(), conn);
                if message.bytes().len() > replica_size_max || self.service_stopping() {
                    return self.drop_message();
                }
                self.params.status.requests_total.fetch_add(1, Ordering::Relaxed);
                self.replica.on_message(message);
            }
            _ => {
                if message.bytes().len() > replica_size_max {
                    return self.drop_message();
                }
                self.replica.on_message(message);
            }
        }
    }

    fn service_stopping(&self) -> bool {
        self.params.shutdown.load(Ordering::Relaxed)
    }

    fn wal_completions(&mut self) -> Result<(), String> {
        let durable = self.wal.take_durable().map_err(|e| {
            format!(
                "{e}; stopping: this replica can no longer keep its promises (it \
                     recovers from its peers at restart)"
            )
        })?;
        for id in durable {
            self.replica.on_write_done(id);
        }
        Ok(())
    }

    fn chunk_completions(&mut self) -> Result<(), String> {
        self.chunk_driver.complete(&mut self.store).map_err(|e| {
            format!("{e}; stopping: the chunk store can no longer keep its promises")
        })?;
        let mut out = std::mem::take(&mut self.out);
        while let Some(event) = self.store.take_event() {
            self.service.on_store_event(event, &mut out);
        }
        self.service.queues_drive(&mut self.store, &mut out);
        self.out = out;
        let latencies = std::mem::take(&mut self.service.write_latency_ticks);
        let tick_us = self.params.tick.as_micros() as u64;
        for ticks in latencies {
            self.params.status.chunk_write_latency.record_us(ticks * tick_us);
        }
        Ok(())
    }

    fn on_tick(&mut self) {
        self.replica.set_realtime(realtime_ns());
        self.replica.on_tick();
        self.store.tick();
        let caught_up = self.replica.status() == Status::Normal
            && !self.replica.syncing()
            && self.replica.commit_min() == self.replica.commit_max();
        let mut out = std::mem::take(&mut self.out);
        self.service.on_tick(&mut self.store, self.replica.state_machine(), caught_up, &mut out);
        self.out = out;
        self.publish();
    }

    fn replica_actions(&mut self) {
        loop {
            let actions = self.replica.take_actions();
            let events = self.replica.take_events();
            if actions.is_empty() && events.is_empty() {
                return;
            }
            for event in events {
                self.on_replica_event(event);
            }
            for action in actions {
                match action {
                    Action::Write(write) => self.wal.submit(write),
                    Action::Send { target: Target::Replica(replica), message } => {
                        if message.command() == Command::Prepare && self.replica.is_primary() {
                            self.commit_started
                                .entry(message.header().op.get())
                                .or_insert_with(Instant::now);
                        }
                        let sent = self
                            .links
                            .get(replica as usize)
                            .and_then(|link| link.as_ref())
                            .is_some_and(|link| link.send(message));
                        if !sent {
                            self.dropped += 1;
                        }
                    }
                    Action::Send { target: Target::Client(client), message } => {
                        self.send_to_conn(self.clients.get(&client).copied(), message);
                    }
                }
            }
        }
    }

    fn on_replica_event(&mut self, event: Event) {
        let status = &self.params.status;
        match event {
            Event::Committed { prepare } => {
                status.commits_total.fetch_add(1, Ordering::Relaxed);
                let op = prepare.header().op.get();
                if let Some(started) = self.commit_started.remove(&op) {
                    status.commit_latency.record_us(started.elapsed().as_micros() as u64);
                }
                // Bounded: prepares that never commit here (a view change).
                while self.commit_started.len() > 4_096 {
                    self.commit_started.pop_first();
                }
                self.service.on_committed(&self.store, &prepare);
            }
            Event::Synced { op } => {
                self.log.info(format!("state sync: installed the checkpoint at op {op}"));
                self.service.audit(&self.store, self.replica.state_machine());
            }
            Event::ViewInstalled { view, primary } => {
                status.view_changes_total.fetch_add(1, Ordering::Relaxed);
                if view != self.view_last {
                    self.view_last = view;
                    self.log.info(format!(
                        "view {view}: {}",
                        if primary { "primary" } else { "backup" }
                    ));
                }
            }
            Event::Checkpointed { .. } => {}
        }
    }

    fn send_to_conn(&mut self, conn: Option<ConnId>, message: Message) {
        let sent = conn
            .and_then(|id| self.conns.borrow().get(&id).cloned())
            .is_some_and(|conn| conn.send(message));
        if !sent {
            self.dropped += 1;
        }
    }

    fn send_out(&mut self) {
        for out in std::mem::take(&mut self.out) {
            match out {
                ChunkOut::Conn(conn, message) => {
                    // Answers go back on the connection the request came
                    // on; a peer's link is in `conns` only if it dialled us.
                    let local = self.conns.borrow().get(&conn).cloned();
                    let link = self.links.iter().flatten().find(|l| l.conn_id() == Some(conn));
                    let sent = match (local, link) {
                        (Some(conn), _) => conn.send(message),
                        (None, Some(link)) => link.send(message),
                        (None, None) => false,
                    };
                    if !sent {
                        self.dropped += 1;
                    }
                }
                ChunkOut::Replica(replica, message) => {
                    let sent = self
                        .links
                        .get(replica as usize)
                        .and_then(|link| link.as_ref())
                        .is_some_and(|link| link.send(message));
                    if !sent {
                        self.dropped += 1;
                    }
                }
            }
        }
    }

    fn publish(&self) {
        let s = &self.params.status;
        let r = &self.replica;
        let set = |field: &std::sync::atomic::AtomicU64, value: u64| {
            field.store(value, Ordering::Relaxed)
        };
        set(&s.primary, u64::from(r.is_primary()));
        set(
            &s.status,
            match r.status() {
                Status::Normal => 0,
                Status::ViewChange => 1,
                Status::RecoveringHead => 2,
            },
        );
        set(&s.view, u64::from(r.view()));
        set(&s.op, r.op());
        set(&s.commit, r.commit_min());
        set(&s.checkpoint, r.checkpoint_op());
        set(&s.objects, r.state_machine().object_count() as u64);
        set(&s.chunks, self.store.chunks_live() as u64);
        set(&s.chunks_missing, self.service.missing_count() as u64);
        let stats = self.service.stats;
        set(&s.chunk_writes_total, stats.writes);
        set(&s.chunk_write_bytes_total, stats.write_bytes);
        set(&s.chunk_reads_total, stats.reads);
        set(&s.chunk_read_bytes_total, stats.read_bytes);
        set(&s.repairs_total, stats.repairs);
        set(&s.chunks_collected_total, stats.collected);
        set(&s.checksum_failures_total, stats.checksum_failures);
        let dropped_replica: u64 = r.dropped.values().sum();
        set(&s.messages_dropped_total, self.dropped + stats.dropped + dropped_replica);
        if let Ok(mut drops) = s.drops_by_reason.lock() {
            drops.clear();
            drops.extend(r.dropped.iter().map(|(reason, count)| (*reason, *count)));
            drops.push(("send_failed", self.dropped));
            drops.push(("chunk_service", stats.dropped));
        }
        let transport = self.inbox.borrow().stats;
        set(&s.frames_invalid_total, transport.frames_invalid);
        set(&s.messages_received_total, transport.messages_received);
        set(&s.messages_sent_total, transport.messages_sent);
        set(&s.bytes_received_total, transport.bytes_received);
        set(&s.bytes_sent_total, transport.bytes_sent);
        set(&s.bytes_copied_receive_total, transport.bytes_copied_receive);
        let wal = self.wal.stats();
        set(&s.wal_writes_total, wal.writes);
        set(&s.wal_fdatasyncs_total, wal.fdatasyncs);
        set(&s.wal_queue, wal.in_flight as u64);
        set(&s.chunk_fdatasyncs_total, self.chunk_driver.stats().fdatasyncs);
        set(&s.chunk_write_queue, self.service.write_queue_len() as u64);
        set(&s.connections, self.conns.borrow().len() as u64);
        let peers = self.links.iter().flatten().filter(|l| l.connected()).count();
        set(&s.peers_connected, peers as u64);
    }
}

/// Frames a shard accepts: the largest chunk plus its header, or the
/// replica's largest message.
pub fn frame_size_max(vsr: &Config, chunks: &chunkstore::Config) -> usize {
    (chunks.chunk_size_max_bytes as usize + HEADER_SIZE).max(vsr.message_size_max as usize)
}

//! Message transport over TCP on glommio: framing, per-connection send
//! queues, and outbound links that reconnect with backoff. Shared by the
//! server's shards and by every driver of the object client.
//!
//! A frame is a message as it is: the 256-byte header, then `size - 256`
//! body bytes. The reader verifies the header checksum and rules before it
//! trusts `size`, reads the body, verifies its checksum, and only then hands
//! the message on; a frame that fails closes the connection (a byte stream
//! cannot be resynchronised after a bad header) and is counted.
//!
//! Copies per message received: the kernel's copy into the connection's
//! read buffer, then one into the message's own `Rc<[u8]>` (shared from
//! then on by every user: the replica, the WAL write, a forward). Sends
//! write each message's bytes straight from that buffer; small messages
//! that queue up together are coalesced into one write (one copy, fewer
//! syscalls).
//!
//! A client on the same executor as the shard it talks to (a front end at
//! `--cores 1`, or shard k's front end and group k) is given an in-process
//! connection instead ([`LocalAcceptor`]): the same `Conn`, send queue and
//! inbox, but a message is handed over as it is, with no socket, no copy
//! and no checksum pass (it never left the process).
//!
//! Every queue is bounded: a connection's send queue by bytes and count (a
//! message that does not fit is dropped and counted: the protocols above
//! retransmit), the shared inbox by bytes (readers wait for room: TCP
//! backpressure to the sender).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use crate::shard::frames;
use crate::vsr::message::{header_parse, Message, MessageError, HEADER_SIZE};

pub type ConnId = u64;

/// Limits of one transport (see tuning.md).
#[derive(Clone, Copy, Debug)]
pub struct TransportLimits {
    /// Largest frame accepted (header + body): chunk size plus the header.
    pub frame_size_max: usize,
    /// Bytes queued for sending on one connection.
    pub send_queue_bytes_max: usize,
    /// Messages queued for sending on one connection.
    pub send_queue_count_max: usize,
    /// Bytes received and not yet taken by the owner, over all connections.
    pub inbox_bytes_max: usize,
    /// Reconnect backoff of outbound links: first and largest wait.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl TransportLimits {
    pub fn new(frame_size_max: usize) -> TransportLimits {
        TransportLimits {
            frame_size_max,
            send_queue_bytes_max: 64 << 20,
            send_queue_count_max: 65_536,
            inbox_bytes_max: 128 << 20,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(1_000),
        }
    }
}

/// Read buffer per connection; larger frames get their own buffer.
const READ_BUFFER_SIZE: usize = 256 << 10;
/// Small messages are coalesced into writes of up to this size.
const WRITE_COALESCE_SIZE: usize = 256 << 10;
/// Messages at least this large are written from their own bytes.
const WRITE_DIRECT_SIZE: usize = 64 << 10;

/// Counters of one transport, for metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct TransportStats {
    pub messages_received: u64,
    pub bytes_received: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    /// Frames that failed a checksum or a header rule (connection closed).
    pub frames_invalid: u64,
    /// Messages dropped because a send queue was full or closed.
    pub sends_dropped: u64,
    pub connections_opened: u64,
    pub connections_closed: u64,
    /// Bytes copied in user space on receive (one copy per message).
    pub bytes_copied_receive: u64,
}

/// What readers hand to the owner, and the wakers that join them.
pub struct Inbox {
    messages: VecDeque<(ConnId, Message)>,
    closed: Vec<ConnId>,
    bytes: usize,
    bytes_max: usize,
    owner: Option<Waker>,
    readers: Vec<Waker>,
    pub stats: TransportStats,
}

pub type SharedInbox = Rc<RefCell<Inbox>>;

impl Inbox {
    pub fn new(limits: &TransportLimits) -> SharedInbox {
        Rc::new(RefCell::new(Inbox {
            messages: VecDeque::new(),
            closed: Vec::new(),
            bytes: 0,
            bytes_max: limits.inbox_bytes_max,
            owner: None,
            readers: Vec::new(),
            stats: TransportStats::default(),
        }))
    }

    /// Take everything received so far, and the connections that closed.
    pub fn drain(&mut self) -> (Vec<(ConnId, Message)>, Vec<ConnId>) {
        self.bytes = 0;
        for waker in self.readers.drain(..) {
            waker.wake();
        }
        (self.messages.drain(..).collect(), std::mem::take(&mut self.closed))
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.closed.is_empty()
    }

    /// Wake `waker` when something arrives (the owner's event loop).
    pub fn register_owner(&mut self, waker: &Waker) {
        self.owner = Some(waker.clone());
    }

    /// Wake the owner (also used by other event sources sharing its loop).
    pub fn wake_owner(&mut self) {
        if let Some(waker) = self.owner.take() {
            waker.wake();
        }
    }

    /// `copied`: the message was copied out of the read buffer (frames up
    /// to `READ_BUFFER_SIZE`); larger ones are read in place.
    fn push(&mut self, conn: ConnId, message: Message, copied: bool) {
        self.bytes += message.bytes().len();
        self.stats.messages_received += 1;
        self.stats.bytes_received += message.bytes().len() as u64;
        if copied {
            self.stats.bytes_copied_receive += message.bytes().len() as u64;
        }
        self.messages.push_back((conn, message));
        self.wake_owner();
    }

    fn push_closed(&mut self, conn: ConnId) {
        self.closed.push(conn);
        self.stats.connections_closed += 1;
        self.wake_owner();
    }
}

/// Wait until the inbox has room (the owner drained it).
async fn inbox_room(inbox: &SharedInbox) {
    poll_fn(|context| {
        let mut inbox = inbox.borrow_mut();
        if inbox.bytes < inbox.bytes_max {
            Poll::Ready(())
        } else {
            inbox.readers.push(context.waker().clone());
            Poll::Pending
        }
    })
    .await
}

struct SendQueue {
    messages: VecDeque<Message>,
    bytes: usize,
    writer: Option<Waker>,
}

/// One TCP connection: its send queue; reader and writer tasks run it.
pub struct Conn {
    pub id: ConnId,
    pub peer: SocketAddr,
    queue: RefCell<SendQueue>,
    closed: Cell<bool>,
    limits: TransportLimits,
    inbox: SharedInbox,
}

impl Conn {
    /// Queue `message`; false (and counted) if the queue is full or the
    /// connection closed.
    pub fn send(&self, message: Message) -> bool {
        let size = message.bytes().len();
        let mut queue = self.queue.borrow_mut();
        let full = queue.bytes + size > self.limits.send_queue_bytes_max
            || queue.messages.len() >= self.limits.send_queue_count_max;
        if self.closed.get() || full {
            drop(queue);
            self.inbox.borrow_mut().stats.sends_dropped += 1;
            return false;
        }
        queue.bytes += size;
        queue.messages.push_back(message);
        if let Some(waker) = queue.writer.take() {
            waker.wake();
        }
        true
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    pub fn queued_bytes(&self) -> usize {
        self.queue.borrow().bytes
    }

    /// Close: the writer stops, the reader ends at its next wake-up.
    pub fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        let mut queue = self.queue.borrow_mut();
        queue.messages.clear();
        queue.bytes = 0;
        if let Some(waker) = queue.writer.take() {
            waker.wake();
        }
    }
}

/// Start the reader and writer tasks of an established connection.
/// Returns the connection; its messages arrive in `inbox` under `id`, and
/// `inbox` learns of its close.
pub fn connection_start(
    stream: TcpStream,
    id: ConnId,
    inbox: &SharedInbox,
    limits: TransportLimits,
) -> Rc<Conn> {
    let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    // Small messages must not wait for Nagle (40 ms with delayed ACKs).
    let _ = stream.set_nodelay(true);
    let stream = Rc::new(RefCell::new(stream));
    let conn = conn_new(id, peer, inbox, limits);
    let reader = (conn.clone(), stream.clone(), inbox.clone());
    glommio::spawn_local(async move {
        let (conn, stream, inbox) = reader;
        let _ = read_loop(&conn, &stream, &inbox).await;
        conn.close();
        inbox.borrow_mut().push_closed(conn.id);
    })
    .detach();
    let writer = conn.clone();
    glommio::spawn_local(async move {
        let _ = write_loop(&writer, &stream).await;
        writer.close();
        // Wake the reader's peer side: shutting down makes its read end.
        let _ = poll_fn(|context| Pin::new(&mut *stream.borrow_mut()).poll_close(context)).await;
    })
    .detach();
    conn
}

async fn read_some(stream: &Rc<RefCell<TcpStream>>, buffer: &mut [u8]) -> std::io::Result<usize> {
    poll_fn(|context| Pin::new(&mut *stream.borrow_mut()).poll_read(context, buffer)).await
}

async fn write_some(stream: &Rc<RefCell<TcpStream>>, buffer: &[u8]) -> std::io::Result<usize> {
    poll_fn(|context| Pin::new(&mut *stream.borrow_mut()).poll_write(context, buffer)).await
}

async fn write_all(stream: &Rc<RefCell<TcpStream>>, mut buffer: &[u8]) -> std::io::Result<()> {
    while !buffer.is_empty() {
        let written = write_some(stream, buffer).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        buffer = &buffer[written..];
    }
    Ok(())
}

/// Why a connection's reader stopped.
#[derive(Debug)]
enum ReadEnd {
    Closed,
    Io,
    Invalid,
}

async fn read_loop(
    conn: &Conn,
    stream: &Rc<RefCell<TcpStream>>,
    inbox: &SharedInbox,
) -> Result<(), ReadEnd> {
    let frame_size_max = conn.limits.frame_size_max;
    let mut buffer = vec![0u8; READ_BUFFER_SIZE];
    let mut filled = 0usize;
    loop {
        // Parse every whole frame in the buffer.
        let mut start = 0usize;
        while filled - start >= HEADER_SIZE {
            let header = header_parse(&buffer[start..filled], frame_size_max).map_err(|_| {
                inbox.borrow_mut().stats.frames_invalid += 1;
                ReadEnd::Invalid
            })?;
            let size = header.size.get() as usize;
            if size > buffer.len() {
                // Larger than the buffer: read it straight into the shared
                // buffer the message keeps (no copy after the socket's).
                let present = filled - start;
                // A reused frame's old bytes are all overwritten: the
                // copy below and `read_exact_into` fill it whole.
                let mut frame = frames::take(size);
                let Some(bytes) = Rc::get_mut(&mut frame) else {
                    unreachable!("frames::take returns a unique frame")
                };
                bytes[..present].copy_from_slice(&buffer[start..filled]);
                start = filled;
                read_exact_into(conn, stream, bytes, present).await?;
                frames::track(&frame);
                deliver_shared(inbox, conn.id, frame).await?;
                continue;
            }
            if filled - start < size {
                break;
            }
            deliver(inbox, conn.id, &buffer[start..start + size]).await?;
            start += size;
        }
        if start > 0 {
            buffer.copy_within(start..filled, 0);
            filled -= start;
        }
        if conn.closed.get() {
            return Err(ReadEnd::Closed);
        }
        let read = read_some(stream, &mut buffer[filled..]).await.map_err(|_| ReadEnd::Io)?;
        if read == 0 {
            return Err(ReadEnd::Closed);
        }
        filled += read;
    }
}

async fn read_exact_into(
    conn: &Conn,
    stream: &Rc<RefCell<TcpStream>>,
    frame: &mut [u8],
    mut have: usize,
) -> Result<(), ReadEnd> {
    while have < frame.len() {
        if conn.closed.get() {
            return Err(ReadEnd::Closed);
        }
        let read = read_some(stream, &mut frame[have..]).await.map_err(|_| ReadEnd::Io)?;
        if read == 0 {
            return Err(ReadEnd::Closed);
        }
        have += read;
    }
    Ok(())
}

/// Verify a whole frame and hand it to the inbox (waiting for room).
async fn deliver(inbox: &SharedInbox, conn: ConnId, frame: &[u8]) -> Result<(), ReadEnd> {
    let message = Message::parse(frame, frame.len());
    deliver_parsed(inbox, conn, message, true).await
}

async fn deliver_shared(inbox: &SharedInbox, conn: ConnId, frame: Rc<[u8]>) -> Result<(), ReadEnd> {
    let size = frame.len();
    deliver_parsed(inbox, conn, Message::parse_shared(frame, size), false).await
}

async fn deliver_parsed(
    inbox: &SharedInbox,
    conn: ConnId,
    message: Result<Message, MessageError>,
    copied: bool,
) -> Result<(), ReadEnd> {
    let message = message.map_err(|_| {
        inbox.borrow_mut().stats.frames_invalid += 1;
        ReadEnd::Invalid
    })?;
    inbox_room(inbox).await;
    inbox.borrow_mut().push(conn, message, copied);
    Ok(())
}

/// Everything queued on `conn` once there is something; None once closed.
async fn next_batch(conn: &Conn) -> Option<VecDeque<Message>> {
    poll_fn(|context| {
        let mut queue = conn.queue.borrow_mut();
        if conn.closed.get() {
            return Poll::Ready(None);
        }
        if queue.messages.is_empty() {
            queue.writer = Some(context.waker().clone());
            return Poll::Pending;
        }
        queue.bytes = 0;
        Poll::Ready(Some(std::mem::take(&mut queue.messages)))
    })
    .await
}

async fn write_loop(conn: &Conn, stream: &Rc<RefCell<TcpStream>>) -> std::io::Result<()> {
    let mut coalesced: Vec<u8> = Vec::with_capacity(WRITE_COALESCE_SIZE);
    loop {
        let Some(batch) = next_batch(conn).await else { return Ok(()) };
        let (mut count, mut bytes) = (0u64, 0u64);
        for message in batch {
            let frame = message.bytes();
            count += 1;
            bytes += frame.len() as u64;
            if frame.len() >= WRITE_DIRECT_SIZE {
                if !coalesced.is_empty() {
                    write_all(stream, &coalesced).await?;
                    coalesced.clear();
                }
                write_all(stream, frame).await?;
                continue;
            }
            if coalesced.len() + frame.len() > WRITE_COALESCE_SIZE {
                write_all(stream, &coalesced).await?;
                coalesced.clear();
            }
            coalesced.extend_from_slice(frame);
        }
        if !coalesced.is_empty() {
            write_all(stream, &coalesced).await?;
            coalesced.clear();
        }
        let mut inbox = conn.inbox.borrow_mut();
        inbox.stats.messages_sent += count;
        inbox.stats.bytes_sent += bytes;
    }
}

/// Allocates connection ids for one owner.
#[derive(Default)]
pub struct ConnIds {
    next: Cell<ConnId>,
}

impl ConnIds {
    pub fn next(&self) -> ConnId {
        let id = self.next.get() + 1;
        self.next.set(id);
        id
    }
}

/// An outbound link to one address: the current connection, if any. A
/// task keeps it connected, waiting `backoff_min` doubling to `backoff_max`
/// between failed attempts.
pub struct Link {
    pub addr: SocketAddr,
    conn: RefCell<Option<Rc<Conn>>>,
    stopped: Cell<bool>,
    pub connects: Cell<u64>,
}

impl Link {
    /// Send on the current connection; false if there is none (dropped).
    pub fn send(&self, message: Message) -> bool {
        match &*self.conn.borrow() {
            Some(conn) if !conn.is_closed() => conn.send(message),
            _ => false,
        }
    }

    pub fn connected(&self) -> bool {
        self.conn.borrow().as_ref().is_some_and(|c| !c.is_closed())
    }

    pub fn conn_id(&self) -> Option<ConnId> {
        self.conn.borrow().as_ref().filter(|c| !c.is_closed()).map(|c| c.id)
    }

    pub fn stop(&self) {
        self.stopped.set(true);
        if let Some(conn) = &*self.conn.borrow() {
            conn.close();
        }
    }
}

/// Start a link to `addr`. `on_connect` runs on each new connection (e.g.
/// to announce who we are).
pub fn link_start(
    addr: SocketAddr,
    ids: Rc<ConnIds>,
    inbox: &SharedInbox,
    limits: TransportLimits,
    on_connect: Rc<dyn Fn(&Conn)>,
) -> Rc<Link> {
    let link = link_new(addr);
    let (task_link, inbox) = (link.clone(), inbox.clone());
    glommio::spawn_local(async move {
        let link = task_link;
        let mut backoff = limits.backoff_min;
        while !link.stopped.get() {
            let connected =
                glommio::timer::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await;
            let Ok(stream) = connected else {
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(limits.backoff_max);
                continue;
            };
            backoff = limits.backoff_min;
            let conn = connection_start(stream, ids.next(), &inbox, limits);
            link_hold(&link, conn, &*on_connect, limits).await;
        }
    })
    .detach();
    link
}

fn link_new(addr: SocketAddr) -> Rc<Link> {
    Rc::new(Link {
        addr,
        conn: RefCell::new(None),
        stopped: Cell::new(false),
        connects: Cell::new(0),
    })
}

/// Make `conn` the link's connection until it closes (or the link stops),
/// then wait `backoff_min` before the caller connects again.
async fn link_hold(
    link: &Link,
    conn: Rc<Conn>,
    on_connect: &dyn Fn(&Conn),
    limits: TransportLimits,
) {
    link.connects.set(link.connects.get() + 1);
    on_connect(&conn);
    *link.conn.borrow_mut() = Some(conn.clone());
    while !conn.is_closed() && !link.stopped.get() {
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    *link.conn.borrow_mut() = None;
    if !link.stopped.get() {
        glommio::timer::sleep(limits.backoff_min).await;
    }
}

/// Connection ids to connections, as a shard's listener keeps them.
pub type ConnMap = Rc<RefCell<BTreeMap<ConnId, Rc<Conn>>>>;

/// The in-process side of a shard's listener: a client on the same
/// executor connects here instead of over loopback TCP, and the shard sees
/// one more connection in its `conns` like any accepted socket.
pub struct LocalAcceptor {
    /// The listener's address (what the client would have dialled).
    pub addr: SocketAddr,
    inbox: SharedInbox,
    ids: Rc<ConnIds>,
    conns: ConnMap,
    limits: TransportLimits,
}

impl LocalAcceptor {
    pub fn new(
        addr: SocketAddr,
        inbox: &SharedInbox,
        ids: &Rc<ConnIds>,
        conns: &ConnMap,
        limits: TransportLimits,
    ) -> Rc<LocalAcceptor> {
        Rc::new(LocalAcceptor {
            addr,
            inbox: inbox.clone(),
            ids: ids.clone(),
            conns: conns.clone(),
            limits,
        })
    }

    /// A new connection: the client's end (its messages arrive in `inbox`
    /// as `id`); the shard's end is registered in the shard's `conns`.
    fn connect(&self, id: ConnId, inbox: &SharedInbox, limits: TransportLimits) -> Rc<Conn> {
        let server_id = self.ids.next();
        let client = conn_new(id, self.addr, inbox, limits);
        let server = conn_new(server_id, self.addr, &self.inbox, self.limits);
        local_writer_start(client.clone(), server.clone());
        local_writer_start(server.clone(), client.clone());
        self.conns.borrow_mut().insert(server_id, server);
        client
    }
}

fn conn_new(
    id: ConnId,
    peer: SocketAddr,
    inbox: &SharedInbox,
    limits: TransportLimits,
) -> Rc<Conn> {
    inbox.borrow_mut().stats.connections_opened += 1;
    Rc::new(Conn {
        id,
        peer,
        queue: RefCell::new(SendQueue { messages: VecDeque::new(), bytes: 0, writer: None }),
        closed: Cell::new(false),
        limits,
        inbox: inbox.clone(),
    })
}

/// Move what `from` sends into `to`'s inbox, in order, waiting for room
/// there (the backpressure a socket gives). When either end closes, both
/// close, and each end's own task reports its close to its own inbox once.
fn local_writer_start(from: Rc<Conn>, to: Rc<Conn>) {
    glommio::spawn_local(async move {
        loop {
            // `to` closing closes `from` too (its task's exit, below).
            let Some(batch) = next_batch(&from).await else { break };
            let (mut count, mut bytes) = (0u64, 0u64);
            for message in batch {
                inbox_room(&to.inbox).await;
                if to.closed.get() {
                    break;
                }
                count += 1;
                bytes += message.bytes().len() as u64;
                to.inbox.borrow_mut().push(to.id, message, false);
            }
            let mut inbox = from.inbox.borrow_mut();
            inbox.stats.messages_sent += count;
            inbox.stats.bytes_sent += bytes;
        }
        from.close();
        to.close();
        from.inbox.borrow_mut().push_closed(from.id);
    })
    .detach();
}

/// A link to a shard on this executor: connected in process through
/// `acceptor`, and connected again (a new pair) if either end closes.
pub fn link_start_local(
    acceptor: Rc<LocalAcceptor>,
    ids: Rc<ConnIds>,
    inbox: &SharedInbox,
    limits: TransportLimits,
    on_connect: Rc<dyn Fn(&Conn)>,
) -> Rc<Link> {
    let link = link_new(acceptor.addr);
    let (task_link, inbox) = (link.clone(), inbox.clone());
    glommio::spawn_local(async move {
        let link = task_link;
        while !link.stopped.get() {
            let conn = acceptor.connect(ids.next(), &inbox, limits);
            link_hold(&link, conn, &*on_connect, limits).await;
        }
    })
    .detach();
    link
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vsr::message::{Command, Header};
    use glommio::{LocalExecutorBuilder, Placement};
    use std::time::Instant;

    fn message(body: &[u8]) -> Message {
        Message::new(Header::new(Command::Ping), body)
    }

    /// Wait (bounded) until `inbox` holds something; then drain it.
    async fn drain_soon(inbox: &SharedInbox) -> (Vec<(ConnId, Message)>, Vec<ConnId>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while inbox.borrow().is_empty() {
            assert!(Instant::now() < deadline, "nothing arrived within 5 s");
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        inbox.borrow_mut().drain()
    }

    async fn connected_soon(link: &Link) -> ConnId {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(id) = link.conn_id() {
                return id;
            }
            assert!(Instant::now() < deadline, "the local link never connected");
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }

    /// An in-process link carries messages both ways unchanged and in
    /// order, reports a close to both ends once, and connects again.
    #[test]
    fn local_link_delivers_closes_and_reconnects() {
        let executor = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(256 << 10)
            .make()
            .expect("a glommio executor (memlock ≥ 768 KiB, io_uring)");
        executor.run(async {
            let limits = TransportLimits::new(1 << 20);
            let addr = SocketAddr::from(([127, 0, 0, 1], 9));
            let (server_inbox, client_inbox) = (Inbox::new(&limits), Inbox::new(&limits));
            let server_ids = Rc::new(ConnIds::default());
            let conns: ConnMap = Rc::new(RefCell::new(BTreeMap::new()));
            let acceptor = LocalAcceptor::new(addr, &server_inbox, &server_ids, &conns, limits);
            let link = link_start_local(
                acceptor,
                Rc::new(ConnIds::default()),
                &client_inbox,
                limits,
                Rc::new(|_: &Conn| {}),
            );
            let client_id = connected_soon(&link).await;

            let sent: Vec<Message> = (0..100u32).map(|i| message(&i.to_le_bytes())).collect();
            for m in &sent {
                assert!(link.send(m.clone()));
            }
            let mut received = Vec::new();
            while received.len() < sent.len() {
                let (messages, closed) = drain_soon(&server_inbox).await;
                assert!(closed.is_empty());
                received.extend(messages);
            }
            let server_id = received[0].0;
            assert!(received.iter().all(|(id, _)| *id == server_id));
            let bodies: Vec<&[u8]> = received.iter().map(|(_, m)| m.bytes()).collect();
            assert_eq!(bodies, sent.iter().map(|m| m.bytes()).collect::<Vec<_>>());
            let server_conn = conns.borrow().get(&server_id).cloned().expect("registered");

            assert!(server_conn.send(message(b"reply")));
            let (messages, _) = drain_soon(&client_inbox).await;
            assert_eq!(messages.len(), 1);
            assert_eq!(messages[0].0, client_id);
            assert_eq!(messages[0].1.body(), b"reply");

            // The shard drops the connection: both ends learn it once.
            server_conn.close();
            let (_, closed) = drain_soon(&server_inbox).await;
            assert_eq!(closed, vec![server_id]);
            let (_, closed) = drain_soon(&client_inbox).await;
            assert_eq!(closed, vec![client_id]);
            assert!(!server_conn.send(message(b"late")), "a closed end refuses sends");

            // The link dials again: a new pair, new ids, still working.
            let deadline = Instant::now() + Duration::from_secs(5);
            let again = loop {
                match link.conn_id() {
                    Some(id) if id != client_id => break id,
                    _ => {
                        assert!(Instant::now() < deadline, "no reconnect within 5 s");
                        glommio::timer::sleep(Duration::from_millis(5)).await;
                    }
                }
            };
            assert!(link.send(message(b"again")));
            let (messages, _) = drain_soon(&server_inbox).await;
            assert_eq!(messages.len(), 1);
            assert_ne!(messages[0].0, server_id);
            assert_eq!(messages[0].1.body(), b"again");
            assert!(conns.borrow().contains_key(&messages[0].0));
            let _ = again;

            let stats = client_inbox.borrow().stats;
            assert_eq!(stats.messages_sent, 101);
            assert_eq!(stats.connections_opened, 2);
            assert_eq!(stats.connections_closed, 1);
            assert_eq!(server_inbox.borrow().stats.bytes_copied_receive, 0);
            link.stop();
        });
    }
}

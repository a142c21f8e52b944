//! Scripted scenarios: three replicas driven by hand, with the test choosing
//! which messages arrive. Each one encodes a known way VSR implementations
//! lose committed data and fails if ours does.

use std::collections::VecDeque;
use std::rc::Rc;

use toasty::sim::disk::{Disk, DiskOptions, FaultAtlas};
use toasty::sim::prng::Prng;
use toasty::vsr::config::Config;
use toasty::vsr::message::{Command, Header, Message, OPERATION_REGISTER};
use toasty::vsr::replica::{format, Action, Event, Replica, Status, Target};
use toasty::vsr::state_machine::{
    ObjectMeta, ObjectStore, ObjectStoreLimits, PutCondition, Request,
};

const CLUSTER: u128 = 7;
const CLIENT: u128 = 0xc11e;

fn limits() -> ObjectStoreLimits {
    ObjectStoreLimits {
        buckets_max: 4,
        objects_max: 64,
        key_size_max: 64,
        user_metadata_size_max: 64,
        chunks_per_object_max: 1,
        inline_size_max: 64,
        objects_bytes_max: usize::MAX,
    }
}

struct Node {
    replica: Option<Replica<ObjectStore>>,
    disk: Disk,
    config: Config,
}

/// Which replica-to-replica messages are delivered: `links[from][to]`.
struct Harness {
    nodes: Vec<Node>,
    queue: VecDeque<(usize, usize, Message)>,
    links: [[bool; 3]; 3],
    tick: u64,
    replies: Vec<Message>,
    committed: Vec<(usize, Message)>,
}

impl Harness {
    fn new() -> Harness {
        let config = Config::test_min(CLUSTER, 0, 0, 3);
        let layout = config.layout();
        let atlas = Rc::new(FaultAtlas::none(3, layout));
        let mut nodes = Vec::new();
        for replica in 0..3u8 {
            let config = Config { replica, ..config.clone() };
            let mut disk = Disk::new(
                layout,
                DiskOptions::quiet(),
                Prng::new(replica as u64),
                atlas.clone(),
                replica as usize,
            );
            for (zone, offset, data) in format(&config, &ObjectStore::new(limits())) {
                disk.write_direct(zone, offset, &data);
            }
            nodes.push(Node { replica: None, disk, config });
        }
        let mut harness = Harness {
            nodes,
            queue: VecDeque::new(),
            links: [[true; 3]; 3],
            tick: 0,
            replies: Vec::new(),
            committed: Vec::new(),
        };
        for r in 0..3 {
            harness.boot(r);
        }
        harness
    }

    fn boot(&mut self, r: usize) {
        let node = &mut self.nodes[r];
        let replica = Replica::open(
            node.config.clone(),
            ObjectStore::new(limits()),
            &mut node.disk,
            1 + r as u64,
        );
        self.nodes[r].replica = Some(replica.expect("open"));
        self.drain(r);
    }

    fn crash(&mut self, r: usize) {
        self.nodes[r].replica = None;
        self.nodes[r].disk.crash();
        self.queue.retain(|(from, to, _)| *from != r && *to != r);
    }

    fn replica(&self, r: usize) -> &Replica<ObjectStore> {
        self.nodes[r].replica.as_ref().expect("replica up")
    }

    fn isolate(&mut self, r: usize, isolated: bool) {
        for other in 0..3 {
            if other != r {
                self.links[r][other] = !isolated;
                self.links[other][r] = !isolated;
            }
        }
    }

    fn drain(&mut self, r: usize) {
        let Some(replica) = self.nodes[r].replica.as_mut() else { return };
        let actions = replica.take_actions();
        for event in replica.take_events() {
            if let Event::Committed { prepare } = event {
                self.committed.push((r, prepare));
            }
        }
        for action in actions {
            match action {
                Action::Write(write) => self.nodes[r].disk.submit(self.tick, write),
                Action::Send { target: Target::Replica(to), message } => {
                    self.queue.push_back((r, to as usize, message))
                }
                Action::Send { target: Target::Client(_), message } => self.replies.push(message),
            }
        }
    }

    fn step(&mut self) {
        self.tick += 1;
        for r in 0..3 {
            for id in self.nodes[r].disk.tick(self.tick) {
                if let Some(replica) = self.nodes[r].replica.as_mut() {
                    replica.on_write_done(id);
                }
                self.drain(r);
            }
        }
        for _ in 0..self.queue.len() {
            let Some((from, to, message)) = self.queue.pop_front() else { break };
            if !self.links[from][to] {
                continue;
            }
            if let Some(replica) = self.nodes[to].replica.as_mut() {
                replica.on_message(message);
                self.drain(to);
            }
        }
        for r in 0..3 {
            if let Some(replica) = self.nodes[r].replica.as_mut() {
                replica.on_tick();
                self.drain(r);
            }
        }
    }

    fn run_until(&mut self, what: &str, ticks_max: u64, done: impl Fn(&Harness) -> bool) {
        for _ in 0..ticks_max {
            if done(self) {
                return;
            }
            self.step();
        }
        panic!("not reached within {ticks_max} ticks: {what}");
    }

    fn request(&mut self, to: usize, operation: u8, number: u32, body: &[u8]) {
        let mut header = Header::new(Command::Request);
        header.cluster.set(CLUSTER);
        header.client.set(CLIENT);
        header.operation = operation;
        header.request.set(number);
        header.replica = u8::MAX;
        let message = Message::new(header, body);
        if let Some(replica) = self.nodes[to].replica.as_mut() {
            replica.on_message(message);
        }
        self.drain(to);
    }

    fn replied(&self, number: u32) -> bool {
        self.replies.iter().any(|m| {
            m.command() == Command::Reply
                && m.header().request.get() == number
                && m.header().client.get() == CLIENT
        })
    }
}

fn put_body(key: &str) -> (u8, Vec<u8>) {
    let object =
        ObjectMeta { size: 1, etag: b"e".to_vec(), inline_data: vec![1], ..ObjectMeta::default() };
    let request = Request::PutObject {
        bucket_id: 1,
        key: key.as_bytes().to_vec(),
        condition: PutCondition::None,
        object,
    };
    let mut body = Vec::new();
    let operation = request.encode(&mut body);
    (operation, body)
}

/// Vanlightly's state-transfer counterexample (Vanlightly/vsr-tlaplus): a
/// replica that lags, hears a prepare of a newer view, and adopts that view
/// (and log_view) without the view's log, later wins a view change with an
/// empty log and loses committed ops. Here it must not adopt the view from a
/// prepare, so the committed ops survive.
#[test]
fn lagging_replica_never_adopts_a_view_from_a_prepare() {
    let mut h = Harness::new();
    h.run_until("view 1 normal everywhere", 500, |h| {
        (0..3).all(|r| h.replica(r).status() == Status::Normal)
    });
    let view = h.replica(0).view();
    let primary = (0..3).find(|&r| h.replica(r).is_primary()).expect("a primary");
    let lagging = (primary + 2) % 3;
    let other = (primary + 1) % 3;
    // The lagging replica hears nothing while the others commit three puts.
    h.isolate(lagging, true);
    h.request(primary, OPERATION_REGISTER, 0, &[]);
    h.run_until("registered", 200, |h| h.replied(0));
    for number in 1..=3u32 {
        let (operation, body) = put_body(&format!("k{number}"));
        h.request(primary, operation, number, &body);
        h.run_until("put committed", 200, |h| h.replied(number));
    }
    let committed: Vec<Message> =
        h.committed.iter().filter(|(r, _)| *r == primary).map(|(_, m)| m.clone()).collect();
    assert!(committed.len() >= 4, "register and three puts committed");
    // The primary dies; `other` starts the next view with... only itself
    // and the lagging replica can form a quorum, so the lagging replica must
    // join. It first sees a prepare of the newer view before any StartView.
    h.crash(primary);
    h.isolate(lagging, false);
    let log_view_before = h.replica(lagging).log_view();
    h.run_until("a new view is normal", 2000, |h| {
        [other, lagging]
            .iter()
            .all(|&r| h.replica(r).status() == Status::Normal && h.replica(r).view() > view)
    });
    assert!(h.replica(lagging).log_view() > log_view_before);
    // Every op committed in the old view is still in the new view's log, with
    // the same checksum, on both live replicas.
    for prepare in &committed {
        let op = prepare.header().op.get();
        for r in [other, lagging] {
            h.run_until("repaired", 500, |h| h.replica(r).commit_min() >= op);
            let held = h.replica(r).prepare_at(op).map(|m| m.checksum());
            let executed =
                h.committed.iter().any(|(who, m)| *who == r && m.checksum() == prepare.checksum());
            assert!(
                held == Some(prepare.checksum()) || executed,
                "replica {r} lost committed op {op}"
            );
        }
    }
    // And the lagging replica executed exactly the committed prepares.
    for (r, prepare) in h.committed.iter().filter(|(r, _)| *r == lagging) {
        let op = prepare.header().op.get();
        if let Some(canonical) = committed.iter().find(|m| m.header().op.get() == op) {
            assert_eq!(
                canonical.checksum(),
                prepare.checksum(),
                "replica {r} executed another op {op}"
            );
        }
    }
}

/// A prepare of a newer view alone never raises a replica's view or
/// log_view: only a StartView (which carries the view's log) does.
#[test]
fn prepare_of_a_newer_view_does_not_raise_log_view() {
    let mut h = Harness::new();
    h.run_until("normal", 500, |h| (0..3).all(|r| h.replica(r).status() == Status::Normal));
    // Past the rate limit on RequestStartView of the view change just done.
    for _ in 0..20 {
        h.step();
    }
    let backup = (0..3).find(|&r| !h.replica(r).is_primary()).expect("a backup");
    let (view, log_view) = (h.replica(backup).view(), h.replica(backup).log_view());
    let mut header = Header::new(Command::Prepare);
    header.cluster.set(CLUSTER);
    header.view.set(view + 3);
    header.op.set(h.replica(backup).op() + 1);
    header.commit.set(h.replica(backup).op());
    header.operation = toasty::vsr::message::OPERATION_NOOP;
    header.replica = ((view + 3) % 3) as u8;
    let message = Message::new(header, &[]);
    h.nodes[backup].replica.as_mut().expect("up").on_message(message);
    h.drain(backup);
    assert_eq!(h.replica(backup).view(), view);
    assert_eq!(h.replica(backup).log_view(), log_view);
    assert!(
        h.queue
            .iter()
            .any(|(from, _, m)| *from == backup && m.command() == Command::RequestStartView),
        "the backup asks the new view's primary for its StartView"
    );
}

/// The whole cluster is killed (unsynced writes dropped) and restarted:
/// every acknowledged put is still committed afterwards.
#[test]
fn whole_cluster_restart_keeps_acknowledged_writes() {
    let mut h = Harness::new();
    h.run_until("normal", 500, |h| (0..3).all(|r| h.replica(r).status() == Status::Normal));
    let primary = (0..3).find(|&r| h.replica(r).is_primary()).expect("a primary");
    h.request(primary, OPERATION_REGISTER, 0, &[]);
    h.run_until("registered", 200, |h| h.replied(0));
    for number in 1..=5u32 {
        let (operation, body) = put_body(&format!("k{number}"));
        h.request(primary, operation, number, &body);
        h.run_until("put committed", 200, |h| h.replied(number));
    }
    let acked_op = h.replies.iter().map(|m| m.header().op.get()).max().expect("replies");
    for r in 0..3 {
        h.crash(r);
    }
    for r in 0..3 {
        h.boot(r);
    }
    h.run_until("all replicas normal again and caught up", 3000, |h| {
        (0..3).all(|r| {
            h.replica(r).status() == Status::Normal && h.replica(r).commit_min() >= acked_op
        })
    });
    let mut key_found = Vec::new();
    for r in 0..3 {
        let mut snapshot = Vec::new();
        toasty::vsr::state_machine::StateMachine::snapshot(
            h.replica(r).state_machine(),
            &mut snapshot,
        );
        key_found.push(snapshot.windows(2).any(|w| w == b"k5"));
    }
    assert_eq!(key_found, vec![true; 3], "the last acknowledged put survives on every replica");
}

//! One simulated cluster: R replicas × N groups plus clients, in one thread.
//!
//! Each group has its own packet simulator and each replica its own disk;
//! everything draws from per-subsystem PRNGs forked from the seed, so a run
//! is a pure function of (seed, options, code). The run has a safety phase
//! (storms with every fault on, crashes and restarts, including the whole
//! cluster, separated by calms) and a liveness phase (a random quorum per
//! group healed and restarted, the rest still faulty) whose core must
//! converge within a bounded number of ticks. Checkers run throughout and
//! at the end. See ARCHITECTURE.md, "Simulator phases".

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::sim::client::Client;
use crate::sim::disk::{Disk, DiskOptions, FaultAtlas};
use crate::sim::history::{check_history, CommittedOp};
use crate::sim::network::{Network, NetworkOptions};
use crate::sim::prng::{Prng, Ratio};
use crate::vsr::config::{Bug, Config};
use crate::vsr::message::{checksum, Message};
use crate::vsr::replica::{format, Action, Event, Replica, Status, Target};
use crate::vsr::state_machine::{ObjectStore, ObjectStoreLimits, StateMachine};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultProfile {
    /// No faults at all: the happy path.
    Quiet,
    /// Network faults only (delay, loss, duplication, partitions, clogging,
    /// corrupted messages): no crashes, no disk faults.
    Network,
    /// A random mix per seed (swarm testing), like TigerBeetle's VOPR.
    Default,
}

#[derive(Clone, Debug)]
pub struct SimOptions {
    pub seed: u64,
    pub replica_count: u8,
    pub group_count: u32,
    pub clients_per_group: usize,
    /// Requests (excluding registration) the clients complete in total.
    pub requests: u64,
    pub profile: FaultProfile,
    pub bug: Bug,
    pub ticks_safety_max: u64,
    pub ticks_liveness_max: u64,
}

impl SimOptions {
    pub fn new(seed: u64) -> SimOptions {
        SimOptions {
            seed,
            replica_count: 3,
            group_count: 2,
            clients_per_group: 4,
            requests: 2000,
            profile: FaultProfile::Default,
            bug: Bug::None,
            ticks_safety_max: 300_000,
            ticks_liveness_max: 20_000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct SimResult {
    pub seed: u64,
    pub replicas: u8,
    pub groups: u32,
    pub clients: usize,
    pub ticks: u64,
    pub requests_acked: u64,
    pub commits: u64,
    pub crashes: u64,
    pub view_changes: u64,
    pub syncs: u64,
    pub messages_corrupted: u64,
    pub violation: Option<String>,
    pub trace_hash: u128,
}

impl SimResult {
    pub fn ok(&self) -> bool {
        self.violation.is_none()
    }

    pub fn json(&self) -> String {
        format!(
            "{{\"seed\":{},\"replicas\":{},\"groups\":{},\"clients\":{},\"ticks\":{},\"requests_acked\":{},\"commits\":{},\"crashes\":{},\"view_changes\":{},\"syncs\":{},\"messages_corrupted\":{},\"result\":\"{}\",\"trace_hash\":\"{:032x}\"}}",
            self.seed, self.replicas, self.groups, self.clients, self.ticks, self.requests_acked, self.commits,
            self.crashes, self.view_changes, self.syncs, self.messages_corrupted,
            if self.ok() { "ok" } else { "violation" }, self.trace_hash
        )
    }
}

struct Faults {
    crash: Ratio,
    crash_all: Ratio,
    restart: Ratio,
    message_corrupt: Ratio,
    /// Weather: the safety phase alternates storms (every fault of the
    /// seed) and calms (network healed, no crashes, crashed replicas
    /// restart) of durations drawn from these inclusive ranges. Without
    /// calms, the swarm's harshest draws leave a group in view changes for
    /// the whole phase and the seed tests little beyond the view change.
    storm_ticks: (u64, u64),
    calm_ticks: (u64, u64),
}

struct Node {
    replica: Option<Replica<ObjectStore>>,
    disk: Disk,
    config: Config,
    boots: u64,
}

struct Group {
    nodes: Vec<Node>,
    network: Network<Rc<[u8]>>,
    clients: Vec<Client>,
    /// The canonical commit history: op → (checksum, tick first committed).
    committed: BTreeMap<u64, (Message, u64)>,
    checkpoints: BTreeMap<u64, Rc<[u8]>>,
}

pub struct Cluster {
    options: SimOptions,
    groups: Vec<Group>,
    tick: u64,
    prng: Prng,
    faults: Faults,
    faults_enabled: bool,
    trace: xxhash_rust::xxh3::Xxh3,
    result: SimResult,
    /// In the liveness phase: faults healed on a core, no new requests.
    liveness: bool,
    /// In the safety phase: true during a storm, false during a calm.
    storm: bool,
    weather_change_tick: u64,
    /// Per group, per replica: the liveness phase's healed core.
    core: Vec<Vec<bool>>,
    /// `TOASTY_SIM_LOG=1` prints crashes, boots, views and commits to stderr
    /// (for debugging a failing seed; off by default, it costs nothing then).
    log: bool,
}

fn limits() -> ObjectStoreLimits {
    ObjectStoreLimits {
        buckets_max: 8,
        objects_max: 64,
        key_size_max: 64,
        user_metadata_size_max: 256,
        chunks_per_object_max: 4,
        inline_size_max: 128,
        objects_bytes_max: usize::MAX,
    }
}

/// Wrap a replica event loop so a panic inside the protocol becomes a
/// reported violation (with the seed) rather than an aborted run.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    GUARDED.with(|g| g.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(false));
    result.map_err(|payload| {
        let message = if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else if let Some(s) = payload.downcast_ref::<&str>() {
            s.to_string()
        } else {
            "panic".to_string()
        };
        let location = PANIC_LOCATION.with(|l| l.borrow().clone());
        format!("{message} (at {location})")
    })
}

thread_local! {
    static PANIC_LOCATION: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Panics in the protocol (inside `guarded`) are reported as violations
/// with their location, without the default hook's stderr noise; every
/// other panic (a failing test's assertion, say) keeps the default report.
fn panic_hook_install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location =
                info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
            PANIC_LOCATION.with(|l| *l.borrow_mut() = location);
            let guarded = GUARDED.with(|g| g.get());
            if !guarded || std::env::var_os("TOASTY_SIM_PANIC").is_some() {
                default(info);
            }
        }));
    });
}

impl Cluster {
    pub fn new(options: SimOptions) -> Cluster {
        let mut prng = Prng::new(options.seed);
        let cluster_id = prng.u128() | 1;
        let quiet = options.profile == FaultProfile::Quiet;
        let mut fault_prng = prng.fork(1);
        let faults = if options.profile == FaultProfile::Network {
            Faults {
                crash: Ratio::zero(),
                crash_all: Ratio::zero(),
                restart: Ratio::one(),
                message_corrupt: Ratio::new(fault_prng.range_inclusive(0, 5) as u32, 1000),
                storm_ticks: (2_000, 15_000),
                calm_ticks: (500, 4_000),
            }
        } else if quiet {
            Faults {
                crash: Ratio::zero(),
                crash_all: Ratio::zero(),
                restart: Ratio::one(),
                message_corrupt: Ratio::zero(),
                storm_ticks: (0, 0),
                calm_ticks: (0, 0),
            }
        } else {
            Faults {
                // Swarm: a quarter of the seeds crash replicas often (up to
                // 1 % per tick), which is what exposes durability bugs.
                crash: Ratio::new(
                    if fault_prng.range_inclusive(0, 3) == 0 {
                        fault_prng.range_inclusive(10, 100)
                    } else {
                        fault_prng.range_inclusive(0, 4)
                    } as u32,
                    10_000,
                ),
                // Whole-cluster crashes right after commits are what expose an
                // acknowledgement sent before the write was durable.
                crash_all: Ratio::new(
                    if fault_prng.range_inclusive(0, 3) == 0 {
                        fault_prng.range_inclusive(5, 30)
                    } else {
                        fault_prng.range_inclusive(0, 1)
                    } as u32,
                    10_000,
                ),
                restart: Ratio::new(fault_prng.range_inclusive(1, 10) as u32, 100),
                message_corrupt: Ratio::new(fault_prng.range_inclusive(0, 5) as u32, 1000),
                storm_ticks: (2_000, 15_000),
                calm_ticks: (500, 4_000),
            }
        };
        let mut groups = Vec::new();
        for group in 0..options.group_count {
            groups.push(Cluster::group_new(&options, &mut prng, cluster_id, group));
        }
        let result = SimResult {
            seed: options.seed,
            replicas: options.replica_count,
            groups: options.group_count,
            clients: options.clients_per_group * options.group_count as usize,
            ticks: 0,
            requests_acked: 0,
            commits: 0,
            crashes: 0,
            view_changes: 0,
            syncs: 0,
            messages_corrupted: 0,
            violation: None,
            trace_hash: 0,
        };
        Cluster {
            options,
            groups,
            tick: 0,
            prng,
            faults,
            faults_enabled: !quiet,
            trace: xxhash_rust::xxh3::Xxh3::new(),
            result,
            log: std::env::var_os("TOASTY_SIM_LOG").is_some(),
            liveness: false,
            storm: !quiet,
            weather_change_tick: 0,
            core: Vec::new(),
        }
    }

    fn group_new(options: &SimOptions, prng: &mut Prng, cluster_id: u128, group: u32) -> Group {
        let r = options.replica_count;
        let quiet = options.profile == FaultProfile::Quiet;
        let disk_quiet = options.profile != FaultProfile::Default;
        let mut group_prng = prng.fork(100 + group as u64);
        let mut config = Config::test_min(cluster_id, group, 0, r);
        config.bug = options.bug;
        let layout = config.layout();
        let atlas = Rc::new(if disk_quiet {
            FaultAtlas::none(r as usize, layout)
        } else {
            FaultAtlas::new(&mut group_prng, r as usize, layout)
        });
        let node_count = r as usize + options.clients_per_group;
        let network_options = if quiet {
            NetworkOptions::quiet(node_count, r as usize)
        } else {
            NetworkOptions::random(&mut group_prng, node_count, r as usize)
        };
        let network = Network::new(network_options, group_prng.fork(1));
        let mut nodes = Vec::new();
        for replica in 0..r {
            let mut node_config = config.clone();
            node_config.replica = replica;
            let mut disk_prng = group_prng.fork(10 + replica as u64);
            let disk_options =
                if disk_quiet { DiskOptions::quiet() } else { DiskOptions::random(&mut disk_prng) };
            let mut disk =
                Disk::new(layout, disk_options, disk_prng.fork(1), atlas.clone(), replica as usize);
            let state_machine = ObjectStore::new(limits());
            for (zone, offset, data) in format(&node_config, &state_machine) {
                disk.write_direct(zone, offset, &data);
            }
            nodes.push(Node { replica: None, disk, config: node_config, boots: 0 });
        }
        let mut clients = Vec::new();
        for index in 0..options.clients_per_group {
            let id = group_prng.u128() | 1;
            clients.push(Client::new(
                id,
                cluster_id,
                group,
                r,
                group_prng.fork(1000 + index as u64),
            ));
        }
        Group { nodes, network, clients, committed: BTreeMap::new(), checkpoints: BTreeMap::new() }
    }

    fn requests_acked(&self) -> u64 {
        self.groups.iter().flat_map(|g| g.clients.iter()).map(|c| c.requests_done).sum()
    }

    fn violation(&mut self, what: String) {
        if self.result.violation.is_none() {
            self.result.violation = Some(what);
        }
    }

    pub fn run(mut self) -> SimResult {
        for g in 0..self.groups.len() {
            for r in 0..self.groups[g].nodes.len() {
                self.boot(g, r);
            }
        }
        // Safety phase: everything may break, in storms separated by calms.
        if self.storm {
            self.weather_change_tick =
                self.prng.range_inclusive(self.faults.storm_ticks.0, self.faults.storm_ticks.1);
        }
        while self.tick < self.options.ticks_safety_max
            && self.requests_acked() < self.options.requests
            && self.result.violation.is_none()
        {
            self.weather_maybe_change();
            self.step();
        }
        // Liveness phase: heal a random quorum of each group (the core) and
        // issue no new requests; the other replicas keep crashing and their
        // paths keep their faults. Every request in flight must complete and
        // the core must converge (TigerBeetle's VOPR does the same).
        self.liveness = true;
        let quorum = Config::test_min(0, 0, 0, self.options.replica_count).quorum_replication();
        let replica_count = self.options.replica_count as usize;
        for g in 0..self.groups.len() {
            let mut replicas: Vec<usize> = (0..replica_count).collect();
            self.prng.shuffle(&mut replicas);
            let mut core = vec![false; replica_count];
            for &r in &replicas[..quorum] {
                core[r] = true;
            }
            let group = &mut self.groups[g];
            group.network.set_faults(true);
            group.network.heal_core(&core);
            for (r, node) in group.nodes.iter_mut().enumerate() {
                node.disk.set_faults(!core[r] && self.options.profile == FaultProfile::Default);
            }
            self.core.push(core);
        }
        self.faults_enabled = self.options.profile != FaultProfile::Quiet;
        let liveness_end = self.tick + self.options.ticks_liveness_max;
        while self.tick < liveness_end && self.result.violation.is_none() {
            for g in 0..self.groups.len() {
                for r in 0..self.groups[g].nodes.len() {
                    if self.core[g][r] && self.groups[g].nodes[r].replica.is_none() {
                        self.boot(g, r);
                    }
                }
            }
            if self.converged() {
                break;
            }
            self.step();
        }
        if self.result.violation.is_none() && !self.converged() {
            let detail = self.liveness_report();
            self.violation(format!(
                "liveness: not converged within {} ticks of healing: {detail}",
                self.options.ticks_liveness_max
            ));
        }
        if self.result.violation.is_none() {
            self.check_final();
        }
        self.result.ticks = self.tick;
        self.result.requests_acked = self.requests_acked();
        self.result.commits = self.groups.iter().map(|g| g.committed.len() as u64).sum();
        self.trace.update(&self.tick.to_le_bytes());
        self.result.trace_hash = self.trace.digest128();
        self.result
    }

    /// Every core replica caught up with the group's commit, every client idle.
    fn converged(&self) -> bool {
        self.groups.iter().zip(&self.core).all(|(group, core)| {
            let commit = group.committed.keys().next_back().copied().unwrap_or(0);
            group.nodes.iter().zip(core).filter(|(_, c)| **c).all(|(node, _)| {
                node.replica.as_ref().is_some_and(|r| {
                    r.status() == Status::Normal
                        && r.commit_min() == commit
                        && r.op() == commit
                        && !r.syncing()
                })
            }) && group.clients.iter().all(|c| c.in_flight.is_none())
        })
    }

    fn liveness_report(&self) -> String {
        let mut out = String::new();
        for (g, group) in self.groups.iter().enumerate() {
            let commit = group.committed.keys().next_back().copied().unwrap_or(0);
            out.push_str(&format!("group {g} (commit {commit}): "));
            for node in &group.nodes {
                if let Some(r) = &node.replica {
                    out.push_str(&format!(
                        "[r{} {:?} view {} log_view {} op {} commit {}/{} ckpt {} sync {}] ",
                        r.replica(),
                        r.status(),
                        r.view(),
                        r.log_view(),
                        r.op(),
                        r.commit_min(),
                        r.commit_max(),
                        r.checkpoint_op(),
                        r.syncing()
                    ));
                    out.push_str(&r.debug_state());
                    out.push_str(&format!(
                        " disk pending {} due {:?} now {} boots {}",
                        node.disk.pending(),
                        node.disk.pending_due_min(),
                        self.tick,
                        node.boots
                    ));
                    out.push_str(" | ");
                }
            }
            for client in group.clients.iter() {
                if let Some(f) = &client.in_flight {
                    let h = f.message.header();
                    out.push_str(&format!(
                        "client {:x} waits for op {} request {} (registered {}); ",
                        client.id >> 96,
                        f.operation,
                        h.request.get(),
                        client.registered
                    ));
                }
            }
        }
        out
    }

    fn boot(&mut self, g: usize, r: usize) {
        let seed = self.prng.next_u64();
        if self.log {
            eprintln!("{} g{g} r{r} boot", self.tick);
        }
        let node = &mut self.groups[g].nodes[r];
        node.boots += 1;
        let config = node.config.clone();
        let disk = &mut node.disk;
        let opened = guarded(|| Replica::open(config, ObjectStore::new(limits()), disk, seed));
        match opened {
            Ok(Ok(replica)) => {
                if self.log {
                    eprintln!(
                        "{} g{g} r{r} opened: {:?} view {} log_view {} op {} commit {}/{} checkpoint {}",
                        self.tick, replica.status(), replica.view(), replica.log_view(), replica.op(),
                        replica.commit_min(), replica.commit_max(), replica.checkpoint_op()
                    );
                }
                self.groups[g].nodes[r].replica = Some(replica);
                self.drain(g, r);
            }
            Ok(Err(error)) => {
                self.violation(format!("group {g} replica {r}: open failed: {error}"))
            }
            Err(panic) => self.violation(format!("group {g} replica {r}: panic in open: {panic}")),
        }
    }

    /// Storm ↔ calm. A calm heals the network and stops crashes (crashed
    /// replicas still restart); disks keep their faults, bounded by the atlas.
    fn weather_maybe_change(&mut self) {
        if self.options.profile == FaultProfile::Quiet || self.tick < self.weather_change_tick {
            return;
        }
        self.storm = !self.storm;
        let range = if self.storm { self.faults.storm_ticks } else { self.faults.calm_ticks };
        self.weather_change_tick = self.tick + self.prng.range_inclusive(range.0, range.1);
        self.faults_enabled = self.storm;
        if self.log {
            eprintln!("{} weather: {}", self.tick, if self.storm { "storm" } else { "calm" });
        }
        for group in &mut self.groups {
            group.network.set_faults(self.storm);
        }
    }

    fn step(&mut self) {
        self.tick += 1;
        for g in 0..self.groups.len() {
            self.step_group(g);
            if self.result.violation.is_some() {
                return;
            }
        }
    }

    fn step_group(&mut self, g: usize) {
        let tick = self.tick;
        let replica_count = self.options.replica_count as usize;
        self.crash_maybe(g);
        // Disks: completed writes are durable now.
        for r in 0..replica_count {
            let done = self.groups[g].nodes[r].disk.tick(tick);
            for id in done {
                self.with_replica(g, r, |replica| replica.on_write_done(id));
            }
        }
        // Network.
        self.groups[g].network.tick(tick);
        let deliveries = self.groups[g].network.deliver(tick);
        for (from, to, bytes) in deliveries {
            self.deliver(g, from, to, bytes);
        }
        // Ticks and clients.
        for r in 0..replica_count {
            self.with_replica(g, r, |replica| replica.on_tick());
        }
        let want_more = !self.liveness && self.requests_acked() < self.options.requests;
        for c in 0..self.groups[g].clients.len() {
            if let Some((target, message)) = self.groups[g].clients[c].next(tick, want_more) {
                let from = replica_count + c;
                self.groups[g].network.submit(tick, from, target as usize, message.shared());
            }
        }
    }

    fn deliver(&mut self, g: usize, from: usize, to: usize, bytes: Rc<[u8]>) {
        let replica_count = self.options.replica_count as usize;
        let mut bytes = bytes.to_vec();
        let healed = |node: usize| node >= replica_count || self.core[g][node];
        let path_faulty = !self.liveness || !(healed(from) && healed(to));
        if self.faults_enabled
            && path_faulty
            && self.prng.chance(self.faults.message_corrupt)
            && !bytes.is_empty()
        {
            let bit = self.prng.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            self.result.messages_corrupted += 1;
        }
        let message =
            match Message::parse(&bytes, Config::test_min(0, 0, 0, 1).message_size_max as usize) {
                Ok(message) => message,
                Err(_) => return, // Dropped and counted by the transport; never trusted.
            };
        if to < replica_count {
            self.with_replica(g, to, |replica| replica.on_message(message));
        } else {
            let tick = self.tick;
            let client = &mut self.groups[g].clients[to - replica_count];
            if client.on_message(&message, tick) {
                let h = message.header();
                self.trace.update(&h.client.get().to_le_bytes());
                self.trace.update(&h.request.get().to_le_bytes());
                self.trace.update(message.body());
            }
        }
    }

    fn with_replica(&mut self, g: usize, r: usize, f: impl FnOnce(&mut Replica<ObjectStore>)) {
        let Some(replica) = self.groups[g].nodes[r].replica.as_mut() else { return };
        if let Err(panic) = guarded(|| f(replica)) {
            self.violation(format!("group {g} replica {r}: panic: {panic}"));
            return;
        }
        self.drain(g, r);
    }

    /// Execute the replica's actions and check its events.
    fn drain(&mut self, g: usize, r: usize) {
        let tick = self.tick;
        let replica_count = self.options.replica_count as usize;
        let Some(replica) = self.groups[g].nodes[r].replica.as_mut() else { return };
        let actions = replica.take_actions();
        let events = replica.take_events();
        for action in actions {
            match action {
                Action::Write(write) => self.groups[g].nodes[r].disk.submit(tick, write),
                Action::Send { target, message } => {
                    let to = match target {
                        Target::Replica(i) => i as usize,
                        Target::Client(id) => {
                            match self.groups[g].clients.iter().position(|c| c.id == id) {
                                Some(index) => replica_count + index,
                                None => continue,
                            }
                        }
                    };
                    self.groups[g].network.submit(tick, r, to, message.shared());
                }
            }
        }
        for event in events {
            self.check_event(g, r, event);
        }
    }

    fn check_event(&mut self, g: usize, r: usize, event: Event) {
        let tick = self.tick;
        if self.log {
            let what = match &event {
                Event::Committed { prepare } => {
                    format!("commit {prepare:?} {:x}", prepare.checksum() >> 96)
                }
                other => format!("{other:?}").chars().take(120).collect(),
            };
            eprintln!("{tick} g{g} r{r} {what}");
        }
        match event {
            Event::Committed { prepare } => {
                let header = *prepare.header();
                let op = header.op.get();
                self.trace.update(&(g as u64).to_le_bytes());
                self.trace.update(&(r as u64).to_le_bytes());
                self.trace.update(&op.to_le_bytes());
                self.trace.update(&prepare.checksum().to_le_bytes());
                let group = &mut self.groups[g];
                match group.committed.get(&op) {
                    Some((canonical, _)) if canonical.checksum() != prepare.checksum() => {
                        let what = format!("group {g} replica {r}: committed op {op} {:?} {:x}, but op {op} was committed as {:?} {:x}", prepare, prepare.checksum(), canonical, canonical.checksum());
                        self.violation(what);
                    }
                    Some(_) => {}
                    None => {
                        let parent_ok = match op {
                            1 => true,
                            _ => group
                                .committed
                                .get(&(op - 1))
                                .is_none_or(|(p, _)| p.checksum() == header.parent.get()),
                        };
                        let traced = header.client.get() == 0
                            || header.request.get() == 0
                            || group.clients.iter().any(|c| c.sent.contains(&header.context.get()));
                        group.committed.insert(op, (prepare, tick));
                        if !parent_ok {
                            self.violation(format!(
                                "group {g}: op {op} does not chain onto op {}",
                                op - 1
                            ));
                        } else if !traced {
                            self.violation(format!(
                                "group {g}: op {op} committed but no client sent that request"
                            ));
                        }
                    }
                }
            }
            Event::Checkpointed { op, blob, .. } => {
                let group = &mut self.groups[g];
                match group.checkpoints.get(&op) {
                    Some(existing) if existing[..] != blob[..] => {
                        self.violation(format!("group {g} replica {r}: checkpoint at op {op} differs from another replica's"));
                    }
                    Some(_) => {}
                    None => {
                        group.checkpoints.insert(op, blob);
                    }
                }
            }
            Event::Synced { .. } => self.result.syncs += 1,
            Event::ViewInstalled { .. } => self.result.view_changes += 1,
        }
    }

    /// Crashes only while faults are on, and never a core replica in the
    /// liveness phase; restarts in any weather.
    fn crash_maybe(&mut self, g: usize) {
        let replica_count = self.options.replica_count as usize;
        if self.options.profile == FaultProfile::Quiet {
            return;
        }
        // Whole-cluster crashes strike in calms too: they are what catches
        // an acknowledgement sent before its write was durable, and that
        // needs commits, which storms hardly allow.
        if !self.liveness && self.prng.chance(self.faults.crash_all) {
            for r in 0..replica_count {
                self.crash(g, r);
            }
            return;
        }
        for r in 0..replica_count {
            let up = self.groups[g].nodes[r].replica.is_some();
            let may_crash = self.faults_enabled && !(self.liveness && self.core[g][r]);
            if up && may_crash && self.prng.chance(self.faults.crash) {
                self.crash(g, r);
            } else if !up && self.prng.chance(self.faults.restart) {
                self.boot(g, r);
            }
        }
    }

    fn crash(&mut self, g: usize, r: usize) {
        let node = &mut self.groups[g].nodes[r];
        if node.replica.take().is_some() {
            if self.log {
                eprintln!("{} g{g} r{r} crash", self.tick);
            }
            node.disk.crash();
            self.result.crashes += 1;
        }
    }

    /// At the end: the linearizability of every group's history, and every
    /// replica's state equal to the committed log replayed from scratch.
    fn check_final(&mut self) {
        for g in 0..self.groups.len() {
            let group = &self.groups[g];
            let mut committed = Vec::new();
            let mut ticks = Vec::new();
            for (op, (prepare, tick)) in &group.committed {
                let h = prepare.header();
                committed.push(CommittedOp {
                    op: *op,
                    timestamp: h.timestamp.get(),
                    client: h.client.get(),
                    request: h.request.get(),
                    operation: h.operation,
                    body: prepare.body().to_vec(),
                });
                ticks.push(*tick);
            }
            let observed: Vec<_> =
                group.clients.iter().flat_map(|c| c.observed.iter().cloned()).collect();
            if let Err(what) =
                check_history(ObjectStore::new(limits()), &committed, &ticks, &observed)
            {
                return self.violation(format!("group {g}: history: {what}"));
            }
            let mut model = ObjectStore::new(limits());
            let mut reply = Vec::new();
            for op in &committed {
                if op.operation >= crate::vsr::message::OPERATION_STATE_MACHINE_MIN {
                    reply.clear();
                    model.commit(op.op, op.timestamp, op.operation, &op.body, &mut reply);
                }
            }
            let mut expected = Vec::new();
            model.snapshot(&mut expected);
            let commit = committed.last().map(|op| op.op).unwrap_or(0);
            for (r, node) in group.nodes.iter().enumerate() {
                let Some(replica) = &node.replica else { continue };
                // The core converged; a replica outside it is compared only
                // if it caught up as well.
                if !self.core[g][r] && replica.commit_min() != commit {
                    continue;
                }
                let mut actual = Vec::new();
                replica.state_machine().snapshot(&mut actual);
                if actual != expected {
                    let what = format!(
                        "group {g} replica {}: state differs from the committed log replayed",
                        replica.replica()
                    );
                    return self.violation(what);
                }
            }
            let _ = checksum(&expected);
        }
    }
}

/// Run one seed.
pub fn run(options: SimOptions) -> SimResult {
    panic_hook_install();
    Cluster::new(options).run()
}

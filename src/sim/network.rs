//! The simulated network: a packet simulator in the style of TigerBeetle's
//! `packet_simulator.zig`.
//!
//! Every ordered pair of nodes (a *path*) has a bounded queue of packets in
//! flight, each due at a tick drawn from an exponential delay. Faults: loss,
//! replay (duplicates), per-path capacity overflow, clogged paths (packets wait
//! until the clog clears) and partitions of the replicas (packets crossing the
//! cut are dropped at delivery). Nodes `0..replica_count` are replicas, the
//! rest are clients; partitions never cut a client off, because a client that
//! cannot reach any replica tests nothing.
//!
//! Loopback packets (`from == to`) never leave the process in production, so
//! they are delayed and bounded like any other packet but never lost,
//! replayed, clogged or partitioned.

use super::prng::{Prng, Ratio};

/// Per-path capacity of the quiet network: large enough that no test burst
/// overflows it, still a bound.
const QUIET_PATH_CAPACITY: usize = 256;

// Fork labels: one independent stream per kind of draw, so a new knob does
// not reshuffle the draws of the others.
const FORK_DELAY: u64 = 1;
const FORK_LOSS: u64 = 2;
const FORK_REPLAY: u64 = 3;
const FORK_CAPACITY: u64 = 4;
const FORK_CLOG: u64 = 5;
const FORK_PARTITION: u64 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionMode {
    /// Never partition.
    None,
    /// Draw the size of one side uniformly in 1..replicas, then its members.
    UniformSize,
    /// Put each replica on a side by a coin flip (biased to equal halves).
    UniformPartition,
    /// Cut exactly one replica off.
    IsolateSingle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionSymmetry {
    /// Neither side hears the other.
    Symmetric,
    /// One side's packets still cross; the other side's are dropped.
    Asymmetric,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkOptions {
    pub node_count: usize,
    /// Nodes `0..replica_count` are replicas; the rest are clients.
    pub replica_count: usize,
    /// Ticks every packet takes at least.
    pub one_way_delay_min: u64,
    /// Mean delay in ticks; the part above the minimum is exponential.
    pub one_way_delay_mean: u64,
    pub packet_loss: Ratio,
    /// Probability that a delivered packet is also re-queued for a second,
    /// later delivery.
    pub packet_replay: Ratio,
    /// Packets in flight per (from, to) path; a packet submitted to a full
    /// path drops a random queued one.
    pub path_capacity: usize,
    /// Probability, per path per tick, that the path clogs.
    pub path_clog: Ratio,
    /// Mean ticks a clog lasts (exponential).
    pub path_clog_duration_mean: u64,
    pub partition_mode: PartitionMode,
    pub partition_symmetry: PartitionSymmetry,
    /// Probability per tick that a partition starts (when healed and stable).
    pub partition_probability: Ratio,
    /// Probability per tick that a partition heals (when stable).
    pub unpartition_probability: Ratio,
    /// Minimum ticks a partition, or a healed network, lasts before changing.
    pub partition_stability: u64,
}

impl NetworkOptions {
    /// A swarm-testing draw: each seed gets its own mix of faults, within the
    /// ranges TigerBeetle's VOPR uses (10 ms ticks).
    pub fn random(prng: &mut Prng, node_count: usize, replica_count: usize) -> NetworkOptions {
        let one_way_delay_min = prng.range_inclusive(0, 3);
        let one_way_delay_mean = prng.range_inclusive(3, 10).max(one_way_delay_min);
        let modes = [
            PartitionMode::None,
            PartitionMode::UniformSize,
            PartitionMode::UniformPartition,
            PartitionMode::IsolateSingle,
        ];
        let options = NetworkOptions {
            node_count,
            replica_count,
            one_way_delay_min,
            one_way_delay_mean,
            packet_loss: Ratio::percent(prng.range_inclusive(0, 30) as u32),
            packet_replay: Ratio::percent(prng.range_inclusive(0, 50) as u32),
            path_capacity: prng.range_inclusive(2, 20) as usize,
            // 0–2 % per path per tick, in basis points for finer steps.
            path_clog: Ratio::new(prng.range_inclusive(0, 200) as u32, 10_000),
            // Up to 5 s.
            path_clog_duration_mean: prng.range_inclusive(0, 500),
            partition_mode: modes[prng.index(modes.len())],
            partition_symmetry: if prng.boolean() {
                PartitionSymmetry::Symmetric
            } else {
                PartitionSymmetry::Asymmetric
            },
            partition_probability: Ratio::percent(prng.range_inclusive(0, 3) as u32),
            unpartition_probability: Ratio::percent(prng.range_inclusive(1, 10) as u32),
            partition_stability: prng.range_inclusive(100, 200),
        };
        options.assert_valid();
        options
    }

    /// No faults and a short delay; delays still vary, so packets still
    /// reorder.
    pub fn quiet(node_count: usize, replica_count: usize) -> NetworkOptions {
        let options = NetworkOptions {
            node_count,
            replica_count,
            one_way_delay_min: 1,
            one_way_delay_mean: 2,
            packet_loss: Ratio::zero(),
            packet_replay: Ratio::zero(),
            path_capacity: QUIET_PATH_CAPACITY,
            path_clog: Ratio::zero(),
            path_clog_duration_mean: 0,
            partition_mode: PartitionMode::None,
            partition_symmetry: PartitionSymmetry::Symmetric,
            partition_probability: Ratio::zero(),
            unpartition_probability: Ratio::zero(),
            partition_stability: 0,
        };
        options.assert_valid();
        options
    }

    pub fn assert_valid(&self) {
        assert!(self.replica_count >= 1);
        assert!(self.replica_count <= self.node_count);
        assert!(self.one_way_delay_mean >= self.one_way_delay_min);
        assert!(self.path_capacity >= 1);
        self.packet_loss.assert_valid();
        self.packet_replay.assert_valid();
        self.path_clog.assert_valid();
        self.partition_probability.assert_valid();
        self.unpartition_probability.assert_valid();
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    pub submitted: u64,
    pub delivered: u64,
    pub dropped_loss: u64,
    pub dropped_partition: u64,
    pub dropped_capacity: u64,
    /// Extra copies queued by replay (each is later delivered or dropped).
    pub replayed: u64,
    pub clogs: u64,
    pub partitions: u64,
}

struct InFlight<T> {
    due_tick: u64,
    /// Global submission order: breaks ties between packets due at the same
    /// tick, so delivery order never depends on queue layout.
    sequence: u64,
    from: usize,
    to: usize,
    packet: T,
}

struct Path<T> {
    queue: Vec<InFlight<T>>,
    /// The path holds its packets while `now < clogged_until_tick`.
    clogged_until_tick: u64,
}

struct Partition {
    active: bool,
    /// Side of each replica while `active`.
    side: Vec<bool>,
    /// With asymmetric partitions, packets from this side still cross.
    side_crossing: bool,
    /// No change (start or heal) before this tick.
    stable_until_tick: u64,
}

pub struct Network<T: Clone> {
    options: NetworkOptions,
    faults_enabled: bool,
    /// Per replica: healed by `heal_core` (clients always count as healed).
    /// Empty unless a core was healed.
    core: Vec<bool>,
    /// Indexed by `from * node_count + to`.
    paths: Vec<Path<T>>,
    partition: Partition,
    sequence_next: u64,
    tick_last: Option<u64>,
    stats: NetworkStats,
    prng_delay: Prng,
    prng_loss: Prng,
    prng_replay: Prng,
    prng_capacity: Prng,
    prng_clog: Prng,
    prng_partition: Prng,
}

impl<T: Clone> Network<T> {
    pub fn new(options: NetworkOptions, prng: Prng) -> Network<T> {
        options.assert_valid();
        let path_count = options.node_count * options.node_count;
        let paths = (0..path_count)
            .map(|_| Path {
                queue: Vec::with_capacity(options.path_capacity),
                clogged_until_tick: 0,
            })
            .collect();
        let partition = Partition {
            active: false,
            side: vec![false; options.replica_count],
            side_crossing: false,
            stable_until_tick: 0,
        };
        Network {
            options,
            faults_enabled: true,
            core: Vec::new(),
            paths,
            partition,
            sequence_next: 0,
            tick_last: None,
            stats: NetworkStats::default(),
            prng_delay: prng.fork(FORK_DELAY),
            prng_loss: prng.fork(FORK_LOSS),
            prng_replay: prng.fork(FORK_REPLAY),
            prng_capacity: prng.fork(FORK_CAPACITY),
            prng_clog: prng.fork(FORK_CLOG),
            prng_partition: prng.fork(FORK_PARTITION),
        }
    }

    pub fn options(&self) -> &NetworkOptions {
        &self.options
    }

    pub fn stats(&self) -> NetworkStats {
        self.stats
    }

    /// Packets queued on all paths.
    pub fn in_flight(&self) -> usize {
        self.paths.iter().map(|path| path.queue.len()).sum()
    }

    pub fn partition_active(&self) -> bool {
        self.partition.active
    }

    pub fn submit(&mut self, now: u64, from: usize, to: usize, packet: T) {
        assert!(from < self.options.node_count);
        assert!(to < self.options.node_count);
        assert!(self.tick_last.is_none_or(|tick_last| now >= tick_last), "time went back");
        self.stats.submitted += 1;
        self.enqueue(now, from, to, packet);
    }

    /// Every packet due at or before `now` on an unclogged path, ordered by
    /// due tick, then submission order. Packets cut by a partition or lost
    /// are dropped here, at arrival, so a partition also catches packets
    /// already in flight. Advances the fault state first (see `tick`).
    pub fn deliver(&mut self, now: u64) -> Vec<(usize, usize, T)> {
        self.tick(now);
        let mut due = Vec::new();
        for path in self.paths.iter_mut() {
            if now < path.clogged_until_tick {
                continue;
            }
            let mut index = 0;
            while index < path.queue.len() {
                if path.queue[index].due_tick <= now {
                    due.push(path.queue.swap_remove(index));
                } else {
                    index += 1;
                }
            }
        }
        due.sort_by_key(|in_flight| (in_flight.due_tick, in_flight.sequence));

        let mut delivered = Vec::with_capacity(due.len());
        for in_flight in due {
            let (from, to) = (in_flight.from, in_flight.to);
            if self.partitioned(from, to) {
                self.stats.dropped_partition += 1;
                continue;
            }
            let faulty = self.faults_enabled && from != to && !self.path_healed(from, to);
            if faulty && self.prng_loss.chance(self.options.packet_loss) {
                self.stats.dropped_loss += 1;
                continue;
            }
            if faulty && self.prng_replay.chance(self.options.packet_replay) {
                self.stats.replayed += 1;
                self.enqueue(now, from, to, in_flight.packet.clone());
            }
            self.stats.delivered += 1;
            delivered.push((from, to, in_flight.packet));
        }
        self.assert_accounting();
        delivered
    }

    /// Advance partitions and clogs by one tick. Idempotent for a given
    /// `now` (so calling it and then `deliver` in the same tick is fine);
    /// the per-tick probabilities assume it runs once every tick.
    pub fn tick(&mut self, now: u64) {
        if let Some(tick_last) = self.tick_last {
            assert!(now >= tick_last, "time went back");
            if now == tick_last {
                return;
            }
        }
        self.tick_last = Some(now);
        if !self.faults_enabled {
            return;
        }
        if self.core.is_empty() {
            self.tick_partition(now);
        }
        self.tick_clogs(now);
    }

    /// The liveness phase's healing: paths between `core` replicas (and
    /// between them and clients) lose every fault, partitions end for good,
    /// and paths touching any other replica keep their loss, replay and
    /// clogs, as a real cluster's sick node would.
    pub fn heal_core(&mut self, core: &[bool]) {
        assert_eq!(core.len(), self.options.replica_count);
        assert!(core.iter().any(|&c| c), "a core has at least one replica");
        self.core = core.to_vec();
        self.partition.active = false;
        self.partition.side.fill(false);
        let node_count = self.options.node_count;
        for index in 0..self.paths.len() {
            if self.path_healed(index / node_count, index % node_count) {
                self.paths[index].clogged_until_tick = 0;
            }
        }
    }

    /// True if both ends are healed core members (or clients).
    fn path_healed(&self, from: usize, to: usize) -> bool {
        if self.core.is_empty() {
            return false;
        }
        let healed = |node: usize| node >= self.options.replica_count || self.core[node];
        healed(from) && healed(to)
    }

    /// `false` starts a calm: heal every partition and clog, and stop loss,
    /// replay, clogs and partitions (`true` ends it, and forgets a healed core). Delays stay, and so does the
    /// path capacity, since it is a bound rather than a fault.
    pub fn set_faults(&mut self, enabled: bool) {
        self.faults_enabled = enabled;
        self.core.clear();
        if !enabled {
            self.partition.active = false;
            self.partition.side.fill(false);
            for path in self.paths.iter_mut() {
                path.clogged_until_tick = 0;
            }
        }
    }

    /// True if a packet from `from` to `to` would be dropped by the current
    /// partition.
    pub fn partitioned(&self, from: usize, to: usize) -> bool {
        let replica_count = self.options.replica_count;
        if !self.partition.active || from >= replica_count || to >= replica_count {
            return false;
        }
        let from_side = self.partition.side[from];
        if from_side == self.partition.side[to] {
            return false;
        }
        match self.options.partition_symmetry {
            PartitionSymmetry::Symmetric => true,
            PartitionSymmetry::Asymmetric => from_side != self.partition.side_crossing,
        }
    }

    fn enqueue(&mut self, now: u64, from: usize, to: usize, packet: T) {
        let delay_ticks = self.options.one_way_delay_min
            + self
                .prng_delay
                .exponential(self.options.one_way_delay_mean - self.options.one_way_delay_min);
        let sequence = self.sequence_next;
        self.sequence_next += 1;
        let path = &mut self.paths[from * self.options.node_count + to];
        assert!(path.queue.len() <= self.options.path_capacity);
        if path.queue.len() == self.options.path_capacity {
            // A full router queue drops something already queued, not
            // necessarily the newest packet (as TigerBeetle's simulator does).
            let victim = self.prng_capacity.index(path.queue.len());
            path.queue.swap_remove(victim);
            self.stats.dropped_capacity += 1;
        }
        path.queue.push(InFlight { due_tick: now + delay_ticks, sequence, from, to, packet });
        assert!(path.queue.len() <= self.options.path_capacity);
    }

    fn tick_partition(&mut self, now: u64) {
        if self.options.replica_count < 2 || self.options.partition_mode == PartitionMode::None {
            return;
        }
        if now < self.partition.stable_until_tick {
            return;
        }
        if self.partition.active {
            if self.prng_partition.chance(self.options.unpartition_probability) {
                self.partition.active = false;
                self.partition.side.fill(false);
                self.partition.stable_until_tick = now + self.options.partition_stability;
            }
        } else if self.prng_partition.chance(self.options.partition_probability) {
            self.partition_start();
            self.partition.stable_until_tick = now + self.options.partition_stability;
        }
    }

    fn partition_start(&mut self) {
        let replica_count = self.options.replica_count;
        assert!(replica_count >= 2);
        let prng = &mut self.prng_partition;
        let side = &mut self.partition.side;
        match self.options.partition_mode {
            PartitionMode::None => unreachable!("partitions are off"),
            PartitionMode::UniformSize => {
                let size = prng.range_inclusive(1, replica_count as u64 - 1) as usize;
                let mut replicas: Vec<usize> = (0..replica_count).collect();
                prng.shuffle(&mut replicas);
                side.fill(false);
                for &replica in &replicas[..size] {
                    side[replica] = true;
                }
            }
            PartitionMode::UniformPartition => {
                for replica_side in side.iter_mut() {
                    *replica_side = prng.boolean();
                }
                if side.iter().all(|&s| s == side[0]) {
                    let replica = prng.index(replica_count);
                    side[replica] = !side[replica];
                }
            }
            PartitionMode::IsolateSingle => {
                side.fill(false);
                side[prng.index(replica_count)] = true;
            }
        }
        assert!(side.iter().any(|&s| s), "a partition has two non-empty sides");
        assert!(side.iter().any(|&s| !s), "a partition has two non-empty sides");
        self.partition.side_crossing = prng.boolean();
        self.partition.active = true;
        self.stats.partitions += 1;
    }

    fn tick_clogs(&mut self, now: u64) {
        let node_count = self.options.node_count;
        let replica_count = self.options.replica_count;
        let core = &self.core;
        for (path_index, path) in self.paths.iter_mut().enumerate() {
            if path_index / node_count == path_index % node_count {
                continue; // Loopback never clogs.
            }
            // Draw for every path every tick, clogged or not, so the stream
            // does not depend on which paths happen to be clogged.
            let clog = self.prng_clog.chance(self.options.path_clog);
            let healed = !core.is_empty() && {
                let healed = |node: usize| node >= replica_count || core[node];
                healed(path_index / node_count) && healed(path_index % node_count)
            };
            if clog && !healed && now >= path.clogged_until_tick {
                let duration_ticks =
                    self.prng_clog.exponential(self.options.path_clog_duration_mean);
                path.clogged_until_tick = now + duration_ticks;
                self.stats.clogs += 1;
            }
        }
    }

    /// Every packet ever queued is delivered, dropped or still in flight.
    fn assert_accounting(&self) {
        let stats = &self.stats;
        let queued = stats.submitted + stats.replayed;
        let resolved = stats.delivered
            + stats.dropped_loss
            + stats.dropped_partition
            + stats.dropped_capacity
            + self.in_flight() as u64;
        assert_eq!(queued, resolved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `ticks` ticks, submitting `packets_per_tick` packets over all
    /// paths round-robin, and returns every delivery with its tick.
    fn run(
        network: &mut Network<u64>,
        ticks: u64,
        packets_per_tick: u64,
    ) -> Vec<(u64, usize, usize, u64)> {
        let node_count = network.options().node_count;
        let mut deliveries = Vec::new();
        let mut packet = 0u64;
        for now in 0..ticks {
            for (from, to, delivered) in network.deliver(now) {
                deliveries.push((now, from, to, delivered));
            }
            for _ in 0..packets_per_tick {
                let from = (packet as usize) % node_count;
                let to = (packet as usize / node_count) % node_count;
                network.submit(now, from, to, packet);
                packet += 1;
            }
        }
        deliveries
    }

    #[test]
    fn quiet_delivers_every_packet_exactly_once() {
        let mut network = Network::new(NetworkOptions::quiet(5, 3), Prng::new(1));
        let mut deliveries = run(&mut network, 1000, 3);
        // Drain: the quiet delay is short, 200 more ticks is plenty.
        for now in 1000..1200 {
            for (from, to, packet) in network.deliver(now) {
                deliveries.push((now, from, to, packet));
            }
        }
        assert_eq!(network.in_flight(), 0);
        let mut packets: Vec<u64> = deliveries.iter().map(|d| d.3).collect();
        packets.sort();
        assert_eq!(packets, (0..3000).collect::<Vec<u64>>());
        for &(_, from, to, packet) in &deliveries {
            assert_eq!(from, packet as usize % 5);
            assert_eq!(to, (packet as usize / 5) % 5);
        }
        // Delays vary, so some packets overtake others.
        let order: Vec<u64> = deliveries.iter().map(|d| d.3).collect();
        assert!(order.windows(2).any(|w| w[0] > w[1]), "no reordering");
        let stats = network.stats();
        assert_eq!(stats.submitted, 3000);
        assert_eq!(stats.delivered, 3000);
    }

    #[test]
    fn total_loss_delivers_nothing_across_nodes() {
        let mut options = NetworkOptions::quiet(4, 3);
        options.packet_loss = Ratio::one();
        let mut network = Network::new(options, Prng::new(2));
        let deliveries = run(&mut network, 500, 4);
        assert!(deliveries.iter().all(|&(_, from, to, _)| from == to), "only loopback survives");
        assert!(network.stats().dropped_loss > 1000);
    }

    #[test]
    fn partitions_drop_across_and_not_within() {
        for symmetry in [PartitionSymmetry::Symmetric, PartitionSymmetry::Asymmetric] {
            let mut options = NetworkOptions::quiet(7, 5);
            options.partition_mode = PartitionMode::UniformSize;
            options.partition_symmetry = symmetry;
            options.partition_probability = Ratio::percent(5);
            options.unpartition_probability = Ratio::percent(5);
            options.partition_stability = 20;
            let mut network = Network::new(options, Prng::new(3));
            let mut delivered_within = 0;
            for now in 0..3000u64 {
                for (from, to, _) in network.deliver(now) {
                    // The cut is checked on arrival, against the partition
                    // of this tick.
                    assert!(!network.partitioned(from, to), "a packet crossed the cut");
                    let replicas = from < 5 && to < 5 && from != to;
                    if replicas
                        && network.partition_active()
                        && network.partition.side[from] == network.partition.side[to]
                    {
                        delivered_within += 1;
                    }
                }
                for from in 0..7 {
                    for to in 0..7 {
                        let cut = network.partitioned(from, to);
                        if from >= 5 || to >= 5 || !network.partition_active() {
                            assert!(!cut, "clients and healed networks are never cut");
                        }
                        if cut {
                            let back = network.partitioned(to, from);
                            assert_eq!(back, symmetry == PartitionSymmetry::Symmetric);
                        }
                        network.submit(now, from, to, 0);
                    }
                }
            }
            let stats = network.stats();
            assert!(stats.partitions > 1, "partitions started and healed");
            assert!(stats.dropped_partition > 0);
            assert!(delivered_within > 0, "packets within one side still arrive");
        }
    }

    #[test]
    fn partition_drops_exactly_crossing_packets() {
        let mut options = NetworkOptions::quiet(5, 3);
        options.one_way_delay_min = 0;
        options.one_way_delay_mean = 0;
        options.partition_mode = PartitionMode::IsolateSingle;
        options.partition_probability = Ratio::one();
        options.partition_stability = 1000;
        let mut network = Network::new(options, Prng::new(4));
        network.tick(0);
        assert!(network.partition_active());
        for from in 0..5 {
            for to in 0..5 {
                network.submit(0, from, to, (from * 5 + to) as u64);
            }
        }
        // Zero delay: everything submitted at tick 0 is due at tick 0.
        let delivered = network.deliver(0);
        let cut: Vec<u64> =
            (0..25u64).filter(|&p| network.partitioned(p as usize / 5, p as usize % 5)).collect();
        // Isolating one of three replicas cuts 2 paths each way.
        assert_eq!(cut.len(), 4);
        assert_eq!(delivered.len(), 25 - 4);
        assert!(delivered.iter().all(|&(_, _, p)| !cut.contains(&p)));
        assert_eq!(network.stats().dropped_partition, 4);
    }

    #[test]
    fn delivery_ordered_by_due_tick_then_submission() {
        let mut options = NetworkOptions::quiet(6, 3);
        options.one_way_delay_min = 0;
        options.one_way_delay_mean = 0;
        let mut network = Network::new(options, Prng::new(9));
        let mut prng = Prng::new(10);
        for packet in 0..100u64 {
            network.submit(0, prng.index(6), prng.index(6), packet);
        }
        // Zero delay: all due at tick 0, so submission order decides, not
        // the path a packet took.
        let order: Vec<u64> = network.deliver(0).into_iter().map(|(_, _, p)| p).collect();
        assert_eq!(order, (0..100).collect::<Vec<u64>>());
    }

    #[test]
    fn same_seed_same_delivery_order() {
        let mut prng = Prng::new(5);
        let options = NetworkOptions::random(&mut prng, 6, 3);
        let mut a = Network::new(options.clone(), Prng::new(6));
        let mut b = Network::new(options.clone(), Prng::new(6));
        let mut c = Network::new(options, Prng::new(7));
        let run_a = run(&mut a, 2000, 4);
        let run_b = run(&mut b, 2000, 4);
        let run_c = run(&mut c, 2000, 4);
        assert!(!run_a.is_empty());
        assert_eq!(run_a, run_b);
        assert_eq!(a.stats(), b.stats());
        assert_ne!(run_a, run_c);
    }

    #[test]
    fn capacity_bound_holds() {
        let mut options = NetworkOptions::quiet(2, 2);
        options.path_capacity = 3;
        options.one_way_delay_min = 50;
        options.one_way_delay_mean = 60;
        let mut network = Network::new(options, Prng::new(8));
        for now in 0..40 {
            network.deliver(now);
            for _ in 0..5 {
                network.submit(now, 0, 1, now);
            }
            assert!(network.in_flight() <= 3, "one busy path holds at most 3");
        }
        assert_eq!(network.stats().dropped_capacity, 200 - 3);
    }

    #[test]
    fn swarm_faults_then_liveness_phase() {
        for seed in 0..20 {
            let mut prng = Prng::new(seed);
            let options = NetworkOptions::random(&mut prng, 8, 5);
            let capacity = options.path_capacity;
            let mut network = Network::new(options, prng.fork(99));
            run(&mut network, 3000, 10);
            assert!(network.in_flight() <= capacity * 64);
            network.set_faults(false);
            assert!(!network.partition_active());
            let before = network.stats();
            for now in 3000..3100 {
                network.deliver(now);
            }
            let after = network.stats();
            assert_eq!(after.dropped_loss, before.dropped_loss);
            assert_eq!(after.dropped_partition, before.dropped_partition);
            assert_eq!(after.replayed, before.replayed);
        }
    }
}

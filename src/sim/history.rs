//! Linearizability checker for the object history of one replication group.
//!
//! Writes are linearized in log order (the commit order every replica
//! agrees on), so there is no search over orders: the checker replays the
//! committed log through a fresh state machine and demands that
//!
//! - (a) exactly once: no (client, request) commits twice;
//! - (b) every write a client saw is in the log at the op its reply named,
//!   was first committed while the request was outstanding, and its reply
//!   is the one the replay produces at that op;
//! - (c) real time: a write whose reply was seen before another write was
//!   invoked sits earlier in the log;
//! - (d) every read saw the state after some log prefix `p` that its own
//!   real-time interval allows: `lo <= p <= hi`, where `lo` is the highest
//!   op of a write completed before the read was invoked, and `hi` the
//!   number of ops committed (anywhere) by the time the read completed;
//!   moreover a read invoked after another read completed may not see an
//!   older prefix than that one did (the stale read a deposed primary would
//!   serve after its successor served a fresh one).
//!
//! (d) runs as one forward sweep: each read is pending while the sweep is
//! inside its window and is queried against the state at each position until
//! it matches; a read whose window ends without a match is a violation.
//! Writes that are invoked after a read completed need no check against it:
//! they commit after their invocation, so after the read's `hi`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::vsr::message::OPERATION_STATE_MACHINE_MIN;
use crate::vsr::state_machine::StateMachine;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOp {
    pub op: u64,
    pub timestamp: u64,
    pub client: u128,
    pub request: u32,
    pub operation: u8,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedReply {
    pub client: u128,
    pub request: u32,
    pub operation: u8,
    pub body: Vec<u8>,
    pub reply: Vec<u8>,
    pub tick_invoked: u64,
    pub tick_completed: u64,
    /// The commit op for writes, from the reply header; None for reads.
    pub op: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckSummary {
    pub ops_committed: u64,
    /// Committed ops of the state machine (protocol ops are skipped).
    pub ops_applied: u64,
    pub writes_checked: u64,
    pub reads_checked: u64,
    /// The widest read window `hi - lo`: how much freedom reads had.
    pub read_window_max: u64,
}

/// A read, the log prefixes its real-time interval allows, and its place
/// among the other reads in real time.
#[derive(Clone, Copy, Debug)]
struct ReadWindow {
    observed: usize,
    lo: u64,
    hi: u64,
    /// Position among reads ordered by completion.
    rank: usize,
    /// How many reads completed before this one was invoked: exactly the
    /// ranks below this value.
    predecessors: usize,
}

/// Check one group's history; see the module comment for what is checked.
/// `committed` is the log in op order from op 1, `committed_tick[i]` the tick
/// at which `committed[i]` was first committed on any replica.
pub fn check_history<S: StateMachine>(
    state: S,
    committed: &[CommittedOp],
    committed_tick: &[u64],
    observed: &[ObservedReply],
) -> Result<CheckSummary, String> {
    log_shape_assert(committed, committed_tick);
    let index = check_exactly_once(committed)?;
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    for (i, reply) in observed.iter().enumerate() {
        // The harness records both ticks itself: a reversed pair is its bug.
        assert!(
            reply.tick_invoked <= reply.tick_completed,
            "{}: completed before invoked",
            describe(reply)
        );
        match S::operation_read_only(reply.operation) {
            Some(false) => writes.push(i),
            Some(true) => reads.push(i),
            None => return Err(format!("{}: unknown operation", describe(reply))),
        }
    }
    check_writes_in_log(committed, &index, observed, &writes)?;
    let windows = check_real_time(committed_tick, observed, &writes, &reads)?;
    check_write_commit_ticks(committed_tick, observed, &writes)?;
    let mut summary = sweep(state, committed, observed, &writes, windows)?;
    summary.writes_checked = writes.len() as u64;
    Ok(summary)
}

/// The harness's own invariants: a broken one is a simulator bug, not a
/// protocol bug, so it panics.
fn log_shape_assert(committed: &[CommittedOp], committed_tick: &[u64]) {
    assert_eq!(committed.len(), committed_tick.len());
    for (i, op) in committed.iter().enumerate() {
        assert_eq!(op.op, i as u64 + 1, "committed log not contiguous from op 1");
    }
    // Every replica commits in op order, so op i+1 is first committed
    // somewhere no earlier than op i. `hi` relies on it (binary search).
    assert!(committed_tick.windows(2).all(|pair| pair[0] <= pair[1]));
}

fn is_state_machine_op(operation: u8) -> bool {
    operation >= OPERATION_STATE_MACHINE_MIN
}

/// (a): map each client write in the log to its op; a second entry for the
/// same (client, request) means a retried request was executed twice.
fn check_exactly_once(committed: &[CommittedOp]) -> Result<BTreeMap<(u128, u32), u64>, String> {
    let mut index = BTreeMap::new();
    for entry in committed {
        if entry.client == 0 || !is_state_machine_op(entry.operation) {
            continue;
        }
        if let Some(op_first) = index.insert((entry.client, entry.request), entry.op) {
            return Err(format!(
                "exactly-once violated: client {} request {} committed twice, at op {} and op {}",
                entry.client, entry.request, op_first, entry.op
            ));
        }
    }
    Ok(index)
}

/// (b), membership: each observed write names the op that holds it in the
/// log, and that entry is the very request (operation and body) sent.
fn check_writes_in_log(
    committed: &[CommittedOp],
    index: &BTreeMap<(u128, u32), u64>,
    observed: &[ObservedReply],
    writes: &[usize],
) -> Result<(), String> {
    for &i in writes {
        let write = &observed[i];
        let Some(&op_log) = index.get(&(write.client, write.request)) else {
            return Err(format!(
                "{}: reply observed but not in the committed log",
                describe(write)
            ));
        };
        if write.op != Some(op_log) {
            return Err(format!(
                "{}: reply names op {:?}, but the log holds it at op {}",
                describe(write),
                write.op,
                op_log
            ));
        }
        let entry = &committed[op_log as usize - 1];
        if entry.operation != write.operation || entry.body != write.body {
            return Err(format!(
                "{}: op {} in the log is another request (operation {}, body {})",
                describe(write),
                op_log,
                entry.operation,
                hex(&entry.body)
            ));
        }
    }
    Ok(())
}

/// (b), the ticks: each observed write was committed while its request was
/// outstanding. A reply before commit could acknowledge a write that a view
/// change then loses; a commit before the invocation means another request
/// was taken for this one. Runs after (c), whose message is the clearer one
/// when both fire.
fn check_write_commit_ticks(
    committed_tick: &[u64],
    observed: &[ObservedReply],
    writes: &[usize],
) -> Result<(), String> {
    for &i in writes {
        let write = &observed[i];
        let op_log = op_of(write);
        let tick = committed_tick[op_log as usize - 1];
        if tick > write.tick_completed {
            return Err(format!(
                "{}: reply seen at tick {}, before op {} was committed anywhere (tick {})",
                describe(write),
                write.tick_completed,
                op_log,
                tick
            ));
        }
        if tick < write.tick_invoked {
            return Err(format!(
                "{}: op {} committed at tick {}, before the request was invoked at tick {}",
                describe(write),
                op_log,
                tick,
                write.tick_invoked
            ));
        }
    }
    Ok(())
}

/// (c), and the read windows of (d), in one pass over invocations in tick
/// order while tracking the highest op among writes completed so far.
fn check_real_time(
    committed_tick: &[u64],
    observed: &[ObservedReply],
    writes: &[usize],
    reads: &[usize],
) -> Result<Vec<ReadWindow>, String> {
    let mut completions: Vec<usize> = writes.to_vec();
    completions.sort_by_key(|&i| (observed[i].tick_completed, i));
    // (tick, index, is_read): classified by operation, not by `op`, so a
    // read served through the log is still checked as a read.
    let mut invocations: Vec<(u64, usize, bool)> = Vec::with_capacity(observed.len());
    invocations.extend(writes.iter().map(|&i| (observed[i].tick_invoked, i, false)));
    invocations.extend(reads.iter().map(|&i| (observed[i].tick_invoked, i, true)));
    invocations.sort_unstable();

    let mut completed = 0; // completions[..completed] finished before now
    let mut latest: Option<usize> = None; // the completed write with the highest op
    let mut windows = Vec::with_capacity(reads.len());
    for &(_, i, is_read) in &invocations {
        let invoked = &observed[i];
        while completed < completions.len()
            && observed[completions[completed]].tick_completed < invoked.tick_invoked
        {
            let candidate = completions[completed];
            if latest.is_none_or(|j| op_of(&observed[j]) < op_of(&observed[candidate])) {
                latest = Some(candidate);
            }
            completed += 1;
        }
        let lo = latest.map_or(0, |j| op_of(&observed[j]));
        if is_read {
            let hi = committed_tick.partition_point(|&tick| tick <= invoked.tick_completed);
            windows.push(ReadWindow { observed: i, lo, hi: hi as u64, rank: 0, predecessors: 0 });
        } else if lo > op_of(invoked) {
            // Equal ops are the same request seen twice (ops are unique by (a)).
            let earlier = &observed[latest.expect("lo > 0 has a write")];
            return Err(real_time_error(earlier, invoked));
        }
    }
    read_order(observed, &mut windows);
    Ok(windows)
}

/// Rank reads by completion and count each one's real-time predecessors.
fn read_order(observed: &[ObservedReply], windows: &mut [ReadWindow]) {
    let mut completions: Vec<(u64, usize)> = windows
        .iter()
        .map(|window| (observed[window.observed].tick_completed, window.observed))
        .collect();
    completions.sort_unstable();
    for window in windows.iter_mut() {
        let read = &observed[window.observed];
        let key = (read.tick_completed, window.observed);
        window.rank = completions.binary_search(&key).expect("every read is ranked");
        window.predecessors = completions.partition_point(|&(tick, _)| tick < read.tick_invoked);
        // A read completes no earlier than it is invoked, so it never waits on itself.
        assert!(window.predecessors <= window.rank);
    }
}

fn op_of(write: &ObservedReply) -> u64 {
    write.op.expect("writes were checked to carry an op")
}

fn real_time_error(earlier: &ObservedReply, later: &ObservedReply) -> String {
    format!(
        "real-time order violated: {} completed at tick {} at op {}, but {} invoked later at \
         tick {} committed earlier at op {}",
        describe(earlier),
        earlier.tick_completed,
        op_of(earlier),
        describe(later),
        later.tick_invoked,
        op_of(later)
    )
}

/// (b), second half, and (d): replay the log once; after applying op `p`
/// the state is "after prefix p".
fn sweep<S: StateMachine>(
    mut state: S,
    committed: &[CommittedOp],
    observed: &[ObservedReply],
    writes: &[usize],
    windows: Vec<ReadWindow>,
) -> Result<CheckSummary, String> {
    let mut summary = CheckSummary { ops_committed: committed.len() as u64, ..Default::default() };
    let mut writes_by_op: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for &i in writes {
        writes_by_op.entry(op_of(&observed[i])).or_default().push(i);
    }
    for window in &windows {
        // A write completed before the read began was committed before it
        // completed (checked), so before the read completed.
        assert!(window.lo <= window.hi, "write commit ticks were checked");
        summary.read_window_max = summary.read_window_max.max(window.hi - window.lo);
    }
    let mut reads = ReadSweep::new(observed, windows);
    for p in 0..=committed.len() as u64 {
        if p > 0 {
            let entry = &committed[p as usize - 1];
            let reply = apply(&mut state, entry, &mut summary);
            check_write_replies(entry, &reply, observed, writes_by_op.get(&p))?;
        }
        reads.step(&state, p)?;
    }
    assert!(reads.waiting.is_empty(), "every window lies inside 0..=log length");
    assert!(reads.pending.is_empty(), "every window closes by the log's end");
    summary.reads_checked = reads.matched_at.len() as u64;
    Ok(summary)
}

/// Apply one log entry; protocol ops (register, no-op) leave the state alone.
/// Read-only operations in the log (reads through the log) get `query`.
fn apply<S: StateMachine>(
    state: &mut S,
    entry: &CommittedOp,
    summary: &mut CheckSummary,
) -> Vec<u8> {
    let mut reply = Vec::new();
    if !is_state_machine_op(entry.operation) {
        return reply;
    }
    summary.ops_applied += 1;
    if S::operation_read_only(entry.operation) == Some(true) {
        state.query(entry.operation, &entry.body, &mut reply);
    } else {
        state.commit(entry.op, entry.timestamp, entry.operation, &entry.body, &mut reply);
    }
    reply
}

fn check_write_replies(
    entry: &CommittedOp,
    reply: &[u8],
    observed: &[ObservedReply],
    writes: Option<&Vec<usize>>,
) -> Result<(), String> {
    for &i in writes.into_iter().flatten() {
        let write = &observed[i];
        if write.reply != reply {
            return Err(format!(
                "{} at op {}: reply differs from the replay: expected {}, got {}",
                describe(write),
                entry.op,
                hex(reply),
                hex(&write.reply)
            ));
        }
    }
    Ok(())
}

/// A read inside its window during the sweep.
struct PendingRead {
    window: ReadWindow,
    /// What the read would have seen at `lo`, for the failure message.
    reply_at_lo: Vec<u8>,
    /// Whether its reply equals the state at the current position.
    matches_here: bool,
}

/// The read half of the sweep. Each read is linearized at the earliest
/// position that matches its reply and that no read completed before its
/// invocation has passed: the earliest choice leaves later reads the most
/// room, so if it fails, every choice fails.
struct ReadSweep<'a> {
    observed: &'a [ObservedReply],
    /// Not yet admitted, by `lo` descending (admitted from the end).
    waiting: Vec<ReadWindow>,
    pending: Vec<PendingRead>,
    /// By completion rank: the position each read was linearized at.
    matched_at: Vec<Option<u64>>,
    /// Reads of rank below this are all linearized.
    frontier: usize,
    /// Completion rank to index in `observed`.
    by_rank: Vec<usize>,
}

impl<'a> ReadSweep<'a> {
    fn new(observed: &'a [ObservedReply], mut waiting: Vec<ReadWindow>) -> ReadSweep<'a> {
        waiting.sort_by_key(|window| std::cmp::Reverse((window.lo, window.rank)));
        let matched_at = vec![None; waiting.len()];
        let mut by_rank = vec![usize::MAX; waiting.len()];
        for window in &waiting {
            assert_eq!(by_rank[window.rank], usize::MAX, "ranks are unique");
            by_rank[window.rank] = window.observed;
        }
        ReadSweep { observed, waiting, pending: Vec::new(), matched_at, frontier: 0, by_rank }
    }

    fn step<S: StateMachine>(&mut self, state: &S, p: u64) -> Result<(), String> {
        for read in &mut self.pending {
            let observed = &self.observed[read.window.observed];
            read.matches_here = query(state, observed) == observed.reply;
        }
        while self.waiting.last().is_some_and(|window| window.lo == p) {
            let window = self.waiting.pop().expect("checked by is_some_and");
            let observed = &self.observed[window.observed];
            let reply_at_lo = query(state, observed);
            let matches_here = reply_at_lo == observed.reply;
            self.pending.push(PendingRead { window, reply_at_lo, matches_here });
        }
        self.linearize_at(p);
        self.close_windows(state, p)
    }

    /// Linearize every pending read that matches here and whose real-time
    /// predecessors are linearized; one may unblock another, so repeat
    /// until nothing changes.
    fn linearize_at(&mut self, p: u64) {
        loop {
            let frontier = self.frontier;
            let ready = self
                .pending
                .iter()
                .position(|read| read.matches_here && read.window.predecessors <= frontier);
            let Some(i) = ready else { return };
            let read = self.pending.swap_remove(i);
            assert!(self.matched_at[read.window.rank].is_none());
            self.matched_at[read.window.rank] = Some(p);
            while self.matched_at.get(self.frontier).is_some_and(Option::is_some) {
                self.frontier += 1;
            }
        }
    }

    /// A read still pending at its `hi` cannot be linearized. Report the
    /// earliest completed one: a later one may only be blocked by it.
    fn close_windows<S: StateMachine>(&self, state: &S, p: u64) -> Result<(), String> {
        let failed = self
            .pending
            .iter()
            .filter(|read| read.window.hi == p)
            .min_by_key(|read| read.window.rank);
        let Some(read) = failed else { return Ok(()) };
        let observed = &self.observed[read.window.observed];
        let mut detail = format!(
            "state after op {} gives {}, after op {} gives {}",
            read.window.lo,
            hex(&read.reply_at_lo),
            p,
            hex(&query(state, observed))
        );
        detail.push_str(&self.predecessor_note(&read.window));
        Err(read_error(observed, &read.window, detail))
    }

    /// Which earlier read raised this read's lower bound, if any.
    fn predecessor_note(&self, window: &ReadWindow) -> String {
        let latest = (0..window.predecessors).max_by_key(|&rank| self.matched_at[rank]);
        let Some(rank) = latest else { return String::new() };
        match self.matched_at[rank] {
            Some(p) if p > window.lo => {
                let earlier = &self.observed[self.by_rank[rank]];
                format!(
                    "; but no prefix below {p} either: {}, completed at tick {} before this read \
                     was invoked, already saw prefix {p}",
                    describe(earlier),
                    earlier.tick_completed
                )
            }
            _ => String::new(),
        }
    }
}

fn query<S: StateMachine>(state: &S, read: &ObservedReply) -> Vec<u8> {
    let mut reply = Vec::new();
    state.query(read.operation, &read.body, &mut reply);
    reply
}

fn read_error(read: &ObservedReply, window: &ReadWindow, detail: String) -> String {
    format!(
        "read not linearizable: {} (body {}) invoked at tick {}, completed at tick {}, may see \
         log prefixes {}..={}; got {}; {}",
        describe(read),
        hex(&read.body),
        read.tick_invoked,
        read.tick_completed,
        window.lo,
        window.hi,
        hex(&read.reply),
        detail
    )
}

fn describe(reply: &ObservedReply) -> String {
    format!("client {} request {} operation {}", reply.client, reply.request, reply.operation)
}

/// Hex of at most 64 bytes plus the length: enough to compare two replies
/// by eye without flooding the log with an inline object.
fn hex(bytes: &[u8]) -> String {
    const SHOWN_MAX: usize = 64;
    let mut text = String::with_capacity(2 * SHOWN_MAX + 16);
    for byte in bytes.iter().take(SHOWN_MAX) {
        let _ = write!(text, "{byte:02x}");
    }
    if bytes.len() > SHOWN_MAX {
        text.push_str("..");
    }
    let _ = write!(text, " ({} bytes)", bytes.len());
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vsr::message::{OPERATION_NOOP, OPERATION_REGISTER};

    const SET: u8 = 16;
    const GET: u8 = 17;

    /// A one-register state machine: `SET` stores the body and replies
    /// with the value it replaced; `GET` replies with the value.
    #[derive(Default)]
    struct Register {
        value: Vec<u8>,
        op_last: u64,
    }

    impl StateMachine for Register {
        fn operation_read_only(operation: u8) -> Option<bool> {
            match operation {
                SET => Some(false),
                GET => Some(true),
                _ => None,
            }
        }
        fn request_valid(operation: u8, _body: &[u8]) -> bool {
            Self::operation_read_only(operation).is_some()
        }
        fn commit(&mut self, op: u64, _: u64, operation: u8, body: &[u8], reply: &mut Vec<u8>) {
            assert!(op > self.op_last, "the checker replays in op order");
            assert_eq!(operation, SET, "the checker never commits protocol ops");
            self.op_last = op;
            reply.extend_from_slice(&std::mem::replace(&mut self.value, body.to_vec()));
        }
        fn query(&self, _: u8, _: &[u8], reply: &mut Vec<u8>) {
            reply.extend_from_slice(&self.value);
        }
        fn snapshot(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.value);
        }
        fn restore(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
            self.value = bytes.to_vec();
            Ok(())
        }
        fn snapshot_size_max(&self) -> usize {
            1024
        }
    }

    fn logged(op: u64, client: u128, request: u32, operation: u8, body: &[u8]) -> CommittedOp {
        CommittedOp { op, timestamp: op * 10, client, request, operation, body: body.to_vec() }
    }

    /// Ops 1..=5: a register, a no-op, then SET a (client 1), SET b
    /// (client 2), SET c (client 1); first committed at ticks 10, 20, ...
    fn log() -> (Vec<CommittedOp>, Vec<u64>) {
        let committed = vec![
            logged(1, 1, 0, OPERATION_REGISTER, b""),
            logged(2, 0, 0, OPERATION_NOOP, b""),
            logged(3, 1, 1, SET, b"a"),
            logged(4, 2, 1, SET, b"b"),
            logged(5, 1, 2, SET, b"c"),
        ];
        (committed, vec![10, 20, 30, 40, 50])
    }

    fn set(
        client: u128,
        request: u32,
        value: &[u8],
        ticks: (u64, u64),
        op: u64,
        reply: &[u8],
    ) -> ObservedReply {
        ObservedReply {
            client,
            request,
            operation: SET,
            body: value.to_vec(),
            reply: reply.to_vec(),
            tick_invoked: ticks.0,
            tick_completed: ticks.1,
            op: Some(op),
        }
    }

    fn get(client: u128, request: u32, ticks: (u64, u64), reply: &[u8]) -> ObservedReply {
        ObservedReply {
            client,
            request,
            operation: GET,
            body: Vec::new(),
            reply: reply.to_vec(),
            tick_invoked: ticks.0,
            tick_completed: ticks.1,
            op: None,
        }
    }

    /// A history every check accepts: the writes in log order with the
    /// replies the replay gives, and reads inside their windows.
    fn observed_good() -> Vec<ObservedReply> {
        vec![
            set(1, 1, b"a", (25, 31), 3, b""),
            set(2, 1, b"b", (26, 45), 4, b"a"),
            // Concurrent with SET b (committed at 40): may see a or b.
            get(3, 1, (35, 41), b"b"),
            // Invoked after SET a completed at 31: must see a or later.
            get(4, 1, (32, 36), b"a"),
            set(1, 2, b"c", (46, 55), 5, b"b"),
            get(3, 2, (60, 61), b"c"),
        ]
    }

    fn check(
        committed: &[CommittedOp],
        ticks: &[u64],
        observed: &[ObservedReply],
    ) -> Result<CheckSummary, String> {
        check_history(Register::default(), committed, ticks, observed)
    }

    fn assert_fails(result: Result<CheckSummary, String>, needle: &str) {
        match result {
            Ok(summary) => panic!("expected a failure containing {needle:?}, got {summary:?}"),
            Err(message) => assert!(message.contains(needle), "{needle:?} not in: {message}"),
        }
    }

    #[test]
    fn good_history_passes() {
        let (committed, ticks) = log();
        let summary = check(&committed, &ticks, &observed_good()).unwrap();
        assert_eq!(
            summary,
            CheckSummary {
                ops_committed: 5,
                ops_applied: 3,
                writes_checked: 3,
                reads_checked: 3,
                read_window_max: 1
            }
        );
    }

    #[test]
    fn a_request_committed_twice_fails_exactly_once() {
        let (mut committed, mut ticks) = log();
        committed.push(logged(6, 2, 1, SET, b"b")); // client 2 request 1 again
        ticks.push(60);
        assert_fails(
            check(&committed, &ticks, &observed_good()),
            "exactly-once violated: client 2 request 1",
        );
    }

    #[test]
    fn a_wrong_write_reply_fails() {
        let (committed, ticks) = log();
        let mut observed = observed_good();
        observed[1].reply = b"z".to_vec();
        assert_fails(
            check(&committed, &ticks, &observed),
            "client 2 request 1 operation 16 at op 4: reply differs",
        );
    }

    #[test]
    fn a_write_missing_from_the_log_or_at_another_op_fails() {
        let (committed, ticks) = log();
        let mut observed = observed_good();
        observed.push(set(9, 1, b"x", (10, 20), 2, b""));
        assert_fails(
            check(&committed, &ticks, &observed),
            "client 9 request 1 operation 16: reply observed but not in",
        );
        let mut observed = observed_good();
        observed[0].op = Some(4);
        assert_fails(
            check(&committed, &ticks, &observed),
            "reply names op Some(4), but the log holds it at op 3",
        );
        let mut observed = observed_good();
        observed[0].body = b"q".to_vec();
        assert_fails(check(&committed, &ticks, &observed), "is another request");
    }

    #[test]
    fn a_write_committed_before_it_was_invoked_fails() {
        let (committed, ticks) = log();
        let mut observed = observed_good();
        observed[1].tick_invoked = 41; // op 4 first committed at tick 40
        assert_fails(
            check(&committed, &ticks, &observed),
            "before the request was invoked at tick 41",
        );
    }

    #[test]
    fn a_write_acknowledged_before_commit_fails() {
        let (committed, ticks) = log();
        let mut observed = observed_good();
        observed[1].tick_completed = 39; // op 4 first committed at tick 40
        assert_fails(check(&committed, &ticks, &observed), "before op 4 was committed anywhere");
    }

    #[test]
    fn a_later_write_ordered_first_fails_real_time() {
        // SET b (op 4) completed at tick 45, before SET a (op 3) was invoked.
        let (committed, ticks) = log();
        let observed = vec![set(2, 1, b"b", (35, 45), 4, b"a"), set(1, 1, b"a", (46, 52), 3, b"")];
        assert_fails(
            check(&committed, &ticks, &observed),
            "client 2 request 1 operation 16 completed at tick 45 at op 4, but client 1 request 1 \
             operation 16 invoked later at tick 46 committed earlier at op 3",
        );
    }

    #[test]
    fn a_stale_read_after_a_completed_write_fails() {
        let (committed, ticks) = log();
        let mut observed = observed_good();
        observed[3].reply = b"".to_vec(); // invoked after SET a completed, saw the empty register
        let message = check(&committed, &ticks, &observed).unwrap_err();
        assert!(message.contains("read not linearizable: client 4 request 1"), "{message}");
        assert!(message.contains("may see log prefixes 3..=3"), "{message}");
    }

    #[test]
    fn a_read_of_the_future_fails() {
        let (committed, ticks) = log();
        let mut observed = observed_good();
        // Completed at tick 36, before SET b was committed anywhere (40).
        observed[3].reply = b"b".to_vec();
        assert_fails(check(&committed, &ticks, &observed), "may see log prefixes 3..=3");
    }

    #[test]
    fn a_read_older_than_an_earlier_read_fails() {
        // Both reads are concurrent with SET b, so either value alone is
        // fine; but the second read began after the first one saw b. (Read
        // 3/1 also saw b and completed before, so either explains it.)
        let (committed, ticks) = log();
        let mut observed = observed_good();
        observed.push(get(5, 1, (42, 43), b"b"));
        observed.push(get(6, 1, (44, 46), b"a"));
        assert_fails(
            check(&committed, &ticks, &observed),
            "client 6 request 1 operation 17 (body  (0 bytes)) invoked at tick 44, completed at \
             tick 46, may see log prefixes 3..=4; got 61 (1 bytes); state after op 3 gives 61 (1 \
             bytes), after op 4 gives 62 (1 bytes); but no prefix below 4 either: client 5 \
             request 1 operation 17, completed at tick 43 before this read was invoked, already \
             saw prefix 4",
        );
        observed.pop();
        observed.push(get(6, 1, (44, 46), b"b"));
        assert!(check(&committed, &ticks, &observed).is_ok());
    }

    #[test]
    fn empty_history_passes() {
        let summary = check(&[], &[], &[]).unwrap();
        assert_eq!(summary, CheckSummary::default());
    }
}

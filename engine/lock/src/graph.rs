//! The wait-for graph: per-shard edges merged into one graph, cycle search by DFS, BFS (Kahn
//! peeling) or Tarjan SCC, and victim selection. A plain struct with no I/O: the appliance
//! gathers each shard's `ShardWaitGraph` by message, merges them here and sends the victims
//! back to every shard.

use serde::{Deserialize, Serialize};

use crate::config::{CostWeights, DetectAlgorithm, VictimStrategy};
use crate::resource::{ResourceId, TxnId};
use crate::table::{Probe, SlotTable};

/// `waiter` waits for a lock on `resource` (on `shard`) that `holder` holds or is queued ahead for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitEdge {
    pub waiter: TxnId,
    pub holder: TxnId,
    pub shard: u32,
    pub resource: ResourceId,
}

/// What victim selection knows about a transaction (summed over shards when merged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnCost {
    pub txn: TxnId,
    /// Start order: higher is younger. Global (the same on every shard).
    pub start_seq: u64,
    pub locks_held: u64,
    pub work: u64,
}

/// One shard's contribution to the global graph.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardWaitGraph {
    pub shard: u32,
    pub edges: Vec<WaitEdge>,
    pub txns: Vec<TxnCost>,
}

/// A transaction chosen to break a deadlock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Victim {
    pub txn: TxnId,
    /// Transactions in the cycle (or strongly connected component) it was chosen from.
    pub cycle_len: usize,
    pub strategy: VictimStrategy,
}

/// The outcome of one detection pass.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    pub victims: Vec<Victim>,
    pub cycles_found: usize,
    pub algorithm: Option<DetectAlgorithm>,
    pub nodes: usize,
    pub edges: usize,
}

const NONE: u32 = u32::MAX;

/// The merged wait-for graph, nodes numbered densely. Keep one and [`WaitForGraph::rebuild`]
/// it for every pass: its maps, vectors and the searches' work arrays keep their capacity, so
/// a pass over a big graph allocates (and page-faults) nothing — fresh buffers of a
/// 10,000-edge graph were a third of the pass on this VM.
#[derive(Default, Debug, Clone)]
pub struct WaitForGraph {
    /// Merging is most of a pass over a big graph (one lookup per transaction and two per
    /// edge): the lock table's open-addressing map does it in about half the time of a
    /// `HashMap`.
    index: SlotTable<TxnId>,
    nodes: Vec<TxnCost>,
    edges: Vec<(u32, u32)>,
    scratch: Scratch,
}

/// Adjacency in compressed form (offsets + targets), rebuilt in place for every search.
#[derive(Default, Debug, Clone)]
struct Csr {
    offsets: Vec<u32>,
    targets: Vec<u32>,
}

impl Csr {
    fn build(&mut self, node_count: usize, edges: &[(u32, u32)], reverse: bool) {
        let ends = |&(a, b): &(u32, u32)| if reverse { (b, a) } else { (a, b) };
        self.offsets.clear();
        self.offsets.resize(node_count + 1, 0);
        for e in edges {
            self.offsets[ends(e).0 as usize] += 1;
        }
        // Exclusive prefix sums; then each placement bumps its node's cursor, which leaves
        // offsets[i] at the end of node i's run, i.e. the start of node i + 1's: shift by one.
        let mut sum = 0u32;
        for o in &mut self.offsets[..node_count] {
            let count = *o;
            *o = sum;
            sum += count;
        }
        self.targets.clear();
        self.targets.resize(edges.len(), 0);
        for e in edges {
            let (from, to) = ends(e);
            let cursor = &mut self.offsets[from as usize];
            self.targets[*cursor as usize] = to;
            *cursor += 1;
        }
        self.offsets.copy_within(0..node_count, 1);
        self.offsets[0] = 0;
        debug_assert_eq!(self.offsets[node_count] as usize, edges.len());
    }

    fn successors(&self, node: u32) -> &[u32] {
        &self.targets
            [self.offsets[node as usize] as usize..self.offsets[node as usize + 1] as usize]
    }
}

/// Work arrays of the searches, kept across passes (see [`WaitForGraph`]).
#[derive(Default, Debug, Clone)]
struct Scratch {
    csr: Csr,
    reverse: Csr,
    alive: Vec<bool>,
    dfs: DfsWork,
    tarjan: TarjanWork,
    bfs: BfsWork,
}

impl WaitForGraph {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// Empties the graph, keeping every buffer's capacity for the next pass.
    pub fn clear(&mut self) {
        self.index.clear();
        self.nodes.clear();
        self.edges.clear();
    }

    /// The node of `txn` (created if new) and whether it already existed. One hash operation:
    /// merging is most of a detection pass over a large graph.
    fn node(&mut self, txn: TxnId) -> (u32, bool) {
        let next = self.nodes.len() as u32;
        match self.index.probe(&txn) {
            Probe::Found(n) => (n, true),
            Probe::Vacant(index) => {
                self.index.insert_vacant(index, txn, next);
                self.nodes.push(TxnCost {
                    txn,
                    start_seq: txn.0,
                    locks_held: 0,
                    work: 0,
                });
                (next, false)
            }
        }
    }

    /// The graph of every shard's part, sized once for all of them.
    pub fn from_shards(parts: &[ShardWaitGraph]) -> Self {
        let mut graph = WaitForGraph::default();
        graph.rebuild(parts);
        graph
    }

    /// Replaces the graph by every shard's part, reusing this graph's buffers.
    pub fn rebuild(&mut self, parts: &[ShardWaitGraph]) {
        self.clear();
        let txns: usize = parts.iter().map(|p| p.txns.len()).sum();
        let edges: usize = parts.iter().map(|p| p.edges.len()).sum();
        self.index.reserve(txns);
        self.nodes.reserve(txns);
        self.edges.reserve(edges);
        for part in parts {
            self.add_shard(part);
        }
    }

    /// Adds what one shard knows; locks and work add up across shards.
    pub fn add_shard(&mut self, part: &ShardWaitGraph) {
        // Sized up front: growing the index rehashes every transaction seen so far.
        self.index.reserve(part.txns.len());
        self.nodes.reserve(part.txns.len());
        self.edges.reserve(part.edges.len());
        for cost in &part.txns {
            self.add_txn(*cost);
        }
        for edge in &part.edges {
            self.add_edge(edge.waiter, edge.holder);
        }
    }

    pub fn add_txn(&mut self, cost: TxnCost) {
        let (n, known) = self.node(cost.txn);
        let node = &mut self.nodes[n as usize];
        if known {
            node.start_seq = node.start_seq.min(cost.start_seq);
        } else {
            node.start_seq = cost.start_seq;
        }
        node.locks_held += cost.locks_held;
        node.work += cost.work;
    }

    pub fn add_edge(&mut self, waiter: TxnId, holder: TxnId) {
        if waiter == holder {
            return; // a transaction never waits for itself (upgrades exclude the own lock)
        }
        let (a, _) = self.node(waiter);
        let (b, _) = self.node(holder);
        self.edges.push((a, b));
    }

    /// The algorithm `Adaptive` picks for this graph.
    pub fn choose_algorithm(
        &self,
        algorithm: DetectAlgorithm,
        small_edges_max: usize,
    ) -> DetectAlgorithm {
        match algorithm {
            DetectAlgorithm::Adaptive if self.edges.len() <= small_edges_max => {
                DetectAlgorithm::Dfs
            }
            DetectAlgorithm::Adaptive => DetectAlgorithm::Tarjan,
            other => other,
        }
    }

    /// Deadlocked sets: cycles (DFS, BFS) or non-trivial SCCs (Tarjan). Every deadlocked
    /// region yields at least one; removing one member of each and searching again converges.
    pub fn find_cycles(&self, algorithm: DetectAlgorithm) -> Vec<Vec<TxnId>> {
        let mut s = Scratch::default();
        let n = self.nodes.len();
        s.alive.resize(n, true);
        s.csr.build(n, &self.edges, false);
        let cycles = match self.choose_algorithm(algorithm, usize::MAX) {
            DetectAlgorithm::Bfs => {
                s.reverse.build(n, &self.edges, true);
                s.bfs.cycles(&s.csr, &s.reverse, &s.alive)
            }
            DetectAlgorithm::Tarjan => s.tarjan.sccs(&s.csr, &s.alive),
            DetectAlgorithm::Dfs | DetectAlgorithm::Adaptive => s.dfs.cycles(&s.csr, &s.alive),
        };
        cycles
            .into_iter()
            .map(|c| c.into_iter().map(|n| self.nodes[n as usize].txn).collect())
            .collect()
    }

    /// Finds every deadlock and picks victims until the remaining graph is acyclic.
    ///
    /// Victims are picked per cycle, shortest cycles first, skipping a cycle an earlier victim
    /// of the round already broke: a short cycle leaves the fewest choices, and its victim
    /// often lies on the longer cycles around it too. With Tarjan the components only bound
    /// the search: the cycles are read off a DFS inside them. (Picking the cheapest member of
    /// a whole component, as before, could choose one that is on only some of its cycles —
    /// in the bench's graph an 8-cycle with a chord that closes a 2-cycle cost two victims
    /// where one on the 2-cycle breaks both: 21 victims for 20 planted cycles.)
    pub fn resolve(
        &mut self,
        algorithm: DetectAlgorithm,
        small_edges_max: usize,
        strategy: VictimStrategy,
        weights: &CostWeights,
    ) -> Resolution {
        let algorithm = self.choose_algorithm(algorithm, small_edges_max);
        let mut resolution = Resolution {
            algorithm: Some(algorithm),
            nodes: self.nodes.len(),
            edges: self.edges.len(),
            ..Resolution::default()
        };
        if self.edges.is_empty() {
            return resolution;
        }
        let mut s = std::mem::take(&mut self.scratch);
        let n = self.nodes.len();
        s.csr.build(n, &self.edges, false);
        if algorithm == DetectAlgorithm::Bfs {
            // Built once: BFS peels from both ends in every round.
            s.reverse.build(n, &self.edges, true);
        }
        s.alive.clear();
        s.alive.resize(n, true);
        let mut first_round = true;
        loop {
            let mut cycles = match algorithm {
                DetectAlgorithm::Bfs => {
                    let cycles = s.bfs.cycles(&s.csr, &s.reverse, &s.alive);
                    if first_round {
                        // A peeled node is on no cycle, and removing victims creates no new
                        // cycle: later rounds peel only what survived this one.
                        std::mem::swap(&mut s.alive, &mut s.bfs.left);
                    }
                    cycles
                }
                DetectAlgorithm::Tarjan => {
                    if first_round {
                        // Every cycle lies inside one strongly connected component, and
                        // removing victims creates no new cycle: every round searches only
                        // the components found here.
                        let sccs = s.tarjan.sccs(&s.csr, &s.alive);
                        s.alive.fill(false);
                        for &v in sccs.iter().flatten() {
                            s.alive[v as usize] = true;
                        }
                    }
                    s.dfs.cycles(&s.csr, &s.alive)
                }
                DetectAlgorithm::Dfs | DetectAlgorithm::Adaptive => s.dfs.cycles(&s.csr, &s.alive),
            };
            first_round = false;
            if cycles.is_empty() {
                self.scratch = s;
                return resolution;
            }
            resolution.cycles_found += cycles.len();
            let victims_before = resolution.victims.len();
            cycles.sort_by_key(Vec::len);
            for cycle in cycles {
                // An earlier victim of this round may already have broken this cycle.
                if cycle.iter().any(|&v| !s.alive[v as usize]) {
                    continue;
                }
                let victim = self.pick(&cycle, strategy, weights);
                s.alive[victim as usize] = false;
                resolution.victims.push(Victim {
                    txn: self.nodes[victim as usize].txn,
                    cycle_len: cycle.len(),
                    strategy,
                });
            }
            assert!(
                resolution.victims.len() > victims_before,
                "a detection round removed no victim"
            );
        }
    }

    fn pick(&self, cycle: &[u32], strategy: VictimStrategy, weights: &CostWeights) -> u32 {
        assert!(!cycle.is_empty());
        let youngest_seq = cycle
            .iter()
            .map(|&n| self.nodes[n as usize].start_seq)
            .max()
            .unwrap_or(0);
        // Ties go to the youngest so every strategy is deterministic.
        let key = |n: u32| -> (f64, u64, u64) {
            let c = &self.nodes[n as usize];
            let primary = match strategy {
                VictimStrategy::Youngest => 0.0,
                VictimStrategy::FewestLocks => c.locks_held as f64,
                VictimStrategy::LeastWork => c.work as f64,
                VictimStrategy::CostBased => {
                    let age = (youngest_seq - c.start_seq) as f64;
                    c.locks_held as f64 * weights.locks
                        + c.work as f64 * weights.work
                        + age * weights.age
                }
            };
            (primary, u64::MAX - c.start_seq, u64::MAX - c.txn.0)
        };
        let mut best = cycle[0];
        let mut best_key = key(best);
        for &n in &cycle[1..] {
            let k = key(n);
            if k.partial_cmp(&best_key) == Some(std::cmp::Ordering::Less) {
                best = n;
                best_key = k;
            }
        }
        best
    }
}

/// Work arrays of [`DfsWork::cycles`].
#[derive(Default, Debug, Clone)]
struct DfsWork {
    color: Vec<u8>,
    path_pos: Vec<u32>,
    path: Vec<u32>,
    /// (node, next successor index)
    stack: Vec<(u32, u32)>,
}

impl DfsWork {
    /// Iterative DFS; every back edge closes a cycle, read off the current path.
    fn cycles(&mut self, csr: &Csr, alive: &[bool]) -> Vec<Vec<u32>> {
        const WHITE: u8 = 0;
        const GRAY: u8 = 1;
        const BLACK: u8 = 2;
        let n = alive.len();
        let DfsWork {
            color,
            path_pos,
            path,
            stack,
        } = self;
        color.clear();
        color.resize(n, WHITE);
        path_pos.clear();
        path_pos.resize(n, NONE);
        path.clear();
        stack.clear();
        let mut cycles = Vec::new();
        for root in 0..n as u32 {
            if !alive[root as usize] || color[root as usize] != WHITE {
                continue;
            }
            color[root as usize] = GRAY;
            path_pos[root as usize] = 0;
            path.push(root);
            stack.push((root, 0));
            while let Some(top) = stack.last_mut() {
                let (node, next) = *top;
                let succ = csr.successors(node);
                if (next as usize) < succ.len() {
                    top.1 += 1;
                    let to = succ[next as usize];
                    if !alive[to as usize] {
                        continue;
                    }
                    match color[to as usize] {
                        WHITE => {
                            color[to as usize] = GRAY;
                            path_pos[to as usize] = path.len() as u32;
                            path.push(to);
                            stack.push((to, 0));
                        }
                        GRAY => cycles.push(path[path_pos[to as usize] as usize..].to_vec()),
                        _ => {}
                    }
                } else {
                    color[node as usize] = BLACK;
                    path_pos[node as usize] = NONE;
                    path.pop();
                    stack.pop();
                }
            }
        }
        cycles
    }
}

/// Work arrays of [`BfsWork::cycles`]; `left` is the core of the last search.
#[derive(Default, Debug, Clone)]
struct BfsWork {
    indeg: Vec<u32>,
    outdeg: Vec<u32>,
    left: Vec<bool>,
    queue: std::collections::VecDeque<u32>,
    walk_id: Vec<u32>,
    trail: Vec<u32>,
}

impl BfsWork {
    /// Kahn-style peeling from both ends: a node nobody waits for, or that waits for nobody,
    /// is on no cycle. What survives has a live successor everywhere, so a walk from any
    /// survivor must close a cycle. Leaves the core (the nodes left after peeling: only they
    /// can be on one) in `self.left`.
    fn cycles(&mut self, csr: &Csr, reverse: &Csr, alive: &[bool]) -> Vec<Vec<u32>> {
        let n = alive.len();
        let BfsWork {
            indeg,
            outdeg,
            left,
            queue,
            walk_id,
            trail,
        } = self;
        indeg.clear();
        indeg.resize(n, 0);
        outdeg.clear();
        outdeg.resize(n, 0);
        left.clear();
        left.extend_from_slice(alive);
        for a in 0..n as u32 {
            if !left[a as usize] {
                continue;
            }
            for &b in csr.successors(a) {
                if left[b as usize] {
                    outdeg[a as usize] += 1;
                    indeg[b as usize] += 1;
                }
            }
        }
        queue.clear();
        queue.extend(
            (0..n as u32).filter(|&v| {
                left[v as usize] && (indeg[v as usize] == 0 || outdeg[v as usize] == 0)
            }),
        );
        while let Some(v) = queue.pop_front() {
            if !left[v as usize] {
                continue;
            }
            left[v as usize] = false;
            for &b in csr.successors(v) {
                if left[b as usize] {
                    indeg[b as usize] -= 1;
                    if indeg[b as usize] == 0 {
                        queue.push_back(b);
                    }
                }
            }
            for &a in reverse.successors(v) {
                if left[a as usize] {
                    outdeg[a as usize] -= 1;
                    if outdeg[a as usize] == 0 {
                        queue.push_back(a);
                    }
                }
            }
        }
        walk_id.clear();
        walk_id.resize(n, NONE);
        let mut cycles = Vec::new();
        for start in 0..n as u32 {
            if !left[start as usize] || walk_id[start as usize] != NONE {
                continue;
            }
            trail.clear();
            let mut v = start;
            loop {
                if walk_id[v as usize] == start {
                    let from = trail.iter().position(|&x| x == v).unwrap_or(0);
                    cycles.push(trail[from..].to_vec());
                    break;
                }
                if walk_id[v as usize] != NONE {
                    break; // joined an earlier walk: its cycle is already reported
                }
                walk_id[v as usize] = start;
                trail.push(v);
                match csr.successors(v).iter().find(|&&b| left[b as usize]) {
                    Some(&b) => v = b,
                    None => break,
                }
            }
        }
        cycles
    }
}

/// Work arrays of [`TarjanWork::sccs`].
#[derive(Default, Debug, Clone)]
struct TarjanWork {
    index: Vec<u32>,
    low: Vec<u32>,
    on_stack: Vec<bool>,
    scc_stack: Vec<u32>,
    call: Vec<(u32, u32)>,
}

impl TarjanWork {
    /// Tarjan's SCC, iterative (deep wait chains must not overflow the stack of a shard
    /// thread). Returns the components of two or more nodes.
    fn sccs(&mut self, csr: &Csr, alive: &[bool]) -> Vec<Vec<u32>> {
        let n = alive.len();
        let TarjanWork {
            index,
            low,
            on_stack,
            scc_stack,
            call,
        } = self;
        index.clear();
        index.resize(n, NONE);
        low.clear();
        low.resize(n, 0);
        on_stack.clear();
        on_stack.resize(n, false);
        scc_stack.clear();
        call.clear();
        let mut counter = 0u32;
        let mut sccs = Vec::new();
        for root in 0..n as u32 {
            if !alive[root as usize] || index[root as usize] != NONE {
                continue;
            }
            index[root as usize] = counter;
            low[root as usize] = counter;
            counter += 1;
            scc_stack.push(root);
            on_stack[root as usize] = true;
            call.push((root, 0));
            while let Some(top) = call.last_mut() {
                let (v, next) = *top;
                let succ = csr.successors(v);
                if (next as usize) < succ.len() {
                    top.1 += 1;
                    let w = succ[next as usize];
                    if !alive[w as usize] {
                        continue;
                    }
                    if index[w as usize] == NONE {
                        index[w as usize] = counter;
                        low[w as usize] = counter;
                        counter += 1;
                        scc_stack.push(w);
                        on_stack[w as usize] = true;
                        call.push((w, 0));
                    } else if on_stack[w as usize] {
                        low[v as usize] = low[v as usize].min(index[w as usize]);
                    }
                } else {
                    call.pop();
                    if let Some(&(parent, _)) = call.last() {
                        low[parent as usize] = low[parent as usize].min(low[v as usize]);
                    }
                    if low[v as usize] == index[v as usize] {
                        let mut scc = Vec::new();
                        while let Some(w) = scc_stack.pop() {
                            on_stack[w as usize] = false;
                            scc.push(w);
                            if w == v {
                                break;
                            }
                        }
                        // Self-loops are never added, so only components of two or more
                        // deadlock.
                        if scc.len() > 1 {
                            sccs.push(scc);
                        }
                    }
                }
            }
        }
        sccs
    }
}

//! Where a synchronous invocation runs in a cluster, as pure decisions: every node
//! accepts every request, and sends each function to a small set of *home* nodes, so
//! that its compiled code, its models and its warm environments stay where its traffic
//! goes.
//!
//! A function's homes are the first [`RoutingPolicy::home_nodes`] live members in the
//! rendezvous ranking of the function (the same hashing that spreads provisioned
//! concurrency), so every node computes the same homes from the same membership, and
//! only the functions of a node that joins or dies change homes. A node that is not home
//! for a function serves it itself when it has an idle environment of it (a warm hit
//! here beats any hop), when its measured cold start is cheaper than its measured
//! forwarding overhead, or when every home is saturated or unreachable (spill-over);
//! otherwise it forwards the request to the first home, or to the other when that one is
//! clearly less loaded. A forwarded request is always served where it lands, so a
//! request makes at most one hop.

use std::collections::HashMap;
use std::time::Duration;

use crate::placement::rank;

/// How many more invocations in flight the first home of a function may have than the
/// other before requests go to the other.
const BALANCE_SLACK: u64 = 1;

/// A live member as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node_id: String,
    /// Where the other nodes reach it.
    pub url: String,
    /// Invocations in flight on it, as of its last heartbeat.
    pub in_flight: u64,
}

/// How a cluster routes: how many homes each function has, and when a home counts as
/// saturated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutingPolicy {
    /// Routing on or off; off, every node serves what it receives.
    pub enabled: bool,
    pub home_nodes: usize,
    /// A home with this many invocations in flight (its last heartbeat's figure plus what
    /// this node has sent it since) takes no more forwarded requests.
    pub spill_over_at: u64,
}

impl Default for RoutingPolicy {
    fn default() -> Self {
        RoutingPolicy {
            enabled: true,
            home_nodes: 2,
            spill_over_at: 32,
        }
    }
}

/// What this node knows of a peer beyond its heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerState {
    /// Requests this node has forwarded to it that have not answered yet.
    pub outstanding: u64,
    /// A recent forward to it failed at the connection.
    pub unreachable: bool,
}

/// One request to route.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The function, as `account/name`: all its versions share their homes.
    pub function: &'a str,
    /// It was forwarded to this node by another one.
    pub forwarded: bool,
    /// This node has an idle environment of the version it would run.
    pub warm_here: bool,
    /// The measured cost of a hop and of a cold start here, when known.
    pub forward_cost: Option<Duration>,
    pub cold_cost: Option<Duration>,
}

/// Why a request is served where it was received, or where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Local(LocalReason),
    Forward { node_id: String, url: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalReason {
    /// Routing is off, or this node is its own cluster.
    Alone,
    /// Another node forwarded it here.
    Forwarded,
    /// This node is one of the function's homes.
    Home,
    /// This node has an idle environment of it.
    WarmHere,
    /// A cold start here measures cheaper than the hop.
    ColdCheaper,
    /// Every home is saturated or unreachable.
    SpillOver,
}

impl LocalReason {
    pub const ALL: [LocalReason; 6] = [
        LocalReason::Alone,
        LocalReason::Forwarded,
        LocalReason::Home,
        LocalReason::WarmHere,
        LocalReason::ColdCheaper,
        LocalReason::SpillOver,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LocalReason::Alone => "alone",
            LocalReason::Forwarded => "forwarded_here",
            LocalReason::Home => "home",
            LocalReason::WarmHere => "warm_here",
            LocalReason::ColdCheaper => "cold_cheaper",
            LocalReason::SpillOver => "spill_over",
        }
    }
}

/// This node and the live members, as it last read them.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    me: String,
    /// Live members, this node included, sorted by id.
    peers: Vec<Peer>,
    policy: RoutingPolicy,
}

impl Routes {
    pub fn new(me: impl Into<String>, mut peers: Vec<Peer>, policy: RoutingPolicy) -> Self {
        peers.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        peers.dedup_by(|a, b| a.node_id == b.node_id);
        Routes {
            me: me.into(),
            peers,
            policy,
        }
    }

    pub fn policy(&self) -> RoutingPolicy {
        self.policy
    }

    /// The members routed over, by id.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.peers.iter().map(|p| p.node_id.as_str())
    }

    /// Routing is on and there is more than this node to route to.
    pub fn spans_cluster(&self) -> bool {
        self.policy.enabled && self.peers.len() > 1
    }

    /// The function's home nodes, best first.
    pub fn homes(&self, function: &str) -> Vec<&Peer> {
        let mut ranked: Vec<(u64, &Peer)> = self
            .peers
            .iter()
            .map(|p| (rank(function, &p.node_id), p))
            .collect();
        ranked.sort_unstable_by_key(|r| std::cmp::Reverse(r.0));
        ranked
            .into_iter()
            .take(self.policy.home_nodes.max(1))
            .map(|(_, p)| p)
            .collect()
    }

    /// Where `ask` runs; `peer_state` tells what this node knows of each peer.
    pub fn route(&self, ask: &Ask<'_>, peer_state: impl Fn(&str) -> PeerState) -> Route {
        if ask.forwarded {
            return Route::Local(LocalReason::Forwarded);
        }
        if !self.policy.enabled
            || self.peers.len() < 2
            || !self.peers.iter().any(|p| p.node_id == self.me)
        {
            return Route::Local(LocalReason::Alone);
        }
        let homes = self.homes(ask.function);
        if homes.iter().any(|p| p.node_id == self.me) {
            return Route::Local(LocalReason::Home);
        }
        if ask.warm_here {
            return Route::Local(LocalReason::WarmHere);
        }
        if let (Some(hop), Some(cold)) = (ask.forward_cost, ask.cold_cost)
            && cold <= hop
        {
            return Route::Local(LocalReason::ColdCheaper);
        }
        let open: Vec<(u64, &Peer)> = homes
            .into_iter()
            .filter_map(|p| {
                let state = peer_state(&p.node_id);
                let load = p.in_flight + state.outstanding;
                (!state.unreachable && load < self.policy.spill_over_at).then_some((load, p))
            })
            .collect();
        // The first home in the ranking, unless another is less loaded by more than one
        // invocation: a heartbeat's figure is up to a second old, and one invocation it
        // happened to catch must not move a function's traffic off its warm home.
        let least = open.iter().map(|(load, _)| *load).min();
        let chosen = open
            .iter()
            .find(|(load, _)| least.is_some_and(|least| *load <= least + BALANCE_SLACK));
        match chosen {
            Some((_, p)) => Route::Forward {
                node_id: p.node_id.clone(),
                url: p.url.clone(),
            },
            None => Route::Local(LocalReason::SpillOver),
        }
    }
}

/// An exponentially weighted moving average of a duration; `None` until observed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ewma(Option<f64>);

impl Ewma {
    const WEIGHT: f64 = 0.2;

    pub fn observe(&mut self, d: Duration) {
        let x = d.as_secs_f64();
        self.0 = Some(match self.0 {
            None => x,
            Some(v) => v + Self::WEIGHT * (x - v),
        });
    }

    pub fn get(&self) -> Option<Duration> {
        self.0.map(Duration::from_secs_f64)
    }
}

/// What this node has measured of the two ways to serve a function it is not home for:
/// the overhead of a hop to another node (round trip minus the time the other node spent
/// serving), and its own cold starts of each function (learned when it ran the function
/// cold: as a home before the membership changed, on a spill-over, or when its homes
/// could not be reached). A function never started here has no figure, and goes to its
/// homes: its first cold start here would also pay for compiling it and loading its
/// models, which no other function's figure tells.
#[derive(Debug, Clone, Default)]
pub struct CostBook {
    hop: Ewma,
    cold: HashMap<String, Ewma>,
}

impl CostBook {
    /// Functions whose cold starts are remembered one by one; beyond, the book starts over
    /// (each function's figure is relearned from its next cold start).
    const FUNCTIONS: usize = 10_000;

    pub fn hop(&mut self, overhead: Duration) {
        self.hop.observe(overhead);
    }

    pub fn cold_start(&mut self, function: &str, took: Duration) {
        if self.cold.len() >= Self::FUNCTIONS && !self.cold.contains_key(function) {
            self.cold.clear();
        }
        self.cold
            .entry(function.to_owned())
            .or_default()
            .observe(took);
    }

    pub fn hop_cost(&self) -> Option<Duration> {
        self.hop.get()
    }

    /// The function's cold start here, when it started here before.
    pub fn cold_cost(&self, function: &str) -> Option<Duration> {
        self.cold.get(function).and_then(Ewma::get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<Peer> {
        (1..=n)
            .map(|i| Peer {
                node_id: format!("node-{i}"),
                url: format!("http://10.0.0.{i}:9000"),
                in_flight: 0,
            })
            .collect()
    }

    fn routes(me: &str, peers: Vec<Peer>) -> Routes {
        Routes::new(me, peers, RoutingPolicy::default())
    }

    fn ask(function: &str) -> Ask<'_> {
        Ask {
            function,
            forwarded: false,
            warm_here: false,
            forward_cost: None,
            cold_cost: None,
        }
    }

    fn idle(_: &str) -> PeerState {
        PeerState::default()
    }

    /// A node of three that is not home for `function`, and the function's homes.
    fn outsider(function: &str) -> (Routes, Vec<String>) {
        let all = peers(3);
        let homes: Vec<String> = routes("node-1", all.clone())
            .homes(function)
            .iter()
            .map(|p| p.node_id.clone())
            .collect();
        let me = all
            .iter()
            .find(|p| !homes.contains(&p.node_id))
            .unwrap()
            .node_id
            .clone();
        (routes(&me, all), homes)
    }

    #[test]
    fn every_node_computes_the_same_homes() {
        let all = peers(5);
        for f in ["a/f", "a/g", "b/f"] {
            let seen: Vec<Vec<String>> = all
                .iter()
                .map(|me| {
                    routes(&me.node_id, all.clone())
                        .homes(f)
                        .iter()
                        .map(|p| p.node_id.clone())
                        .collect()
                })
                .collect();
            assert_eq!(seen[0].len(), 2);
            assert!(seen.iter().all(|s| *s == seen[0]), "{f}: {seen:?}");
        }
    }

    #[test]
    fn homes_spread_over_the_nodes_and_only_a_dead_nodes_functions_move() {
        let all = peers(4);
        let before: Vec<Vec<String>> = (0..200)
            .map(|i| {
                routes("node-1", all.clone())
                    .homes(&format!("a/f{i}"))
                    .iter()
                    .map(|p| p.node_id.clone())
                    .collect()
            })
            .collect();
        for node in &all {
            let homed = before.iter().filter(|h| h.contains(&node.node_id)).count();
            assert!((60..=140).contains(&homed), "{}: {homed}", node.node_id);
        }
        let survivors: Vec<Peer> = all[..3].to_vec();
        for (i, homes) in before.iter().enumerate() {
            let after: Vec<String> = routes("node-1", survivors.clone())
                .homes(&format!("a/f{i}"))
                .iter()
                .map(|p| p.node_id.clone())
                .collect();
            if !homes.contains(&"node-4".to_owned()) {
                assert_eq!(&after, homes, "a/f{i} moved though its homes live");
            }
        }
    }

    #[test]
    fn a_home_serves_and_a_forwarded_request_is_never_forwarded_again() {
        let (_, homes) = outsider("a/f");
        let home = routes(&homes[0], peers(3));
        assert_eq!(
            home.route(&ask("a/f"), idle),
            Route::Local(LocalReason::Home)
        );
        let (outsider, _) = outsider("a/f");
        let forwarded = Ask {
            forwarded: true,
            ..ask("a/f")
        };
        assert_eq!(
            outsider.route(&forwarded, idle),
            Route::Local(LocalReason::Forwarded)
        );
    }

    #[test]
    fn alone_or_off_or_outside_the_membership_serves_locally() {
        assert_eq!(
            routes("node-1", peers(1)).route(&ask("a/f"), idle),
            Route::Local(LocalReason::Alone)
        );
        assert_eq!(
            routes("node-9", peers(3)).route(&ask("a/f"), idle),
            Route::Local(LocalReason::Alone)
        );
        let (outsider, _) = outsider("a/f");
        let off = Routes::new(
            outsider.me.clone(),
            peers(3),
            RoutingPolicy {
                enabled: false,
                ..RoutingPolicy::default()
            },
        );
        assert_eq!(
            off.route(&ask("a/f"), idle),
            Route::Local(LocalReason::Alone)
        );
    }

    #[test]
    fn an_outsider_forwards_to_the_first_home_unless_the_other_is_less_loaded() {
        let (outsider, homes) = outsider("a/f");
        let Route::Forward { node_id, .. } = outsider.route(&ask("a/f"), idle) else {
            panic!("not forwarded");
        };
        assert_eq!(node_id, homes[0], "ties go to the first in the ranking");
        let one_more = |id: &str| PeerState {
            outstanding: u64::from(id == homes[0]),
            unreachable: false,
        };
        let Route::Forward { node_id, .. } = outsider.route(&ask("a/f"), one_more) else {
            panic!("not forwarded");
        };
        assert_eq!(node_id, homes[0], "one invocation more is within the slack");
        let busy_first = |id: &str| PeerState {
            outstanding: if id == homes[0] { 5 } else { 0 },
            unreachable: false,
        };
        let Route::Forward { node_id, .. } = outsider.route(&ask("a/f"), busy_first) else {
            panic!("not forwarded");
        };
        assert_eq!(node_id, homes[1]);
        let warm = Ask {
            warm_here: true,
            ..ask("a/f")
        };
        assert_eq!(
            outsider.route(&warm, idle),
            Route::Local(LocalReason::WarmHere)
        );
    }

    #[test]
    fn saturated_or_unreachable_homes_spill_over() {
        let (outsider, homes) = outsider("a/f");
        let mut all = peers(3);
        for p in &mut all {
            if homes.contains(&p.node_id) {
                p.in_flight = 31;
            }
        }
        let crowded = Routes::new(outsider.me.clone(), all, RoutingPolicy::default());
        let Route::Forward { .. } = crowded.route(&ask("a/f"), idle) else {
            panic!("31 of 32 is not saturated");
        };
        let one_more = |_: &str| PeerState {
            outstanding: 1,
            unreachable: false,
        };
        assert_eq!(
            crowded.route(&ask("a/f"), one_more),
            Route::Local(LocalReason::SpillOver)
        );
        let down = |id: &str| PeerState {
            outstanding: 0,
            unreachable: homes.iter().any(|h| h == id),
        };
        assert_eq!(
            outsider.route(&ask("a/f"), down),
            Route::Local(LocalReason::SpillOver)
        );
    }

    #[test]
    fn the_cheaper_of_a_hop_and_a_cold_start_wins() {
        let (outsider, _) = outsider("a/f");
        let ms = Duration::from_millis;
        let cheap_cold = Ask {
            forward_cost: Some(ms(2)),
            cold_cost: Some(ms(1)),
            ..ask("a/f")
        };
        assert_eq!(
            outsider.route(&cheap_cold, idle),
            Route::Local(LocalReason::ColdCheaper)
        );
        let dear_cold = Ask {
            forward_cost: Some(ms(2)),
            cold_cost: Some(ms(80)),
            ..ask("a/f")
        };
        assert!(matches!(
            outsider.route(&dear_cold, idle),
            Route::Forward { .. }
        ));
        let unmeasured_hop = Ask {
            cold_cost: Some(ms(1)),
            ..ask("a/f")
        };
        assert!(
            matches!(outsider.route(&unmeasured_hop, idle), Route::Forward { .. }),
            "a hop never measured is tried, so that it gets measured"
        );
    }

    #[test]
    fn the_cost_book_averages_per_function() {
        let ms = Duration::from_millis;
        let mut book = CostBook::default();
        assert_eq!(book.cold_cost("a/f"), None);
        book.cold_start("a/g", ms(100));
        assert_eq!(
            book.cold_cost("a/f"),
            None,
            "another function's figure tells nothing"
        );
        book.cold_start("a/f", ms(10));
        assert_eq!(book.cold_cost("a/f"), Some(ms(10)));
        book.cold_start("a/f", ms(20));
        let f = book.cold_cost("a/f").unwrap();
        assert!(f > ms(10) && f < ms(20), "{f:?}");
        book.hop(ms(1));
        assert_eq!(book.hop_cost(), Some(ms(1)));
    }
}

//! Concurrency limits of a cluster, as one node holds them: pure decisions, no IO.
//!
//! A function's reserved concurrency and an account's unreserved concurrency bound the
//! invocations in flight over all nodes. Each node holds slots of each limit it serves,
//! recorded in the database, and admits invocations within them without asking anyone;
//! only when every slot it holds is busy does it ask for more ([`SlotHoldings::want`]),
//! a few at a time when the limit is large, one at a time when it is small. Slots unused
//! over a settling period go back ([`SlotHoldings::settle`]), so an idle node holds
//! nothing and a busy one keeps what it uses.
//!
//! While the database cannot be reached, a node may add its share of the slots that were
//! free at its last answer ([`SlotHoldings::unreachable`]): invocations go on, and the
//! nodes together stay within the limit as it stood.

use std::collections::HashMap;
use std::sync::Arc;

use crate::core::{FunctionKey, ThrottleReason};

/// The most slots a node asks for beyond the one it needs, however large the limit.
pub const MAX_BATCH: u32 = 32;

/// A concurrency limit shared by the whole cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A function's reserved concurrency.
    Reserved(FunctionKey),
    /// What an account's limit leaves after every reservation, shared by its functions
    /// without one.
    Unreserved(Arc<str>),
}

impl Scope {
    /// The scope's key in the database.
    pub fn key(&self) -> String {
        match self {
            Scope::Reserved(f) => format!("reserved/{}/{}", f.account_id, f.name),
            Scope::Unreserved(account) => format!("unreserved/{account}"),
        }
    }

    /// Lambda's reason for a throttle when the scope is used up.
    pub fn throttle_reason(&self) -> ThrottleReason {
        match self {
            Scope::Reserved(_) => ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded,
            Scope::Unreserved(_) => ThrottleReason::ConcurrentInvocationLimitExceeded,
        }
    }
}

/// The database's answer to a request for slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// What the node holds now.
    pub held: u32,
    /// Slots no live node held after the grant.
    pub free: u32,
    pub live_nodes: u32,
}

#[derive(Debug, Clone, Default)]
struct Holding {
    /// Slots the node may fill.
    slots: u32,
    /// What the database holds for this node.
    recorded: u32,
    /// Most invocations in flight at once since the last settling.
    peak: u32,
    /// This node's part of the slots free at the last answer: what it may add on its own
    /// while the database is away. `None` before any answer.
    share_of_free: Option<u32>,
}

/// Every scope this node holds slots of.
#[derive(Debug, Clone, Default)]
pub struct SlotHoldings {
    holdings: HashMap<Scope, Holding>,
    /// Live nodes at the last answer (1 before any).
    live_nodes: u32,
}

impl SlotHoldings {
    pub fn new() -> Self {
        SlotHoldings {
            holdings: HashMap::new(),
            live_nodes: 1,
        }
    }

    /// The live nodes as the membership last read them. A node that has not had an
    /// answer from the database yet splits a limit over them, not over itself alone, if
    /// the database is away when it first needs slots.
    pub fn set_live_nodes(&mut self, live_nodes: u32) {
        self.live_nodes = live_nodes.max(1);
    }

    /// Whether one more invocation of `scope` fits in what the node holds.
    pub fn has_room(&self, scope: &Scope, busy: u32) -> bool {
        self.holdings.get(scope).is_some_and(|h| busy < h.slots)
    }

    /// Keeps the peak of invocations in flight, which settling keeps slots for.
    pub fn observe_busy(&mut self, scope: &Scope, busy: u32) {
        if let Some(h) = self.holdings.get_mut(scope) {
            h.peak = h.peak.max(busy);
        }
    }

    /// How many slots to hold in all after asking, with `busy` in flight: one more than
    /// busy, and a batch on top when the limit is large for the cluster, so a node that
    /// ramps up asks rarely and a small limit is never hoarded by one node.
    pub fn want(&self, busy: u32, limit: u32) -> u32 {
        let fair_share = limit / self.live_nodes.max(1);
        let batch = (fair_share / 4).min(MAX_BATCH);
        busy.saturating_add(1).saturating_add(batch).min(limit)
    }

    /// Records the database's answer; true when the node now has room for one more.
    pub fn granted(&mut self, scope: &Scope, busy: u32, grant: Granted) -> bool {
        self.live_nodes = grant.live_nodes.max(1);
        let h = self.holdings.entry(scope.clone()).or_default();
        h.slots = grant.held;
        h.recorded = grant.held;
        h.peak = h.peak.max(busy);
        h.share_of_free = Some(grant.free / self.live_nodes);
        busy < h.slots
    }

    /// The database did not answer: the node adds its share of what was free at its last
    /// answer (of the whole limit, divided by the live nodes, if it never had one), once.
    /// True when the node now has room for one more.
    pub fn unreachable(&mut self, scope: &Scope, busy: u32, limit: u32) -> bool {
        let live_nodes = self.live_nodes.max(1);
        let h = self.holdings.entry(scope.clone()).or_default();
        let share = h.share_of_free.unwrap_or(limit / live_nodes);
        h.slots = h.slots.max(h.recorded.saturating_add(share)).min(limit);
        h.peak = h.peak.max(busy);
        busy < h.slots
    }

    /// The scopes held, for settling.
    pub fn scopes(&self) -> Vec<Scope> {
        self.holdings.keys().cloned().collect()
    }

    /// Gives back the slots of `scope` not used since the last settling, keeping the
    /// `busy` ones. The slots to record when they differ from what the database holds.
    pub fn settle(&mut self, scope: &Scope, busy: u32) -> Option<u32> {
        let h = self.holdings.get_mut(scope)?;
        h.slots = h.slots.min(h.peak.max(busy));
        h.peak = busy;
        if h.slots == 0 && h.recorded == 0 {
            self.holdings.remove(scope);
            return None;
        }
        (h.slots != h.recorded).then_some(h.slots)
    }

    /// The database now holds `slots` of `scope` for this node.
    pub fn recorded(&mut self, scope: &Scope, slots: u32) {
        if let Some(h) = self.holdings.get_mut(scope) {
            h.recorded = slots;
            if h.slots == 0 && slots == 0 {
                self.holdings.remove(scope);
            }
        }
    }

    /// Slots held of `scope` (for operators and tests).
    pub fn held(&self, scope: &Scope) -> u32 {
        self.holdings.get(scope).map_or(0, |h| h.slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reserved() -> Scope {
        Scope::Reserved(FunctionKey::new("000000000000", "f"))
    }

    fn grant(held: u32, free: u32, live_nodes: u32) -> Granted {
        Granted {
            held,
            free,
            live_nodes,
        }
    }

    #[test]
    fn a_node_without_an_answer_yet_splits_a_limit_over_the_members_it_knows() {
        let mut h = SlotHoldings::new();
        h.set_live_nodes(3);
        assert!(
            !h.unreachable(&reserved(), 0, 1),
            "a third of one slot is none"
        );
        assert_eq!(h.held(&reserved()), 0);
        assert!(h.unreachable(&reserved(), 0, 6));
        assert_eq!(h.held(&reserved()), 2);
    }

    #[test]
    fn nothing_is_held_before_the_first_grant() {
        let h = SlotHoldings::new();
        assert!(!h.has_room(&reserved(), 0));
        assert_eq!(h.held(&reserved()), 0);
    }

    #[test]
    fn a_small_limit_is_asked_for_one_slot_at_a_time() {
        let mut h = SlotHoldings::new();
        h.granted(&reserved(), 0, grant(1, 1, 3));
        assert_eq!(h.want(0, 2), 1);
        assert_eq!(h.want(1, 2), 2);
        assert_eq!(h.want(2, 2), 2, "never more than the limit");
    }

    #[test]
    fn a_large_limit_is_asked_for_in_batches() {
        let mut h = SlotHoldings::new();
        let account = Scope::Unreserved("000000000000".into());
        h.granted(&account, 0, grant(0, 900, 3));
        assert_eq!(h.want(0, 900), 1 + MAX_BATCH);
        assert_eq!(h.want(10, 40), 10 + 1 + 3, "a quarter of the fair share");
    }

    #[test]
    fn granted_slots_admit_until_busy_reaches_them() {
        let mut h = SlotHoldings::new();
        assert!(h.granted(&reserved(), 0, grant(2, 0, 2)));
        assert!(h.has_room(&reserved(), 1));
        assert!(!h.has_room(&reserved(), 2));
        assert!(
            !h.granted(&reserved(), 2, grant(2, 0, 2)),
            "nothing new granted"
        );
    }

    #[test]
    fn settling_keeps_the_peak_and_gives_back_the_rest() {
        let mut h = SlotHoldings::new();
        h.granted(&reserved(), 0, grant(10, 0, 1));
        h.observe_busy(&reserved(), 3);
        assert_eq!(
            h.settle(&reserved(), 1),
            Some(3),
            "the peak since last time stays"
        );
        h.recorded(&reserved(), 3);
        assert_eq!(h.settle(&reserved(), 1), Some(1), "then only what runs");
        h.recorded(&reserved(), 1);
        assert_eq!(h.settle(&reserved(), 1), None, "nothing changed");
        assert_eq!(
            h.settle(&reserved(), 0),
            None,
            "it was busy since the last settling"
        );
        assert_eq!(h.settle(&reserved(), 0), Some(0));
        h.recorded(&reserved(), 0);
        assert!(h.scopes().is_empty(), "an idle scope is forgotten");
    }

    #[test]
    fn settling_never_gives_back_a_busy_slot() {
        let mut h = SlotHoldings::new();
        h.granted(&reserved(), 0, grant(4, 0, 1));
        assert_eq!(h.settle(&reserved(), 4), None);
        assert_eq!(h.held(&reserved()), 4);
    }

    #[test]
    fn without_the_database_a_node_adds_its_share_of_what_was_free_once() {
        let mut h = SlotHoldings::new();
        h.granted(&reserved(), 0, grant(1, 6, 3));
        assert!(h.unreachable(&reserved(), 1, 10));
        assert_eq!(h.held(&reserved()), 1 + 2);
        assert!(
            !h.unreachable(&reserved(), 3, 10),
            "the share is taken once"
        );
        assert_eq!(h.held(&reserved()), 3);
    }

    #[test]
    fn without_any_answer_a_node_takes_its_share_of_the_whole_limit() {
        let mut h = SlotHoldings::new();
        assert!(h.unreachable(&reserved(), 0, 10));
        assert_eq!(h.held(&reserved()), 10, "alone as far as it knows");
        let mut three = SlotHoldings::new();
        three.granted(
            &Scope::Unreserved("000000000000".into()),
            0,
            grant(1, 100, 3),
        );
        assert!(three.unreachable(&reserved(), 0, 10));
        assert_eq!(three.held(&reserved()), 3);
    }

    #[test]
    fn scopes_have_distinct_keys_and_lambdas_reasons() {
        let account = Scope::Unreserved("000000000000".into());
        assert_ne!(reserved().key(), account.key());
        assert_eq!(
            reserved().throttle_reason(),
            ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded
        );
        assert_eq!(
            account.throttle_reason(),
            ThrottleReason::ConcurrentInvocationLimitExceeded
        );
    }
}

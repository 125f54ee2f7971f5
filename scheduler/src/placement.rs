//! Where provisioned concurrency lives in a cluster, as pure decisions: a version's
//! provisioned environments are spread over the live nodes, each node computing its own
//! share from the same membership, with no coordination beyond it.
//!
//! The spread is rendezvous hashing: the nodes are ranked by a hash of (version, node),
//! every node takes `total / nodes`, and the first `total % nodes` in the ranking one
//! more. So the shares always sum to the total, different versions put their remainders
//! on different nodes, and when a node joins or dies only the shares that must move do.

use sha2::{Digest, Sha256};

/// This node and the live members of its cluster, as it last read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    me: String,
    /// Live members, this node included, sorted; empty on a node that is its own cluster.
    members: Vec<String>,
}

impl Placement {
    pub fn new(me: impl Into<String>, mut members: Vec<String>) -> Self {
        let me = me.into();
        members.sort();
        members.dedup();
        Placement { me, members }
    }

    /// How many live members the membership counts (none on a node that is its own
    /// cluster).
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// This node's share of `total` provisioned environments of the version `key`.
    /// A node that does not see itself among the members (alone, or not yet joined)
    /// takes the whole total: provisioned concurrency is never dropped for want of a
    /// membership.
    pub fn share(&self, key: &str, total: u32) -> u32 {
        let n = self.members.len() as u32;
        if n == 0 || !self.members.contains(&self.me) {
            return total;
        }
        let mut ranked: Vec<(u64, &str)> = self
            .members
            .iter()
            .map(|m| (rank(key, m), m.as_str()))
            .collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        let position = ranked.iter().position(|(_, m)| *m == self.me).unwrap_or(0) as u32;
        total / n + u32::from(position < total % n)
    }
}

/// The rendezvous weight of `member` for `key`: the members ranked by it, highest first,
/// are the key's preferred nodes.
pub(crate) fn rank(key: &str, member: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(key.as_bytes())
        .chain_update([0])
        .chain_update(member.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node-{i}")).collect()
    }

    fn shares(members: &[String], key: &str, total: u32) -> Vec<u32> {
        members
            .iter()
            .map(|me| Placement::new(me.clone(), members.to_vec()).share(key, total))
            .collect()
    }

    #[test]
    fn shares_sum_to_the_total_and_differ_by_at_most_one() {
        for n in 1..6 {
            for total in 0..12 {
                let s = shares(&nodes(n), "a/f/1", total);
                assert_eq!(s.iter().sum::<u32>(), total, "{n} nodes, {total}");
                let (lo, hi) = (s.iter().min().unwrap(), s.iter().max().unwrap());
                assert!(hi - lo <= 1, "{n} nodes, {total}: {s:?}");
            }
        }
    }

    #[test]
    fn remainders_of_different_versions_land_on_different_nodes() {
        let members = nodes(3);
        let holders: std::collections::HashSet<usize> = (0..20)
            .map(|v| {
                let s = shares(&members, &format!("a/f/{v}"), 1);
                s.iter().position(|x| *x == 1).unwrap()
            })
            .collect();
        assert!(holders.len() > 1, "every remainder on one node");
    }

    #[test]
    fn when_a_node_dies_the_survivors_take_its_share() {
        let all = nodes(3);
        let survivors: Vec<String> = all[..2].to_vec();
        assert_eq!(shares(&survivors, "a/f/1", 4).iter().sum::<u32>(), 4);
    }

    #[test]
    fn a_node_outside_the_membership_takes_everything() {
        assert_eq!(Placement::default().share("a/f/1", 5), 5);
        assert_eq!(Placement::new("me", nodes(3)).share("a/f/1", 5), 5);
    }
}

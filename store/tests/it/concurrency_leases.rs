//! Concurrency leases: the slots of one limit handed out to live incarnations never sum
//! past the limit, even when they ask at once; a node that leaves or dies frees its slots.

use store::{ConcurrencyLeases, Membership, SlotGrant};

use crate::backends;

const SCOPE: &str = "reserved/000000000000/f";

async fn scopes(db: &store::Db) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM concurrency_scopes")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get::<i64, _>("n")
}

#[tokio::test(flavor = "multi_thread")]
async fn slots_are_granted_within_the_limit_over_all_live_nodes() {
    for b in backends().await {
        let m = Membership::new(b.db.clone());
        m.join("node-a", "a-1", "http://a").await.unwrap();
        m.join("node-b", "b-1", "http://b").await.unwrap();
        let leases = ConcurrencyLeases::new(b.db.clone());

        let a = leases.acquire(SCOPE, "a-1", 3, 0, 4).await.unwrap();
        assert_eq!(
            a,
            SlotGrant {
                held: 3,
                free: 1,
                live_nodes: 2
            },
            "{}",
            b.name
        );
        let b1 = leases.acquire(SCOPE, "b-1", 3, 0, 4).await.unwrap();
        assert_eq!((b1.held, b1.free), (1, 0), "only what a left: {}", b.name);
        // A node never holds fewer than it runs, even past a lowered limit.
        let b2 = leases.acquire(SCOPE, "b-1", 2, 1, 1).await.unwrap();
        assert_eq!(b2.held, 1, "{}", b.name);

        // a gives back two; b gets them.
        leases.hold(SCOPE, "a-1", 1).await.unwrap();
        let b3 = leases.acquire(SCOPE, "b-1", 3, 1, 4).await.unwrap();
        assert_eq!((b3.held, b3.free), (3, 0), "{}", b.name);

        // a leaves: its slot counts as free at once, and the sweep deletes it.
        m.leave("node-a", "a-1").await.unwrap();
        let b4 = leases.acquire(SCOPE, "b-1", 4, 3, 4).await.unwrap();
        assert_eq!(b4.held, 4, "{}", b.name);
        assert_eq!(leases.sweep_dead().await.unwrap(), 1, "{}", b.name);

        leases.release_all("b-1").await.unwrap();
        assert_eq!(scopes(&b.db).await, 1, "{}", b.name);
        assert_eq!(leases.sweep_dead().await.unwrap(), 0, "{}", b.name);
        // Nobody holds a slot of the limit any more: its row goes too.
        assert_eq!(scopes(&b.db).await, 0, "{}", b.name);
        let c = leases.acquire(SCOPE, "b-1", 4, 0, 4).await.unwrap();
        assert_eq!(c.held, 4, "{}", b.name);
        leases.hold(SCOPE, "b-1", 0).await.unwrap();
        assert_eq!(
            leases.acquire(SCOPE, "b-1", 0, 0, 4).await.unwrap().free,
            4,
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_asking_at_once_never_share_a_slot() {
    for b in backends().await {
        let m = Membership::new(b.db.clone());
        let nodes: Vec<String> = (0..8).map(|i| format!("n-{i}")).collect();
        for n in &nodes {
            m.join(n, n, "http://n").await.unwrap();
        }
        let leases = ConcurrencyLeases::new(b.db.clone());
        let asks = nodes.iter().map(|n| {
            let leases = leases.clone();
            let n = n.clone();
            tokio::spawn(async move { leases.acquire(SCOPE, &n, 2, 0, 5).await })
        });
        let mut total = 0;
        for ask in asks {
            total += ask.await.unwrap().unwrap().held;
        }
        assert_eq!(total, 5, "{}", b.name);
    }
}

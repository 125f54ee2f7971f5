//! The async queue: durable events, leases, settlement with follow-ups, orphans taken
//! over by one live node, many nodes draining one queue.

use std::collections::HashSet;

use store::{AsyncEvent, Orphan, Queue, Settlement};

use crate::backends;

fn event(name: &str) -> AsyncEvent {
    AsyncEvent::new(
        uuid::Uuid::new_v4().to_string(),
        "111111111111",
        "111111111111",
        name,
        "$LATEST",
        b"{\"n\":1}".to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_leased_once_and_settled_atomically() {
    for b in backends().await {
        let q = Queue::new(b.db.clone());
        let e1 = event("f");
        let e2 = event("f");
        q.enqueue(e1.clone()).await.unwrap();
        q.enqueue(e2.clone()).await.unwrap();
        assert_eq!(q.depth().await.unwrap().0, 2);

        let leased = q.lease_due("me", 10).await.unwrap();
        assert_eq!(leased.len(), 2, "{}", b.name);
        assert_eq!(leased[0].payload, b"{\"n\":1}");
        assert!(
            q.lease_due("me", 10).await.unwrap().is_empty(),
            "leased twice"
        );

        // A retry comes back only when due.
        q.settle(
            &e1.event_id,
            "me",
            &Settlement::Retry {
                attempts: 1,
                not_before_ms: e1.received_at_ms + 3_600_000,
                last_error: Some("Unhandled".into()),
            },
        )
        .await
        .unwrap();
        assert!(q.lease_due("me", 10).await.unwrap().is_empty());

        // Done with a follow-up: the destination event appears in the same step.
        let dest = event("destination");
        q.settle(
            &e2.event_id,
            "me",
            &Settlement::Done {
                follow_up: Some(dest.clone()),
            },
        )
        .await
        .unwrap();
        let next = q.lease_due("me", 10).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].function_name, "destination");
        assert_eq!(q.depth().await.unwrap().0, 2);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_processs_leases_are_found_and_taken_over_once() {
    for b in backends().await {
        let q = Queue::new(b.db.clone());
        let e = event("f");
        q.enqueue(e.clone()).await.unwrap();
        q.lease_due("dead-process", 10).await.unwrap();
        let live = |owners: &[&str]| owners.iter().map(|o| o.to_string()).collect::<HashSet<_>>();
        assert!(
            q.orphaned(&live(&["dead-process"]))
                .await
                .unwrap()
                .is_empty()
        );
        let orphans = q.orphaned(&live(&["new-process"])).await.unwrap();
        assert_eq!(orphans.len(), 1, "{}", b.name);
        assert_eq!(orphans[0].event_id, e.event_id);
        assert_eq!(orphans[0].lease_owner.as_deref(), Some("dead-process"));
        assert_eq!(q.attempt_outcome(&e.request_id, 1).await.unwrap(), None);

        // Two live nodes find the same orphan; only one takes it over, with the event.
        let first = q.take_over(&orphans[0], "node-a");
        let second = q.take_over(&orphans[0], "node-b");
        let (first, second) = tokio::join!(first, second);
        let won: Vec<AsyncEvent> = [first.unwrap(), second.unwrap()]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(won.len(), 1, "{}", b.name);
        assert_eq!(won[0].request_id, e.request_id);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_taken_over_cannot_be_settled_by_its_old_owner() {
    for b in backends().await {
        let q = Queue::new(b.db.clone());
        let e = event("f");
        q.enqueue(e.clone()).await.unwrap();
        q.lease_due("slow-node", 10).await.unwrap();
        assert!(
            q.take_over(&orphan_of(&e, "slow-node"), "live-node")
                .await
                .unwrap()
                .is_some()
        );
        let done = Settlement::Done {
            follow_up: Some(event("destination")),
        };
        assert!(
            !q.settle(&e.event_id, "slow-node", &done).await.unwrap(),
            "{}",
            b.name
        );
        // Neither the event nor the follow-up moved.
        assert_eq!(q.depth().await.unwrap().0, 1, "{}", b.name);
        assert!(q.settle(&e.event_id, "live-node", &done).await.unwrap());
        assert_eq!(q.depth().await.unwrap().0, 1, "the follow-up replaced it");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dispatchers_on_many_nodes_never_lease_one_event_twice() {
    for b in backends().await {
        let q = Queue::new(b.db.clone());
        let events: Vec<AsyncEvent> = (0..200).map(|_| event("f")).collect();
        for e in &events {
            q.enqueue(e.clone()).await.unwrap();
        }
        let mut leasers = Vec::new();
        for node in 0..6 {
            let q = q.clone();
            leasers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = q.lease_due(&format!("node-{node}"), 7).await.unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|e| e.event_id));
                }
            }));
        }
        let mut seen = HashSet::new();
        let mut total = 0;
        for l in leasers {
            for id in l.await.unwrap() {
                total += 1;
                assert!(seen.insert(id), "an event was leased twice on {}", b.name);
            }
        }
        assert_eq!(total, events.len(), "{}", b.name);
    }
}

fn orphan_of(e: &AsyncEvent, lease_owner: &str) -> Orphan {
    Orphan {
        event_id: e.event_id.clone(),
        lease_owner: Some(lease_owner.into()),
    }
}

//! The async queue: durable events, leases, settlement with follow-ups, orphan recovery.

use store::{AsyncEvent, Queue, Settlement};

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
        q.enqueue(&e1).await.unwrap();
        q.enqueue(&e2).await.unwrap();
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
async fn a_dead_processs_leases_are_found() {
    for b in backends().await {
        let q = Queue::new(b.db.clone());
        let e = event("f");
        q.enqueue(&e).await.unwrap();
        q.lease_due("dead-process", 10).await.unwrap();
        assert!(q.orphaned("dead-process").await.unwrap().is_empty());
        let orphans = q.orphaned("new-process").await.unwrap();
        assert_eq!(orphans.len(), 1, "{}", b.name);
        assert_eq!(orphans[0].request_id, e.request_id);
        assert_eq!(q.attempt_outcome(&e.request_id, 1).await.unwrap(), None);
    }
}

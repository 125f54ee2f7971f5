//! Membership: nodes join, heartbeat and leave; a restart under the same identity is a
//! new incarnation, and the old one can no longer heartbeat.

use store::{Membership, NodeLoad};

use crate::backends;

#[tokio::test(flavor = "multi_thread")]
async fn nodes_join_heartbeat_and_leave() {
    for b in backends().await {
        let m = Membership::new(b.db.clone());
        m.join("node-a", "a-1", "http://10.0.0.1:4599")
            .await
            .unwrap();
        m.join("node-b", "b-1", "http://10.0.0.2:4599")
            .await
            .unwrap();
        let load = NodeLoad {
            environments: 3,
            in_flight: 1,
            models_loaded: 2,
            provisioned_ready: [("000000000000/f/1/r".to_owned(), 2)].into(),
        };
        assert!(m.heartbeat("node-a", "a-1", &load).await.unwrap());
        let live = m.live().await.unwrap();
        assert_eq!(live.len(), 2, "{}", b.name);
        assert_eq!(live[0].load, load);
        assert_eq!(live[1].advertise_url, "http://10.0.0.2:4599");

        m.leave("node-b", "b-1").await.unwrap();
        let live = m.live().await.unwrap();
        assert_eq!(live.len(), 1, "{}", b.name);
        assert_eq!(live[0].node_id, "node-a");
        assert_eq!(m.all().await.unwrap().len(), 2);

        // node-a restarts on its data directory: the old process is not the node any more.
        m.join("node-a", "a-2", "http://10.0.0.1:4599")
            .await
            .unwrap();
        assert!(!m.heartbeat("node-a", "a-1", &load).await.unwrap());
        m.leave("node-a", "a-1").await.unwrap();
        let live = m.live().await.unwrap();
        assert_eq!(live.len(), 1, "a stale leave took the new incarnation out");
        assert_eq!(live[0].incarnation, "a-2");
        assert_eq!(live[0].load, NodeLoad::default());
    }
}

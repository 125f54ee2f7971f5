//! Two catalogs on one database, as two nodes of a cluster: a change made through either
//! reaches the other by catching up, concurrent changes never lose each other, and a
//! node that fell behind the pruned feed reloads everything.

use std::collections::BTreeMap;

use store::{CatalogError, PublishAsIs};

use crate::backends;
use crate::catalog::{config, load};

const ACCOUNT: &str = "111111111111";

#[tokio::test(flavor = "multi_thread")]
async fn a_change_through_one_node_reaches_the_other_on_catch_up() {
    for b in backends().await {
        let (a, other) = (load(&b.db).await, load(&b.db).await);
        a.create_function(ACCOUNT, "f", config("aa"), BTreeMap::new(), false)
            .await
            .unwrap();
        assert!(other.function(ACCOUNT, "f").is_none());
        let caught = other.catch_up(&PublishAsIs).await.unwrap();
        let written = load(&b.db).await.revision();
        assert_eq!(caught.revision, written, "{}", b.name);
        assert_eq!(caught.functions.len(), 1);
        assert!(caught.functions[0].before.is_none());
        assert_eq!(
            other
                .function(ACCOUNT, "f")
                .unwrap()
                .latest
                .config
                .code_sha256,
            "aa"
        );
        // Nothing new: one query, no change.
        assert!(
            other
                .catch_up(&PublishAsIs)
                .await
                .unwrap()
                .functions
                .is_empty()
        );

        a.set_reserved(ACCOUNT, "f", Some(5)).await.unwrap();
        let caught = other.catch_up(&PublishAsIs).await.unwrap();
        let change = &caught.functions[0];
        assert_eq!(change.before.as_ref().unwrap().reserved_concurrency, None);
        assert_eq!(change.after.as_ref().unwrap().reserved_concurrency, Some(5));

        a.delete_function(ACCOUNT, "f").await.unwrap();
        let caught = other.catch_up(&PublishAsIs).await.unwrap();
        assert!(caught.functions[0].after.is_none(), "{}", b.name);
        assert!(other.function(ACCOUNT, "f").is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_through_two_nodes_never_overwrite_each_other() {
    for b in backends().await {
        let (a, other) = (load(&b.db).await, load(&b.db).await);
        a.create_function(ACCOUNT, "f", config("aa"), BTreeMap::new(), false)
            .await
            .unwrap();
        other.catch_up(&PublishAsIs).await.unwrap();
        // Each node changes a different part of the function without having seen the
        // other's change: both survive.
        a.set_reserved(ACCOUNT, "f", Some(7)).await.unwrap();
        other
            .set_tags(ACCOUNT, "f", BTreeMap::from([("team".into(), "ml".into())]))
            .await
            .unwrap();
        let fresh = load(&b.db).await;
        let f = fresh.function(ACCOUNT, "f").unwrap();
        assert_eq!(f.reserved_concurrency, Some(7), "{}", b.name);
        assert_eq!(f.tags.get("team").map(String::as_str), Some("ml"));
        // The node that made a change answers with it at once.
        assert_eq!(
            other.function(ACCOUNT, "f").unwrap().reserved_concurrency,
            Some(7)
        );

        // A function created through one node cannot be created again through another
        // that has not heard of it yet.
        a.create_function(ACCOUNT, "g", config("aa"), BTreeMap::new(), false)
            .await
            .unwrap();
        assert!(matches!(
            other
                .create_function(ACCOUNT, "g", config("bb"), BTreeMap::new(), false)
                .await,
            Err(CatalogError::FunctionExists)
        ));
        assert_eq!(
            load(&b.db)
                .await
                .function(ACCOUNT, "g")
                .unwrap()
                .latest
                .config
                .code_sha256,
            "aa",
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_behind_the_pruned_feed_reloads_everything() {
    for b in backends().await {
        let (a, other) = (load(&b.db).await, load(&b.db).await);
        a.create_function(ACCOUNT, "f", config("aa"), BTreeMap::new(), false)
            .await
            .unwrap();
        a.create_function(ACCOUNT, "g", config("aa"), BTreeMap::new(), false)
            .await
            .unwrap();
        let pruned = a.prune_changes(i64::MAX).await.unwrap();
        assert_eq!(pruned, 2, "{}", b.name);
        let caught = other.catch_up(&PublishAsIs).await.unwrap();
        assert!(caught.reloaded_all, "{}", b.name);
        assert_eq!(caught.revision, load(&b.db).await.revision());
        assert!(other.function(ACCOUNT, "f").is_some());
        assert!(other.function(ACCOUNT, "g").is_some());
    }
}

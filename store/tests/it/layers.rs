//! Layer versions: numbered per name, never reused, and safe to publish from several
//! nodes at once.

use store::{LayerDraft, Layers};

use crate::backends;

const ACCOUNT: &str = "111111111111";

fn draft(digest: &str) -> LayerDraft {
    LayerDraft {
        description: "deps".into(),
        license_info: Some("MIT".into()),
        compatible_runtimes: vec!["python3.14".into()],
        compatible_architectures: vec![],
        code_sha256: digest.into(),
        code_size: 42,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_count_up_and_are_never_reused_after_a_delete() {
    for b in backends().await {
        let layers = Layers::new(b.db.clone());
        let first = layers.publish(ACCOUNT, "deps", draft("a")).await.unwrap();
        let second = layers.publish(ACCOUNT, "deps", draft("b")).await.unwrap();
        assert_eq!((first.version, second.version), (1, 2), "{}", b.name);
        assert_eq!(first.compatible_runtimes, vec!["python3.14"]);
        assert_eq!(
            layers.get(ACCOUNT, "deps", 1).await.unwrap(),
            Some(first.clone()),
            "{}",
            b.name
        );
        assert_eq!(layers.get("222222222222", "deps", 1).await.unwrap(), None);
        layers.publish(ACCOUNT, "other", draft("o")).await.unwrap();
        let all: Vec<_> = layers
            .all_versions(ACCOUNT)
            .await
            .unwrap()
            .into_iter()
            .map(|l| (l.layer_name, l.version))
            .collect();
        assert_eq!(
            all,
            vec![("deps".into(), 2), ("deps".into(), 1), ("other".into(), 1)],
            "{}",
            b.name
        );
        assert!(layers.has_digest("a").await.unwrap());
        assert!(!layers.has_digest("z").await.unwrap());

        assert!(layers.delete(ACCOUNT, "deps", 1).await.unwrap());
        assert!(layers.delete(ACCOUNT, "deps", 2).await.unwrap());
        assert!(!layers.delete(ACCOUNT, "deps", 2).await.unwrap());
        let third = layers.publish(ACCOUNT, "deps", draft("c")).await.unwrap();
        assert_eq!(third.version, 3, "{}", b.name);
        assert_eq!(
            layers.versions(ACCOUNT, "deps").await.unwrap(),
            vec![third],
            "{}",
            b.name
        );
        let digests = layers.digests().await.unwrap();
        assert!(
            digests.contains("c") && !digests.contains("a"),
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_first_publishes_get_distinct_versions() {
    for b in backends().await {
        let layers = Layers::new(b.db.clone());
        let publishes: Vec<_> = (0..4)
            .map(|i| {
                let layers = layers.clone();
                tokio::spawn(async move {
                    layers
                        .publish(ACCOUNT, "race", draft(&format!("d{i}")))
                        .await
                        .unwrap()
                        .version
                })
            })
            .collect();
        let mut versions = Vec::new();
        for p in publishes {
            versions.push(p.await.unwrap());
        }
        versions.sort();
        assert_eq!(versions, vec![1, 2, 3, 4], "{}", b.name);
    }
}

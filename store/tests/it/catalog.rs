//! The catalog persists every change and reloads exactly what it stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use store::{
    AliasRecord, Catalog, CatalogError, Db, EventInvokeConfig, EventInvokeRecord, PolicyStatement,
    ProvisionedRecord, UrlConfigRecord, VersionConfig,
};

use crate::backends;

fn config(sha: &str) -> VersionConfig {
    VersionConfig {
        runtime: "wasm".into(),
        handler: "function.wasm".into(),
        role: "arn:aws:iam::000000000000:role/r".into(),
        description: String::new(),
        timeout: 3,
        memory_size: 128,
        environment: BTreeMap::from([("A".into(), "1".into())]),
        ephemeral_storage: 512,
        architectures: vec!["x86_64".into()],
        package_type: "Zip".into(),
        code_sha256: sha.into(),
        code_size: 10,
        guest_kind: "handler".into(),
        tracing_mode: "PassThrough".into(),
        dead_letter_target: None,
        snap_start: false,
        log_format: "Text".into(),
        kms_key_arn: None,
    }
}

async fn load(db: &Db) -> Catalog {
    Catalog::load(db.clone(), "/packages".into(), "us-east-1".into())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_change_survives_a_reload() {
    for b in backends().await {
        let c = load(&b.db).await;
        let a = "111111111111";
        c.create_function(
            a,
            "f",
            config("aa"),
            BTreeMap::from([("t".into(), "v".into())]),
            true,
        )
        .await
        .unwrap();
        assert!(matches!(
            c.create_function(a, "f", config("aa"), BTreeMap::new(), false)
                .await,
            Err(CatalogError::FunctionExists)
        ));
        let before = c.function(a, "f").unwrap();
        assert_eq!(before.versions.len(), 1);
        c.update_latest(a, "f", Some(&before.latest.revision_id), config("bb"))
            .await
            .unwrap();
        assert!(matches!(
            c.update_latest(a, "f", Some("stale"), config("cc")).await,
            Err(CatalogError::RevisionMismatch)
        ));
        let (v2, _) = c
            .publish_version(a, "f", None, None, Some("second"))
            .await
            .unwrap();
        assert_eq!(v2.version, "2");
        // Publishing an unchanged $LATEST returns the newest version again.
        let (again, _) = c
            .publish_version(a, "f", None, None, Some("second"))
            .await
            .unwrap();
        assert_eq!(again.version, "2");
        assert!(matches!(
            c.publish_version(a, "f", Some("zz"), None, None).await,
            Err(CatalogError::CodeShaMismatch { .. })
        ));
        c.put_alias(
            a,
            "f",
            AliasRecord {
                name: "live".into(),
                function_version: "1".into(),
                description: "d".into(),
                routing: BTreeMap::from([("2".into(), 0.25)]),
                revision_id: "r1".into(),
            },
            true,
            None,
        )
        .await
        .unwrap();
        assert!(matches!(
            c.delete_version(a, "f", 2).await,
            Err(CatalogError::VersionInUse(_))
        ));
        c.set_reserved(a, "f", Some(5)).await.unwrap();
        let url = UrlConfigRecord {
            url_id: "u".repeat(32),
            account_id: a.into(),
            function_name: "f".into(),
            qualifier: "live".into(),
            auth_type: "NONE".into(),
            cors: serde_json::json!({"AllowOrigins": ["*"]}),
            invoke_mode: "BUFFERED".into(),
            created_at_ms: 1,
            last_modified_ms: 2,
        };
        c.put_url(a, "f", url.clone(), true).await.unwrap();
        c.put_provisioned(
            a,
            "f",
            ProvisionedRecord {
                qualifier: "1".into(),
                requested: 2,
                last_modified_ms: 3,
            },
        )
        .await
        .unwrap();
        c.put_event_config(
            a,
            "f",
            EventInvokeRecord {
                qualifier: "$LATEST".into(),
                config: EventInvokeConfig {
                    maximum_retry_attempts: Some(1),
                    maximum_event_age_in_seconds: Some(60),
                    on_success: Some("arn:aws:lambda:us-east-1:111111111111:function:g".into()),
                    on_failure: None,
                },
                last_modified_ms: 4,
            },
        )
        .await
        .unwrap();
        c.add_statement(
            a,
            "f",
            PolicyStatement {
                qualifier: String::new(),
                statement_id: "s1".into(),
                statement: serde_json::json!({"Sid": "s1"}),
            },
        )
        .await
        .unwrap();
        // Another account's function of the same name is separate.
        c.create_function("222222222222", "f", config("dd"), BTreeMap::new(), false)
            .await
            .unwrap();

        let in_memory = c.function(a, "f").unwrap();
        let reloaded = load(&b.db).await;
        let from_db = reloaded.function(a, "f").unwrap();
        assert_eq!(*from_db, *in_memory, "{}: reload differs", b.name);
        assert_eq!(reloaded.url(&url.url_id).unwrap().qualifier, "live");
        assert_eq!(reloaded.functions(a).len(), 1);
        assert_eq!(reloaded.functions("222222222222").len(), 1);

        // Deleting the function removes everything attached to it.
        c.delete_function(a, "f").await.unwrap();
        let reloaded = load(&b.db).await;
        assert!(reloaded.function(a, "f").is_none(), "{}", b.name);
        assert!(reloaded.url(&url.url_id).is_none());
        assert!(reloaded.function("222222222222", "f").is_some());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn specs_point_at_the_content_addressed_package() {
    for b in backends().await {
        let c = Arc::new(load(&b.db).await);
        let mut cfg = config("abc");
        cfg.environment.insert(
            "LAMINA_ALLOWED_HOSTS".into(),
            "api.example.com, x.test".into(),
        );
        let e = c
            .create_function("111111111111", "f", cfg, BTreeMap::new(), false)
            .await
            .unwrap();
        let spec = c.spec(&e, &e.latest);
        assert_eq!(spec.code.root, std::path::Path::new("/packages/abc"));
        assert_eq!(
            spec.function_arn,
            "arn:aws:lambda:us-east-1:111111111111:function:f:$LATEST"
        );
        assert_eq!(spec.allowed_hosts, vec!["api.example.com", "x.test"]);
        // Built once per record.
        assert!(Arc::ptr_eq(&spec, &c.spec(&e, &e.latest)));
    }
}

//! The catalog persists every change and reloads exactly what it stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use store::{
    AliasRecord, Catalog, CatalogError, CatalogErrorKind, Db, EventInvokeConfig, EventInvokeRecord,
    PolicyStatement, ProvisionedRecord, UrlConfigRecord, VersionConfig,
};

use crate::backends;

pub fn config(sha: &str) -> VersionConfig {
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
        layers: Vec::new(),
    }
}

pub async fn load(db: &Db) -> Catalog {
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
        c.put_setting(
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
        c.put_setting(
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

/// What is in memory is what a fresh load reads back.
async fn assert_reloads(c: &Catalog, db: &Db, account: &str, name: &str, backend: &str) {
    let in_memory = c.function(account, name);
    let reloaded = load(db).await;
    assert_eq!(
        reloaded.function(account, name),
        in_memory,
        "{backend}: reload differs"
    );
    for u in in_memory.iter().flat_map(|e| e.urls.values()) {
        assert_eq!(reloaded.url(&u.url_id).as_ref(), Some(u), "{backend}");
    }
}

fn alias(name: &str, version: &str, revision: &str) -> AliasRecord {
    AliasRecord {
        name: name.into(),
        function_version: version.into(),
        description: String::new(),
        routing: BTreeMap::new(),
        revision_id: revision.into(),
    }
}

fn url(id: &str, qualifier: &str, auth_type: &str) -> UrlConfigRecord {
    UrlConfigRecord {
        url_id: id.repeat(32),
        account_id: "111111111111".into(),
        function_name: "f".into(),
        qualifier: qualifier.into(),
        auth_type: auth_type.into(),
        cors: serde_json::json!({}),
        invoke_mode: "BUFFERED".into(),
        created_at_ms: 1,
        last_modified_ms: 2,
    }
}

fn provisioned(qualifier: &str, requested: u32) -> ProvisionedRecord {
    ProvisionedRecord {
        qualifier: qualifier.into(),
        requested,
        last_modified_ms: 3,
    }
}

fn event_config(qualifier: &str, retries: u32) -> EventInvokeRecord {
    EventInvokeRecord {
        qualifier: qualifier.into(),
        config: EventInvokeConfig {
            maximum_retry_attempts: Some(retries),
            ..Default::default()
        },
        last_modified_ms: 4,
    }
}

fn statement(qualifier: &str, id: &str) -> PolicyStatement {
    PolicyStatement {
        qualifier: qualifier.into(),
        statement_id: id.into(),
        statement: serde_json::json!({"Sid": id}),
    }
}

fn kind<T: std::fmt::Debug>(r: Result<T, CatalogError>) -> CatalogErrorKind {
    r.expect_err("the change should be refused").kind()
}

#[tokio::test(flavor = "multi_thread")]
async fn replacements_and_deletes_survive_a_reload() {
    for b in backends().await {
        let c = load(&b.db).await;
        let (a, f) = ("111111111111", "f");
        c.create_function(a, f, config("aa"), BTreeMap::new(), true)
            .await
            .unwrap();
        c.publish_version(a, f, None, None, Some("two"))
            .await
            .unwrap();

        // Create refuses what exists, update refuses what does not, and both keep the
        // refused change out of memory and out of the database.
        c.put_alias(a, f, alias("live", "1", "r1"), true, None)
            .await
            .unwrap();
        use CatalogErrorKind::*;
        let again = c
            .put_alias(a, f, alias("live", "2", "r2"), true, None)
            .await;
        assert!(matches!(again, Err(CatalogError::AliasExists)));
        let stale = c.put_alias(a, f, alias("live", "2", "r2"), false, Some("old"));
        assert!(matches!(stale.await, Err(CatalogError::RevisionMismatch)));
        let missing = c.put_alias(a, f, alias("gone", "2", "r2"), false, None);
        assert_eq!(kind(missing.await), NotFound);
        c.put_alias(a, f, alias("live", "2", "r2"), false, Some("r1"))
            .await
            .unwrap();
        c.put_alias(a, f, alias("canary", "1", "r3"), true, None)
            .await
            .unwrap();

        c.put_url(a, f, url("a", "live", "NONE"), true)
            .await
            .unwrap();
        assert_eq!(
            kind(c.put_url(a, f, url("b", "live", "NONE"), true).await),
            Conflict
        );
        assert_eq!(
            kind(c.put_url(a, f, url("b", "$LATEST", "NONE"), false).await),
            NotFound
        );
        c.put_url(a, f, url("a", "live", "AWS_IAM"), false)
            .await
            .unwrap();
        c.put_url(a, f, url("c", "$LATEST", "NONE"), true)
            .await
            .unwrap();

        for q in ["live", "1"] {
            c.put_setting(a, f, provisioned(q, 1)).await.unwrap();
            c.put_setting(a, f, event_config(q, 1)).await.unwrap();
        }
        c.put_setting(a, f, provisioned("live", 7)).await.unwrap();
        c.put_setting(a, f, event_config("1", 2)).await.unwrap();

        c.add_statement(a, f, statement("", "s1")).await.unwrap();
        c.add_statement(a, f, statement("live", "s1"))
            .await
            .unwrap();
        c.add_statement(a, f, statement("", "s2")).await.unwrap();
        assert_eq!(
            kind(c.add_statement(a, f, statement("", "s1")).await),
            Conflict
        );

        c.set_tags(a, f, BTreeMap::from([("k".into(), "v".into())]))
            .await
            .unwrap();
        c.set_reserved(a, f, Some(3)).await.unwrap();
        let e = c.function(a, f).unwrap();
        assert_eq!(e.aliases["live"].function_version, "2");
        assert_eq!(e.urls["live"].auth_type, "AWS_IAM");
        assert_eq!(e.provisioned["live"].requested, 7);
        assert_eq!(e.event_configs["1"].config.maximum_retry_attempts, Some(2));
        assert_eq!(e.policy.len(), 3);
        assert_reloads(&c, &b.db, a, f, b.name).await;

        // Deleting: each record alone, then an alias and a version with what hangs off
        // them.
        c.delete_url(a, f, "$LATEST").await.unwrap();
        assert_eq!(kind(c.delete_url(a, f, "$LATEST").await), NotFound);
        assert!(c.url(&"c".repeat(32)).is_none());
        c.delete_setting::<ProvisionedRecord>(a, f, "1")
            .await
            .unwrap();
        assert_eq!(
            kind(c.delete_setting::<ProvisionedRecord>(a, f, "1").await),
            NotFound
        );
        c.delete_setting::<EventInvokeRecord>(a, f, "live")
            .await
            .unwrap();
        assert_eq!(
            kind(c.delete_setting::<EventInvokeRecord>(a, f, "live").await),
            NotFound
        );
        c.remove_statement(a, f, "", "s1").await.unwrap();
        assert_eq!(kind(c.remove_statement(a, f, "", "s1").await), NotFound);
        c.set_reserved(a, f, None).await.unwrap();
        assert_reloads(&c, &b.db, a, f, b.name).await;

        let e = c.delete_alias(a, f, "live").await.unwrap();
        assert!(e.urls.is_empty() && !e.provisioned.contains_key("live"));
        assert!(c.url(&"a".repeat(32)).is_none());
        // Deleting an alias that is not there changes nothing, as in Lambda.
        c.delete_alias(a, f, "live").await.unwrap();
        c.delete_alias(a, f, "canary").await.unwrap();
        let e = c.delete_version(a, f, 1).await.unwrap();
        assert!(e.event_configs.is_empty() && e.provisioned.is_empty());
        assert_eq!(e.versions.keys().collect::<Vec<_>>(), vec![&2]);
        assert_eq!(e.policy, vec![statement("live", "s1"), statement("", "s2")]);
        assert_reloads(&c, &b.db, a, f, b.name).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_racing_a_delete_finds_no_function() {
    for b in backends().await {
        let c = load(&b.db).await;
        let (a, f) = ("111111111111", "f");
        c.create_function(a, f, config("aa"), BTreeMap::new(), false)
            .await
            .unwrap();
        // The caller resolved the function, then someone deleted it.
        let resolved = c.function(a, f).unwrap();
        c.delete_function(a, f).await.unwrap();
        let revision = Some(resolved.latest.revision_id.as_str());
        let racing = [
            kind(c.update_latest(a, f, revision, config("bb")).await),
            kind(c.publish_version(a, f, None, revision, None).await),
            kind(c.put_url(a, f, url("a", "$LATEST", "NONE"), true).await),
            kind(c.set_tags(a, f, BTreeMap::new()).await),
            kind(c.delete_function(a, f).await),
        ];
        assert_eq!(racing, [CatalogErrorKind::NotFound; 5], "{}", b.name);

        // The function's row vanished under the catalog (deleted by another writer of
        // the same database): the change is refused and the mirror forgets it.
        c.create_function(a, "g", config("aa"), BTreeMap::new(), false)
            .await
            .unwrap();
        sqlx::query("DELETE FROM functions WHERE function_name = 'g'")
            .execute(b.db.writer())
            .await
            .unwrap();
        let refused = c.set_reserved(a, "g", Some(1)).await;
        assert!(
            matches!(refused, Err(CatalogError::FunctionNotFound)),
            "{}: {refused:?}",
            b.name
        );
        assert!(c.function(a, "g").is_none());
    }
}

//! Creating, updating, publishing and deleting functions and their versions.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::attachments::detach_qualifier;
use super::entries::*;
use super::write::{Row, Write};
use super::{Catalog, CatalogError};
use crate::db::now_ms;

impl Catalog {
    /// Creates a function with its $LATEST (and version 1 when `publish`).
    pub async fn create_function(
        &self,
        account_id: &str,
        name: &str,
        config: VersionConfig,
        tags: BTreeMap<String, String>,
        publish: bool,
    ) -> Result<Arc<FunctionEntry>, CatalogError> {
        let now = now_ms();
        let latest = Arc::new(VersionRecord::new(protocol::names::LATEST, config, now));
        let mut entry = FunctionEntry {
            account_id: account_id.to_owned(),
            name: name.to_owned(),
            created_at_ms: now,
            reserved_concurrency: None,
            next_version: 1,
            tags,
            latest: latest.clone(),
            versions: BTreeMap::new(),
            aliases: BTreeMap::new(),
            urls: BTreeMap::new(),
            provisioned: BTreeMap::new(),
            event_configs: BTreeMap::new(),
            policy: Vec::new(),
        };
        let mut writes = vec![Write::Put(Row::Version(latest.clone()))];
        if publish {
            let v1 = Arc::new(VersionRecord::new("1", latest.config.clone(), now));
            entry.versions.insert(1, v1.clone());
            entry.next_version = 2;
            writes.push(Write::Put(Row::Version(v1)));
        }
        self.insert(entry, writes).await
    }

    /// Deletes a function with everything attached to it; returns what was deleted.
    pub async fn delete_function(
        &self,
        account_id: &str,
        name: &str,
    ) -> Result<Arc<FunctionEntry>, CatalogError> {
        self.remove(account_id, name).await
    }

    /// Replaces $LATEST's configuration (code or settings), checking the revision.
    pub async fn update_latest(
        &self,
        account_id: &str,
        name: &str,
        expected_revision: Option<&str>,
        config: VersionConfig,
    ) -> Result<Arc<FunctionEntry>, CatalogError> {
        self.update(account_id, name, |e| {
            check_revision(e, expected_revision)?;
            let latest = Arc::new(VersionRecord::new(
                protocol::names::LATEST,
                config,
                now_ms(),
            ));
            e.latest = latest.clone();
            Ok(((), vec![Write::Put(Row::Version(latest))]))
        })
        .await
        .map(|(_, e)| e)
    }

    /// Publishes $LATEST as a new version. When $LATEST is unchanged since the newest
    /// version, Lambda returns that version instead of making a new one.
    pub async fn publish_version(
        &self,
        account_id: &str,
        name: &str,
        expected_code_sha256: Option<&str>,
        expected_revision: Option<&str>,
        description: Option<&str>,
    ) -> Result<(Arc<VersionRecord>, Arc<FunctionEntry>), CatalogError> {
        self.update(account_id, name, |e| {
            check_revision(e, expected_revision)?;
            if let Some(sha) = expected_code_sha256
                && sha != e.latest.config.code_sha256
            {
                return Err(CatalogError::CodeShaMismatch {
                    current: e.latest.config.code_sha256.clone(),
                });
            }
            let mut config = e.latest.config.clone();
            if let Some(d) = description {
                config.description = d.to_owned();
            }
            if let Some((_, newest)) = e.versions.last_key_value()
                && newest.config == config
            {
                return Ok((newest.clone(), vec![]));
            }
            let n = e.next_version;
            let v = Arc::new(VersionRecord::new(n.to_string(), config, now_ms()));
            e.versions.insert(n, v.clone());
            e.next_version = n + 1;
            Ok((v.clone(), vec![Write::Put(Row::Version(v))]))
        })
        .await
    }

    /// Deletes a published version with its per-qualifier settings; refuses while an
    /// alias routes to it. Deleting a version that does not exist changes nothing.
    pub async fn delete_version(
        &self,
        account_id: &str,
        name: &str,
        version: u64,
    ) -> Result<Arc<FunctionEntry>, CatalogError> {
        self.update(account_id, name, |e| {
            let Some(record) = e.versions.get(&version).cloned() else {
                return Ok(((), vec![]));
            };
            let qualifier = version.to_string();
            let users: Vec<String> = e
                .aliases
                .values()
                .filter(|a| a.function_version == qualifier || a.routing.contains_key(&qualifier))
                .map(|a| a.name.clone())
                .collect();
            if !users.is_empty() {
                return Err(CatalogError::VersionInUse(users));
            }
            e.versions.remove(&version);
            let mut writes = vec![Write::Delete(Row::Version(record))];
            writes.extend(detach_qualifier(e, &qualifier));
            Ok(((), writes))
        })
        .await
        .map(|(_, e)| e)
    }
}

fn check_revision(e: &FunctionEntry, expected: Option<&str>) -> Result<(), CatalogError> {
    match expected {
        Some(r) if r != e.latest.revision_id => Err(CatalogError::RevisionMismatch),
        _ => Ok(()),
    }
}

//! Layers: named, versioned packages that functions mount under `/opt`. Read and written
//! straight in the database (no mirror): nothing on the invoke path reads them, since a
//! function version keeps the digests of its layers in its own configuration.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::db::{Db, StoreError, now_ms};

/// What PublishLayerVersion stores besides the package.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LayerDraft {
    pub description: String,
    pub license_info: Option<String>,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: Vec<String>,
    /// Lowercase hex SHA-256 of the layer's zip.
    pub code_sha256: String,
    pub code_size: u64,
}

/// One published version of a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerVersion {
    pub account_id: String,
    pub layer_name: String,
    pub version: u64,
    pub description: String,
    pub license_info: Option<String>,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: Vec<String>,
    pub code_sha256: String,
    pub code_size: u64,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Layers {
    db: Db,
}

macro_rules! columns {
    () => {
        "account_id, layer_name, version, description, license_info, compatible_runtimes, \
         compatible_architectures, code_sha256, code_size, created_at_ms"
    };
}

impl Layers {
    pub fn new(db: Db) -> Self {
        Layers { db }
    }

    /// Publishes the next version of `layer_name`: one more than the last ever given,
    /// whatever was deleted since, as Lambda numbers them.
    pub async fn publish(
        &self,
        account_id: &str,
        layer_name: &str,
        draft: LayerDraft,
    ) -> Result<LayerVersion, StoreError> {
        let mut tx = self.db.begin_write().await?;
        // One statement both claims the number and creates the name, so two first
        // publishes at once on different nodes get 1 and 2, not a conflict.
        let version: i64 = sqlx::query(
            "INSERT INTO layers (account_id, layer_name, last_version) VALUES ($1, $2, 1) \
             ON CONFLICT (account_id, layer_name) \
             DO UPDATE SET last_version = layers.last_version + 1 RETURNING last_version",
        )
        .bind(account_id)
        .bind(layer_name)
        .fetch_one(&mut *tx)
        .await?
        .try_get("last_version")?;
        let layer = LayerVersion {
            account_id: account_id.to_owned(),
            layer_name: layer_name.to_owned(),
            version: version as u64,
            description: draft.description,
            license_info: draft.license_info,
            compatible_runtimes: draft.compatible_runtimes,
            compatible_architectures: draft.compatible_architectures,
            code_sha256: draft.code_sha256,
            code_size: draft.code_size,
            created_at_ms: now_ms(),
        };
        sqlx::query(concat!(
            "INSERT INTO layer_versions (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&layer.account_id)
        .bind(&layer.layer_name)
        .bind(version)
        .bind(&layer.description)
        .bind(layer.license_info.as_deref())
        .bind(json_list(&layer.compatible_runtimes))
        .bind(json_list(&layer.compatible_architectures))
        .bind(&layer.code_sha256)
        .bind(layer.code_size as i64)
        .bind(layer.created_at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(layer)
    }

    pub async fn get(
        &self,
        account_id: &str,
        layer_name: &str,
        version: u64,
    ) -> Result<Option<LayerVersion>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM layer_versions WHERE account_id = $1 AND layer_name = $2 AND version = $3"
        ))
        .bind(account_id)
        .bind(layer_name)
        .bind(version as i64)
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|r| from_row(&r)).transpose()
    }

    /// The versions of one layer, newest first.
    pub async fn versions(
        &self,
        account_id: &str,
        layer_name: &str,
    ) -> Result<Vec<LayerVersion>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM layer_versions WHERE account_id = $1 AND layer_name = $2 \
             ORDER BY version DESC"
        ))
        .bind(account_id)
        .bind(layer_name)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Every version of every layer of the account, by name, newest version first.
    pub async fn all_versions(&self, account_id: &str) -> Result<Vec<LayerVersion>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM layer_versions WHERE account_id = $1 ORDER BY layer_name, version DESC"
        ))
        .bind(account_id)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Deletes one version. Returns whether it existed.
    pub async fn delete(
        &self,
        account_id: &str,
        layer_name: &str,
        version: u64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM layer_versions \
             WHERE account_id = $1 AND layer_name = $2 AND version = $3",
        )
        .bind(account_id)
        .bind(layer_name)
        .bind(version as i64)
        .execute(self.db.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The package digest of every published layer version, of every account: the code
    /// store keeps these blobs.
    pub async fn digests(&self) -> Result<BTreeSet<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT code_sha256 FROM layer_versions")
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("code_sha256")?))
            .collect()
    }

    /// Whether some layer version has the package `digest`.
    pub async fn has_digest(&self, digest: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT version FROM layer_versions WHERE code_sha256 = $1 LIMIT 1")
            .bind(digest)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.is_some())
    }
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<LayerVersion, StoreError> {
    let list = |column: &str| -> Result<Vec<String>, StoreError> {
        let text: String = r.try_get(column)?;
        serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("layer_versions.{column}: {e}")))
    };
    Ok(LayerVersion {
        account_id: r.try_get("account_id")?,
        layer_name: r.try_get("layer_name")?,
        version: r.try_get::<i64, _>("version")?.max(0) as u64,
        description: r.try_get("description")?,
        license_info: r.try_get("license_info")?,
        compatible_runtimes: list("compatible_runtimes")?,
        compatible_architectures: list("compatible_architectures")?,
        code_sha256: r.try_get("code_sha256")?,
        code_size: r.try_get::<i64, _>("code_size")?.max(0) as u64,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}

//! Package blobs kept in the database, for a cluster whose nodes share nothing but
//! PostgreSQL: the code store reaches every package through it. A blob is stored in
//! chunks, so neither side holds a whole package in memory, and its head row is written
//! in the transaction of its chunks, so a blob that has a head is whole.

use std::path::Path;

use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::db::{Db, StoreError, now_ms};

/// Bytes per stored chunk.
const CHUNK: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct PackageBlobs {
    db: Db,
}

impl PackageBlobs {
    pub fn new(db: Db) -> Self {
        PackageBlobs { db }
    }

    pub async fn exists(&self, name: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT chunks FROM package_blobs WHERE name = $1")
            .bind(name)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.is_some())
    }

    /// Stores the file at `path` as blob `name`, replacing any blob of that name.
    pub async fn put_file(&self, name: &str, path: &Path) -> Result<(), StoreError> {
        let mut file = tokio::fs::File::open(path).await?;
        let mut tx = self.db.writer().begin().await?;
        for statement in [
            "DELETE FROM package_blob_chunks WHERE name = $1",
            "DELETE FROM package_blobs WHERE name = $1",
        ] {
            sqlx::query(statement).bind(name).execute(&mut *tx).await?;
        }
        let mut size = 0u64;
        let mut seq = 0i64;
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            (&mut file)
                .take(CHUNK as u64)
                .read_to_end(&mut chunk)
                .await?;
            if chunk.is_empty() {
                break;
            }
            size += chunk.len() as u64;
            sqlx::query("INSERT INTO package_blob_chunks (name, seq, bytes) VALUES ($1, $2, $3)")
                .bind(name)
                .bind(seq)
                .bind(chunk)
                .execute(&mut *tx)
                .await?;
            seq += 1;
        }
        sqlx::query(
            "INSERT INTO package_blobs (name, size_bytes, chunks, stored_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(size as i64)
        .bind(seq)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes blob `name` to `dest`; false when the database does not hold it.
    pub async fn get_file(&self, name: &str, dest: &Path) -> Result<bool, StoreError> {
        let Some(head) =
            sqlx::query("SELECT chunks, size_bytes FROM package_blobs WHERE name = $1")
                .bind(name)
                .fetch_optional(self.db.pool())
                .await?
        else {
            return Ok(false);
        };
        let chunks: i64 = head.try_get("chunks")?;
        let size: i64 = head.try_get("size_bytes")?;
        let mut out = tokio::fs::File::create(dest).await?;
        let mut written = 0i64;
        for seq in 0..chunks {
            let row =
                sqlx::query("SELECT bytes FROM package_blob_chunks WHERE name = $1 AND seq = $2")
                    .bind(name)
                    .bind(seq)
                    .fetch_optional(self.db.pool())
                    .await?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("package blob {name} lacks its chunk {seq}"))
                    })?;
            let bytes: Vec<u8> = row.try_get("bytes")?;
            written += bytes.len() as i64;
            out.write_all(&bytes).await?;
        }
        if written != size {
            return Err(StoreError::Corrupt(format!(
                "package blob {name} holds {written} bytes where its head says {size}"
            )));
        }
        out.flush().await?;
        out.sync_all().await?;
        Ok(true)
    }
}

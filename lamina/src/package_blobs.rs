//! Packages kept in the database, for a cluster whose nodes share only PostgreSQL: the
//! store's blobs offered to the package store as its shared code store.

use std::path::Path;

use packages::{PackageError, SharedBlobs};
use store::PackageBlobs;

pub struct DatabaseBlobs(pub PackageBlobs);

fn platform(e: store::StoreError) -> PackageError {
    PackageError::Platform(format!("the database's code store: {e}"))
}

#[async_trait::async_trait]
impl SharedBlobs for DatabaseBlobs {
    async fn exists(&self, name: &str) -> Result<bool, PackageError> {
        self.0.exists(name).await.map_err(platform)
    }

    async fn put_file(&self, name: &str, path: &Path) -> Result<(), PackageError> {
        self.0.put_file(name, path).await.map_err(platform)
    }

    async fn get_file(&self, name: &str, dest: &Path) -> Result<bool, PackageError> {
        self.0.get_file(name, dest).await.map_err(platform)
    }

    fn describe(&self) -> String {
        "the database".into()
    }
}

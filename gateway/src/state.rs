//! The state every handler shares, and resolution of a client's function reference to a
//! stored function and version.

use std::path::PathBuf;
use std::sync::Arc;

use protocol::names::{ArnBuilder, FunctionRef, LATEST};
use protocol::Price;
use scheduler::Scheduler;
use store::{Catalog, FunctionEntry, Queue, Spool, VersionRecord};

use crate::error::{ApiError, function_not_found};

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub region: String,
    /// The externally visible base URL of this gateway (`http://127.0.0.1:9000`), used to
    /// build function URLs.
    pub public_url: String,
    /// Where deployment packages are stored.
    pub packages_dir: PathBuf,
    pub price: Price,
    /// Every request acts as this account until request signing identifies callers.
    pub default_account: String,
}

pub struct Inner {
    pub config: GatewayConfig,
    pub arns: ArnBuilder,
    pub catalog: Arc<Catalog>,
    pub scheduler: Scheduler,
    pub queue: Queue,
    pub spool: Spool,
    /// Wakes the async dispatcher when an Event invocation is queued.
    pub async_notify: Arc<tokio::sync::Notify>,
}

/// Shared by every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        config: GatewayConfig,
        catalog: Arc<Catalog>,
        scheduler: Scheduler,
        queue: Queue,
        spool: Spool,
        async_notify: Arc<tokio::sync::Notify>,
    ) -> Self {
        AppState(Arc::new(Inner {
            arns: ArnBuilder::new(config.region.clone()),
            config,
            catalog,
            scheduler,
            queue,
            spool,
            async_notify,
        }))
    }

    pub fn function_url(&self, url_id: &str) -> String {
        format!(
            "{}/lambda-url/{url_id}/",
            self.config.public_url.trim_end_matches('/')
        )
    }
}

/// A function reference checked against the caller's account and this region.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub entry: Arc<FunctionEntry>,
    /// The qualifier the client gave (version, alias or `$LATEST`), if any.
    pub qualifier: Option<String>,
}

impl AppState {
    /// Parses a `{FunctionName}` path segment (merging `?Qualifier`) and finds the
    /// function in the caller's account.
    pub fn resolve(
        &self,
        account_id: &str,
        raw: &str,
        query_qualifier: Option<&str>,
    ) -> Result<Resolved, ApiError> {
        let parsed = FunctionRef::parse(raw).map_err(|e| ApiError::Validation(e.to_string()))?;
        let parsed = parsed
            .with_query_qualifier(query_qualifier)
            .map_err(|e| ApiError::InvalidParameterValue(e.to_string()))?;
        self.find(account_id, parsed)
    }

    pub fn find(&self, account_id: &str, r: FunctionRef) -> Result<Resolved, ApiError> {
        if let Some(region) = &r.region
            && region != &self.config.region
        {
            return Err(ApiError::ResourceNotFound(format!(
                "Functions from '{region}' are not reachable in this region ('{}')",
                self.config.region
            )));
        }
        let not_found = || {
            let arn = self.arns.qualified(
                account_id,
                &r.name,
                r.qualifier.as_deref().unwrap_or(LATEST),
            );
            function_not_found(&arn)
        };
        // Another account's functions are invisible: same answer as a missing one.
        if r.account_id.as_deref().is_some_and(|a| a != account_id) {
            return Err(not_found());
        }
        let entry = self.catalog.function(account_id, &r.name).ok_or_else(not_found)?;
        Ok(Resolved {
            entry,
            qualifier: r.qualifier,
        })
    }

    fn version_not_found(&self, r: &Resolved) -> ApiError {
        function_not_found(&self.arns.qualified(
            &r.entry.account_id,
            &r.entry.name,
            r.qualifier.as_deref().unwrap_or(LATEST),
        ))
    }

    /// The version a qualifier names for reading configuration.
    pub fn version_for_read(&self, r: &Resolved) -> Result<Arc<VersionRecord>, ApiError> {
        let q = r.qualifier.as_deref().unwrap_or(LATEST);
        r.entry
            .version_for_read(q)
            .cloned()
            .ok_or_else(|| self.version_not_found(r))
    }

    /// The version an invocation runs (an alias's routing is a weighted draw).
    pub fn version_for_invoke(&self, r: &Resolved) -> Result<Arc<VersionRecord>, ApiError> {
        let q = r.qualifier.as_deref().unwrap_or(LATEST);
        r.entry
            .version_for_invoke(q, rand::random())
            .cloned()
            .ok_or_else(|| self.version_not_found(r))
    }
}

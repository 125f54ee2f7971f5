//! The state every handler shares, and resolution of a client's function reference to a
//! stored function and version.

use std::sync::Arc;

use protocol::Price;
use protocol::names::{ArnBuilder, FunctionRef, LATEST};
use scheduler::{Invoker, Scheduler};
use store::{Catalog, Db, FunctionEntry, Queue, Spool, VersionRecord};

use crate::error::{ApiError, function_not_found};

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub region: String,
    /// The externally visible base URL of this gateway (`http://127.0.0.1:9000`), used to
    /// build function URLs.
    pub public_url: String,
    pub price: Price,
    /// How far back model quality scores look (feedback received within it).
    pub quality_window: std::time::Duration,
    /// How synchronous invocations are sent to their functions' home nodes in a cluster.
    pub routing: scheduler::RoutingPolicy,
}

pub struct Inner {
    pub config: GatewayConfig,
    pub arns: ArnBuilder,
    pub db: Db,
    pub catalog: Arc<Catalog>,
    /// Layer versions, read and written in the database.
    pub layers: store::Layers,
    /// Deployment packages: intake, the code store and the working copies.
    pub packages: packages::Packages,
    pub scheduler: Scheduler,
    /// The one way to start an invocation of a catalog version.
    pub invoker: Invoker,
    pub queue: Queue,
    pub spool: Spool,
    /// Wakes the async dispatcher when an Event invocation is queued.
    pub async_notify: Arc<tokio::sync::Notify>,
    /// The node's metrics registry with the HTTP metrics and state gauges added.
    pub observer: crate::observe::Observer,
    /// Access keys, for request signatures.
    pub keys: crate::auth::KeyRing,
    /// This node as a member of its cluster.
    pub node: Arc<crate::membership::NodeIdentity>,
    /// Where synchronous invocations go in a cluster.
    pub forwarder: crate::forwarding::Forwarder,
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

/// What the gateway is built on, assembled by the node.
pub struct Services {
    pub db: Db,
    pub catalog: Arc<Catalog>,
    pub packages: packages::Packages,
    pub scheduler: Scheduler,
    pub queue: Queue,
    pub spool: Spool,
    pub async_notify: Arc<tokio::sync::Notify>,
    pub accounts: store::accounts::Accounts,
    /// The node's metrics registry; the scheduler's counters are already in it.
    pub metrics: prometheus::Registry,
    pub node: Arc<crate::membership::NodeIdentity>,
    /// The key nodes vouch for what they forward with, derived from the server key.
    pub hop_key: [u8; 32],
}

impl AppState {
    pub fn new(config: GatewayConfig, services: Services) -> Self {
        let Services {
            db,
            catalog,
            packages,
            scheduler,
            queue,
            spool,
            async_notify,
            accounts,
            metrics,
            node,
            hop_key,
        } = services;
        AppState(Arc::new(Inner {
            arns: ArnBuilder::new(config.region.clone()),
            forwarder: crate::forwarding::Forwarder::new(
                node.node_id.clone(),
                config.routing,
                hop_key,
                &metrics,
            ),
            observer: crate::observe::Observer::new(metrics),
            keys: crate::auth::KeyRing::new(accounts),
            invoker: Invoker::new(scheduler.clone(), catalog.clone()),
            config,
            layers: store::Layers::new(db.clone()),
            db,
            catalog,
            packages,
            scheduler,
            queue,
            spool,
            async_notify,
            node,
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

/// How a 404 for a missing function spells its ARN. Lambda names the function as the
/// client did (qualified only if a qualifier was given) on most operations; Invoke and
/// PutFunctionConcurrency always qualify it (`$LATEST` when none was given), and
/// DeleteFunction never does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingFunction {
    AsGiven,
    Latest,
    Unqualified,
}

impl MissingFunction {
    /// The ARN the 404 names for function `name` referenced with `qualifier`.
    pub fn arn(
        self,
        arns: &ArnBuilder,
        account_id: &str,
        name: &str,
        qualifier: Option<&str>,
    ) -> String {
        match (qualifier, self) {
            (_, MissingFunction::Unqualified) | (None, MissingFunction::AsGiven) => {
                arns.function(account_id, name)
            }
            (Some(q), _) => arns.qualified(account_id, name, q),
            (None, MissingFunction::Latest) => arns.qualified(account_id, name, LATEST),
        }
    }
}

/// A `{FunctionName}` path segment with `?Qualifier` merged in, each checked against
/// Lambda's constraints before anything is looked up.
fn parse_ref(raw: &str, query_qualifier: Option<&str>) -> Result<FunctionRef, ApiError> {
    let parsed = FunctionRef::parse(raw).map_err(|e| ApiError::Validation(e.to_string()))?;
    if let Some(q) = query_qualifier {
        protocol::names::check_query_qualifier(q)
            .map_err(|e| ApiError::Validation(e.to_string()))?;
    }
    parsed
        .with_query_qualifier(query_qualifier)
        .map_err(|e| ApiError::InvalidParameterValue(e.to_string()))
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
        self.resolve_as(account_id, raw, query_qualifier, MissingFunction::AsGiven)
    }

    pub fn resolve_as(
        &self,
        account_id: &str,
        raw: &str,
        query_qualifier: Option<&str>,
        missing: MissingFunction,
    ) -> Result<Resolved, ApiError> {
        let parsed = parse_ref(raw, query_qualifier)?;
        self.find_as(account_id, parsed, missing)
    }

    /// Resolves the function an Invoke names. Another account's function is reachable
    /// only when its resource policy grants the caller `lambda:InvokeFunction`; otherwise
    /// it is as absent as a missing one.
    pub fn resolve_for_invoke(
        &self,
        caller_account: &str,
        raw: &str,
        query_qualifier: Option<&str>,
    ) -> Result<Resolved, ApiError> {
        let parsed = parse_ref(raw, query_qualifier)?;
        if let Some(owner) = parsed.account_id.as_deref()
            && owner != caller_account
            && parsed
                .region
                .as_deref()
                .is_none_or(|r| r == self.config.region)
            && let Some(entry) = self.catalog.function(owner, &parsed.name)
            && entry.grants_invoke(caller_account, parsed.qualifier.as_deref())
        {
            return Ok(Resolved {
                entry,
                qualifier: parsed.qualifier,
            });
        }
        self.find_as(caller_account, parsed, MissingFunction::Latest)
    }

    /// Resolves a reference that must name the function itself, never a version or alias.
    pub fn resolve_unqualified(
        &self,
        account_id: &str,
        raw: &str,
        missing: MissingFunction,
    ) -> Result<Resolved, ApiError> {
        let r = self.resolve_as(account_id, raw, None, missing)?;
        if r.qualifier.is_some() {
            return Err(ApiError::InvalidParameterValue(
                "This operation is permitted on Lambda functions only. Aliases and versions do not support this operation. Please specify either a function name or an unqualified function ARN.".into(),
            ));
        }
        Ok(r)
    }

    pub fn find(&self, account_id: &str, r: FunctionRef) -> Result<Resolved, ApiError> {
        self.find_as(account_id, r, MissingFunction::AsGiven)
    }

    pub fn find_as(
        &self,
        account_id: &str,
        r: FunctionRef,
        missing: MissingFunction,
    ) -> Result<Resolved, ApiError> {
        if let Some(region) = &r.region
            && region != &self.config.region
        {
            return Err(ApiError::ResourceNotFound(format!(
                "Functions from '{region}' are not reachable in this region ('{}')",
                self.config.region
            )));
        }
        // The 404 names the function as the client wrote it: an ARN in another account
        // keeps that account, as on Lambda, instead of becoming the caller's own.
        let not_found = || {
            function_not_found(&missing.arn(
                &self.arns,
                r.account_id.as_deref().unwrap_or(account_id),
                &r.name,
                r.qualifier.as_deref(),
            ))
        };
        // Another account's functions are invisible: same answer as a missing one.
        if r.account_id.as_deref().is_some_and(|a| a != account_id) {
            return Err(not_found());
        }
        let entry = self
            .catalog
            .function(account_id, &r.name)
            .ok_or_else(not_found)?;
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

    /// The version a version-or-alias qualifier names, for the operations that attach
    /// settings to one (provisioned concurrency, resource policies): a missing alias is
    /// "Cannot find alias arn", a missing version "Function not found".
    pub fn version_for_setting(&self, r: &Resolved) -> Result<Arc<VersionRecord>, ApiError> {
        let q = r.qualifier.as_deref().unwrap_or(LATEST);
        if let Some(v) = r.entry.version_for_read(q) {
            return Ok(v.clone());
        }
        if q != LATEST && !protocol::names::is_version_number(q) {
            return Err(ApiError::ResourceNotFound(format!(
                "Cannot find alias arn: {}",
                self.arns.qualified(&r.entry.account_id, &r.entry.name, q)
            )));
        }
        Err(self.version_not_found(r))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_functions_are_named_as_lambda_names_them() {
        let arns = ArnBuilder::new("us-east-1");
        let base = "arn:aws:lambda:us-east-1:000000000000:function:f";
        let table = [
            (MissingFunction::AsGiven, None, base.to_owned()),
            (MissingFunction::AsGiven, Some("3"), format!("{base}:3")),
            (MissingFunction::Latest, None, format!("{base}:$LATEST")),
            (
                MissingFunction::Latest,
                Some("live"),
                format!("{base}:live"),
            ),
            (MissingFunction::Unqualified, None, base.to_owned()),
            (MissingFunction::Unqualified, Some("3"), base.to_owned()),
        ];
        for (missing, qualifier, expected) in table {
            assert_eq!(
                missing.arn(&arns, "000000000000", "f", qualifier),
                expected,
                "{missing:?} {qualifier:?}"
            );
        }
    }
}

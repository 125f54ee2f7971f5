//! The one entry point from a chosen function version to an invocation. Sync Invoke,
//! function URLs, Event invokes and the async dispatcher all start invocations here, so
//! the pool a version runs in, its execution spec, the invoked ARN and the ledger's
//! metadata are derived in one place.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use protocol::names::ArnBuilder;
use protocol::{InvocationInput, InvocationResult, InvocationType, Payload, Runtime, SharedSpec};
use store::{Catalog, FunctionEntry, VersionRecord};

use crate::core::{FunctionKey, PoolId};
use crate::recorder::InvocationMeta;
use crate::scheduler::{InvokeError, Scheduler};

/// Identifies one immutable function version for the pools: a new revision of the same
/// version (an update of `$LATEST`) gets a new pool, so no environment outlives its code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub account_id: String,
    pub function_name: String,
    pub version: String,
    pub revision_id: String,
}

impl PoolKey {
    pub fn of(entry: &FunctionEntry, version: &VersionRecord) -> Self {
        PoolKey {
            account_id: entry.account_id.clone(),
            function_name: entry.name.clone(),
            version: version.version.clone(),
            revision_id: version.revision_id.clone(),
        }
    }

    pub fn function(&self) -> FunctionKey {
        FunctionKey::new(&self.account_id, &self.function_name)
    }
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.account_id, self.function_name, self.version, self.revision_id
        )
    }
}

/// The function version one invocation runs, already chosen (an alias's weighted draw
/// happens before, exactly once), and the qualifier the client named it by.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub entry: &'a FunctionEntry,
    pub version: &'a VersionRecord,
    /// The version or alias the client gave; `None` for an unqualified reference.
    pub qualifier: Option<&'a str>,
}

/// What the caller of an invocation brings: everything but the function.
#[derive(Debug, Clone)]
pub struct InvocationRequest {
    pub request_id: String,
    pub payload: Payload,
    pub client_context: Option<String>,
    pub invocation_type: InvocationType,
    /// The account that invoked (the owner pays; the caller is recorded).
    pub caller_account_id: String,
    pub received_at: SystemTime,
    pub request_bytes: u64,
    /// 1 for a first attempt; async retries count up with the same request id.
    pub attempt: u32,
}

/// Starts invocations of catalog versions on the scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Invoker {
    scheduler: Scheduler,
    catalog: Arc<Catalog>,
    arns: ArnBuilder,
}

impl fmt::Debug for Invoker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invoker").finish_non_exhaustive()
    }
}

impl Invoker {
    pub fn new(scheduler: Scheduler, catalog: Arc<Catalog>) -> Self {
        let arns = ArnBuilder::new(catalog.region());
        Invoker {
            scheduler,
            catalog,
            arns,
        }
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The pool that runs `version`, registered on first use (also used to provision it).
    pub fn pool(&self, entry: &FunctionEntry, version: &VersionRecord) -> PoolId {
        let spec: SharedSpec = self.catalog.spec(entry, version);
        self.scheduler.pool_for(&PoolKey::of(entry, version), &spec)
    }

    /// Runs one invocation of `target` with Lambda's semantics; the ledger row is in the
    /// spool before this returns.
    pub async fn invoke(
        &self,
        target: Target<'_>,
        request: InvocationRequest,
    ) -> Result<InvocationResult, InvokeError> {
        let Target {
            entry,
            version,
            qualifier,
        } = target;
        let spec = self.catalog.spec(entry, version);
        let pool = self.scheduler.pool_for(&PoolKey::of(entry, version), &spec);
        let invoked_arn = match qualifier {
            Some(q) => self.arns.qualified(&entry.account_id, &entry.name, q),
            None => self.arns.function(&entry.account_id, &entry.name),
        };
        let input = InvocationInput {
            request_id: request.request_id,
            payload: request.payload,
            invoked_arn,
            client_context: request.client_context,
        };
        let meta = InvocationMeta {
            account_id: entry.account_id.clone(),
            caller_account_id: request.caller_account_id,
            function_name: entry.name.clone(),
            invocation_type: request.invocation_type,
            received_at: request.received_at,
            request_bytes: request.request_bytes,
            attempt: request.attempt,
            keeps_prediction: spec.code.runtime == Runtime::Onnx,
        };
        self.scheduler.invoke(pool, input, meta).await
    }
}

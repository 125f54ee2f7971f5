//! A fake execution backend for tests of the scheduler's adapters and of the gateway: no
//! Wasm engine, each request's outcome scripted, every environment counted. Built only
//! with the `testing` feature, which only dev-dependencies turn on.
//!
//! Run time is spent on tokio's clock, so tests with paused time decide when a long
//! invocation ends.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use protocol::http::HttpResponse;
use protocol::{
    CodePackage, EnvironmentError, ExecutionBackend, ExecutionEnvironment, FunctionError,
    GuestKind, InitializationType, InvocationInput, InvocationResult, Outcome, Payload,
    PrepareError, PreparedCode, Response, SharedSpec, StartKind,
};
use tokio::sync::Notify;

/// What one attempt of a request does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Answers with the request's payload after running for `run_for`.
    Echo { run_for: Duration },
    /// The handler raises an error of `error_type`; the environment stays usable.
    Fail { error_type: String },
    /// The platform fails under the function; the environment is discarded.
    PlatformError,
}

impl Step {
    /// Answers at once with the payload.
    pub fn echo() -> Self {
        Step::Echo {
            run_for: Duration::ZERO,
        }
    }

    pub fn fail(error_type: &str) -> Self {
        Step::Fail {
            error_type: error_type.to_owned(),
        }
    }
}

/// One invocation as the fake received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub request_id: String,
    pub function_name: String,
    pub version: String,
    pub invoked_arn: String,
    /// The event, or the body of an HTTP request.
    pub payload: Bytes,
    pub start: StartKind,
    /// Which environment ran it (numbered from 1 in creation order).
    pub environment: u64,
    /// When it started, on tokio's clock.
    pub at: tokio::time::Instant,
}

#[derive(Debug, Default)]
struct Script {
    /// Steps per request id, one consumed per attempt.
    steps: HashMap<String, VecDeque<Step>>,
    /// What requests without (remaining) steps do; `Step::echo()` unless set.
    default: Option<Step>,
    created: Vec<InitializationType>,
    seen: Vec<Seen>,
}

#[derive(Debug, Default)]
struct Shared {
    script: Mutex<Script>,
    live: AtomicUsize,
    next_environment: AtomicU64,
    /// Woken whenever an invocation is seen.
    invoked: Notify,
}

impl Shared {
    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An [`ExecutionBackend`] whose environments answer as scripted. Cheap to clone; clones
/// share the script and the counts.
#[derive(Debug, Clone, Default)]
pub struct FakeBackend {
    shared: Arc<Shared>,
}

impl FakeBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// The steps the attempts of `request_id` take, in order; later attempts take the
    /// default.
    pub fn script(&self, request_id: &str, steps: impl IntoIterator<Item = Step>) {
        self.shared
            .script()
            .steps
            .insert(request_id.to_owned(), steps.into_iter().collect());
    }

    /// What every request without a scripted step does.
    pub fn set_default(&self, step: Step) {
        self.shared.script().default = Some(step);
    }

    /// Environments created so far, by how they were initialised.
    pub fn created(&self) -> Vec<InitializationType> {
        self.shared.script().created.clone()
    }

    /// Environments created and not yet dropped (shut down).
    pub fn live(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// Every invocation so far, in the order they started.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.script().seen.clone()
    }

    /// Waits until `done` holds for the invocations seen so far, and returns them.
    pub async fn wait_until(&self, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        loop {
            let woken = self.shared.invoked.notified();
            tokio::pin!(woken);
            // Registered before looking, so an invocation in between still wakes us.
            woken.as_mut().enable();
            {
                let script = self.shared.script();
                if done(&script.seen) {
                    return script.seen.clone();
                }
            }
            woken.await;
        }
    }
}

#[async_trait]
impl ExecutionBackend for FakeBackend {
    async fn prepare(&self, _code: &CodePackage) -> Result<PreparedCode, PrepareError> {
        Ok(PreparedCode {
            kind: GuestKind::Handler,
            artifact_bytes: 0,
        })
    }

    async fn create_environment(
        &self,
        spec: SharedSpec,
        init_type: InitializationType,
    ) -> Result<Box<dyn ExecutionEnvironment>, EnvironmentError> {
        self.shared.script().created.push(init_type);
        self.shared.live.fetch_add(1, Ordering::SeqCst);
        let id = self.shared.next_environment.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Box::new(FakeEnvironment {
            shared: self.shared.clone(),
            spec,
            init_type,
            id,
            used: false,
        }))
    }
}

struct FakeEnvironment {
    shared: Arc<Shared>,
    spec: SharedSpec,
    init_type: InitializationType,
    id: u64,
    used: bool,
}

impl Drop for FakeEnvironment {
    fn drop(&mut self) {
        self.shared.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl ExecutionEnvironment for FakeEnvironment {
    async fn invoke(&mut self, input: InvocationInput) -> InvocationResult {
        // A provisioned environment ran INIT before its first request, as on Lambda.
        let start = match (self.used, self.init_type) {
            (true, _) | (false, InitializationType::ProvisionedConcurrency) => StartKind::Warm,
            (false, InitializationType::SnapStart) => StartKind::Snapshot,
            (false, InitializationType::OnDemand) => StartKind::Cold,
        };
        self.used = true;
        let body = match &input.payload {
            Payload::Event(b) => b.clone(),
            Payload::Http(r) => r.body.clone(),
        };
        let step = {
            let mut script = self.shared.script();
            let scripted = script
                .steps
                .get_mut(&input.request_id)
                .and_then(VecDeque::pop_front);
            let step = scripted
                .or_else(|| script.default.clone())
                .unwrap_or_else(Step::echo);
            script.seen.push(Seen {
                request_id: input.request_id.clone(),
                function_name: self.spec.function_name.clone(),
                version: self.spec.version.clone(),
                invoked_arn: input.invoked_arn.clone(),
                payload: body.clone(),
                start,
                environment: self.id,
                at: tokio::time::Instant::now(),
            });
            step
        };
        self.shared.invoked.notify_waiters();
        let started_at = SystemTime::now();
        let (outcome, error, run_for) = match step {
            Step::Echo { run_for } => (Outcome::Success, None, run_for),
            Step::Fail { error_type } => (
                Outcome::FunctionError,
                Some(FunctionError::new(error_type, "scripted failure")),
                Duration::ZERO,
            ),
            Step::PlatformError => (
                Outcome::PlatformError,
                Some(FunctionError::new("ServiceException", "scripted failure")),
                Duration::ZERO,
            ),
        };
        if !run_for.is_zero() {
            tokio::time::sleep(run_for).await;
        }
        let response = match (&error, &input.payload) {
            (Some(e), _) => Response::Event(e.to_payload()),
            (None, Payload::Event(_)) => Response::Event(body),
            (None, Payload::Http(_)) => {
                Response::Http(HttpResponse::new(200, "application/octet-stream", body))
            }
        };
        let id = &input.request_id;
        InvocationResult {
            request_id: id.clone(),
            version: self.spec.version.clone(),
            response,
            outcome,
            error,
            start,
            init_duration: (start != StartKind::Warm).then_some(Duration::from_millis(1)),
            duration: run_for,
            started_at,
            ended_at: started_at + run_for,
            memory_mb: self.spec.memory_mb,
            max_memory_used_mb: 1,
            log: format!("START RequestId: {id}\nEND RequestId: {id}\nREPORT RequestId: {id}\n"),
            environment_reusable: outcome != Outcome::PlatformError,
        }
    }

    fn init_error(&self) -> Option<&FunctionError> {
        None
    }
}

/// The configuration of a plain Wasm handler function, as the catalog stores it.
pub fn version_config() -> store::VersionConfig {
    store::VersionConfig {
        runtime: "wasm".into(),
        handler: "function.wasm".into(),
        role: "arn:aws:iam::111111111111:role/r".into(),
        description: String::new(),
        timeout: 3,
        memory_size: 128,
        environment: std::collections::BTreeMap::new(),
        ephemeral_storage: 512,
        architectures: vec!["x86_64".into()],
        package_type: "Zip".into(),
        code_sha256: "aa".into(),
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

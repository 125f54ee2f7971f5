//! One execution environment: INIT once, then invocations one at a time, as in Lambda.
//!
//! After a trap or a timeout the guest's instance is thrown away and INIT runs again
//! before the next invocation (Lambda's "suppressed init"); the environment itself, and
//! its `/tmp`, survive, as they do on Lambda.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use protocol::http::{HttpRequest, HttpResponse, event_to_http_request, http_response_to_event};
use protocol::log_lines::{ReportFigures, end_line, error_line, report_line, start_line};
use protocol::{
    FunctionError, InitializationType, InvocationInput, InvocationResult, MAX_RESPONSE_PAYLOAD,
    Outcome, Payload, Response, SharedSpec, StartKind,
};
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::Shared;
use crate::bindings::Function;
use crate::bindings::exports::lamina::function::handler::Context as GuestContext;
use crate::capture::Capture;
use crate::code::{Compiled, Prepared};
use crate::failure::{Failure, classify, guest_error};
use crate::host::{self, Guarded, GuestIo, GuestLimiter, GuestModels, HostState, guarded_store};
use crate::models::{ModelRef, ModelTable};

/// The live guest of an environment.
enum Instance {
    Handler {
        store: Store<HostState>,
        bindings: Function,
    },
    Http {
        store: Store<HostState>,
        proxy: Proxy,
    },
    /// Commands get a fresh instance per invocation; nothing lives between them.
    Command,
    /// No instance: INIT must run before the next invocation.
    Uninitialised,
}

/// What INIT produced, reported with the first invocation after it.
struct InitReport {
    duration: Duration,
    log: String,
    failure: Option<Failure>,
    peak_bytes: usize,
}

/// What one guest call produced, before it is turned into an [`InvocationResult`].
struct Served {
    response: Result<Response, Failure>,
    duration: Duration,
    peak_bytes: usize,
}

pub(crate) struct Environment {
    shared: Arc<Shared>,
    spec: SharedSpec,
    prepared: Arc<Prepared>,
    /// The package's models, and the loaded ones once INIT has acquired them.
    model_refs: Arc<[ModelRef]>,
    models: Arc<ModelTable>,
    init_type: InitializationType,
    env_vars: Vec<(String, String)>,
    tmp_dir: crate::scratch::ScratchDir,
    /// Guest stdout and stderr of handler and HTTP guests (and stderr of commands).
    logs: Capture,
    instance: Instance,
    pending_init: Option<InitReport>,
    init_error: Option<FunctionError>,
    /// Whether this environment has served an invocation (later INITs are resets).
    served_any: bool,
    /// Whether `prepared` is a SnapStart snapshot: INIT already ran inside it.
    restored: bool,
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn mb_ceil(bytes: usize) -> u32 {
    bytes.div_ceil(1 << 20) as u32
}

/// Runs `call` with a wall-clock bound. Epoch interruption stops guests spinning on the
/// CPU; this bound stops guests parked in an async host call (a sleep, a read).
async fn guard<F: Future>(timeout: Duration, call: F) -> Option<F::Output> {
    tokio::time::timeout(timeout, call).await.ok()
}

/// Turns a guarded call's end into the guest's value or a classified failure.
fn settle<T, S: Guarded>(
    ended: Option<wasmtime::Result<T>>,
    store: &mut Store<S>,
    logs: &Capture,
    timeout: Duration,
) -> Result<T, Failure> {
    match ended {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => {
            let refused = store.data_mut().limiter().refused;
            match classify(&e, refused, &logs.peek_text()) {
                Failure::Timeout(_) => Err(Failure::Timeout(timeout)),
                other => Err(other),
            }
        }
        None => Err(Failure::Timeout(timeout)),
    }
}

impl Environment {
    pub(crate) async fn create(
        shared: Arc<Shared>,
        spec: SharedSpec,
        prepared: Arc<Prepared>,
        model_refs: Arc<[ModelRef]>,
        init_type: InitializationType,
        restored: bool,
    ) -> std::io::Result<Self> {
        let tmp = shared.scratch.take()?;
        let env_vars = spec.guest_environment(init_type);
        let mut env = Environment {
            logs: Capture::new(shared.config.max_log_bytes),
            shared,
            spec,
            prepared,
            model_refs,
            models: Arc::default(),
            init_type,
            env_vars,
            tmp_dir: tmp,
            instance: Instance::Uninitialised,
            pending_init: None,
            init_error: None,
            served_any: false,
            restored,
        };
        env.init().await;
        Ok(env)
    }

    pub(crate) fn init_error(&self) -> Option<&FunctionError> {
        self.init_error.as_ref()
    }

    /// The INIT failure if it was the platform's fault rather than the guest's.
    pub(crate) fn platform_failure(&self) -> Option<&Failure> {
        self.pending_init
            .as_ref()
            .and_then(|i| i.failure.as_ref())
            .filter(|f| matches!(f, Failure::Exhausted | Failure::Platform(_)))
    }

    fn limiter(&self) -> GuestLimiter {
        GuestLimiter::new((self.spec.memory_mb as usize) << 20, &self.shared.config)
    }

    fn io(&self, stdin: Option<Bytes>, stdout: Capture) -> GuestIo<'_> {
        GuestIo {
            env: &self.env_vars,
            code: &self.spec.code,
            tmp_dir: self.tmp_dir.path(),
            stdin,
            stdout,
            stderr: self.logs.clone(),
        }
    }

    fn new_store(
        &self,
        stdin: Option<Bytes>,
        stdout: Capture,
    ) -> Result<Store<HostState>, Failure> {
        let state = host::component_state(
            self.io(stdin, stdout),
            self.limiter(),
            &self.spec.allowed_hosts,
            GuestModels {
                cache: &self.shared.models,
                table: &self.models,
            },
        )
        .map_err(|e| Failure::Platform(format!("building the guest context: {e:#}")))?;
        Ok(guarded_store(&self.shared.engine, state))
    }

    /// Runs INIT: instantiates the guest and, for handler guests, calls its `init`.
    async fn init(&mut self) {
        let started = Instant::now();
        let (instance, failure, peak_bytes) = self.start_instance().await;
        let log = self.logs.take_text();
        self.init_error = failure
            .as_ref()
            .map(|f| f.to_error("", self.spec.memory_mb));
        self.instance = instance;
        // Provisioned environments initialise ahead of demand: their INIT is not part of
        // any invocation, so the first one is as warm as the next.
        let ahead_of_demand =
            self.init_type == InitializationType::ProvisionedConcurrency && !self.served_any;
        self.pending_init = (failure.is_some() || !ahead_of_demand).then(|| InitReport {
            duration: started.elapsed(),
            log,
            failure,
            peak_bytes,
        });
    }

    async fn start_instance(&mut self) -> (Instance, Option<Failure>, usize) {
        let timeout = self.shared.config.init_timeout;
        // Part of INIT, so a model loaded again after eviction shows as Init Duration.
        if !self.model_refs.is_empty() {
            match self.shared.models.acquire(&self.model_refs).await {
                Ok(table) => self.models = Arc::new(table),
                Err(e) => return (Instance::Uninitialised, Some(model_failure(e)), 0),
            }
        }
        match &self.prepared.compiled {
            Compiled::Handler(pre) => {
                let mut store = match self.new_store(None, self.logs.clone()) {
                    Ok(s) => s,
                    Err(f) => return (Instance::Uninitialised, Some(f), 0),
                };
                store.data_mut().deadline = Instant::now() + timeout;
                let restored = self.restored;
                let call = async {
                    let bindings = pre.instantiate_async(&mut store).await?;
                    // A snapshot's memory is the state its INIT left: restoring is
                    // instantiating it.
                    let result = if restored {
                        Ok(())
                    } else {
                        bindings
                            .lamina_function_handler()
                            .call_init(&mut store)
                            .await?
                    };
                    wasmtime::Result::Ok((bindings, result))
                };
                let ended = guard(timeout, call).await;
                let settled = settle(ended, &mut store, &self.logs, timeout);
                let peak = store.data().limiter.peak_bytes();
                match settled {
                    Ok((bindings, Ok(()))) => (Instance::Handler { store, bindings }, None, peak),
                    Ok((_, Err(guest))) => {
                        let error = guest_error(
                            self.spec.code.runtime,
                            guest.error_type,
                            guest.error_message,
                            "",
                        );
                        (Instance::Uninitialised, Some(Failure::Guest(error)), peak)
                    }
                    Err(f) => (Instance::Uninitialised, Some(f), peak),
                }
            }
            Compiled::Http(pre) => {
                let mut store = match self.new_store(None, self.logs.clone()) {
                    Ok(s) => s,
                    Err(f) => return (Instance::Uninitialised, Some(f), 0),
                };
                store.data_mut().deadline = Instant::now() + timeout;
                let ended = guard(timeout, pre.instantiate_async(&mut store)).await;
                let settled = settle(ended, &mut store, &self.logs, timeout);
                let peak = store.data().limiter.peak_bytes();
                match settled {
                    Ok(proxy) => (Instance::Http { store, proxy }, None, peak),
                    Err(f) => (Instance::Uninitialised, Some(f), peak),
                }
            }
            Compiled::Command(_) | Compiled::CoreCommand(_) => (Instance::Command, None, 0),
        }
    }

    /// Runs one invocation; every failure ends up in the result.
    pub(crate) async fn invoke(&mut self, input: InvocationInput) -> InvocationResult {
        if matches!(self.instance, Instance::Uninitialised) && self.pending_init.is_none() {
            // The previous invocation crashed the guest: re-initialise first.
            self.init().await;
        }
        let started_at = SystemTime::now();
        let init = self.pending_init.take();
        let start = match (&init, self.init_type) {
            (None, _) => StartKind::Warm,
            (Some(_), _) if self.restored && !self.served_any => StartKind::Snapshot,
            (Some(_), _) => StartKind::Cold,
        };
        self.served_any = true;

        let served = match init.as_ref().and_then(|i| i.failure.clone()) {
            Some(failure) => Served {
                response: Err(failure),
                duration: Duration::ZERO,
                peak_bytes: init.as_ref().map_or(0, |i| i.peak_bytes),
            },
            None => self.serve(&input).await,
        };
        let ended_at = SystemTime::now();
        self.finish(input, init, start, served, started_at, ended_at)
    }

    async fn serve(&mut self, input: &InvocationInput) -> Served {
        let timeout = self.spec.timeout;
        let started = Instant::now();
        let deadline = started + timeout;
        let context = GuestContext {
            request_id: input.request_id.clone(),
            function_name: self.spec.function_name.clone(),
            function_version: self.spec.version.clone(),
            invoked_function_arn: input.invoked_arn.clone(),
            memory_limit_mb: self.spec.memory_mb,
            deadline_ms: epoch_ms(SystemTime::now()) + timeout.as_millis() as u64,
            client_context: input.client_context.clone(),
        };
        let (response, peak_bytes) = match &mut self.instance {
            Instance::Handler { store, bindings } => {
                store.data_mut().deadline = deadline;
                let event = match &input.payload {
                    Payload::Event(b) => b.clone(),
                    Payload::Http(_) => {
                        return Served {
                            response: Err(Failure::Platform(
                                "a handler guest was given a raw HTTP request".into(),
                            )),
                            duration: started.elapsed(),
                            peak_bytes: 0,
                        };
                    }
                };
                let call =
                    bindings
                        .lamina_function_handler()
                        .call_handle(&mut *store, &event, &context);
                let ended = guard(timeout, call).await;
                let response = match settle(ended, store, &self.logs, timeout) {
                    Ok(Ok(bytes)) if bytes.len() > MAX_RESPONSE_PAYLOAD => {
                        Err(Failure::ResponseTooLarge)
                    }
                    Ok(Ok(bytes)) => Ok(Response::Event(Bytes::from(bytes))),
                    // A guest that reports an error after the host refused it memory (an
                    // interpreter's MemoryError) ran out of it, as Lambda counts it.
                    Ok(Err(_)) if store.data_mut().limiter().refused.memory => {
                        Err(Failure::OutOfMemory)
                    }
                    Ok(Err(guest)) => Err(Failure::Guest(guest_error(
                        self.spec.code.runtime,
                        guest.error_type,
                        guest.error_message,
                        &input.request_id,
                    ))),
                    Err(f) => Err(f),
                };
                (response, store.data().limiter.peak_bytes())
            }
            Instance::Http { store, proxy } => {
                store.data_mut().deadline = deadline;
                let (request, as_event) = match &input.payload {
                    Payload::Http(r) => (r.clone(), false),
                    Payload::Event(b) => (event_to_http_request(b), true),
                };
                let response = serve_http(store, proxy, request, timeout, &self.logs)
                    .await
                    .map(|r| {
                        if as_event {
                            Response::Event(http_response_to_event(&r))
                        } else {
                            Response::Http(r)
                        }
                    });
                (response, store.data().limiter.peak_bytes())
            }
            Instance::Command => self.run_command(input, deadline, timeout).await,
            Instance::Uninitialised => (
                Err(Failure::Platform("environment has no instance".into())),
                0,
            ),
        };
        Served {
            response,
            duration: started.elapsed().min(timeout),
            peak_bytes,
        }
    }

    async fn run_command(
        &mut self,
        input: &InvocationInput,
        deadline: Instant,
        timeout: Duration,
    ) -> (Result<Response, Failure>, usize) {
        let stdin = match &input.payload {
            Payload::Event(b) => b.clone(),
            Payload::Http(r) => r.body.clone(),
        };
        // One byte over the limit is enough to know the response is too large.
        let stdout = Capture::new(MAX_RESPONSE_PAYLOAD + 1);
        let exited = match &self.prepared.compiled {
            Compiled::Command(pre) => {
                let mut store = match self.new_store(Some(stdin), stdout.clone()) {
                    Ok(s) => s,
                    Err(f) => return (Err(f), 0),
                };
                store.data_mut().deadline = deadline;
                let call = async {
                    let command = pre.instantiate_async(&mut store).await?;
                    command.wasi_cli_run().call_run(&mut store).await
                };
                let ended = guard(timeout, call).await;
                let settled = settle(ended, &mut store, &self.logs, timeout);
                let peak = store.data().limiter.peak_bytes();
                let exited = match settled {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(())) => Err(Failure::Exit(1)),
                    Err(f) => Err(f),
                };
                (exited, peak)
            }
            Compiled::CoreCommand(pre) => {
                let state = host::core_state(self.io(Some(stdin), stdout.clone()), self.limiter());
                let mut store = match state {
                    Ok(s) => guarded_store(&self.shared.engine, s),
                    Err(e) => return (Err(Failure::Platform(format!("{e:#}"))), 0),
                };
                store.data_mut().deadline = deadline;
                let call = async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                    start.call_async(&mut store, ()).await
                };
                let ended = guard(timeout, call).await;
                let settled = settle(ended, &mut store, &self.logs, timeout);
                (settled, store.data().limiter.peak_bytes())
            }
            _ => (Err(Failure::Platform("not a command".into())), 0),
        };
        let (status, peak) = exited;
        let status = match status {
            // WASI's `exit(0)` surfaces as an error carrying status 0.
            Err(Failure::Exit(0)) => Ok(()),
            other => other,
        };
        let response = status.and_then(|()| {
            let (out, dropped) = stdout.take();
            if dropped > 0 || out.len() > MAX_RESPONSE_PAYLOAD {
                Err(Failure::ResponseTooLarge)
            } else {
                Ok(Response::Event(Bytes::from(out)))
            }
        });
        (response, peak)
    }

    fn finish(
        &mut self,
        input: InvocationInput,
        init: Option<InitReport>,
        start: StartKind,
        served: Served,
        started_at: SystemTime,
        ended_at: SystemTime,
    ) -> InvocationResult {
        let request_id = input.request_id;
        let memory_mb = self.spec.memory_mb;
        let (response, outcome, error) = match served.response {
            Ok(r) => (r, Outcome::Success, None),
            Err(failure) => {
                if failure.resets_instance() {
                    // Dropping the store returns its memory to the pool at once.
                    self.instance = match self.instance {
                        Instance::Command => Instance::Command,
                        _ => Instance::Uninitialised,
                    };
                }
                let error = failure.to_error(&request_id, memory_mb);
                if let Failure::Platform(reason) = &failure {
                    tracing::error!(request_id, reason, "platform failure during an invocation");
                }
                (
                    Response::Event(error.to_payload()),
                    failure.outcome(),
                    Some(error),
                )
            }
        };
        let init_duration = init.as_ref().map(|i| i.duration);
        let billed_ms = protocol::billing::billed_ms(init_duration, served.duration);
        let max_memory_used_mb = mb_ceil(served.peak_bytes).max(1);

        let mut log = String::new();
        if let Some(i) = &init
            && !i.log.is_empty()
        {
            log.push_str(&i.log);
            if !log.ends_with('\n') {
                log.push('\n');
            }
        }
        log.push_str(&start_line(&request_id, &self.spec.version));
        log.push_str(&self.logs.take_text());
        // Guest output without a final newline must not swallow the platform's own lines.
        if !log.ends_with('\n') {
            log.push('\n');
        }
        if let Some(e) = &error
            && outcome != Outcome::Success
        {
            log.push_str(&error_line(e));
        }
        log.push_str(&end_line(&request_id));
        log.push_str(&report_line(&ReportFigures {
            request_id: &request_id,
            duration: served.duration,
            billed_ms,
            memory_mb,
            max_memory_used_mb,
            init_duration,
            start,
            outcome,
        }));

        InvocationResult {
            request_id,
            version: self.spec.version.clone(),
            response,
            outcome,
            error,
            start,
            init_duration,
            duration: served.duration,
            started_at,
            ended_at,
            memory_mb,
            max_memory_used_mb,
            log,
            environment_reusable: outcome != Outcome::PlatformError,
        }
    }
}

/// A model that validated at deploy time but cannot be loaded now. Other models filling
/// the node's budget is a capacity problem (retry elsewhere or later); the rest means
/// the package on disk is not what was validated, which is Lamina's to fix.
fn model_failure(e: crate::models::ModelLoadError) -> Failure {
    match e {
        crate::models::ModelLoadError::BudgetFull { .. } => {
            tracing::warn!(error = %e, "no room for a model");
            Failure::Exhausted
        }
        other => Failure::Platform(other.to_string()),
    }
}

/// Serves one request with a `wasi:http` guest, collecting the response body while the
/// guest is still writing it (a large body would otherwise block the guest).
async fn serve_http(
    store: &mut Store<HostState>,
    proxy: &Proxy,
    request: HttpRequest,
    timeout: Duration,
    logs: &Capture,
) -> Result<HttpResponse, Failure> {
    let hyper_request = build_request(&request)?;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let resources = {
        let mut http = store.data_mut().http();
        http.new_incoming_request(Scheme::Http, hyper_request)
            .and_then(|req| Ok((req, http.new_response_outparam(sender)?)))
    };
    let (req, out) = resources.map_err(|e| Failure::Platform(format!("{e:#}")))?;
    let call = proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, req, out);
    let collect = async {
        let response = match receiver.await {
            Ok(Ok(r)) => r,
            Ok(Err(code)) => {
                return Err(Failure::Trap(format!(
                    "the guest answered with an HTTP error: {code:?}"
                )));
            }
            Err(_) => {
                return Err(Failure::Trap(
                    "the guest returned without setting a response".into(),
                ));
            }
        };
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_PAYLOAD)
            .collect()
            .await
            .map_err(|_| Failure::ResponseTooLarge)?
            .to_bytes();
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        Ok(HttpResponse {
            status: parts.status.as_u16(),
            headers,
            body,
        })
    };
    let ended = guard(timeout, async { tokio::join!(call, collect) }).await;
    match ended {
        None => Err(Failure::Timeout(timeout)),
        Some((called, collected)) => {
            settle(Some(called), store, logs, timeout)?;
            collected
        }
    }
}

fn build_request(r: &HttpRequest) -> Result<http::Request<Full<Bytes>>, Failure> {
    let host = r.header("host").unwrap_or("localhost").to_owned();
    let path_and_query = match &r.query {
        Some(q) => format!("{}?{}", r.path, q),
        None => r.path.clone(),
    };
    let mut builder = http::Request::builder()
        .method(r.method.as_str())
        .uri(format!("http://{host}{path_and_query}"));
    for (k, v) in &r.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder
        .body(Full::new(r.body.clone()))
        .map_err(|e| Failure::Guest(FunctionError::new("InvalidRequest", e.to_string())))
}

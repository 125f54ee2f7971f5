//! One invocation: what goes into an execution environment and what comes out.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

use crate::http::{HttpRequest, HttpResponse};

/// Who is at fault when an invocation does not succeed. Metrics, retries and billing
/// switch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    /// The caller sent something unusable.
    Client,
    /// The function's code failed, timed out or exceeded its limits.
    Function,
    /// Lamina itself failed.
    Platform,
}

impl Blame {
    pub fn as_str(self) -> &'static str {
        match self {
            Blame::Client => "client",
            Blame::Function => "function",
            Blame::Platform => "platform",
        }
    }
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// The guest reported an error, trapped, panicked or exited non-zero.
    FunctionError,
    Timeout,
    OutOfMemory,
    PlatformError,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::FunctionError => "function_error",
            Outcome::Timeout => "timeout",
            Outcome::OutOfMemory => "out_of_memory",
            Outcome::PlatformError => "platform_error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "success" => Outcome::Success,
            "function_error" => Outcome::FunctionError,
            "timeout" => Outcome::Timeout,
            "out_of_memory" => Outcome::OutOfMemory,
            "platform_error" => Outcome::PlatformError,
            _ => return None,
        })
    }

    pub fn blame(self) -> Option<Blame> {
        match self {
            Outcome::Success => None,
            Outcome::FunctionError | Outcome::Timeout | Outcome::OutOfMemory => {
                Some(Blame::Function)
            }
            Outcome::PlatformError => Some(Blame::Platform),
        }
    }
}

/// How the environment that served an invocation came to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartKind {
    /// A new environment ran INIT for this invocation.
    Cold,
    /// An idle environment was reused.
    Warm,
    /// A new environment was restored from an INIT snapshot.
    Snapshot,
}

impl StartKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StartKind::Cold => "cold",
            StartKind::Warm => "warm",
            StartKind::Snapshot => "snapshot",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "cold" => StartKind::Cold,
            "warm" => StartKind::Warm,
            "snapshot" => StartKind::Snapshot,
            _ => return None,
        })
    }
}

/// Where the invocation came from; recorded in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvocationType {
    RequestResponse,
    Event,
    FunctionUrl,
}

impl InvocationType {
    pub fn as_str(self) -> &'static str {
        match self {
            InvocationType::RequestResponse => "request_response",
            InvocationType::Event => "event",
            InvocationType::FunctionUrl => "function_url",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "request_response" => InvocationType::RequestResponse,
            "event" => InvocationType::Event,
            "function_url" => InvocationType::FunctionUrl,
            _ => return None,
        })
    }
}

/// The payload handed to a guest.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A Lambda event: raw bytes, JSON for Invoke.
    Event(Bytes),
    /// A plain HTTP request, served directly by a `wasi:http` guest.
    Http(HttpRequest),
}

/// What a guest answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Event(Bytes),
    Http(HttpResponse),
}

impl Response {
    pub fn len(&self) -> usize {
        match self {
            Response::Event(b) => b.len(),
            Response::Http(r) => r.body.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One invocation as it enters an execution environment.
#[derive(Debug, Clone)]
pub struct InvocationInput {
    /// A UUID; equals the `x-amzn-RequestId` the caller receives.
    pub request_id: String,
    pub payload: Payload,
    /// The ARN the caller used (it keeps an alias qualifier).
    pub invoked_arn: String,
    /// The decoded client context of a synchronous invoke.
    pub client_context: Option<String>,
}

/// A failure attributable to the function, as Lambda reports it in the response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionError {
    #[serde(rename = "errorType")]
    pub error_type: String,
    #[serde(rename = "errorMessage")]
    pub error_message: String,
    /// What Lambda's language runtimes add (Python's, for one): the invocation's id
    /// (empty for a failed INIT) and the frames of the user's code, innermost last.
    #[serde(rename = "requestId", default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(
        rename = "stackTrace",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stack_trace: Option<Vec<String>>,
}

impl FunctionError {
    pub fn new(error_type: impl Into<String>, error_message: impl Into<String>) -> Self {
        FunctionError {
            error_type: error_type.into(),
            error_message: error_message.into(),
            request_id: None,
            stack_trace: None,
        }
    }

    /// An error as a language runtime reports it: with the invocation's id (empty for
    /// INIT) and the user's stack.
    pub fn with_stack_trace(
        error_type: impl Into<String>,
        error_message: impl Into<String>,
        request_id: &str,
        stack_trace: Vec<String>,
    ) -> Self {
        FunctionError {
            stack_trace: Some(stack_trace),
            request_id: Some(request_id.to_owned()),
            ..Self::new(error_type, error_message)
        }
    }

    /// `Sandbox.Timedout` exactly as Lambda words it (two decimals).
    pub fn timeout(request_id: &str, timeout: Duration) -> Self {
        Self::new(
            "Sandbox.Timedout",
            format!(
                "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
                timeout.as_secs_f64()
            ),
        )
    }

    /// The runtime died (trap, panic, abort, non-zero exit).
    pub fn exit(request_id: &str, reason: &str) -> Self {
        Self::new(
            "Runtime.ExitError",
            format!("RequestId: {request_id} Error: Runtime exited with error: {reason}"),
        )
    }

    pub fn out_of_memory(request_id: &str, memory_mb: u32) -> Self {
        Self::new(
            "Runtime.OutOfMemory",
            format!(
                "RequestId: {request_id} Error: Runtime exited with error: memory limit of {memory_mb} MB exceeded"
            ),
        )
    }

    pub fn response_too_large(limit: usize) -> Self {
        Self::new(
            "Function.ResponseSizeTooLarge",
            format!("Response payload size exceeded maximum allowed payload size ({limit} bytes)."),
        )
    }

    /// The JSON body a caller receives with `X-Amz-Function-Error: Unhandled`.
    pub fn to_payload(&self) -> Bytes {
        // Serialising strings cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// Everything an execution environment reports about one invocation. The scheduler
/// turns it into the caller's response and the ledger's record.
#[derive(Debug, Clone)]
pub struct InvocationResult {
    pub request_id: String,
    /// The function version that ran (`$LATEST` or a number).
    pub version: String,
    /// On success the guest's answer; on failure the error payload.
    pub response: Response,
    pub outcome: Outcome,
    pub error: Option<FunctionError>,
    pub start: StartKind,
    /// INIT (or snapshot restore) time, present on the first invocation of an environment.
    pub init_duration: Option<Duration>,
    pub duration: Duration,
    pub started_at: SystemTime,
    pub ended_at: SystemTime,
    pub memory_mb: u32,
    pub max_memory_used_mb: u32,
    /// This invocation's log text: START, guest output, END and REPORT lines.
    pub log: String,
    /// False after a trap or timeout: the environment must be discarded.
    pub environment_reusable: bool,
}

impl InvocationResult {
    /// Lambda bills INIT plus duration, rounded up to the next millisecond.
    pub fn billed_ms(&self) -> u64 {
        crate::billing::billed_ms(self.init_duration, self.duration)
    }

    pub fn blame(&self) -> Option<Blame> {
        self.outcome.blame()
    }
}

//! What an execution environment is made from: the code package and the configuration
//! of one function version, as the worker needs them.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The runtimes Lamina accepts in `Runtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Runtime {
    /// A WebAssembly component or module; `Handler` is its path inside the zip.
    #[serde(rename = "wasm")]
    Wasm,
    /// The built-in model runtime; `Handler` is the ONNX model's path inside the zip.
    #[serde(rename = "onnx")]
    Onnx,
    /// The built-in Python runtime (CPython 3.14); `Handler` is `module.function`, as
    /// on Lambda.
    #[serde(rename = "python3.14")]
    Python314,
}

impl Runtime {
    pub const SUPPORTED: &'static [&'static str] = &["wasm", "onnx", "python3.14"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "wasm" => Some(Runtime::Wasm),
            "onnx" => Some(Runtime::Onnx),
            "python3.14" => Some(Runtime::Python314),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Runtime::Wasm => "wasm",
            Runtime::Onnx => "onnx",
            Runtime::Python314 => "python3.14",
        }
    }

    /// The handler a function gets when CreateFunction names none.
    pub fn default_handler(self) -> &'static str {
        match self {
            Runtime::Wasm => "function.wasm",
            Runtime::Onnx => "model.onnx",
            Runtime::Python314 => "lambda_function.lambda_handler",
        }
    }

    /// The file name of the built-in runtime guest in the runtimes directory.
    pub fn builtin_guest(self) -> Option<&'static str> {
        match self {
            Runtime::Wasm => None,
            Runtime::Onnx => Some("onnx.wasm"),
            Runtime::Python314 => Some("python.wasm"),
        }
    }
}

/// How a guest binary talks to the host; detected from the binary itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GuestKind {
    /// A component exporting `lamina:function/handler`: INIT once, then `handle` per event.
    Handler,
    /// A WASI command (core module or component): event on stdin, response on stdout,
    /// a fresh instance per invocation.
    Command,
    /// A component exporting `wasi:http/incoming-handler`.
    Http,
    /// An ONNX model served by the built-in model runtime.
    Model,
}

impl GuestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::Handler => "handler",
            GuestKind::Command => "command",
            GuestKind::Http => "http",
            GuestKind::Model => "model",
        }
    }
}

/// A function's code as stored on this node: content-addressed by the zip's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CodePackage {
    /// Lowercase hex SHA-256 of the uploaded zip.
    pub digest: String,
    /// The unpacked package, mounted read-only at `/var/task`.
    pub root: PathBuf,
    pub runtime: Runtime,
    /// The handler path inside the package.
    pub handler: String,
    /// The function's layers merged in order, mounted read-only at `/opt`; None without
    /// layers.
    pub opt_root: Option<PathBuf>,
}

/// The name of the working copy that holds the layers `digests` merged in this order:
/// one per ordered set, named by a digest of the list so any node derives the same name.
pub fn merged_layers_dir(digests: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for digest in digests {
        hasher.update(digest.as_bytes());
        hasher.update(b"\n");
    }
    format!("opt-{}", hex::encode(hasher.finalize()))
}

/// Which kind of initialisation created an environment (`AWS_LAMBDA_INITIALIZATION_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InitializationType {
    OnDemand,
    ProvisionedConcurrency,
    SnapStart,
}

impl InitializationType {
    pub fn as_env_value(self) -> &'static str {
        match self {
            InitializationType::OnDemand => "on-demand",
            InitializationType::ProvisionedConcurrency => "provisioned-concurrency",
            InitializationType::SnapStart => "snap-start",
        }
    }
}

/// Everything the worker needs to create execution environments of one function version.
/// Immutable: a configuration change produces a new spec (and new environments).
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    pub account_id: String,
    pub region: String,
    pub function_name: String,
    /// `$LATEST` or a published version number.
    pub version: String,
    /// The qualified ARN of this version.
    pub function_arn: String,
    pub memory_mb: u32,
    pub timeout: Duration,
    pub ephemeral_storage_mb: u32,
    /// The function's own environment variables, in the order the client gave them.
    pub environment: Vec<(String, String)>,
    pub code: CodePackage,
    /// Hosts the guest may reach over outbound HTTP; empty denies all egress.
    pub allowed_hosts: Vec<String>,
    /// Whether published versions start from an INIT snapshot.
    pub snap_start: bool,
}

impl FunctionSpec {
    /// Lambda's standard variables, then the function's own (which may not override them).
    pub fn guest_environment(&self, init_type: InitializationType) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = vec![
            ("AWS_REGION".into(), self.region.clone()),
            ("AWS_DEFAULT_REGION".into(), self.region.clone()),
            (
                "AWS_LAMBDA_FUNCTION_NAME".into(),
                self.function_name.clone(),
            ),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
                self.memory_mb.to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_VERSION".into(), self.version.clone()),
            (
                "AWS_LAMBDA_INITIALIZATION_TYPE".into(),
                init_type.as_env_value().into(),
            ),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME".into(),
                format!("/aws/lambda/{}", self.function_name),
            ),
            (
                "AWS_EXECUTION_ENV".into(),
                format!("Lamina_{}", self.code.runtime.as_str()),
            ),
            ("_HANDLER".into(), self.code.handler.clone()),
            ("LAMBDA_TASK_ROOT".into(), "/var/task".into()),
            ("TZ".into(), ":UTC".into()),
            ("LANG".into(), "en_US.UTF-8".into()),
        ];
        for (k, v) in &self.environment {
            if !vars.iter().any(|(existing, _)| existing == k) {
                vars.push((k.clone(), v.clone()));
            }
        }
        vars
    }
}

pub type SharedSpec = Arc<FunctionSpec>;

/// The environment variable that holds a function's egress policy: the hosts its guest may
/// reach over outbound HTTP, separated by commas. Without it the guest reaches none.
pub const ALLOWED_HOSTS_VARIABLE: &str = "LAMINA_ALLOWED_HOSTS";

/// The hosts a function's environment allows its guest to reach (see
/// [`ALLOWED_HOSTS_VARIABLE`]), trimmed, without empty entries, in the order given.
pub fn allowed_hosts_from_environment(environment: &[(String, String)]) -> Vec<String> {
    environment
        .iter()
        .find(|(k, _)| k == ALLOWED_HOSTS_VARIABLE)
        .map(|(_, hosts)| {
            hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(environment: &[(&str, &str)]) -> Vec<String> {
        let environment: Vec<(String, String)> = environment
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        allowed_hosts_from_environment(&environment)
    }

    #[test]
    fn the_egress_policy_is_read_from_the_environment() {
        let none: Vec<String> = vec![];
        assert_eq!(hosts(&[]), none, "no variable: no egress");
        assert_eq!(hosts(&[("OTHER", "a.test")]), none);
        assert_eq!(hosts(&[(ALLOWED_HOSTS_VARIABLE, "")]), none);
        assert_eq!(hosts(&[(ALLOWED_HOSTS_VARIABLE, " , ,")]), none);
        assert_eq!(
            hosts(&[
                ("A", "1"),
                (
                    ALLOWED_HOSTS_VARIABLE,
                    "api.example.com, x.test,,127.0.0.1:8080 "
                ),
            ]),
            vec!["api.example.com", "x.test", "127.0.0.1:8080"]
        );
    }
}

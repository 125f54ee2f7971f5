//! The execution spec of a function version: what the worker needs to create its
//! environments, built from the stored configuration once per version record.

use std::sync::Arc;
use std::time::Duration;

use protocol::spec::allowed_hosts_from_environment;
use protocol::{CodePackage, FunctionSpec, Runtime, SharedSpec};

use super::Catalog;
use super::entries::{FunctionEntry, VersionRecord};

impl Catalog {
    /// The execution spec of a version (built once per record).
    pub fn spec(&self, entry: &FunctionEntry, version: &VersionRecord) -> SharedSpec {
        version
            .spec
            .get_or_init(|| Arc::new(self.build_spec(entry, version)))
            .clone()
    }

    fn build_spec(&self, entry: &FunctionEntry, version: &VersionRecord) -> FunctionSpec {
        let c = &version.config;
        let environment: Vec<(String, String)> = c
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        FunctionSpec {
            account_id: entry.account_id.clone(),
            region: self.region.clone(),
            function_name: entry.name.clone(),
            version: version.version.clone(),
            function_arn: protocol::names::ArnBuilder::new(&self.region).qualified(
                &entry.account_id,
                &entry.name,
                &version.version,
            ),
            memory_mb: c.memory_size,
            timeout: Duration::from_secs(u64::from(c.timeout)),
            ephemeral_storage_mb: c.ephemeral_storage,
            allowed_hosts: allowed_hosts_from_environment(&environment),
            environment,
            code: CodePackage {
                digest: c.code_sha256.clone(),
                root: self.packages_dir.join(&c.code_sha256),
                // The API refuses runtimes `Runtime` cannot parse, so a stored version
                // never takes this fallback.
                runtime: Runtime::parse(&c.runtime).unwrap_or(Runtime::Wasm),
                handler: c.handler.clone(),
                opt_root: (!c.layers.is_empty()).then(|| {
                    let digests: Vec<String> =
                        c.layers.iter().map(|l| l.code_sha256.clone()).collect();
                    self.packages_dir
                        .join(protocol::spec::merged_layers_dir(&digests))
                }),
            },
            snap_start: c.snap_start,
        }
    }
}

//! GetAccountSettings: the account's limits and what its functions use of them.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::state::AppState;

pub async fn account_settings(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let functions = state.catalog.functions(&caller.account_id);
    let total_code: u64 = functions
        .iter()
        .flat_map(|f| std::iter::once(&f.latest).chain(f.versions.values()))
        .map(|v| v.config.code_size)
        .sum();
    let limits = state.scheduler.limits();
    let packages = state.packages.limits();
    Json(json!({
        "AccountLimit": {
            "TotalCodeSize": 80_530_636_800_u64,
            "CodeSizeUnzipped": packages.max_unzipped,
            "CodeSizeZipped": packages.max_zipped,
            "ConcurrentExecutions": limits.account_concurrency,
            "UnreservedConcurrentExecutions": state.scheduler.unreserved(&caller.account_id),
        },
        "AccountUsage": {
            "TotalCodeSize": total_code,
            "FunctionCount": functions.len(),
        },
    }))
}

-- Lamina's schema. Written once for both backends (PostgreSQL and SQLite): only types
-- both understand (TEXT, BIGINT, DOUBLE PRECISION), timestamps as BIGINT milliseconds
-- or microseconds since the Unix epoch, JSON documents as TEXT.

CREATE TABLE accounts (
    account_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE access_keys (
    access_key_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (account_id),
    -- The secret, encrypted with the server key; never stored in the clear.
    secret_sealed TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);

CREATE TABLE functions (
    account_id TEXT NOT NULL,
    function_name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    -- NULL when the function draws from the account's unreserved pool.
    reserved_concurrency BIGINT,
    -- The number the next PublishVersion will get; versions are never reused.
    next_version BIGINT NOT NULL,
    tags TEXT NOT NULL,
    PRIMARY KEY (account_id, function_name)
);

-- $LATEST and every published version. A published version's row never changes.
CREATE TABLE function_versions (
    account_id TEXT NOT NULL,
    function_name TEXT NOT NULL,
    version TEXT NOT NULL,
    config TEXT NOT NULL,
    code_sha256 TEXT NOT NULL,
    revision_id TEXT NOT NULL,
    last_modified_ms BIGINT NOT NULL,
    PRIMARY KEY (account_id, function_name, version)
);

CREATE TABLE aliases (
    account_id TEXT NOT NULL,
    function_name TEXT NOT NULL,
    alias_name TEXT NOT NULL,
    function_version TEXT NOT NULL,
    description TEXT NOT NULL,
    -- JSON: {"2": 0.1}, the AdditionalVersionWeights.
    routing TEXT NOT NULL,
    revision_id TEXT NOT NULL,
    PRIMARY KEY (account_id, function_name, alias_name)
);

CREATE TABLE url_configs (
    url_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    function_name TEXT NOT NULL,
    -- '$LATEST' or an alias name.
    qualifier TEXT NOT NULL,
    auth_type TEXT NOT NULL,
    cors TEXT NOT NULL,
    invoke_mode TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    last_modified_ms BIGINT NOT NULL,
    UNIQUE (account_id, function_name, qualifier)
);

CREATE TABLE provisioned_concurrency (
    account_id TEXT NOT NULL,
    function_name TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    requested BIGINT NOT NULL,
    last_modified_ms BIGINT NOT NULL,
    PRIMARY KEY (account_id, function_name, qualifier)
);

CREATE TABLE event_invoke_configs (
    account_id TEXT NOT NULL,
    function_name TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    config TEXT NOT NULL,
    last_modified_ms BIGINT NOT NULL,
    PRIMARY KEY (account_id, function_name, qualifier)
);

CREATE TABLE policy_statements (
    account_id TEXT NOT NULL,
    function_name TEXT NOT NULL,
    -- '' for the unqualified function.
    qualifier TEXT NOT NULL,
    statement_id TEXT NOT NULL,
    statement TEXT NOT NULL,
    PRIMARY KEY (account_id, function_name, qualifier, statement_id)
);

-- The billing ledger: one row per invocation attempt. The key makes replaying the
-- spool idempotent.
CREATE TABLE invocations (
    request_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    caller_account_id TEXT NOT NULL,
    function_name TEXT NOT NULL,
    executed_version TEXT NOT NULL,
    invocation_type TEXT NOT NULL,
    received_at_us BIGINT NOT NULL,
    started_at_us BIGINT NOT NULL,
    ended_at_us BIGINT NOT NULL,
    init_ms DOUBLE PRECISION NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    billed_ms BIGINT NOT NULL,
    memory_size_mb BIGINT NOT NULL,
    max_memory_used_mb BIGINT NOT NULL,
    gb_seconds DOUBLE PRECISION NOT NULL,
    outcome TEXT NOT NULL,
    error_type TEXT,
    start_kind TEXT NOT NULL,
    request_bytes BIGINT NOT NULL,
    response_bytes BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (request_id, attempt)
);

CREATE INDEX invocations_by_account_time ON invocations (account_id, ended_at_us);
CREATE INDEX invocations_by_function_time ON invocations (account_id, function_name, ended_at_us);

-- Accepted Event invocations, stored before 202 is returned.
CREATE TABLE async_events (
    event_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    caller_account_id TEXT NOT NULL,
    function_name TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    payload BYTEA NOT NULL,
    received_at_ms BIGINT NOT NULL,
    -- Attempts that ran the function (throttles do not count).
    attempts BIGINT NOT NULL,
    not_before_ms BIGINT NOT NULL,
    -- 'queued', or 'running' while a dispatcher holds it.
    state TEXT NOT NULL,
    lease_owner TEXT,
    lease_until_ms BIGINT,
    last_error TEXT
);

CREATE INDEX async_events_due ON async_events (state, not_before_ms);

-- Function log lines (START/END/REPORT and guest output), kept for a bounded time.
CREATE TABLE function_logs (
    request_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    function_name TEXT NOT NULL,
    version TEXT NOT NULL,
    logged_at_us BIGINT NOT NULL,
    log_text TEXT NOT NULL,
    PRIMARY KEY (request_id, attempt)
);

CREATE INDEX function_logs_by_function_time ON function_logs (account_id, function_name, logged_at_us);

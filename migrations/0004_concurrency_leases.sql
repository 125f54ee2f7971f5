-- Concurrency as a limit of the cluster: each node holds slots of a limit (a function's
-- reserved concurrency, or an account's unreserved concurrency) and admits invocations
-- within them without asking the database. A node takes slots under the scope's row lock,
-- so two nodes never hand out the same free slot; slots held by an incarnation that is
-- not live any more do not count, and are deleted by the next sweep.
CREATE TABLE concurrency_scopes (
    scope TEXT PRIMARY KEY,
    grants BIGINT NOT NULL
);

CREATE TABLE concurrency_leases (
    scope TEXT NOT NULL,
    incarnation TEXT NOT NULL,
    slots BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, incarnation)
);

CREATE INDEX concurrency_leases_by_incarnation ON concurrency_leases (incarnation);

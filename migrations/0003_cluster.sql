-- Lamina as a cluster of equal nodes on one database: the catalog's change feed, the
-- nodes' membership, and packages kept in the database so every node reaches every one.

-- One row: the revision of the last catalog change. A change takes the next number under
-- this row's lock, in the transaction that makes it, so revisions commit in order and a
-- rolled-back change leaves no gap.
CREATE TABLE catalog_revision (
    singleton BIGINT PRIMARY KEY,
    revision BIGINT NOT NULL
);
INSERT INTO catalog_revision (singleton, revision) VALUES (1, 0);

-- What each revision changed: kind 'function' (account_id, subject = the function's name)
-- or 'access_key' (subject = the key id). A node reloads what the rows after its own
-- revision name; rows older than an hour are pruned, and a node further behind reloads
-- the whole catalog.
CREATE TABLE catalog_changes (
    revision BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    account_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    changed_at_ms BIGINT NOT NULL
);

-- Every node that ever joined. A node is live while its heartbeat is recent and it has
-- not left; the figures are what it reported with its last heartbeat. The incarnation
-- changes with every start of the node: async events leased by an incarnation that is
-- not live any more go back to the queue.
CREATE TABLE cluster_nodes (
    node_id TEXT PRIMARY KEY,
    incarnation TEXT NOT NULL,
    advertise_url TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    heartbeat_at_ms BIGINT NOT NULL,
    left_at_ms BIGINT,
    environments BIGINT NOT NULL,
    in_flight BIGINT NOT NULL,
    models_loaded BIGINT NOT NULL
);

-- Package blobs (sealed as in any code store) in chunks; the head row is written in the
-- same transaction as the chunks, so a blob with a head is whole.
CREATE TABLE package_blobs (
    name TEXT PRIMARY KEY,
    size_bytes BIGINT NOT NULL,
    chunks BIGINT NOT NULL,
    stored_at_ms BIGINT NOT NULL
);

CREATE TABLE package_blob_chunks (
    name TEXT NOT NULL,
    seq BIGINT NOT NULL,
    bytes BYTEA NOT NULL,
    PRIMARY KEY (name, seq)
);

CREATE INDEX async_events_by_owner ON async_events (state, lease_owner);

-- The order a function's policy statements were added in, which GetPolicy keeps: a node
-- re-reading a function after a change lists them as the node that added them did.
-- Statements from before this column keep 0 and list by qualifier and id.
ALTER TABLE policy_statements ADD COLUMN added_order BIGINT NOT NULL DEFAULT 0;

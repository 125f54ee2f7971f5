-- Provisioned concurrency is spread over the live nodes; each node reports, with its
-- heartbeat, how many of its share are ready per version (a JSON object keyed by the
-- version's pool key), so any node answers GetProvisionedConcurrencyConfig for the whole
-- cluster.
ALTER TABLE cluster_nodes ADD COLUMN provisioned_ready TEXT NOT NULL DEFAULT '{}';

#!/bin/sh
# Gives Grafana's ledger data source a login that can read the billing ledger and nothing
# else (function configurations may hold secrets in their environment variables).
# Lamina creates the `invocations` table on its first start, so this retries until it
# exists. Connection settings come from the standard PG* variables.
set -eu
until psql -v ON_ERROR_STOP=1 -q -v reader_password="$GRAFANA_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE grafana_reader LOGIN PASSWORD %L', :'reader_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana_reader') \gexec
GRANT SELECT ON invocations TO grafana_reader;
SQL
do
  echo "waiting for Lamina to create the ledger table"
  sleep 2
done
echo "grafana_reader may read the ledger"

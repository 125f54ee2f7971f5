-- An invocation's log (and a model's prediction) move into its ledger row, so the writer
-- inserts one row per invocation instead of two. `function_logs` stays as a view over
-- the rows that still hold a log, for the readers and anyone's own queries; retention
-- clears `log_text` and `prediction` but keeps the billing row.
ALTER TABLE invocations ADD COLUMN log_text TEXT;
ALTER TABLE invocations ADD COLUMN prediction TEXT;

UPDATE invocations SET
    log_text = (SELECT l.log_text FROM function_logs l
                WHERE l.request_id = invocations.request_id AND l.attempt = invocations.attempt),
    prediction = (SELECT l.prediction FROM function_logs l
                  WHERE l.request_id = invocations.request_id AND l.attempt = invocations.attempt);

DROP TABLE function_logs;

CREATE VIEW function_logs AS
    SELECT request_id, attempt, account_id, function_name, executed_version AS version,
           ended_at_us AS logged_at_us, log_text, prediction
    FROM invocations
    WHERE log_text IS NOT NULL;

-- Only rows whose log is within retention: expiry finds them without scanning the
-- ledger, and a row leaves this index when its log is cleared.
CREATE INDEX invocations_with_logs ON invocations (ended_at_us) WHERE log_text IS NOT NULL;

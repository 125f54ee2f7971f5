-- Model quality monitoring. A model function's response is kept with its log (and so
-- with the log's retention); ground truth sent later is joined with it, one row per row
-- of the prediction, and scored per function version over a sliding window.
ALTER TABLE function_logs ADD COLUMN prediction TEXT;

CREATE TABLE model_feedback (
    account_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    -- The row of a batch prediction this truth belongs to (0 for a one-row request).
    row_index BIGINT NOT NULL,
    function_name TEXT NOT NULL,
    version TEXT NOT NULL,
    -- 'regression' (values) or 'classification' (labels).
    task TEXT NOT NULL,
    predicted_value DOUBLE PRECISION,
    actual_value DOUBLE PRECISION,
    predicted_label TEXT,
    actual_label TEXT,
    received_at_us BIGINT NOT NULL,
    PRIMARY KEY (account_id, request_id, row_index)
);

CREATE INDEX model_feedback_by_function_time ON model_feedback (account_id, function_name, received_at_us);
CREATE INDEX model_feedback_by_time ON model_feedback (received_at_us);

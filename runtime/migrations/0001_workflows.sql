-- Durable workflows: one row per workflow, one row per completed step.
-- Every table is created in the runtime's schema (search_path is set to it).

CREATE TABLE workflow_status (
    workflow_id        TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    -- ENQUEUED, PENDING, SUCCESS, ERROR, CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED
    status             TEXT NOT NULL,
    inputs             JSONB NOT NULL,
    output             JSONB,
    error              JSONB,
    queue_name         TEXT,
    partition_key      TEXT,
    priority           INTEGER NOT NULL DEFAULT 0,
    deduplication_id   TEXT,
    executor_id        TEXT,
    app_version        TEXT,
    -- How many times an execution of this workflow was started (1 on the first run).
    recovery_attempts  INTEGER NOT NULL DEFAULT 1,
    timeout_ms         BIGINT,
    deadline           TIMESTAMPTZ,
    -- Where the workflow came from (a Kafka or SQS message), for operators.
    source             JSONB,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    completed_at       TIMESTAMPTZ
);

CREATE INDEX workflow_status_pending ON workflow_status (executor_id) WHERE status = 'PENDING';
CREATE INDEX workflow_status_created ON workflow_status (created_at);

CREATE TABLE operation_outputs (
    workflow_id   TEXT NOT NULL REFERENCES workflow_status (workflow_id) ON DELETE CASCADE,
    step_id       INTEGER NOT NULL,
    name          TEXT NOT NULL,
    output        JSONB,
    error         JSONB,
    completed_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (workflow_id, step_id)
);

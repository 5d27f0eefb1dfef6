-- Durable queues: when a workflow was dispatched (for rate limits), the indexes the
-- dispatcher claims by, deduplication IDs unique while their workflow is active,
-- executor heartbeats, and a NOTIFY when rows are enqueued.

ALTER TABLE workflow_status ADD COLUMN started_at TIMESTAMPTZ;

CREATE INDEX workflow_status_enqueued ON workflow_status (queue_name, priority, created_at)
    WHERE status = 'ENQUEUED';
CREATE INDEX workflow_status_queue_started ON workflow_status (queue_name, started_at)
    WHERE queue_name IS NOT NULL;
CREATE UNIQUE INDEX workflow_status_deduplication ON workflow_status (queue_name, deduplication_id)
    WHERE deduplication_id IS NOT NULL AND status IN ('ENQUEUED', 'PENDING');

CREATE TABLE executors (
    executor_id     TEXT PRIMARY KEY,
    app_version     TEXT,
    last_heartbeat  TIMESTAMPTZ NOT NULL
);

CREATE FUNCTION notify_enqueued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('exactly_enqueued', q)
    FROM (SELECT DISTINCT queue_name AS q FROM new_rows WHERE status = 'ENQUEUED') AS queues;
    RETURN NULL;
END
$$;

CREATE TRIGGER workflow_enqueued AFTER INSERT ON workflow_status
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION notify_enqueued();

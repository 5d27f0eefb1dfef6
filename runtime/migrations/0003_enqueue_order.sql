-- Rows inserted by one statement can share a timestamp; a sequence keeps their
-- enqueue order as the tie-breaker of claims (FIFO order within a partition).
ALTER TABLE workflow_status ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY;

DROP INDEX workflow_status_enqueued;
CREATE INDEX workflow_status_enqueued ON workflow_status (queue_name, priority, created_at, seq)
    WHERE status = 'ENQUEUED';

-- Claims go in priority, then insert order. The sequence alone is the insert order:
-- created_at is the start time of the inserting transaction, so rows of two
-- overlapping transactions (two consumers inserting one partition's messages
-- during a rebalance) could sort against the order in which they were inserted.
DROP INDEX workflow_status_enqueued;
CREATE INDEX workflow_status_enqueued ON workflow_status (queue_name, priority, seq)
    WHERE status = 'ENQUEUED';

-- A partitioned claim reads the first ENQUEUED rows of each partition with free
-- slots: by this index it finds them behind any backlog of full partitions without
-- reading the backlog (rows without a key, the NULL partition, included).
CREATE INDEX workflow_status_enqueued_partition ON workflow_status (queue_name, partition_key, priority, seq)
    WHERE status = 'ENQUEUED';

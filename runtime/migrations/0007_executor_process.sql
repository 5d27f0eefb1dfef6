-- The process that holds an executor ID ({host}:{pid}:{start time}), so that launch
-- can tell a live process holding the same ID from its own previous life.
ALTER TABLE executors ADD COLUMN process TEXT;

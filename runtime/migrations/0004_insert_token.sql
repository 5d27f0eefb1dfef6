-- The token of the write that inserted a row. A batch whose COMMIT succeeded but
-- whose reply was lost (the connection died) is retried with the same token, and
-- the retry recognises its own rows as inserted by it rather than as existing ones.
ALTER TABLE workflow_status ADD COLUMN insert_token UUID;

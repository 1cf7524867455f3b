-- On PostgreSQL this migration makes every key include the owner, so that Citus can distribute the
-- tables by it. This backend's tables are never distributed, and keep their keys: a message id
-- stays unique across owners here. The schema does not change: no statement here.
SELECT 1;

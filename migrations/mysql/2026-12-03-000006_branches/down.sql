-- Keeps the active branch's path only: every other branch's own messages go.
DELETE m FROM chatstore_messages m
JOIN chatstore_conversations c ON c.id = m.conversation_id
WHERE m.seq >= 4294967296 AND m.seq DIV 4294967296 <> c.branch;
DROP TABLE chatstore_branches;
ALTER TABLE chatstore_conversations DROP COLUMN off_branch;
ALTER TABLE chatstore_conversations DROP COLUMN branch_fork;
ALTER TABLE chatstore_conversations DROP COLUMN branch;

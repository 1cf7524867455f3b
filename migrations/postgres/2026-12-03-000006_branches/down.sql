-- Keeps the active branch's path only: every other branch's own messages go.
DELETE FROM chatstore_messages m
USING chatstore_conversations c
WHERE c.id = m.conversation_id AND m.seq >= 4294967296 AND m.seq / 4294967296 <> c.branch;
DROP TABLE chatstore_branches;
ALTER TABLE chatstore_conversations DROP COLUMN off_branch;
ALTER TABLE chatstore_conversations DROP COLUMN branch_fork;
ALTER TABLE chatstore_conversations DROP COLUMN branch;

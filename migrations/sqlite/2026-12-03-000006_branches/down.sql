-- Keeps the active branch's path only: every other branch's own messages go.
DELETE FROM chatstore_messages
WHERE seq >= 4294967296
  AND seq / 4294967296 <> (SELECT c.branch FROM chatstore_conversations c WHERE c.id = conversation_id);
DROP TABLE chatstore_branches;
ALTER TABLE chatstore_conversations DROP COLUMN off_branch;
ALTER TABLE chatstore_conversations DROP COLUMN branch_fork;
ALTER TABLE chatstore_conversations DROP COLUMN branch;

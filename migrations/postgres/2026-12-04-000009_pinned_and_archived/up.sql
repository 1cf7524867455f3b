-- Pinned and archived conversations. `list_rank` is a conversation's place in the user's lists:
-- 2 pinned (listed first), 1 listed, 0 archived (only in the list of archived conversations).
-- Pinning and archiving change it and nothing else: `updated_at` stays the time of the last
-- change to the conversation itself.
--
-- The new index serves every list: one user's conversations of one rank, most recently updated
-- first, keyset on (updated_at, id); the default list runs over ranks 2 and 1 in that order. It
-- replaces the index without the rank, which every append would otherwise also have to update.
--
-- One command per EXECUTE: on Citus, an index on a distributed table is made on the workers from
-- the text of the statement, and a text of several commands is refused ("cannot insert multiple
-- commands into a prepared statement").
DO $$
BEGIN
    EXECUTE 'ALTER TABLE chatstore_conversations ADD COLUMN list_rank SMALLINT NOT NULL DEFAULT 1 '
        'CONSTRAINT chatstore_conversations_list_rank_valid CHECK (list_rank BETWEEN 0 AND 2)';
    EXECUTE 'CREATE INDEX chatstore_conversations_user_rank ON chatstore_conversations '
        '(user_id, list_rank DESC, updated_at DESC, id DESC)';
    EXECUTE 'DROP INDEX chatstore_conversations_user_updated';
END
$$;

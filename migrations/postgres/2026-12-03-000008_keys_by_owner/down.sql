-- Back to keys without the owner. Fails (and changes nothing) if two owners hold the same id.
--
-- On Citus the tables are made local to the coordinator first (their rows moved back from the
-- shards): a distributed table's keys must include `user_id`. A store that migrates the database
-- again distributes them again.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        IF EXISTS (SELECT 1 FROM pg_dist_partition
                   WHERE logicalrelid = 'chatstore_conversations'::regclass) THEN
            PERFORM undistribute_table('chatstore_conversations', cascade_via_foreign_keys => true);
        END IF;
    END IF;
END
$$;
ALTER TABLE chatstore_messages DROP CONSTRAINT chatstore_messages_conversation_fk;
ALTER TABLE chatstore_branches DROP CONSTRAINT chatstore_branches_conversation_fk;

ALTER TABLE chatstore_branches DROP CONSTRAINT chatstore_branches_key;
ALTER TABLE chatstore_branches
    ADD CONSTRAINT chatstore_branches_key PRIMARY KEY (conversation_id, branch);

ALTER TABLE chatstore_messages DROP CONSTRAINT chatstore_messages_conversation_seq;
ALTER TABLE chatstore_messages
    ADD CONSTRAINT chatstore_messages_conversation_seq UNIQUE (conversation_id, seq);
ALTER TABLE chatstore_messages DROP CONSTRAINT chatstore_messages_pkey;
ALTER TABLE chatstore_messages ADD CONSTRAINT chatstore_messages_pkey PRIMARY KEY (id);

ALTER TABLE chatstore_conversations DROP CONSTRAINT chatstore_conversations_id_user;
ALTER TABLE chatstore_conversations ADD CONSTRAINT chatstore_conversations_pkey PRIMARY KEY (id);
ALTER TABLE chatstore_conversations
    ADD CONSTRAINT chatstore_conversations_id_user UNIQUE (id, user_id);

ALTER TABLE chatstore_messages ADD CONSTRAINT chatstore_messages_conversation_fk
    FOREIGN KEY (conversation_id, user_id)
    REFERENCES chatstore_conversations (id, user_id) ON DELETE CASCADE;
ALTER TABLE chatstore_branches ADD CONSTRAINT chatstore_branches_conversation_fk
    FOREIGN KEY (conversation_id, user_id)
    REFERENCES chatstore_conversations (id, user_id) ON DELETE CASCADE;

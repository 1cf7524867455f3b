-- Every key includes the owner, so that the tables can be distributed by `user_id` (Citus: a
-- distributed table's primary and unique keys must contain its distribution column) and every
-- user's rows live on one node. On plain PostgreSQL nothing else changes: the store always names
-- the owner with an id, and the indexes serve the same scans (the owner is their last column, so
-- a window is still one range of `(conversation_id, seq)`).
--
-- What it means: a message or conversation id is unique within its owner's, no longer across
-- owners. A client id that another user stored is no longer refused; the store never looks up a
-- message without its owner.
--
-- The conversations' key is now `(id, user_id)`, which the foreign keys reference: they are dropped
-- and made again around it (validating them reads the child tables once).
ALTER TABLE chatstore_messages DROP CONSTRAINT chatstore_messages_conversation_fk;
ALTER TABLE chatstore_branches DROP CONSTRAINT chatstore_branches_conversation_fk;
ALTER TABLE chatstore_conversations DROP CONSTRAINT chatstore_conversations_id_user;
ALTER TABLE chatstore_conversations DROP CONSTRAINT chatstore_conversations_pkey;
ALTER TABLE chatstore_conversations
    ADD CONSTRAINT chatstore_conversations_id_user PRIMARY KEY (id, user_id);

ALTER TABLE chatstore_messages DROP CONSTRAINT chatstore_messages_pkey;
ALTER TABLE chatstore_messages ADD CONSTRAINT chatstore_messages_pkey PRIMARY KEY (id, user_id);
ALTER TABLE chatstore_messages DROP CONSTRAINT chatstore_messages_conversation_seq;
ALTER TABLE chatstore_messages
    ADD CONSTRAINT chatstore_messages_conversation_seq UNIQUE (conversation_id, seq, user_id);
ALTER TABLE chatstore_messages ADD CONSTRAINT chatstore_messages_conversation_fk
    FOREIGN KEY (conversation_id, user_id)
    REFERENCES chatstore_conversations (id, user_id) ON DELETE CASCADE;

ALTER TABLE chatstore_branches DROP CONSTRAINT chatstore_branches_key;
ALTER TABLE chatstore_branches
    ADD CONSTRAINT chatstore_branches_key PRIMARY KEY (conversation_id, branch, user_id);
ALTER TABLE chatstore_branches ADD CONSTRAINT chatstore_branches_conversation_fk
    FOREIGN KEY (conversation_id, user_id)
    REFERENCES chatstore_conversations (id, user_id) ON DELETE CASCADE;

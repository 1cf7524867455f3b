-- context_window pins a conversation's system messages, however old. MySQL has no partial indexes:
-- with the role second, the system messages of a conversation are one range of this index, and
-- reading them does not read the rest of the history.
CREATE INDEX chatstore_messages_system ON chatstore_messages (conversation_id, role, seq);

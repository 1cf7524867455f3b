-- context_window pins a conversation's system messages, however old: this partial index finds them
-- without reading the rest of the history (queries name role IN ('system', 'developer') literally, so that the
-- planner can match the index's predicate).
CREATE INDEX chatstore_messages_system ON chatstore_messages (conversation_id, seq) WHERE role IN ('system', 'developer');

-- context_window pins a conversation's system messages, however old: this partial index finds them
-- without reading the rest of the history (queries name role = 'system' literally, so that the
-- planner can match the index's predicate).
CREATE INDEX messages_system ON messages (conversation_id, seq) WHERE role = 'system';

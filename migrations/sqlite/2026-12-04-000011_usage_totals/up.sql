-- Token usage. A message may carry the tokens its model call used: all three columns or none,
-- input plus output at most the total. A conversation keeps the sums of its messages' usage,
-- changed in every transaction that adds or removes messages; a user's total is the sum over
-- their conversations' rows. Existing rows have no usage: NULL on messages, 0 on conversations.
ALTER TABLE chatstore_messages ADD COLUMN input_tokens BIGINT;
ALTER TABLE chatstore_messages ADD COLUMN output_tokens BIGINT;
ALTER TABLE chatstore_messages ADD COLUMN total_tokens BIGINT
    CONSTRAINT chatstore_messages_usage_valid CHECK (
        (input_tokens IS NULL AND output_tokens IS NULL AND total_tokens IS NULL)
        OR (input_tokens >= 0 AND output_tokens >= 0 AND input_tokens + output_tokens <= total_tokens));
ALTER TABLE chatstore_conversations ADD COLUMN input_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE chatstore_conversations ADD COLUMN output_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE chatstore_conversations ADD COLUMN total_tokens BIGINT NOT NULL DEFAULT 0;

-- Token usage. A message may carry the tokens its model call used: all three columns or none,
-- input plus output at most the total (no CHECK, as for the tags: the store writes only what it
-- validated, and refuses any other value it reads). A conversation keeps the sums of its
-- messages' usage, changed in every transaction that adds or removes messages; a user's total is
-- the sum over their conversations' rows. Existing rows have no usage: NULL on messages, 0 on
-- conversations. One column per statement, each guarded on its own.
ALTER TABLE chatstore_messages ADD COLUMN input_tokens BIGINT NULL;
ALTER TABLE chatstore_messages ADD COLUMN output_tokens BIGINT NULL;
ALTER TABLE chatstore_messages ADD COLUMN total_tokens BIGINT NULL;
ALTER TABLE chatstore_conversations ADD COLUMN input_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE chatstore_conversations ADD COLUMN output_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE chatstore_conversations ADD COLUMN total_tokens BIGINT NOT NULL DEFAULT 0;

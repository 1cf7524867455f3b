-- Content parts. A message may carry an ordered list of parts (text, and images and files by
-- reference) beside its content: a JSON array, as the store writes it (src/models/part.rs), or
-- NULL for none. The search index reads the text parts through `search_text`, which the store
-- sets for such a message. Existing messages have none (a nullable column is added without
-- rewriting the table).
ALTER TABLE chatstore_messages ADD COLUMN parts TEXT;

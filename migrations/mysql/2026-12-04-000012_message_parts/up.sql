-- Content parts. A message may carry an ordered list of parts (text, and images and files by
-- reference) beside its content: a JSON array, as the store writes it (src/models/part.rs), or
-- NULL for none (no CHECK, as for the tags: the store writes only what it validated, and refuses
-- any other value it reads). The store's word index reads the text parts with the content.
-- Existing messages have none.
ALTER TABLE chatstore_messages ADD COLUMN parts LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;

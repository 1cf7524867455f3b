ALTER TABLE chatstore_conversations DROP COLUMN ancestor_4;
ALTER TABLE chatstore_conversations DROP COLUMN ancestor_3;
ALTER TABLE chatstore_conversations DROP COLUMN ancestor_2;
ALTER TABLE chatstore_conversations DROP COLUMN ancestor_1;

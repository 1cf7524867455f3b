ALTER TABLE chatstore_messages DROP COLUMN parts;

-- Nothing to undo in the schema: `search_text` as the store wrote it is still a text the index reads.
SELECT 1;

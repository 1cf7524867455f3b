-- Nothing to undo in the schema.
SELECT 1;

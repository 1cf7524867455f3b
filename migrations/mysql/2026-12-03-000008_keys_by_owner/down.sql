-- Nothing to undo in the schema.
DO 0;

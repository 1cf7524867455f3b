-- The active branch's nearest ancestors, kept on the conversation row so that a window crossing
-- fork points can be read in one statement, every range bounded by the row itself. `ancestor_k`
-- is the stored seq (branch * 2^32 + position) of the last message that the k-th branch up the
-- active branch's path holds on that path, -1 when the path has fewer ancestors (always, on a
-- conversation that never branched). Written whenever the active branch changes, with
-- `branch_fork`; never otherwise, since the part of a path above a branch's fork never changes
-- while the branch exists. A row from before this migration has -1 everywhere, and a read of a
-- branched one walks the branches table as before until its active branch next changes.
ALTER TABLE chatstore_conversations ADD COLUMN ancestor_1 BIGINT NOT NULL DEFAULT -1;
ALTER TABLE chatstore_conversations ADD COLUMN ancestor_2 BIGINT NOT NULL DEFAULT -1;
ALTER TABLE chatstore_conversations ADD COLUMN ancestor_3 BIGINT NOT NULL DEFAULT -1;
ALTER TABLE chatstore_conversations ADD COLUMN ancestor_4 BIGINT NOT NULL DEFAULT -1;

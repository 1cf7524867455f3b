-- Search words are indexed after the append, not in its transaction: the generated tsvector cost
-- 35-50 µs a message inside every append. `search` becomes a plain column, NULL until the store
-- indexes the message (a search does first, for its user, and `ChatStore::index_pending` for
-- everyone), so a search still finds every message committed before it began. The column keeps the
-- values already computed (DROP EXPRESSION rewrites nothing). Nothing is lost by a crash between an
-- append and its indexing: what waits is the messages whose `search` is NULL, found by the partial
-- index below, one user's at a time.
--
-- The store never updates a message; another program that changes a message's content sets its
-- `search` to NULL, and the store indexes it again.
ALTER TABLE chatstore_messages ALTER COLUMN search DROP EXPRESSION;
CREATE INDEX chatstore_messages_unindexed ON chatstore_messages (user_id, id) WHERE search IS NULL;

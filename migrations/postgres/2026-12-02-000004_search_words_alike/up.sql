-- Search words are read by the store, by one rule for every backend (src/search.rs), so that a query
-- finds the same messages on each. `search_text` now holds the store's words, folded and joined by
-- spaces, wherever this server's parser would read the content otherwise: beyond ASCII (it drops
-- "²", and in a database whose LC_CTYPE is C it folds no case beyond ASCII) and in a few ASCII words
-- ("8e1ba"). The index therefore no longer decomposes and strips accents itself: the store's words
-- are folded already, and a decomposed index matched prefixes inside letters ('か':* found 'が',
-- whose decomposition begins with か). What remains is for content the store leaves to the parser,
-- which is ASCII: punctuation becomes a space, so that compound tokens (hosts, paths, e-mail
-- addresses, versions) split into their words. Only the first 100,000 characters are indexed.
--
-- The store rewrites `search_text` for the messages already stored right after this migration, in
-- the same transaction.
DROP INDEX chatstore_messages_search;
ALTER TABLE chatstore_messages DROP COLUMN search;
ALTER TABLE chatstore_messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', regexp_replace(left(coalesce(search_text, content), 100000), '[!-/:-@\[-`{-~]', ' ', 'g'))
    || ('u' || md5(user_id))::tsvector
) STORED;
CREATE INDEX chatstore_messages_search ON chatstore_messages USING GIN (search);

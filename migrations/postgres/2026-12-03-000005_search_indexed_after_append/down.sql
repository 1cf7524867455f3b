DROP INDEX chatstore_messages_unindexed;
DROP INDEX chatstore_messages_search;
ALTER TABLE chatstore_messages DROP COLUMN search;
ALTER TABLE chatstore_messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', regexp_replace(left(coalesce(search_text, content), 100000), '[!-/:-@\[-`{-~]', ' ', 'g'))
    || ('u' || md5(user_id))::tsvector
) STORED;
CREATE INDEX chatstore_messages_search ON chatstore_messages USING GIN (search);

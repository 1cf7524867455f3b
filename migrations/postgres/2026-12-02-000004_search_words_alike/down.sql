-- The index of the previous version, which decomposed and stripped accents itself.
DROP INDEX chatstore_messages_search;
ALTER TABLE chatstore_messages DROP COLUMN search;
ALTER TABLE chatstore_messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', regexp_replace(
        regexp_replace(normalize(left(coalesce(search_text, content), 100000), NFD), '[\u0300-\u036f]', '', 'g'),
        '[!-/:-@\[-`{-~]', ' ', 'g'))
    || ('u' || md5(user_id))::tsvector
) STORED;
CREATE INDEX chatstore_messages_search ON chatstore_messages USING GIN (search);

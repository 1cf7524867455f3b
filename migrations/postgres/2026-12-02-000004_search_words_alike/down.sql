-- The index of the previous version, which decomposed and stripped accents itself.
DROP INDEX messages_search;
ALTER TABLE messages DROP COLUMN search;
ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', regexp_replace(
        regexp_replace(normalize(left(coalesce(search_text, content), 100000), NFD), '[\u0300-\u036f]', '', 'g'),
        '[!-/:-@\[-`{-~]', ' ', 'g'))
    || ('u' || md5(user_id))::tsvector
) STORED;
CREATE INDEX messages_search ON messages USING GIN (search);

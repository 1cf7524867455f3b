-- Full-text search over messages: a generated tsvector column with a GIN index, computed by the
-- server on every insert, so it can never fall out of step.
--
-- `search_text` is what is indexed when it differs from the content: the store sets it for text in
-- scripts written without spaces (Chinese, Japanese, Thai…), with a space around each such
-- character so that each is a lexeme and a word of several is found as a phrase. NULL otherwise.
ALTER TABLE messages ADD COLUMN search_text TEXT;

-- The 'simple' configuration lowercases and keeps every word (no stemming, no stop words, in any
-- language); accents are stripped first (NFD, then the combining marks). The lexeme 'u' || md5(owner)
-- makes a search the intersection with that user's messages in the index, rather than a filter
-- over everyone's matches.
ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', regexp_replace(normalize(coalesce(search_text, content), NFD), '[\u0300-\u036f]', '', 'g'))
    || ('u' || md5(user_id))::tsvector
) STORED;

CREATE INDEX messages_search ON messages USING GIN (search);

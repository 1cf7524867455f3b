-- Full-text search over messages: a generated tsvector column with a GIN index, computed by the
-- server on every insert, so it can never fall out of step.
--
-- `search_text` is what is indexed when it differs from the content: the store sets it for text in
-- scripts written without spaces (Chinese, Japanese, Thai…), with a space around each such
-- character so that each is a lexeme and a word of several is found as a phrase. NULL otherwise.
ALTER TABLE chatstore_messages ADD COLUMN search_text TEXT;

-- The 'simple' configuration lowercases and keeps every word (no stemming, no stop words, in any
-- language); accents are stripped first (NFD, then the combining diacritical marks). ASCII
-- punctuation becomes a space (a regular expression: translate() cost 47 µs a message, this 4), so that the parser's compound tokens (hosts, e-mail addresses, paths,
-- URLs, decimals, version numbers, HTML tags) split into their words, as SQLite's tokenizer and the
-- store's query reader split them. Only the first 100,000 characters are indexed: a tsvector cannot
-- pass 1 MB, and a message of many distinct words would otherwise fail to insert. The lexeme
-- 'u' || md5(owner) makes a search the intersection with that user's messages in the index, rather
-- than a filter over everyone's matches.
ALTER TABLE chatstore_messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', regexp_replace(
        regexp_replace(normalize(left(coalesce(search_text, content), 100000), NFD), '[\u0300-\u036f]', '', 'g'),
        '[!-/:-@\[-`{-~]', ' ', 'g'))
    || ('u' || md5(user_id))::tsvector
) STORED;

CREATE INDEX chatstore_messages_search ON chatstore_messages USING GIN (search);

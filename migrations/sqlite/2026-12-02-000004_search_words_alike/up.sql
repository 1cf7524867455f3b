-- Search words are read by the store, by one rule for every backend (src/search.rs), so that a query
-- finds the same messages on each. `search_text` now holds the store's words, folded and joined by
-- spaces, wherever SQLite's tokenizer would read the content otherwise (beyond ASCII: it splits words
-- at combining marks, keeps "²" in a word, folds Greek accents only as letters...). The schema does
-- not change: the store rewrites `search_text` for the messages already stored right after this
-- migration, in the same transaction, and the update trigger re-indexes each message it changes.
SELECT 1;

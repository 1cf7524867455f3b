-- Search words are read by the store, by one rule for every backend (src/search.rs), so that a query
-- finds the same messages on each: the rule has changed (case folding, marks, the alphabet the other
-- backends' indexes hold alike), so the store rewrites `message_words` for the messages already
-- stored right after this migration. The schema does not change.
DO 0;

-- The waiting messages are left without words: run ChatStore::index_pending before going back.
DROP TABLE chatstore_search_pending;

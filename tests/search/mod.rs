//! `search_messages`: full-text search over one user's messages, on every backend.

use chatstore::{
    ChatStore, ConversationId, Error, NewMessage, SearchOrder, SearchQuery, SearchResults, UserId,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

use crate::support::{backend_tests, user, Kind, TestDb};

mod catch_up;

/// The alphabet of the search index, as the store reads it.
#[path = "../../src/search/alphabet.rs"]
mod alphabet;

backend_tests! {
    every: [
        words_match_whatever_their_case_and_accents,
        text_without_spaces_is_searchable,
        phrases_keep_their_order_and_prefixes_complete_words,
        only_the_users_own_messages_are_found,
        results_come_newest_or_best_first_in_pages,
        a_search_can_stay_in_one_conversation,
        deleted_messages_are_no_longer_found,
        a_query_that_cannot_run_is_refused_clearly,
        snippets_mark_the_matches,
        any_query_is_answered_or_refused_never_with_someone_elses_rows,
        addresses_paths_and_numbers_are_found_by_their_words,
        accents_outside_latin_are_kept_alike_in_index_and_query,
        a_large_message_of_distinct_words_is_stored_and_its_start_indexed,
        phrase_pages_skip_messages_with_the_words_out_of_order,
        words_longer_than_64_characters_are_told_apart,
        a_search_holds_its_page_not_every_match,
        offsets_end_at_the_documented_limit,
        words_the_index_cannot_hold_are_refused_by_name,
        a_table_of_words_finds_the_same_messages_on_every_backend,
    ],
    persistent: [
        messages_stored_before_the_index_existed_are_found,
        messages_indexed_by_the_previous_version_are_read_again,
        the_index_survives_a_vacuum,
    ],
}

/// The contents found for `query`, in order.
fn found(store: &ChatStore, user: &UserId, query: &str) -> Vec<String> {
    contents(
        store
            .search_messages(user, &SearchQuery::new(query))
            .unwrap(),
    )
}

fn contents(results: SearchResults) -> Vec<String> {
    results
        .hits
        .into_iter()
        .map(|h| h.message.content)
        .collect()
}

fn with_messages(store: &ChatStore, owner: &UserId, texts: &[&str]) -> ConversationId {
    let conv = store.create_conversation(owner, Some("chat")).unwrap().id;
    let batch: Vec<NewMessage> = texts.iter().map(|t| NewMessage::user(*t)).collect();
    store.append_messages(owner, conv, &batch).unwrap();
    conv
}

fn words_match_whatever_their_case_and_accents(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    with_messages(
        &store,
        &alice,
        &["Café DÉJÀ vu", "Ça va, Müller?", "nothing here"],
    );
    for query in [
        "cafe", "CAFÉ", "déjà", "deja VU", "ca va", "muller", "MÜLLER",
    ] {
        assert_eq!(found(&store, &alice, query).len(), 1, "{query}");
    }
    // A word the index cannot hold is refused, on every backend (PostgreSQL's parser keeps no
    // lexeme for "²": a query of only that once meant every message, and "½ ²" nothing).
    for query in ["²", "½ ²"] {
        assert!(matches!(
            store.search_messages(&alice, &SearchQuery::new(query)),
            Err(Error::InvalidQuery(_))
        ));
    }
    // Whole words, unless asked for a prefix.
    assert!(found(&store, &alice, "caf").is_empty());
    assert_eq!(found(&store, &alice, "caf*"), ["Café DÉJÀ vu"]);
    // Every word must occur.
    assert!(found(&store, &alice, "cafe muller").is_empty());
}

fn text_without_spaces_is_searchable(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    with_messages(
        &store,
        &alice,
        &[
            "今日は東京タワーへ行く",
            "北京烤鸭很好吃",
            "안녕하세요 세계",
            "สวัสดีครับ",
        ],
    );
    assert_eq!(found(&store, &alice, "東京"), ["今日は東京タワーへ行く"]);
    assert_eq!(found(&store, &alice, "タワー"), ["今日は東京タワーへ行く"]);
    assert_eq!(
        found(&store, &alice, "東京タワー"),
        ["今日は東京タワーへ行く"]
    );
    assert!(
        found(&store, &alice, "京東").is_empty(),
        "characters in order"
    );
    assert_eq!(found(&store, &alice, "烤鸭"), ["北京烤鸭很好吃"]);
    assert_eq!(found(&store, &alice, "안녕하세요"), ["안녕하세요 세계"]);
    assert_eq!(found(&store, &alice, "สวัสดี"), ["สวัสดีครับ"]);
}

fn phrases_keep_their_order_and_prefixes_complete_words(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    with_messages(
        &store,
        &alice,
        &["buy oat milk", "milk, then oat", "groceries: e-mail them"],
    );
    assert_eq!(found(&store, &alice, r#""oat milk""#), ["buy oat milk"]);
    assert_eq!(found(&store, &alice, r#""milk oat""#), Vec::<String>::new());
    let mut both = found(&store, &alice, "milk oat");
    both.sort();
    assert_eq!(both, ["buy oat milk", "milk, then oat"]);
    assert_eq!(found(&store, &alice, "gro*"), ["groceries: e-mail them"]);
    assert_eq!(found(&store, &alice, "e-mail"), ["groceries: e-mail them"]);
}

fn only_the_users_own_messages_are_found(db: &TestDb) {
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    with_messages(&store, &alice, &["alice's secret plan"]);
    let bobs = with_messages(&store, &bob, &["bob's secret plan"]);
    assert_eq!(found(&store, &alice, "secret"), ["alice's secret plan"]);
    assert_eq!(found(&store, &bob, "secret plan"), ["bob's secret plan"]);
    // Bob's conversation is not a place alice can search.
    let query = SearchQuery::new("secret").in_conversation(bobs);
    assert!(matches!(
        store.search_messages(&alice, &query),
        Err(Error::NotFound)
    ));
    // Queries written as the index's own syntax are words like any others.
    for query in [
        r#"owner:"626F62" OR secret"#,
        "secret OR bob",
        "NEAR(secret bob)",
        "secret' OR '1'='1",
        "bob*",
        "626F62",
    ] {
        for hit in store
            .search_messages(&alice, &SearchQuery::new(query))
            .unwrap()
            .hits
        {
            assert_eq!(hit.message.content, "alice's secret plan", "{query}");
        }
    }
}

fn results_come_newest_or_best_first_in_pages(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    for i in 0..23 {
        let text = format!("note {i} about tea");
        store
            .append_message(&alice, conv, NewMessage::user(&text))
            .unwrap();
    }
    store
        .append_message(&alice, conv, NewMessage::user("tea tea tea, only tea"))
        .unwrap();
    let mut seen = Vec::new();
    let mut query = SearchQuery::new("tea").limit(5);
    loop {
        let page = store.search_messages(&alice, &query).unwrap();
        assert!(page.hits.len() <= 5);
        seen.extend(page.hits.into_iter().map(|h| h.message.seq));
        match page.next_offset {
            Some(offset) => query = query.offset(offset),
            None => break,
        }
    }
    assert_eq!(
        seen,
        (1..=24).rev().collect::<Vec<i64>>(),
        "newest first, each once"
    );
    // Best match first: the message that is all about tea, although not the newest.
    store
        .append_message(&alice, conv, NewMessage::user("a cup of tea"))
        .unwrap();
    let best = SearchQuery::new("tea")
        .order(SearchOrder::BestMatch)
        .limit(1);
    assert_eq!(
        contents(store.search_messages(&alice, &best).unwrap()),
        ["tea tea tea, only tea"]
    );
}

fn a_search_can_stay_in_one_conversation(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let first = with_messages(&store, &alice, &["plan the trip", "trip budget"]);
    with_messages(&store, &alice, &["another trip"]);
    assert_eq!(found(&store, &alice, "trip").len(), 3);
    let here = SearchQuery::new("trip").in_conversation(first);
    let hits = store.search_messages(&alice, &here).unwrap().hits;
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.message.conversation_id == first));
    assert_eq!(hits[0].conversation_title.as_deref(), Some("chat"));
}

fn deleted_messages_are_no_longer_found(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let gone = with_messages(&store, &alice, &["forget me"]);
    with_messages(&store, &alice, &["keep me"]);
    store.delete_conversation(&alice, gone).unwrap();
    assert!(found(&store, &alice, "forget").is_empty());
    assert_eq!(found(&store, &alice, "me"), ["keep me"]);
    store.delete_user_data(&alice).unwrap();
    assert!(found(&store, &alice, "me").is_empty());
    // The index was kept in step, not left with rows that no longer join (on PostgreSQL the index
    // is a column of the rows themselves).
    if db.kind == Kind::SqliteFile {
        assert_eq!(db.count_rows("chatstore_messages_search"), Some(0));
    }
}

fn a_query_that_cannot_run_is_refused_clearly(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    with_messages(&store, &alice, &["hello"]);
    for (query, why) in [
        (r#""unclosed phrase"#, "a quote is not closed"),
        ("", "there is no word to search for"),
        ("?!* -- ()", "there is no word to search for"),
    ] {
        match store.search_messages(&alice, &SearchQuery::new(query)) {
            Err(Error::InvalidQuery(message)) => assert_eq!(message, why, "{query}"),
            other => panic!("{query:?}: {other:?}"),
        }
    }
    let long = "word ".repeat(300);
    assert!(matches!(
        store.search_messages(&alice, &SearchQuery::new(&long)),
        Err(Error::InvalidQuery(_))
    ));
}

fn snippets_mark_the_matches(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let long = format!(
        "{} Remember to water the plants on Friday {}",
        "filler ".repeat(40),
        "filler ".repeat(40)
    );
    with_messages(&store, &alice, &[&long, "Water, water everywhere"]);
    let hits = store
        .search_messages(
            &alice,
            &SearchQuery::new("water").order(SearchOrder::Newest),
        )
        .unwrap()
        .hits;
    let marked: Vec<String> = hits.iter().map(|h| h.snippet.marked("<", ">")).collect();
    assert_eq!(marked[0], "<Water>, <water> everywhere");
    assert!(
        marked[1].starts_with('…')
            && marked[1].contains("Remember to <water> the plants on Friday")
            && marked[1].ends_with('…'),
        "{}",
        marked[1]
    );
}

fn any_query_is_answered_or_refused_never_with_someone_elses_rows(db: &TestDb) {
    let store = db.open();
    let (alice, mallory) = (user("alice"), user("mallory"));
    with_messages(&store, &alice, &["the quick brown fox", "東京 café"]);
    with_messages(&store, &mallory, &["mallory quick fox"]);
    let cases = if crate::hardening::slow() { 4000 } else { 256 };
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let query = prop_oneof![
        prop::string::string_regex("(?s).{0,40}").unwrap(),
        prop::string::string_regex(r#"[a-z"*:()^+\-' ]{0,30}"#).unwrap(),
    ];
    TestRunner::new(config)
        .run(&query, |query| {
            match store.search_messages(&alice, &SearchQuery::new(&query)) {
                Ok(results) => {
                    for hit in results.hits {
                        assert_ne!(hit.message.content, "mallory quick fox", "{query:?}");
                    }
                }
                Err(Error::InvalidQuery(_)) => {}
                Err(e) => panic!("{query:?}: {e:?}"),
            }
            Ok(())
        })
        .unwrap();
}

/// A database with messages from before the search migration: the migration indexes them.
fn messages_stored_before_the_index_existed_are_found(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    with_messages(
        &store,
        &alice,
        &["written long ago", "écrit il y a longtemps"],
    );
    drop(store);
    // Usage, tags, pins, the branches, the index's catch-up after appends, the migration that
    // changed how words are read, then the one that made the index.
    db.revert_newest_migrations(10);
    let store = db.open();
    assert_eq!(found(&store, &alice, "ago"), ["written long ago"]);
    assert_eq!(found(&store, &alice, "ecrit"), ["écrit il y a longtemps"]);
}

/// A database whose index holds the words as the previous version read them (SQLite's and
/// PostgreSQL's own tokenizers read the content beyond ASCII; MySQL's word table held words with
/// their marks): the migration that changed the rule reads every message again.
fn messages_indexed_by_the_previous_version_are_read_again(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let texts = ["мой дом", "Καφές", "สวัสดี", "x² plus", "8e1ba"];
    with_messages(&store, &alice, &texts);
    drop(store);
    // Usage, tags, pins, the branches, the index's catch-up after appends, then the migration that
    // changed the rule.
    db.revert_newest_migrations(9);
    match db.kind {
        Kind::Mysql => db.execute("DELETE FROM chatstore_message_words").unwrap(),
        _ => db
            .execute("UPDATE chatstore_messages SET search_text = NULL")
            .unwrap(),
    }
    let store = db.open();
    for (query, text) in [
        ("мои", "мой дом"),
        ("καφες", "Καφές"),
        ("สวัสดี", "สวัสดี"),
        ("x", "x² plus"),
        ("8e1", "8e1ba"),
    ] {
        assert_eq!(found(&store, &alice, query), [text], "{query}");
    }
}

fn addresses_paths_and_numbers_are_found_by_their_words(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let text = "see https://example.com/docs, mail bob@example.org, open src/main.rs, \
                pi is 3.14 in v1.2.3 <div>hello</div> snake_case";
    with_messages(&store, &alice, &[text]);
    for query in [
        "example",
        "docs",
        "bob",
        "org",
        "main",
        "rs",
        "3",
        "14",
        r#""3 14""#,
        "div",
        "hello",
        "snake",
        "case",
        "https",
    ] {
        assert_eq!(found(&store, &alice, query), [text], "{query}");
    }
}

fn accents_outside_latin_are_kept_alike_in_index_and_query(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    with_messages(&store, &alice, &["мой дом", "ёлка", "Καφές για μένα"]);
    assert_eq!(found(&store, &alice, "мой"), ["мой дом"]);
    assert_eq!(found(&store, &alice, "МОЙ"), ["мой дом"]);
    assert_eq!(found(&store, &alice, "ёлка"), ["ёлка"]);
    assert_eq!(found(&store, &alice, "καφές"), ["Καφές για μένα"]);
}

/// A message of the default maximum size, made of distinct words (the worst case for PostgreSQL's
/// tsvector, which cannot pass 1 MB): it is stored, and its first 100,000 characters are searchable.
fn a_large_message_of_distinct_words_is_stored_and_its_start_indexed(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let words: Vec<String> = (0..150_000).map(|i| format!("w{i}")).collect();
    let mut text = words.join(" ");
    text.truncate(chatstore::StoreBuilder::DEFAULT_MAX_CONTENT_BYTES);
    let conv = store.create_conversation(&alice, None).unwrap().id;
    store
        .append_message(&alice, conv, NewMessage::user(&text))
        .unwrap();
    assert_eq!(found(&store, &alice, "w7").len(), 1);
    assert_eq!(found(&store, &alice, "w14000").len(), 1);
    // Past the first 100,000 characters: stored, but not indexed.
    assert!(found(&store, &alice, "w140000").is_empty());
    assert_eq!(
        store
            .messages(&alice, conv, chatstore::Window::All)
            .unwrap()
            .messages[0]
            .content,
        text
    );
}

/// VACUUM may renumber SQLite's implicit rowids; the index is keyed by an explicit one. (MySQL
/// rebuilds its tables with OPTIMIZE TABLE.)
fn the_index_survives_a_vacuum(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let gone = with_messages(&store, &alice, &["apple one", "apple two"]);
    with_messages(&store, &alice, &["banana three", "apple four"]);
    store.delete_conversation(&alice, gone).unwrap();
    drop(store);
    match db.kind {
        Kind::Mysql => db
            .execute("OPTIMIZE TABLE chatstore_messages, chatstore_message_words")
            .unwrap(),
        _ => db.execute("VACUUM").unwrap(),
    }
    let store = db.open();
    assert_eq!(found(&store, &alice, "apple"), ["apple four"]);
    assert_eq!(found(&store, &alice, "banana"), ["banana three"]);
}

/// Most messages hold the phrase's words in the wrong order: pages of the phrase still come whole,
/// each hit once, newest first (MySQL checks candidates in Rust, reading several pages of them).
fn phrase_pages_skip_messages_with_the_words_out_of_order(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let texts: Vec<String> = (0..120)
        .map(|i| match i % 10 {
            3 => format!("{i}: oat milk please"),
            _ => format!("{i}: milk, then oat"),
        })
        .collect();
    let batch: Vec<NewMessage> = texts.iter().map(NewMessage::user).collect();
    store.append_messages(&alice, conv, &batch).unwrap();
    let mut seen = Vec::new();
    let mut query = SearchQuery::new(r#""oat milk""#).limit(5);
    loop {
        let page = store.search_messages(&alice, &query).unwrap();
        seen.extend(page.hits.into_iter().map(|h| h.message.content));
        match page.next_offset {
            Some(offset) => query = query.offset(offset),
            None => break,
        }
    }
    let expected: Vec<String> = texts
        .iter()
        .rev()
        .filter(|t| t.contains("oat milk"))
        .cloned()
        .collect();
    assert_eq!(seen, expected);
}

/// Words past 64 characters (MySQL's word index keeps their first 64) are still found whole.
fn words_longer_than_64_characters_are_told_apart(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let stem = "a".repeat(70);
    let (x, y) = (format!("{stem}x"), format!("{stem}y"));
    with_messages(&store, &alice, &[&x, &y]);
    assert_eq!(found(&store, &alice, &x), [x.as_str()]);
    assert_eq!(found(&store, &alice, &y), [y.as_str()]);
    assert!(found(&store, &alice, &stem).is_empty(), "whole words only");
    assert_eq!(found(&store, &alice, &format!("{stem}*")).len(), 2);
}

/// A search needs memory for the page it returns and little more, however many messages match
/// and however far the page is: 200 matching messages of ~1 MiB each, a page deep in them, and a
/// phrase whose words every message holds in the wrong order (MySQL checks each candidate's
/// content). `allocation_counter` counts what goes through Rust's allocator on this thread only.
fn a_search_holds_its_page_not_every_match(db: &TestDb) {
    const MESSAGES: usize = 200;
    const SIZE: usize = 1_000_000;
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    for chunk in 0..MESSAGES / 10 {
        let texts: Vec<String> = (0..10)
            .map(|i| {
                let head = format!("milk then oat, needle {} ", chunk * 10 + i);
                let mut text = head + &"filler words here ".repeat(SIZE / 18);
                text.truncate(SIZE);
                text
            })
            .collect();
        let batch: Vec<NewMessage> = texts.iter().map(NewMessage::user).collect();
        store.append_messages(&alice, conv, &batch).unwrap();
    }
    let limit = 10;
    let cases = [
        ("needle", (MESSAGES - limit - 5) as u32, limit),
        (r#""oat milk""#, 0, 0),
    ];
    for (text, offset, expected) in cases {
        let query = SearchQuery::new(text).limit(limit as u32).offset(offset);
        // Warm the connection, as a first call would.
        store.search_messages(&alice, &query).unwrap();
        let started = std::time::Instant::now();
        let mut results = None;
        let usage = allocation_counter::measure(|| {
            results = Some(store.search_messages(&alice, &query).unwrap());
        });
        let elapsed = started.elapsed();
        let results = results.unwrap();
        assert_eq!(results.hits.len(), expected, "{text}");
        eprintln!(
            "{:?} {text} offset {offset}: peak {} bytes allocated, {} retained, {elapsed:?}",
            db.kind, usage.bytes_max, usage.bytes_current
        );
        // The page (and the row that tells whether another follows), plus a batch of candidates'
        // indexed starts.
        let bound = ((limit + 1 + 16) * SIZE) as u64;
        assert!(
            usage.bytes_max < bound,
            "{text} at offset {offset}: peak {} bytes, more than {bound}",
            usage.bytes_max
        );
    }
}

/// A search pages up to `MAX_SEARCH_OFFSET` and no further, on every backend alike: past it the
/// query is refused, and the page that reaches it does not point past it.
fn offsets_end_at_the_documented_limit(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let max = chatstore::MAX_SEARCH_OFFSET as usize;
    let texts: Vec<String> = (0..max + 15).map(|i| format!("tea {i}")).collect();
    for chunk in texts.chunks(500) {
        let batch: Vec<NewMessage> = chunk.iter().map(NewMessage::user).collect();
        store.append_messages(&alice, conv, &batch).unwrap();
    }
    let page = |offset: u32| {
        store.search_messages(&alice, &SearchQuery::new("tea").limit(10).offset(offset))
    };
    let before = page(chatstore::MAX_SEARCH_OFFSET - 10).unwrap();
    assert_eq!(before.next_offset, Some(chatstore::MAX_SEARCH_OFFSET));
    let last = page(chatstore::MAX_SEARCH_OFFSET).unwrap();
    assert_eq!(last.hits.len(), 10);
    assert_eq!(
        last.next_offset, None,
        "more match, but no page starts past the limit"
    );
    match page(chatstore::MAX_SEARCH_OFFSET + 1) {
        Err(Error::InvalidQuery(message)) => {
            assert!(message.contains("offset"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

/// Asserts that `query` is refused with a message naming `word`.
fn refused(store: &ChatStore, user: &UserId, query: &str, word: &str) {
    match store.search_messages(user, &SearchQuery::new(query)) {
        Err(Error::InvalidQuery(message)) => assert!(
            message.contains(&format!("the word {word:?}")),
            "{query:?}: {message}"
        ),
        other => panic!("{query:?}: {other:?}"),
    }
}

/// The cases of issue 13: a query word holding a character that some backend's index would not
/// hold as written is refused by name, never searched for without it; the messages that hold such
/// characters are stored as they are and found by their other words.
fn words_the_index_cannot_hold_are_refused_by_name(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = with_messages(&store, &alice, &["x² plus", "Ⓐ other", "just other"]);
    refused(&store, &alice, "Ⓐ other", "Ⓐ");
    refused(&store, &alice, "Ⓐ", "Ⓐ");
    refused(&store, &alice, "² plus", "²");
    refused(&store, &alice, "x² plus", "x²");
    refused(&store, &alice, r#""x² plus""#, "x²");
    refused(&store, &alice, "party 🎉", "🎉");
    // Letters of a script newer than some backend's tables (Garay, Unicode 16).
    refused(&store, &alice, "\u{10D50}\u{10D51}", "\u{10D50}\u{10D51}");
    // Stored and read back as written, found by the words around what no index keeps.
    let stored = store
        .messages(&alice, conv, chatstore::Window::All)
        .unwrap();
    assert_eq!(
        crate::support::contents(&stored.messages),
        ["x² plus", "Ⓐ other", "just other"]
    );
    assert_eq!(found(&store, &alice, "plus"), ["x² plus"]);
    assert_eq!(found(&store, &alice, "x"), ["x² plus"]);
    assert_eq!(found(&store, &alice, r#""x plus""#), ["x² plus"]);
    assert_eq!(found(&store, &alice, "other"), ["just other", "Ⓐ other"]);
}

/// Messages of every kind of word, and what each query finds: the same on every backend, since
/// every backend runs this table.
fn a_table_of_words_finds_the_same_messages_on_every_backend(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let messages = [
        "x² plus",
        "東京タワー・ok",
        "Crème brûlée, Καφές, мой",
        "don’t e-mail C++ snake_case",
        "ＡＢＣ ｶﾀｶﾅ",
        "مُحَمَّد שָׁלוֹם สวัสดี",
        "می\u{200c}خواهم hy\u{ad}phen",
        "8e1ba 1e5 x2",
        "ΟΔΟΣ straße İstanbul",
        "🎉party",
        "क़िला",
        "が",
        "か",
        "cafe\u{301} au lait",
    ];
    // Appended one at a time, newest last: `found` lists newest first.
    let conv = store.create_conversation(&alice, None).unwrap().id;
    for text in messages {
        store
            .append_message(&alice, conv, NewMessage::user(text))
            .unwrap();
    }
    let table: &[(&str, &[usize])] = &[
        ("plus", &[0]),
        ("x", &[0]),
        ("東京", &[1]),
        ("タワー", &[1]),
        (r#""ー ok""#, &[1]),
        ("creme brulee", &[2]),
        ("CRÈME", &[2]),
        ("cre*", &[2]),
        ("καφες", &[2]),
        ("ΚΑΦΈΣ", &[2]),
        ("мои", &[2]),
        ("мой", &[2]),
        ("don't", &[3]),
        ("don’t", &[3]),
        ("don", &[3]),
        ("e-mail", &[3]),
        ("email", &[]),
        ("C++", &[3]),
        ("c", &[3]),
        ("snake_case", &[3]),
        (r#""snake case""#, &[3]),
        ("ａｂｃ", &[4]),
        ("abc", &[]),
        ("ｶﾀｶﾅ", &[4]),
        ("محمد", &[5]),
        ("מוחמד", &[]),
        ("שלום", &[5]),
        ("สวัสดี", &[5]),
        ("สวสด", &[5]),
        ("میخواهم", &[6]),
        ("می\u{200c}خواهم", &[6]),
        ("hyphen", &[6]),
        ("8e1", &[7]),
        ("ba", &[7]),
        ("8e1ba", &[7]),
        ("8E1BA", &[7]),
        ("1e5", &[7]),
        ("x2", &[7]),
        ("x*", &[0, 7]),
        ("οδος", &[8]),
        ("straße", &[8]),
        ("strasse", &[]),
        ("istanbul", &[8]),
        ("party", &[9]),
        ("किला", &[10]),
        ("क़िला", &[10]),
        ("が", &[11]),
        ("か", &[12]),
        ("café", &[13]),
        ("cafe", &[13]),
    ];
    for (query, expected) in table {
        let mut expected: Vec<String> = expected.iter().map(|&i| messages[i].to_owned()).collect();
        expected.reverse();
        assert_eq!(found(&store, &alice, query), expected, "{query:?}");
    }
}

/// The same messages on every enabled backend, and queries drawn from a pool of words of every
/// kind, and from the first and the last character of every range of the index's alphabet: each
/// query finds the same messages on every backend, or is refused on every backend.
#[test]
fn every_backend_finds_the_same_messages() {
    let kinds = [
        #[cfg(feature = "sqlite")]
        Kind::SqliteFile,
        #[cfg(feature = "postgres")]
        Kind::Postgres,
        #[cfg(feature = "citus")]
        Kind::Citus,
        #[cfg(feature = "mysql")]
        Kind::Mysql,
    ];
    let pool = [
        "x²",
        "plus",
        "x",
        "Ⓐ",
        "other",
        "東京",
        "タワー",
        "・",
        "Crème",
        "creme",
        "Καφές",
        "καφες",
        "мой",
        "ёлка",
        "don't",
        "don’t",
        "e-mail",
        "C++",
        "snake_case",
        "ＡＢＣ",
        "abc",
        "ｶﾀｶﾅ",
        "مُحَمَّد",
        "محمد",
        "שָׁלוֹם",
        "สวัสดี",
        "नमस्ते",
        "क़िला",
        "می\u{200c}خواهم",
        "hy\u{ad}phen",
        "8e1ba",
        "1e5",
        "x2",
        "ΟΔΟΣ",
        "οδος",
        "µ",
        "ſ",
        "straße",
        "İstanbul",
        "🎉",
        "👍🏽",
        "½",
        "€5",
        "が",
        "か",
        "cafe\u{301}",
        "Ⅻ",
        "٣",
        "3",
        "\u{10D50}",
        "𠀀",
        "ǅemal",
        "Ꭰ",
        "ꭰ",
    ];
    // Each word alone, and pairs of neighbours in either order, with a space or punctuation.
    let mut messages: Vec<String> = pool.iter().map(|w| (*w).to_owned()).collect();
    for pair in pool.windows(2) {
        messages.push(format!("{} {}", pair[0], pair[1]));
        messages.push(format!("{}-{}", pair[1], pair[0]));
    }
    let endpoints: Vec<char> = alphabet::RANGES
        .iter()
        .flat_map(|&(first, last)| [first, last])
        .filter_map(char::from_u32)
        .collect();
    for chunk in endpoints.chunks(50) {
        let words: Vec<String> = chunk.iter().map(|c| c.to_string()).collect();
        messages.push(words.join(" "));
    }
    // Random texts over characters of every class, as messages and as queries.
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    let random = prop::string::string_regex(
        "[ae018xXÉé東京がか\u{301}\u{3099}Σςסּ²Ⓐ🎉\u{200c}\u{ad}・ ,'*-]{1,16}",
    )
    .unwrap();
    let mut draw_text = || random.new_tree(&mut runner).expect("a draw").current();
    let texts: Vec<String> = (0..80).map(|_| draw_text()).collect();
    let random_queries: Vec<String> = (0..200).map(|_| draw_text()).collect();
    messages.extend(texts);
    // Queries: every character of the alphabet's ends, random texts, and draws from the pool.
    let mut queries: Vec<String> = endpoints.iter().map(|c| c.to_string()).collect();
    queries.extend(random_queries);
    let draw = (
        prop::collection::vec(prop::sample::select(pool.to_vec()), 1..=3),
        any::<bool>(),
        any::<bool>(),
    );
    for _ in 0..if crate::hardening::slow() { 2000 } else { 300 } {
        let (words, quoted, prefix) = draw.new_tree(&mut runner).expect("a draw").current();
        let mut query = words.join(" ");
        if prefix {
            query.push('*');
        }
        if quoted {
            query = format!("\"{query}\"");
        }
        queries.push(query);
    }

    let alice = user("alice");
    // Per backend, each query's hits or the reason it was refused.
    type Answers = Vec<Result<Vec<String>, String>>;
    let results: Vec<(Kind, Answers)> = kinds
        .iter()
        .map(|&kind| {
            let db = TestDb::new(kind);
            let store = db.open();
            let conv = store.create_conversation(&alice, None).unwrap().id;
            let batch: Vec<NewMessage> = messages.iter().map(NewMessage::user).collect();
            store.append_messages(&alice, conv, &batch).unwrap();
            let answers = queries
                .iter()
                .map(|query| {
                    let query = SearchQuery::new(query).limit(100);
                    match store.search_messages(&alice, &query) {
                        Ok(results) => Ok(contents(results)),
                        Err(Error::InvalidQuery(why)) => Err(why),
                        Err(e) => panic!("{kind:?} {query:?}: {e}"),
                    }
                })
                .collect();
            (kind, answers)
        })
        .collect();
    let Some(((first_kind, first), others)) = results.split_first() else {
        return;
    };
    for (i, query) in queries.iter().enumerate() {
        if i < endpoints.len() {
            assert!(
                matches!(&first[i], Ok(hits) if !hits.is_empty()),
                "{query:?} ({:X}) on {first_kind:?}: {:?}",
                endpoints[i] as u32,
                first[i]
            );
        }
        for (kind, answers) in others {
            assert_eq!(
                answers[i], first[i],
                "{query:?}: {kind:?} and {first_kind:?} differ"
            );
        }
    }
}

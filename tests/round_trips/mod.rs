//! Round trips per call on the servers, counted on the wire by a proxy in front of the test database
//! (`support::RoundTrips`): on PostgreSQL an append is one statement, whatever it carries, and reads
//! on only when it wrote nothing; on MySQL it is a transaction of several.
//!
//! A connection prepares each statement the first time it runs it, a round trip of its own: every
//! call is measured the second time it runs, on a store of one connection.

#![cfg(any(feature = "postgres", feature = "mysql"))]

use chatstore::{ChatStore, ConversationId, Error, Message, MessageId, NewMessage, UserId};

use crate::support::{user, Kind, RoundTrips, TestDb};

fn new_id() -> MessageId {
    MessageId::from(uuid::Uuid::now_v7())
}

/// `n` user messages, each with a new client id if `ids`.
fn batch(n: usize, ids: bool) -> Vec<NewMessage<'static>> {
    (0..n)
        .map(|i| {
            let message = NewMessage::user(format!("message {i}"));
            match ids {
                true => message.with_id(new_id()),
                false => message,
            }
        })
        .collect()
}

/// What an append returns.
type Outcome = Result<Vec<Message>, Error>;

/// An append to measure: the store, its user and conversation, and the conversation's last seq.
type Append<'a> = dyn Fn(&ChatStore, &UserId, ConversationId, i64) -> Outcome + 'a;

/// A store on `kind`'s test database whose one connection goes through a counting proxy.
struct Wired {
    _db: TestDb,
    wire: RoundTrips,
    store: ChatStore,
    alice: UserId,
    conv: ConversationId,
}

impl Wired {
    fn new(kind: Kind) -> Wired {
        let db = TestDb::new(kind);
        let wire = RoundTrips::new(&db);
        let store = ChatStore::builder(wire.url()).pool_size(1).open().unwrap();
        let alice = user("alice");
        let conv = store.create_conversation(&alice, None).unwrap().id;
        Wired {
            _db: db,
            wire,
            store,
            alice,
            conv,
        }
    }

    /// A store whose conversation holds a batch of three messages.
    #[cfg(feature = "mysql")]
    fn with_a_batch(kind: Kind) -> Wired {
        let wired = Wired::new(kind);
        let (_, append) = APPENDS.iter().find(|(n, _)| *n == "a batch").unwrap();
        append(&wired.store, &wired.alice, wired.conv, 0).unwrap();
        wired
    }

    /// What a read returns the second time it runs (the first prepares its statements), with the
    /// round trips of that run. It must succeed the first time.
    #[cfg(feature = "mysql")]
    fn second<T, E: std::fmt::Debug>(
        &self,
        read: impl Fn() -> Result<T, E>,
    ) -> (Result<T, E>, u64) {
        read().unwrap();
        self.wire.of(read)
    }

    /// The round trips of `append`'s second run (the first prepares its statements), and what
    /// it returned.
    fn measure(&self, append: &Append<'_>) -> (Outcome, u64) {
        let mut measured = None;
        for _ in 0..2 {
            let last = self.last_seq();
            measured = Some(
                self.wire
                    .of(|| append(&self.store, &self.alice, self.conv, last)),
            );
        }
        measured.unwrap()
    }

    fn last_seq(&self) -> i64 {
        let conversation = self.store.conversation(&self.alice, self.conv);
        conversation.unwrap().message_count
    }
}

/// The appends that write, each by its name.
const APPENDS: [(&str, &Append<'static>); 8] = [
    ("one message", &|s, u, c, _| {
        s.append_message(u, c, NewMessage::user("hi"))
            .map(|m| vec![m])
    }),
    ("one message with a client id", &|s, u, c, _| {
        let message = NewMessage::user("hi").with_id(new_id());
        s.append_message(u, c, message).map(|m| vec![m])
    }),
    ("a batch", &|s, u, c, _| {
        s.append_messages(u, c, &batch(3, false))
    }),
    ("a batch with client ids", &|s, u, c, _| {
        s.append_messages(u, c, &batch(3, true))
    }),
    ("a batch stating the last seq", &|s, u, c, last| {
        s.append_if_last_seq(u, c, last, &batch(3, false))
    }),
    (
        "a batch with client ids stating the last seq",
        &|s, u, c, last| s.append_if_last_seq(u, c, last, &batch(3, true)),
    ),
    ("1,000 messages", &|s, u, c, _| {
        s.append_messages(u, c, &batch(1000, false))
    }),
    ("1,000 messages with client ids", &|s, u, c, _| {
        s.append_messages(u, c, &batch(1000, true))
    }),
];

/// Every append that writes — one message or 1,000, with client ids or without, stating the last
/// seq or not — is one round trip: no BEGIN, no COMMIT, no look-up of the client ids first.
#[cfg(feature = "postgres")]
#[test]
fn postgres_an_append_is_one_round_trip() {
    let wired = Wired::new(Kind::Postgres);
    for (name, append) in APPENDS {
        let before = wired.last_seq();
        let (appended, round_trips) = wired.measure(append);
        let appended = appended.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(round_trips, 1, "{name}");
        assert_eq!(
            appended[0].seq,
            before + appended.len() as i64 + 1,
            "{name}"
        );
    }
}

/// The follow-up reads come only when the statement wrote nothing: a retry looks its ids up and
/// checks whose conversation it is (the statement, then two reads); a conflict or a conversation
/// that is not the user's reads the conversation (then the ids too, when there are some). A batch
/// too large for one INSERT is a transaction: BEGIN, the reservation, two INSERTs, COMMIT.
#[cfg(feature = "postgres")]
#[test]
fn postgres_an_append_reads_on_only_when_it_wrote_nothing() {
    let wired = Wired::new(Kind::Postgres);
    let stored = wired
        .store
        .append_messages(&wired.alice, wired.conv, &batch(3, true))
        .unwrap();
    let retry: Vec<NewMessage> = stored
        .iter()
        .map(|m| NewMessage::user(m.content.clone()).with_id(m.id))
        .collect();
    // Whether an append answered as it should.
    type Answer<'a> = dyn Fn(&Outcome) -> bool + 'a;
    let conflict = |outcome: &Outcome| matches!(outcome, Err(Error::Conflict { .. }));
    let cases: [(&str, &Append<'_>, u64, &Answer<'_>); 5] = [
        (
            "a retry of a stored batch",
            &|s, u, c, _| s.append_messages(u, c, &retry),
            3,
            &|outcome| outcome.as_ref().ok() == Some(&stored),
        ),
        (
            "a conflict",
            &|s, u, c, last| s.append_if_last_seq(u, c, last - 1, &batch(2, false)),
            2,
            &conflict,
        ),
        (
            "a conflict with client ids",
            &|s, u, c, last| s.append_if_last_seq(u, c, last - 1, &batch(2, true)),
            3,
            &conflict,
        ),
        (
            "another user's conversation",
            &|s, _, c, _| s.append_messages(&user("mallory"), c, &batch(2, false)),
            2,
            &|outcome| matches!(outcome, Err(Error::NotFound)),
        ),
        (
            "more than 1,000 messages",
            &|s, u, c, _| s.append_messages(u, c, &batch(1001, false)),
            5,
            &|outcome| outcome.as_ref().is_ok_and(|stored| stored.len() == 1001),
        ),
    ];
    for (name, append, expected, answer) in cases {
        let (outcome, round_trips) = wired.measure(append);
        assert!(answer(&outcome), "{name}: {outcome:?}");
        assert_eq!(round_trips, expected, "{name}");
    }
}

/// MySQL has no `UPDATE … RETURNING` (and MariaDB's `INSERT … RETURNING` is not MySQL's), so an
/// append is a transaction: BEGIN, the reservation's UPDATE, the read of the count and time it set,
/// the INSERT, the INSERT of the message's row waiting for the search index (prepared once per
/// connection, like the others: it was prepared on every append, one round trip more), COMMIT.
/// Diesel runs BEGIN and COMMIT with `batch_execute`, which on MySQL switches multi-statement
/// mode on and off around each (two `COM_SET_OPTION` round trips apiece): 10 in all for one
/// message or a batch of three, one more for a client id's look-up. Pinned here so that a change
/// shows.
#[cfg(feature = "mysql")]
#[test]
fn mysql_an_append_is_a_transaction_of_ten_round_trips() {
    let wired = Wired::new(Kind::Mysql);
    for (name, expected) in [
        ("one message", 10),
        ("one message with a client id", 11),
        // The batch and its rows waiting for the index are one INSERT each, as for one message.
        ("a batch", 10),
    ] {
        let (_, append) = APPENDS.iter().find(|(n, _)| *n == name).unwrap();
        let (appended, round_trips) = wired.measure(append);
        appended.unwrap();
        assert_eq!(round_trips, expected, "{name}");
    }
}

/// A history read is one statement, kept prepared: once the connection has prepared it, one round
/// trip. (On MySQL Diesel prepared and closed the store's raw statements on every call.)
#[cfg(feature = "mysql")]
#[test]
fn mysql_a_history_read_is_one_round_trip() {
    use chatstore::Window;
    let wired = Wired::with_a_batch(Kind::Mysql);
    let (window, round_trips) = wired.second(|| {
        wired
            .store
            .messages(&wired.alice, wired.conv, Window::Latest(2))
    });
    assert_eq!(window.unwrap().messages.len(), 2);
    assert_eq!(round_trips, 1);
}

/// A search of a word, with nothing waiting for the index, once the connection has prepared its
/// statements: 11 round trips. The look-up of messages waiting for the index (1); the snapshot's
/// transaction, begun in one batch (3) and committed (3); in it, whether the user has archived
/// conversations (1), the candidates' ids (1), the page's rows (1) and their conversations (1).
/// Each statement is kept prepared: before, the look-up, the ids, the rows and the conversations
/// were prepared and closed on every call, and the snapshot was begun in two batches (18 in all).
#[cfg(feature = "mysql")]
#[test]
fn mysql_a_search_keeps_its_statements_prepared() {
    use chatstore::SearchQuery;
    let wired = Wired::with_a_batch(Kind::Mysql);
    let (found, round_trips) = wired.second(|| {
        wired
            .store
            .search_messages(&wired.alice, &SearchQuery::new("message"))
    });
    assert_eq!(found.unwrap().hits.len(), 3);
    assert_eq!(round_trips, 11);
}

//! `AsyncChatStore` (feature `tokio`) on every enabled backend: each call returns what the blocking
//! store returns, concurrent tasks append without gaps on either kind of runtime, a dropped write
//! is whole or absent, and a panic or a missing runtime is a typed error.

mod support;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use chatstore::{
    AsyncChatStore, ChatStore, ContextOptions, Error, ExportItem, Message, MessageId,
    NewConversation, NewMessage, Page, SearchOrder, SearchQuery, Tag, Window,
};
use serde_json::json;
use support::{backend_tests, seqs, user, Kind, TestDb};
use tokio::runtime::{Builder, Runtime};

// Each behaviour builds the runtime it is about.
backend_tests! {
    every: [
        every_call_returns_what_the_blocking_store_returns,
        concurrent_tasks_on_a_multi_thread_runtime_get_consecutive_seqs,
        concurrent_tasks_on_a_current_thread_runtime_get_consecutive_seqs,
        a_dropped_batch_append_is_whole_or_absent,
        a_dropped_append_still_commits,
        a_panicking_cost_fn_is_a_typed_error_and_the_store_carries_on,
        a_call_outside_a_runtime_is_a_typed_error,
        a_call_on_a_shut_down_runtime_is_a_typed_error,
    ],
    persistent: [],
}

fn current_thread() -> Runtime {
    Builder::new_current_thread().build().unwrap()
}

fn multi_thread() -> Runtime {
    Builder::new_multi_thread().build().unwrap()
}

/// Polls `future` once, as a runtime would, and gives back what that poll returned.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}

/// A tour of every call, each compared with the blocking store's answer on the same database (on a
/// current-thread runtime).
fn every_call_returns_what_the_blocking_store_returns(db: &TestDb) {
    current_thread().block_on(async {
        let store = AsyncChatStore::open(&db.url).await.unwrap();
        let sync = store.blocking().clone();
        let alice = user("alice");
        assert_eq!(store.backend(), sync.backend());

        let conv = store
            .create_conversation(&alice, Some("  Groceries "))
            .await
            .unwrap();
        assert_eq!(conv.title.as_deref(), Some("Groceries"));
        assert_eq!(sync.conversation(&alice, conv.id).unwrap(), conv);
        assert_eq!(store.conversation(&alice, conv.id).await.unwrap(), conv);
        assert!(matches!(
            store.create_conversation(&alice, Some("a\nb")).await,
            Err(Error::InvalidTitle(_))
        ));

        let first = store
            .append_message(
                &alice,
                conv.id,
                NewMessage::system("You manage a todo list."),
            )
            .await
            .unwrap();
        assert_eq!(first.seq, 1);
        let call = json!({"tool_calls": [{"id": "call_1", "name": "add_todo"}]});
        let result = json!({"tool_call_id": "call_1"});
        let ids: Vec<MessageId> = (0..3)
            .map(|_| MessageId::from(uuid::Uuid::now_v7()))
            .collect();
        let batch = [
            NewMessage::user("Add oat milk and a crème brûlée").with_id(ids[0]),
            NewMessage::assistant("")
                .with_metadata(&call)
                .with_id(ids[1]),
            NewMessage::tool("ok")
                .with_metadata(&result)
                .with_id(ids[2])
                .with_parts(vec![chatstore::Part::File(chatstore::Attachment::new(
                    chatstore::Reference::key("todo/export.csv"),
                    "text/csv",
                    96,
                ))]),
        ];
        let appended = store
            .append_messages(&alice, conv.id, &batch)
            .await
            .unwrap();
        assert_eq!(seqs(&appended), [2, 3, 4]);
        assert_eq!(appended.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
        assert_eq!(appended[1].metadata.as_ref(), Some(&call));
        assert_eq!(appended[2].parts, batch[2].parts());
        let all = sync.messages(&alice, conv.id, Window::All).unwrap();
        assert_eq!(all.messages[0], first);
        assert_eq!(all.messages[1..], appended[..]);
        // A retry of the batch returns it as stored.
        assert_eq!(
            store
                .append_messages(&alice, conv.id, &batch)
                .await
                .unwrap(),
            appended
        );

        let reply = [NewMessage::assistant("Added.")];
        assert!(matches!(
            store.append_if_last_seq(&alice, conv.id, 3, &reply).await,
            Err(Error::Conflict {
                expected: 3,
                actual: 4
            })
        ));
        let replied = store
            .append_if_last_seq(&alice, conv.id, 4, &reply)
            .await
            .unwrap();
        assert_eq!(seqs(&replied), [5]);

        for window in [
            Window::All,
            Window::Latest(2),
            Window::Before { seq: 4, limit: 2 },
            Window::After { seq: 1, limit: 3 },
        ] {
            assert_eq!(
                store.messages(&alice, conv.id, window).await.unwrap(),
                sync.messages(&alice, conv.id, window).unwrap(),
                "{window:?}"
            );
        }

        let other = store.create_conversation(&alice, None).await.unwrap();
        for page in [Page::first(1), Page::first(10)] {
            assert_eq!(
                store.list_conversations(&alice, page).await.unwrap(),
                sync.list_conversations(&alice, page).unwrap()
            );
        }
        let renamed = store
            .rename_conversation(&alice, other.id, Some("Plans"))
            .await
            .unwrap();
        assert_eq!(renamed.title.as_deref(), Some("Plans"));
        assert_eq!(sync.conversation(&alice, other.id).unwrap(), renamed);

        // Tags and metadata.
        let home = Tag::new("home").unwrap();
        let described = store
            .create_conversation_with(
                &alice,
                NewConversation::new()
                    .with_title(String::from("Kitchen"))
                    .with_tag(home.clone())
                    .with_metadata(json!({ "project": 42 })),
            )
            .await
            .unwrap();
        assert_eq!(sync.conversation(&alice, described.id).unwrap(), described);
        let tagged = store
            .tag_conversation(&alice, other.id, &home)
            .await
            .unwrap();
        assert_eq!(sync.conversation(&alice, other.id).unwrap(), tagged);
        for page in [Page::first(1), Page::first(10)] {
            assert_eq!(
                store
                    .list_conversations_tagged(&alice, &home, page)
                    .await
                    .unwrap(),
                sync.list_conversations_tagged(&alice, &home, page).unwrap()
            );
        }
        assert_eq!(
            store.tags(&alice).await.unwrap(),
            sync.tags(&alice).unwrap()
        );
        assert_eq!(store.tags(&alice).await.unwrap()[0].conversations, 2);
        let untagged = store
            .untag_conversation(&alice, other.id, &home)
            .await
            .unwrap();
        assert!(untagged.tags.is_empty());
        let retagged = store
            .set_conversation_tags(&alice, other.id, std::slice::from_ref(&home))
            .await
            .unwrap();
        assert_eq!(retagged.tags, std::slice::from_ref(&home));
        let metadata = json!({ "model": "m-1" });
        let set = store
            .set_conversation_metadata(&alice, other.id, Some(&metadata))
            .await
            .unwrap();
        assert_eq!(sync.conversation(&alice, other.id).unwrap(), set);
        assert!(matches!(
            store
                .set_conversation_metadata(&alice, other.id, Some(&json!([1])))
                .await,
            Err(Error::InvalidMetadata)
        ));
        store
            .delete_conversation(&alice, described.id)
            .await
            .unwrap();

        let query = SearchQuery::new("creme brul*")
            .in_conversation(conv.id)
            .order(SearchOrder::BestMatch)
            .limit(5);
        let found = store.search_messages(&alice, &query).await.unwrap();
        assert_eq!(found.hits.len(), 1);
        assert_eq!(found, sync.search_messages(&alice, &query).unwrap());
        assert!(matches!(
            store
                .search_messages(&alice, &SearchQuery::new("\"open"))
                .await,
            Err(Error::InvalidQuery(_))
        ));

        let context = store.context_window(&alice, conv.id, 40).await.unwrap();
        assert_eq!(context, sync.context_window(&alice, conv.id, 40).unwrap());
        let words = |m: &Message| m.content.split_whitespace().count() as u64 + 1;
        let options = ContextOptions::default().pin_system(false);
        assert_eq!(
            store
                .context_window_with(&alice, conv.id, 9, options, words)
                .await
                .unwrap(),
            sync.context_window_with(&alice, conv.id, 9, options, words)
                .unwrap()
        );

        let report = store.verify_schema().await.unwrap();
        assert!(report.is_complete(), "{report}");
        assert_eq!(report, sync.verify_schema().unwrap());

        assert_eq!(store.stats().await.unwrap(), sync.stats().unwrap());
        let items: Vec<ExportItem> = sync.export_user(&alice).map(Result::unwrap).collect();
        let ExportItem::Conversation(first) = &items[0] else {
            panic!("a conversation first: {items:?}");
        };
        let messages: Vec<Message> = items
            .iter()
            .filter_map(|item| match item {
                ExportItem::Message(m) if m.conversation_id == first.id => Some(m.clone()),
                _ => None,
            })
            .collect();
        assert!(matches!(
            store.import_conversation(&alice, first, &messages).await,
            Err(Error::AlreadyExists(id)) if id == first.id
        ));

        store.delete_conversation(&alice, other.id).await.unwrap();
        assert!(matches!(
            store.conversation(&alice, other.id).await,
            Err(Error::NotFound)
        ));
        assert!(matches!(
            store.delete_conversation(&alice, other.id).await,
            Err(Error::NotFound)
        ));

        let bob = user("bob");
        let bobs = store.create_conversation(&bob, None).await.unwrap();
        let deleted = store.delete_user_data(&alice).await.unwrap();
        assert_eq!((deleted.conversations, deleted.messages), (1, 5));
        assert_eq!(sync.conversation(&bob, bobs.id).unwrap(), bobs);
        assert!(store
            .list_conversations(&alice, Page::first(10))
            .await
            .unwrap()
            .conversations
            .is_empty());

        // Opening with options, and a URL no build can open.
        if db.kind != Kind::SqliteMemory {
            let capped = AsyncChatStore::open_with(ChatStore::builder(&db.url).max_page_size(1))
                .await
                .unwrap();
            store.create_conversation(&bob, None).await.unwrap();
            let page = capped
                .list_conversations(&bob, Page::first(10))
                .await
                .unwrap();
            assert_eq!(page.conversations.len(), 1);
            assert!(page.next.is_some());
        }
        assert!(matches!(
            AsyncChatStore::open("redis://nowhere").await,
            Err(Error::UnsupportedUrl(_))
        ));
    });
}

/// `TASKS` tasks on `runtime` append `EACH` messages each to one conversation at once: every append
/// gets its own seq, with no gap, and each task's appends stay in its order.
fn concurrent_tasks_get_consecutive_seqs(runtime: Runtime, db: &TestDb) {
    const TASKS: usize = 32;
    const EACH: usize = 20;
    runtime.block_on(async {
        let store = AsyncChatStore::open(&db.url).await.unwrap();
        let alice = user("alice");
        let conv = store.create_conversation(&alice, None).await.unwrap().id;
        let start = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let (store, alice, start) = (store.clone(), alice.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    let mut seqs = Vec::with_capacity(EACH);
                    for i in 0..EACH {
                        let text = format!("t{t}-{i}");
                        let stored = store
                            .append_message(&alice, conv, NewMessage::user(&text))
                            .await
                            .unwrap();
                        seqs.push(stored.seq);
                    }
                    seqs
                })
            })
            .collect();
        let mut per_task = Vec::with_capacity(TASKS);
        for task in tasks {
            per_task.push(task.await.unwrap());
        }

        let n = (TASKS * EACH) as i64;
        let page = store.messages(&alice, conv, Window::All).await.unwrap();
        assert_eq!(page.total, n);
        assert_eq!(seqs(&page.messages), (1..=n).collect::<Vec<_>>());
        let mut returned: Vec<i64> = per_task.iter().flatten().copied().collect();
        returned.sort_unstable();
        assert_eq!(returned, (1..=n).collect::<Vec<_>>(), "one seq per append");
        for (t, task_seqs) in per_task.iter().enumerate() {
            assert!(
                task_seqs.windows(2).all(|w| w[0] < w[1]),
                "task {t} in order"
            );
            for (i, &seq) in task_seqs.iter().enumerate() {
                assert_eq!(page.messages[seq as usize - 1].content, format!("t{t}-{i}"));
            }
        }
        assert_eq!(
            store
                .conversation(&alice, conv)
                .await
                .unwrap()
                .message_count,
            n
        );
    });
}

fn concurrent_tasks_on_a_multi_thread_runtime_get_consecutive_seqs(db: &TestDb) {
    concurrent_tasks_get_consecutive_seqs(multi_thread(), db);
}

fn concurrent_tasks_on_a_current_thread_runtime_get_consecutive_seqs(db: &TestDb) {
    concurrent_tasks_get_consecutive_seqs(current_thread(), db);
}

/// A large batch append whose future is dropped right after its first poll (which hands it to the
/// blocking pool) is, to a write and a read that follow at once, either entirely there or entirely
/// absent; a retry with the same client ids then finds it or writes it, once.
fn a_dropped_batch_append_is_whole_or_absent(db: &TestDb) {
    const ROUNDS: usize = 4;
    const SIZE: usize = 2_000;
    multi_thread().block_on(async {
        let store = AsyncChatStore::open(&db.url).await.unwrap();
        let alice = user("alice");
        let conv = store.create_conversation(&alice, None).await.unwrap().id;
        let mut total = 0;
        let mut seen_absent = 0;
        for round in 0..ROUNDS {
            let texts: Vec<String> = (0..SIZE).map(|i| format!("r{round}-{i}")).collect();
            let ids: Vec<MessageId> = (0..SIZE)
                .map(|_| MessageId::from(uuid::Uuid::now_v7()))
                .collect();
            let batch: Vec<NewMessage> = texts
                .iter()
                .zip(&ids)
                .map(|(text, &id)| NewMessage::user(text).with_id(id))
                .collect();

            let mut append = Box::pin(store.append_messages(&alice, conv, &batch));
            if let Poll::Ready(result) = poll_once(&mut append).await {
                result.unwrap(); // finished within one poll: nothing was dropped
            }
            drop(append);

            let after = format!("after r{round}");
            store
                .append_message(&alice, conv, NewMessage::assistant(&after))
                .await
                .unwrap();
            let page = store.messages(&alice, conv, Window::All).await.unwrap();
            assert_eq!(
                seqs(&page.messages),
                (1..=page.total).collect::<Vec<_>>(),
                "no gap in seq"
            );
            let ours: Vec<&Message> = page
                .messages
                .iter()
                .filter(|m| m.content.starts_with(&format!("r{round}-")))
                .collect();
            match ours.len() {
                0 => seen_absent += 1,
                SIZE => assert_whole(&ours, &ids),
                partial => panic!("round {round}: {partial} of the {SIZE} messages are stored"),
            }

            // The retry learns the outcome: the batch as stored, or written now; stored once.
            let stored = store.append_messages(&alice, conv, &batch).await.unwrap();
            assert_whole(&stored.iter().collect::<Vec<_>>(), &ids);
            total += SIZE as i64 + 1;
            let count = store
                .conversation(&alice, conv)
                .await
                .unwrap()
                .message_count;
            assert_eq!(count, total, "round {round}: each message stored once");
        }
        let page = store.messages(&alice, conv, Window::All).await.unwrap();
        assert_eq!(seqs(&page.messages), (1..=total).collect::<Vec<_>>());
        let distinct: HashSet<&str> = page.messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(distinct.len() as i64, total);
        eprintln!("{seen_absent} of {ROUNDS} dropped batches were not yet committed when read");
    });
}

/// Dropping a write's future does not cancel the write: a batch whose future was dropped after its
/// first poll commits all the same, with nobody awaiting it. (Read until it shows, with a deadline
/// for a failure, not a sleep.)
fn a_dropped_append_still_commits(db: &TestDb) {
    const SIZE: usize = 2_000;
    multi_thread().block_on(async {
        let store = AsyncChatStore::open(&db.url).await.unwrap();
        let alice = user("alice");
        let conv = store.create_conversation(&alice, None).await.unwrap().id;
        let texts: Vec<String> = (0..SIZE).map(|i| format!("m{i}")).collect();
        let batch: Vec<NewMessage> = texts.iter().map(NewMessage::user).collect();

        let mut append = Box::pin(store.append_messages(&alice, conv, &batch));
        if let Poll::Ready(result) = poll_once(&mut append).await {
            result.unwrap();
        }
        drop(append);

        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let count = store
                .conversation(&alice, conv)
                .await
                .unwrap()
                .message_count;
            if count == SIZE as i64 {
                break;
            }
            assert_eq!(count, 0, "the batch is whole or absent");
            assert!(
                Instant::now() < deadline,
                "the dropped append did not commit"
            );
            tokio::task::yield_now().await;
        }
        let page = store.messages(&alice, conv, Window::All).await.unwrap();
        assert_eq!(seqs(&page.messages), (1..=SIZE as i64).collect::<Vec<_>>());
        let stored: Vec<&str> = page.messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(stored, texts);
    });
}

/// The batch, whole: its ids in order, on consecutive seqs.
fn assert_whole(stored: &[&Message], ids: &[MessageId]) {
    assert_eq!(
        stored.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids,
        "the batch's messages, in its order"
    );
    let first = stored[0].seq;
    assert!(
        stored.iter().zip(first..).all(|(m, seq)| m.seq == seq),
        "consecutive seqs"
    );
}

/// A cost function that panics fails the call with `TaskFailed`, not the caller; the connection it
/// held goes back to the pool.
fn a_panicking_cost_fn_is_a_typed_error_and_the_store_carries_on(db: &TestDb) {
    current_thread().block_on(async {
        let store = AsyncChatStore::open(&db.url).await.unwrap();
        let alice = user("alice");
        let conv = store.create_conversation(&alice, None).await.unwrap().id;
        store
            .append_message(&alice, conv, NewMessage::user("hi"))
            .await
            .unwrap();
        let tokenizer = |_: &Message| -> u64 { panic!("the tokenizer broke") };
        let result = store
            .context_window_with(&alice, conv, 100, ContextOptions::default(), tokenizer)
            .await;
        match result {
            Err(Error::TaskFailed(why)) => {
                assert!(why.contains("the tokenizer broke"), "{why}");
                let shown = Error::TaskFailed(why).to_string();
                assert!(shown.starts_with("the blocking task failed: "), "{shown}");
            }
            other => panic!("expected TaskFailed, got {other:?}"),
        }
        let context = store.context_window(&alice, conv, 100).await.unwrap();
        assert_eq!(context.messages.len(), 1);
        store
            .append_message(&alice, conv, NewMessage::user("still here"))
            .await
            .unwrap();
    });
}

/// Polls `future` once with a waker that does nothing, outside any runtime's context.
fn poll_outside<F: Future>(future: F) -> Poll<F::Output> {
    let mut future = std::pin::pin!(future);
    future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

fn a_call_outside_a_runtime_is_a_typed_error(db: &TestDb) {
    let store = AsyncChatStore::from(db.open());
    match poll_outside(store.verify_schema()) {
        Poll::Ready(Err(Error::TaskFailed(why))) => assert_eq!(why, "no tokio runtime is running"),
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    match poll_outside(AsyncChatStore::open(&db.url)) {
        Poll::Ready(Err(Error::TaskFailed(_))) => {}
        other => panic!("expected TaskFailed, got {other:?}"),
    }
}

fn a_call_on_a_shut_down_runtime_is_a_typed_error(db: &TestDb) {
    let store = AsyncChatStore::from(db.open());
    let alice = user("alice");
    let runtime = current_thread();
    let handle = runtime.handle().clone();
    runtime.shutdown_background();
    let _context = handle.enter();
    match poll_outside(store.create_conversation(&alice, None)) {
        Poll::Ready(Err(Error::TaskFailed(why))) => {
            assert_eq!(why, "the runtime shut down before it ran");
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    // It did not run.
    let blocking = store.blocking();
    let listed = blocking
        .list_conversations(&alice, Page::first(10))
        .unwrap();
    assert!(listed.conversations.is_empty());
}

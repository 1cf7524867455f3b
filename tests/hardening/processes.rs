//! Several processes × several threads, as the workers of one service: they open a new database at
//! the same moment (racing to migrate it), then append at once to one shared conversation and to one
//! conversation per thread. No error reaches a caller, counts are exact, no seq is missing or
//! doubled, and each thread's messages keep the order it appended them in.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use chatstore::{ChatStore, ConversationId, NewMessage, UserId, Window};

use super::{child_env, finish, slow, spawn_child};
use crate::support::{backend_tests, TestDb};

backend_tests! {
    every: [],
    persistent: [processes_and_threads_appending_at_once_lose_and_reorder_nothing],
}

const PROCESSES: usize = 4;
const THREADS: usize = 4;

fn processes_and_threads_appending_at_once_lose_and_reorder_nothing(db: &TestDb) {
    let appends: usize = if slow() { 500 } else { 60 };
    let user = UserId::new("busy").unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|p| {
            let env = [
                ("CHATSTORE_CHILD_URL", db.url.clone()),
                ("CHATSTORE_CHILD_PROCESS", p.to_string()),
                ("CHATSTORE_CHILD_APPENDS", appends.to_string()),
            ];
            spawn_child("hardening::processes::child_appends_from_threads", &env)
        })
        .collect();
    let (mut children, mut inputs): (Vec<_>, Vec<_>) = children
        .into_iter()
        .map(|(mut child, lines)| {
            let input = child.stdin.take().unwrap();
            ((child, lines), input)
        })
        .unzip();
    let tell = |inputs: &mut Vec<std::process::ChildStdin>, line: &str| {
        for input in inputs.iter_mut() {
            writeln!(input, "{line}").unwrap();
        }
    };
    // The database is new: every child opens it at once, as workers starting together would, and
    // their migration runs race (the store makes them take turns).
    for (_, lines) in &children {
        wait_for(lines, "started");
    }
    tell(&mut inputs, "open");
    for (_, lines) in &children {
        wait_for(lines, "ready");
    }
    let store = db.open();
    let shared = store.create_conversation(&user, None).unwrap().id;
    // Then all append at once.
    tell(&mut inputs, &shared.to_string());
    drop(inputs);
    let mut own: Vec<ConversationId> = Vec::new();
    for (child, lines) in children.drain(..) {
        let (status, lines) = finish(child, lines, Duration::from_secs(600));
        assert!(status.success(), "a child failed ({status}): {lines:?}");
        own.extend(
            lines
                .iter()
                .filter_map(|l| l.strip_prefix("own "))
                .map(|id| id.parse::<ConversationId>().unwrap()),
        );
    }
    // The children are gone; the parent's store reads what they left.
    let page = store.messages(&user, shared, Window::All).unwrap();
    let total = PROCESSES * THREADS * appends;
    assert_eq!(page.total, total as i64);
    let gap = page.messages.iter().zip(1..).find(|(m, seq)| m.seq != *seq);
    assert!(gap.is_none(), "seqs have a gap at {gap:?}");
    // "p<process> t<thread> <i>": per writer, 0, 1, 2… in seq order.
    let mut writers: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for m in &page.messages {
        let parts: Vec<&str> = m.content.split(' ').collect();
        writers
            .entry((parts[0].to_owned(), parts[1].to_owned()))
            .or_default()
            .push(parts[2].parse().unwrap());
    }
    assert_eq!(writers.len(), PROCESSES * THREADS);
    for (writer, sequence) in &writers {
        assert_eq!(sequence, &(0..appends).collect::<Vec<_>>(), "{writer:?}");
    }
    assert_eq!(
        own.len(),
        PROCESSES * THREADS,
        "each thread reported its conversation"
    );
    for conv in own {
        let page = store.messages(&user, conv, Window::All).unwrap();
        let texts: Vec<String> = page.messages.iter().map(|m| m.content.clone()).collect();
        assert_eq!(
            texts,
            (0..appends).map(|i| i.to_string()).collect::<Vec<_>>()
        );
    }
}

/// Waits (a minute at most) for the child to print `expected`.
fn wait_for(lines: &std::sync::mpsc::Receiver<String>, expected: &str) {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("the child never said {expected:?}: {e}"));
        if line == expected {
            return;
        }
    }
}

/// The child's side: on "open" from the parent, opens the store (racing the other children to
/// migrate a new database); on the shared conversation's id, appends from several threads at once —
/// alternately to the shared conversation and to the thread's own — then prints each thread's own
/// conversation. Any error fails the child, and so the test.
#[test]
#[ignore = "a child process of the multi-process test, started by it"]
fn child_appends_from_threads() {
    let (Some(url), Some(process), Some(appends)) = (
        child_env("CHATSTORE_CHILD_URL"),
        child_env("CHATSTORE_CHILD_PROCESS"),
        child_env("CHATSTORE_CHILD_APPENDS"),
    ) else {
        return;
    };
    let appends: usize = appends.parse().unwrap();
    let mut parent = std::io::stdin().lines();
    let mut next_line = || parent.next().expect("a line from the parent").unwrap();
    println!("started");
    assert_eq!(next_line(), "open");
    // The processes take turns on the database's lock file, fairly; a generous busy timeout all
    // the same, as this test is about losing nothing, not about the wait (which
    // examples/sqlite_writers.rs measures).
    let store = ChatStore::builder(url)
        .busy_timeout(Duration::from_secs(120))
        .open()
        .unwrap();
    let user = UserId::new("busy").unwrap();
    let own: Vec<ConversationId> = (0..THREADS)
        .map(|_| store.create_conversation(&user, None).unwrap().id)
        .collect();
    println!("ready");
    let shared: ConversationId = next_line().parse().unwrap();
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = own
        .iter()
        .enumerate()
        .map(|(t, &mine)| {
            let (store, user, barrier) = (store.clone(), user.clone(), barrier.clone());
            let process = process.clone();
            thread::spawn(move || {
                barrier.wait();
                for i in 0..appends {
                    let text = format!("p{process} t{t} {i}");
                    store
                        .append_message(&user, shared, NewMessage::user(&text))
                        .unwrap();
                    store
                        .append_message(&user, mine, NewMessage::assistant(i.to_string()))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for conv in own {
        println!("own {conv}");
    }
}

/// A writer process SIGKILLed while it holds the write turn (stopped in the middle of a long batch,
/// so that it surely holds it) does not keep the others out: the kernel ends its turn with it, and
/// the next writer goes in. Not timed: the wait that must end has a generous busy timeout.
#[cfg(feature = "sqlite")]
#[test]
fn sqlite_a_writer_killed_holding_its_turn_does_not_block_the_others() {
    let db = TestDb::new(crate::support::Kind::SqliteFile);
    let user = UserId::new("killed").unwrap();
    // Short: a write that finds the turn taken says so at once.
    let impatient = ChatStore::builder(db.url.clone())
        .busy_timeout(Duration::from_millis(50))
        .open()
        .unwrap();
    let conv = impatient.create_conversation(&user, None).unwrap().id;
    let env = [
        ("CHATSTORE_CHILD_URL", db.url.clone()),
        ("CHATSTORE_CHILD_CONVERSATION", conv.to_string()),
    ];
    let (mut child, lines) = spawn_child("hardening::processes::child_appends_long_batches", &env);
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the child never started appending");
        if line == "appending" {
            break;
        }
    }
    // Stop the child where it is, until a write of ours finds the turn taken: the child holds it.
    let pid = child.id().to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {name}");
    };
    let mut between_batches = 0;
    loop {
        signal("-STOP");
        match impatient.append_message(&user, conv, NewMessage::user("between batches")) {
            Err(chatstore::Error::Busy(_)) => break,
            // Stopped between two batches: try again.
            Ok(_) => {
                between_batches += 1;
                assert!(between_batches < 100, "the child never held its turn");
                signal("-CONT");
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The child is gone, and with it its turn: the next writer gets one.
    let patient = ChatStore::builder(db.url.clone())
        .busy_timeout(Duration::from_secs(120))
        .open()
        .unwrap();
    let after = patient
        .append_message(&user, conv, NewMessage::user("after the kill"))
        .unwrap();
    // The killed batch is absent, whole: the child's batches that are there are complete.
    let page = patient.messages(&user, conv, Window::All).unwrap();
    assert_eq!(page.messages.last().map(|m| m.id), Some(after.id));
    let seqs: Vec<i64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    let from_child = page.messages.len() - between_batches - 1;
    assert_eq!(
        from_child % LONG_BATCH,
        0,
        "{from_child} messages from the child"
    );
    // The impatient store, whose abandoned place in the queue came and went, writes again too.
    impatient
        .append_message(&user, conv, NewMessage::user("and again"))
        .unwrap();
}

/// The child's batch: long enough that the child is almost always in the middle of one.
const LONG_BATCH: usize = 20_000;

/// The child's side: appends batches of many messages to the conversation until it is killed,
/// having said "appending" before the first.
#[test]
#[ignore = "a child process of the killed-writer test, started by it"]
fn child_appends_long_batches() {
    let (Some(url), Some(conv)) = (
        child_env("CHATSTORE_CHILD_URL"),
        child_env("CHATSTORE_CHILD_CONVERSATION"),
    ) else {
        return;
    };
    let store = ChatStore::open(&url).unwrap();
    let user = UserId::new("killed").unwrap();
    let conv: ConversationId = conv.parse().unwrap();
    let text = "a long batch ".repeat(20);
    let batch: Vec<NewMessage<'_>> = (0..LONG_BATCH).map(|_| NewMessage::user(&text)).collect();
    println!("appending");
    loop {
        store.append_messages(&user, conv, &batch).unwrap();
    }
}

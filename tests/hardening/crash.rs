//! Crash safety: a child process appends batches in a loop, and now and then takes the newest one
//! back (a pop) or regenerates it (a sibling batch on a new branch), and is killed with SIGKILL at
//! a random moment, again and again. After every kill the store opens cleanly, every batch on the
//! active branch is wholly present or wholly absent, every batch the child saw committed is there
//! unless it saw it popped or replaced (and gone from the active branch if it did), and seqs have
//! no gap.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use chatstore::{ChatStore, ConversationId, UserId, Window};

use super::{child_env, random_below, slow, spawn_child};
use crate::support::{backend_tests, TestDb};

backend_tests! {
    every: [],
    persistent: [sigkill_mid_append_leaves_whole_batches_and_no_gap],
}

/// How long the parent waits for a child to show it is appending, before calling it stuck.
const CHILD_START: Duration = Duration::from_secs(60);

fn sigkill_mid_append_leaves_whole_batches_and_no_gap(db: &TestDb) {
    let kills = if slow() { 500 } else { 50 };
    let user = UserId::new("crash").unwrap();
    let store = db.open();
    let mut conv = store.create_conversation(&user, None).unwrap().id;
    let mut acknowledged: Vec<u64> = Vec::new();
    // Batches whose pop the child began, and those whose pop it saw return.
    let (mut popping, mut popped) = (HashSet::new(), HashSet::new());
    // Regenerations the child saw through: the run must have made some.
    let mut replaced = 0;
    for run in 0..kills {
        // Ten kills per conversation: each child carries on a history that earlier kills left,
        // and the check, which reads it whole, stays short.
        if run % 10 == 0 && run > 0 {
            conv = store.create_conversation(&user, None).unwrap().id;
            acknowledged.clear();
            popping.clear();
            popped.clear();
        }
        let env = [
            ("CHATSTORE_CHILD_URL", db.url.clone()),
            ("CHATSTORE_CHILD_CONVERSATION", conv.to_string()),
            ("CHATSTORE_CHILD_RUN", run.to_string()),
        ];
        let (mut child, lines) = spawn_child("hardening::crash::child_appends_until_killed", &env);
        // Let it commit a random number of batches (0 to 3 beyond the first), then kill it at a
        // random moment of the next ones: mid-transaction, mid-commit or between two.
        let wait_for = 1 + random_below(4);
        let mut seen = 0;
        while seen < wait_for {
            let line = lines
                .recv_timeout(CHILD_START)
                .unwrap_or_else(|e| panic!("run {run}: the child committed nothing: {e}"));
            if let Some(batch) = line.strip_prefix("committed ") {
                acknowledged.push(batch.parse().unwrap());
                seen += 1;
            }
            replaced += usize::from(line.starts_with("replaced "));
            note_pop(&line, &mut popping, &mut popped);
        }
        std::thread::sleep(Duration::from_micros(random_below(3000)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        // Killed, not dead of its own error (which would make every check below moot).
        assert_eq!(
            status.signal(),
            Some(9),
            "run {run}: the child ended by itself: {status}"
        );
        // Lines printed before the kill: those batches were committed too. The reader ends at the
        // dead child's end of output, so none still in the pipe is missed.
        for line in lines.iter() {
            if let Some(batch) = line.strip_prefix("committed ") {
                acknowledged.push(batch.parse().unwrap());
            }
            replaced += usize::from(line.starts_with("replaced "));
            note_pop(&line, &mut popping, &mut popped);
        }
        let expected = Expected {
            present: acknowledged
                .iter()
                .filter(|b| !popping.contains(*b))
                .copied()
                .collect(),
            absent: popped.clone(),
        };
        // A batch whose pop was cut short is there or not, as the kill fell (whole either way);
        // the next child carries on from what is there.
        check(db, &user, conv, &expected, run);
    }
    assert!(replaced > 0, "no regeneration was made, nor checked");
}

/// The batches the check expects: those committed and never popped are there, those whose pop
/// returned are not (a batch whose pop was begun and cut short may be either, whole).
struct Expected {
    present: Vec<u64>,
    absent: HashSet<u64>,
}

/// Reads the child's `popping <batch>`, `popped <batch>`, `replacing <batch> <new batch>` and
/// `replaced <batch>` lines: a batch being taken back or replaced may be there or not until the
/// child says it is gone, and its replacement until the child says it committed.
fn note_pop(line: &str, popping: &mut HashSet<u64>, popped: &mut HashSet<u64>) {
    if let Some(batch) = line.strip_prefix("popping ") {
        popping.insert(batch.parse().unwrap());
    } else if let Some(batches) = line.strip_prefix("replacing ") {
        for batch in batches.split(' ') {
            popping.insert(batch.parse().unwrap());
        }
    } else if let Some(batch) = line.strip_prefix("committed ") {
        popping.remove(&batch.parse().unwrap());
    } else if let Some(batch) = line
        .strip_prefix("popped ")
        .or_else(|| line.strip_prefix("replaced "))
    {
        popped.insert(batch.parse().unwrap());
    }
}

/// Opens the store afresh, as a restarted process would, and checks the history.
fn check(db: &TestDb, user: &UserId, conv: ConversationId, expected: &Expected, run: u32) {
    // The whole history, however long the runs made it: no cap on the window.
    let store = ChatStore::builder(db.url.clone())
        .max_window(u32::MAX)
        .open()
        .unwrap_or_else(|e| panic!("run {run}: the store does not open after a kill: {e}"));
    assert!(store.verify_schema().unwrap().is_complete());
    let page = store.messages(user, conv, Window::All).unwrap();
    let seqs: Vec<i64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=page.total).collect::<Vec<_>>(),
        "run {run}: seqs have a gap"
    );
    // Content is "<batch> <index> <size>": each batch present must be whole and contiguous.
    let mut batches: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for m in &page.messages {
        let parts: Vec<u64> = m.content.split(' ').map(|p| p.parse().unwrap()).collect();
        batches
            .entry(parts[0])
            .or_default()
            .push((parts[1], parts[2]));
    }
    for (batch, messages) in &batches {
        let size = messages[0].1;
        let indices: Vec<u64> = messages.iter().map(|&(i, _)| i).collect();
        assert_eq!(
            indices,
            (0..size).collect::<Vec<_>>(),
            "run {run}: batch {batch} is partial"
        );
    }
    for batch in &expected.present {
        assert!(
            batches.contains_key(batch),
            "run {run}: committed batch {batch} is lost"
        );
    }
    for batch in &expected.absent {
        assert!(
            !batches.contains_key(batch),
            "run {run}: popped batch {batch} is back"
        );
    }
}

/// The child's side: appends batches until it is killed, printing each batch's number once its
/// append has returned. Most batches hold 1 to 50 messages; one in eight holds over 1,000, which
/// the store writes with several INSERTs (still one transaction). After one batch in four it takes
/// that batch back (it is the newest: the child is the conversation's one writer), printing
/// `popping` before and `popped` after; after one in eight it regenerates it — a batch of the same
/// size as its sibling, on a new branch that becomes active — printing `replacing` before, and
/// `committed` for the new batch and `replaced` for the old after.
#[test]
#[ignore = "the child process of the crash tests, started by them"]
fn child_appends_until_killed() {
    let (Some(url), Some(conv), Some(run)) = (
        child_env("CHATSTORE_CHILD_URL"),
        child_env("CHATSTORE_CHILD_CONVERSATION"),
        child_env("CHATSTORE_CHILD_RUN"),
    ) else {
        return;
    };
    // A parent that went away without killing this child closes its stdin: stop then.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(1);
    });
    let store = ChatStore::open(&url).unwrap();
    let user = UserId::new("crash").unwrap();
    let conv: ConversationId = conv.parse().unwrap();
    let run: u64 = run.parse().unwrap();
    for n in 0.. {
        // Unique across runs: the run in the high bits.
        let batch = (run << 32) | n;
        let size = match random_below(8) {
            0 => 1001 + random_below(1000),
            _ => 1 + random_below(50),
        };
        let texts: Vec<String> = (0..size).map(|i| format!("{batch} {i} {size}")).collect();
        let messages: Vec<_> = texts.iter().map(chatstore::NewMessage::user).collect();
        let stored = store.append_messages(&user, conv, &messages).unwrap();
        println!("committed {batch}");
        match random_below(8) {
            0 | 1 => {
                println!("popping {batch}");
                let gone = store.pop_messages(&user, conv, size as u32).unwrap();
                assert_eq!(gone.len() as u64, size);
                println!("popped {batch}");
            }
            2 => {
                let again = batch | (1 << 31);
                println!("replacing {batch} {again}");
                let texts: Vec<String> = (0..size).map(|i| format!("{again} {i} {size}")).collect();
                let messages: Vec<_> = texts.iter().map(chatstore::NewMessage::user).collect();
                store
                    .append_sibling(&user, conv, stored[0].id, &messages)
                    .unwrap();
                println!("committed {again}");
                println!("replaced {batch}");
            }
            _ => {}
        }
    }
}

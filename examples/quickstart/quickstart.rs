//! The main job on the embedded default: a SQLite file, one conversation of a todo-list assistant
//! with a tool call, and its history read back a page at a time.
//!
//! ```text
//! cargo run --example quickstart                       # ./quickstart.db
//! cargo run --example quickstart -- sqlite://other.db
//! cargo run --example quickstart --features postgres -- postgres://postgres@127.0.0.1/test
//! ```

use chatstore::{ChatStore, Error, NewMessage, Page, UserId, Window};
use serde_json::json;

fn main() -> Result<(), Error> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sqlite://quickstart.db".into());
    let store = ChatStore::open(&url)?;
    println!("opened {url} ({:?})", store.backend());

    // The acting user comes from your auth layer; every call is on their behalf.
    let alice = UserId::new("alice@example.com")?;
    let conv = store.create_conversation(&alice, Some("Weekend groceries"))?;

    let call = json!({"tool_calls": [{"id": "call_1", "name": "add_todo", "arguments": {"item": "oat milk"}}]});
    let result = json!({"tool_call_id": "call_1"});
    store.append_messages(
        &alice,
        conv.id,
        &[
            NewMessage::system("You keep the user's todo list."),
            NewMessage::user("Put oat milk on my list."),
            NewMessage::assistant("").with_metadata(&call),
            NewMessage::tool(r#"{"ok": true, "items": 1}"#).with_metadata(&result),
            NewMessage::assistant("Added oat milk. Anything else?"),
        ],
    )?;
    store.append_message(&alice, conv.id, NewMessage::user("That's all, thanks!"))?;

    // Newest first, two at a time, as a chat UI scrolls up; each page is in chronological order.
    println!("\nconversation {} — {:?}", conv.id, conv.title);
    let mut window = Some(Window::Latest(2));
    while let Some(w) = window {
        let page = store.messages(&alice, conv.id, w)?;
        println!(
            "-- page ({} of {} messages)",
            page.messages.len(),
            page.total
        );
        for m in &page.messages {
            let tool = m
                .metadata
                .as_ref()
                .map_or(String::new(), |meta| format!("  {meta}"));
            println!("   #{:<2} {:<9} {:?}{tool}", m.seq, m.role, m.content);
        }
        window = page.older;
    }

    // What a prompt builder asks for: the newest n, chronological.
    let tail = store.messages(&alice, conv.id, Window::Latest(3))?;
    println!(
        "\nlatest 3: {:?}",
        tail.messages.iter().map(|m| m.seq).collect::<Vec<_>>()
    );

    let list = store.list_conversations(&alice, Page::first(5))?;
    println!("\nalice's newest conversations:");
    for c in &list.conversations {
        println!(
            "   {} {:?}, {} messages, updated {}",
            c.id, c.title, c.message_count, c.updated_at
        );
    }

    // Another user sees nothing — not even that the conversation exists.
    let mallory = UserId::new("mallory")?;
    match store.messages(&mallory, conv.id, Window::All) {
        Err(Error::NotFound) => println!("\nmallory reading it: not found"),
        other => panic!("isolation broken: {other:?}"),
    }
    Ok(())
}

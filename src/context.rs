//! Prompt-ready context windows: the newest messages that fit a budget, cut where a provider will
//! accept the prompt.
//!
//! Tool calls and their results are linked the way the OpenAI and compatible APIs write them: an
//! assistant message's metadata lists its calls as `{"tool_calls": [{"id": "call_1", …}, …]}`, and
//! a tool message's metadata names the call it answers as `{"tool_call_id": "call_1"}`.

use std::collections::HashSet;

use serde_json::Value;

use crate::ids::BranchId;
use crate::models::{Message, Part, Role};
use crate::{Error, Result};

/// Options for [`ChatStore::context_window_with`](crate::ChatStore::context_window_with).
///
/// ```
/// use chatstore::ContextOptions;
/// let options = ContextOptions::default().pin_system(false);
/// assert!(!options.pins_system());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextOptions {
    pin_system: bool,
}

impl Default for ContextOptions {
    /// System messages pinned.
    fn default() -> Self {
        ContextOptions { pin_system: true }
    }
}

impl ContextOptions {
    /// Whether the conversation's system messages come first, however old, and count against the
    /// budget before anything else (default `true`). Without it they are messages like any other.
    /// [`Role::Developer`] messages (OpenAI's name for system messages) count as system messages
    /// here: pinned with them, in seq order.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&alice, None)?.id;
    /// store.append_messages(&alice, conv, &[
    ///     NewMessage::developer("Answer in French."),
    ///     NewMessage::user("a long question that will not fit"),
    ///     NewMessage::user("Hi"),
    /// ])?;
    /// let context = store.context_window(&alice, conv, 20)?;
    /// let sent: Vec<&str> = context.messages.iter().map(|m| m.content.as_str()).collect();
    /// assert_eq!(sent, ["Answer in French.", "Hi"]);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn pin_system(mut self, pin: bool) -> Self {
        self.pin_system = pin;
        self
    }

    /// Whether system messages are pinned.
    pub fn pins_system(&self) -> bool {
        self.pin_system
    }
}

/// What [`ChatStore::context_window`](crate::ChatStore::context_window) chose.
///
/// Tool calls and their results are linked by id, as the OpenAI-style APIs write them: an assistant
/// message's metadata lists its calls as `{"tool_calls": [{"id": "call_1", …}]}`, and a tool
/// message's metadata names the call it answers as `{"tool_call_id": "call_1"}`. A window never
/// holds a result without its call before it, nor starts with a tool result.
///
/// With the `serde` feature: `{"messages", "cost", "omitted", "total"}`, and `"branch"` off the
/// root branch.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct ContextWindow {
    /// The pinned system messages (oldest first), then the newest messages that fit, oldest first:
    /// ready to send in this order.
    pub messages: Vec<Message>,
    /// The cost of `messages`, never more than the budget.
    pub cost: u64,
    /// How many messages of the conversation were left out.
    pub omitted: i64,
    /// How many messages the conversation held when read: its active branch's path, whose last
    /// seq this is. With [`branch`](Self::branch), what a reply written from this window states
    /// to [`ChatStore::append_if_last_seq_on`](crate::ChatStore::append_if_last_seq_on).
    pub total: i64,
    /// The conversation's active branch when read: the branch whose path the window is.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "BranchId::is_root_ref")
    )]
    pub branch: BranchId,
}

/// The default cost of a message: the characters (Unicode scalar values) of its content, of its
/// text parts, and of its metadata as JSON text, which carries tool calls' arguments into the
/// prompt. Images and files cost nothing here (what one costs depends on the model): a cost
/// function of the application's own can price them.
///
/// ```
/// use chatstore::{char_cost, Attachment, ChatStore, NewMessage, Part, Reference, UserId};
///
/// let store = ChatStore::open(":memory:")?;
/// let alice = UserId::new("alice")?;
/// let conv = store.create_conversation(&alice, None)?.id;
/// let photo = Attachment::new(Reference::key("photos/1"), "image/jpeg", 90_000);
/// let parts = vec![Part::text("this one?"), Part::Image(photo)];
/// let stored = store.append_message(&alice, conv, NewMessage::user("Hi").with_parts(parts))?;
/// assert_eq!(char_cost(&stored), 2 + 9);
/// # Ok::<(), chatstore::Error>(())
/// ```
pub fn char_cost(message: &Message) -> u64 {
    let metadata = message
        .metadata
        .as_ref()
        .map_or(0, |m| m.to_string().chars().count());
    let parts: usize = message
        .parts
        .iter()
        .filter_map(Part::as_text)
        .map(|text| text.chars().count())
        .sum();
    (message.content.chars().count() + parts + metadata) as u64
}

/// The ids of the tool calls an assistant message makes.
fn calls(message: &Message) -> impl Iterator<Item = &str> {
    message
        .metadata
        .as_ref()
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|call| call.get("id").and_then(Value::as_str))
}

/// The call a tool message answers, if it says.
fn answers(message: &Message) -> Option<&str> {
    message.metadata.as_ref()?.get("tool_call_id")?.as_str()
}

/// Builds a window from the newest message backwards, a page at a time, so that it reads about as
/// many rows as it returns, whatever the length of the history.
pub(crate) struct Builder<F> {
    budget: u64,
    spent: u64,
    cost: F,
    pinned: Vec<Message>,
    /// Chosen so far, newest first, each with its cost.
    chosen: Vec<(Message, u64)>,
}

impl<F: FnMut(&Message) -> u64> Builder<F> {
    /// Starts with the pinned messages — when system messages are pinned, every one up to the
    /// history's end — which must fit the budget on their own.
    pub(crate) fn new(budget: u64, mut cost: F, pinned: Vec<Message>) -> Result<Self> {
        let needed = pinned
            .iter()
            .fold(0u64, |sum, m| sum.saturating_add(cost(m)));
        if needed > budget {
            return Err(Error::BudgetTooSmall { needed, budget });
        }
        Ok(Builder {
            budget,
            spent: needed,
            cost,
            pinned,
            chosen: Vec::new(),
        })
    }

    /// Takes the next older page (oldest first) from its newest end, as long as each message fits;
    /// returns whether an older page is still wanted. The window stays contiguous: it stops at the
    /// first message that does not fit, rather than skipping it for smaller, older ones.
    pub(crate) fn take(&mut self, page: Vec<Message>) -> bool {
        for message in page.into_iter().rev() {
            // Pinned already: every system and developer message of the history is (none is,
            // unpinned).
            if !self.pinned.is_empty() && message.role.is_instruction() {
                continue;
            }
            let cost = (self.cost)(&message);
            match self.spent.checked_add(cost).filter(|&s| s <= self.budget) {
                Some(spent) => self.spent = spent,
                None => return false,
            }
            self.chosen.push((message, cost));
        }
        true
    }

    /// The window: the pinned messages, then what was taken, from its first clean start.
    pub(crate) fn finish(self, total: i64, branch: BranchId) -> ContextWindow {
        let mut chosen = self.chosen;
        chosen.reverse();
        let start = clean_start(&chosen);
        let cut: u64 = chosen[..start].iter().map(|(_, cost)| cost).sum();
        let mut messages = self.pinned;
        messages.extend(chosen.into_iter().skip(start).map(|(m, _)| m));
        ContextWindow {
            omitted: total - messages.len() as i64,
            cost: self.spent - cut,
            messages,
            total,
            branch,
        }
    }
}

/// Where a window of the newest messages (oldest first) may start: the earliest position from
/// which every tool result that names its call has that call before it in the window, and which is
/// not itself a tool result (a result that names no call cannot be shown to have one). One pass
/// from the newest message back, keeping the ids of results whose call has not been met yet: the
/// window may start where that set is empty. Ids may repeat (some servers reuse them); a call
/// answers the results after it only. The end needs no care: the window runs to the newest message,
/// so every call in it has all its results that exist.
fn clean_start(window: &[(Message, u64)]) -> usize {
    let mut waiting: HashSet<&str> = HashSet::new();
    let mut start = window.len();
    for (i, (message, _)) in window.iter().enumerate().rev() {
        match message.role {
            Role::Tool => {
                if let Some(id) = answers(message) {
                    waiting.insert(id);
                }
            }
            Role::Assistant => {
                for id in calls(message) {
                    waiting.remove(id);
                }
            }
            _ => {}
        }
        if waiting.is_empty() && message.role != Role::Tool {
            start = i;
        }
    }
    start
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::ids::{ConversationId, MessageId};

    fn message(seq: i64, role: Role, content: &str, metadata: Option<Value>) -> Message {
        Message {
            id: MessageId::generate(),
            conversation_id: ConversationId::generate(),
            seq,
            role,
            content: content.to_owned(),
            metadata,
            created_at: Utc::now(),
            branch: crate::ids::BranchId::ROOT,
            usage: None,
            parts: Vec::new(),
        }
    }

    fn build(history: &[Message], budget: u64) -> Vec<i64> {
        let mut builder = Builder::new(budget, char_cost, Vec::new()).unwrap();
        builder.take(history.to_vec());
        let window = builder.finish(history.len() as i64, BranchId::ROOT);
        assert!(window.cost <= budget);
        window.messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn a_cut_never_leaves_a_result_without_its_call() {
        let call = |id: &str| Some(json!({"tool_calls": [{"id": id}]}));
        let result = |id: &str| Some(json!({"tool_call_id": id}));
        let history = [
            message(1, Role::User, "aaaa", None),
            message(2, Role::Assistant, "", call("c1")),
            message(3, Role::Tool, "r1", result("c1")),
            message(4, Role::Assistant, "done", None),
        ];
        let [_, call_cost, result_cost, last] = [0, 1, 2, 3].map(|i| char_cost(&history[i]));
        // Everything fits.
        assert_eq!(build(&history, 1000), [1, 2, 3, 4]);
        // The budget reaches the result but not its call: the result goes too.
        assert_eq!(build(&history, result_cost + last), [4]);
        // Call and result fit: both stay.
        assert_eq!(build(&history, call_cost + result_cost + last), [2, 3, 4]);
        // A result with no call id at the start of the window is dropped as well.
        let history = [
            message(1, Role::Assistant, "calling", None),
            message(2, Role::Tool, "r", None),
            message(3, Role::User, "u", None),
        ];
        assert_eq!(build(&history, 2), [3]);
        // A reused call id: the first result's call is not in the window, although a later call
        // with the same id is.
        let history = [
            message(1, Role::Assistant, "", call("c1")),
            message(2, Role::Tool, "old", result("c1")),
            message(3, Role::Assistant, "", call("c1")),
            message(4, Role::Tool, "new", result("c1")),
        ];
        let from_2: u64 = history[1..].iter().map(char_cost).sum();
        assert_eq!(build(&history, from_2), [3, 4]);
        assert_eq!(build(&history, 1000), [1, 2, 3, 4]);
    }
}

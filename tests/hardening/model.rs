//! The store against a model: random sequences of operations by several users run on the store and
//! on a few lines of in-memory bookkeeping, and after every step the two agree — on the call's
//! result, on everything the acting user can list, and on every message of the conversation the step
//! touched. Failures shrink to a short sequence of operations.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use chatstore::{
    Attachment, BranchId, ChatStore, Conversation, ConversationId, Error, ExportItem, Message,
    MessageId, NewMessage, Page, Part, Reference, Role, Usage, UserId, Window,
};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

use crate::support::{backend_tests, TestDb};

backend_tests! {
    every: [the_store_agrees_with_the_model_after_every_step],
    persistent: [],
}

const USERS: usize = 3;

/// A message to append, as generated.
#[derive(Debug, Clone)]
struct Draft {
    role: Role,
    content: String,
    metadata: Option<Value>,
    /// Token usage; now and then one whose total is below input plus output, which the store
    /// refuses.
    usage: Option<Usage>,
    /// Parts; now and then one with a `data:` URL, which the store refuses.
    parts: Vec<Part>,
    /// Appended with a client-supplied id (made when the step runs).
    with_id: bool,
}

impl Draft {
    /// Whether the store refuses it, and with which error first: bad content, then bad parts,
    /// then bad usage.
    fn refused(&self) -> Option<fn(&Error) -> bool> {
        if self.content.contains('\0') {
            return Some(|e| matches!(e, Error::InvalidContent { .. }));
        }
        let data_url = |p: &Part| matches!(p, Part::Image(a) if matches!(&a.reference, Reference::Url(u) if u.starts_with("data:")));
        if self.parts.iter().any(data_url) {
            return Some(|e| matches!(e, Error::InvalidPart { .. }));
        }
        let usage = self.usage?;
        (usage.input_tokens + usage.output_tokens > usage.total_tokens)
            .then_some(|e: &Error| matches!(e, Error::InvalidUsage { .. }))
    }
}

/// Why the first refused draft of a batch is refused, if one is.
fn refused(batch: &[Draft]) -> Option<fn(&Error) -> bool> {
    batch.iter().find_map(Draft::refused)
}

/// Which conversation a step acts on.
#[derive(Debug, Clone, Copy)]
enum Conv {
    /// The acting user's k-th live conversation (counted modulo how many there are).
    Own(usize),
    /// The k-th conversation created in the case, whoever owns it and whether or not it still
    /// exists: other users' and deleted conversations.
    Any(usize),
}

/// One step; users are indices into the case's users.
#[derive(Debug, Clone)]
enum Op {
    Create {
        user: usize,
        title: Option<String>,
    },
    Append {
        user: usize,
        conv: Conv,
        batch: Vec<Draft>,
    },
    /// An append stating a last seq `offset` away from the real one (0: the right one), and with
    /// `branch`, the `k`-th live branch (perhaps the active one) as the branch it extends.
    AppendIfLast {
        user: usize,
        conv: Conv,
        offset: i64,
        branch: Option<usize>,
        batch: Vec<Draft>,
    },
    /// Sends an earlier batch that carried client ids again, as a client retrying would.
    Retry {
        user: usize,
        earlier: usize,
    },
    Rename {
        user: usize,
        conv: Conv,
        title: Option<String>,
    },
    Delete {
        user: usize,
        conv: Conv,
    },
    DeleteUserData {
        user: usize,
    },
    Read {
        user: usize,
        conv: Conv,
        window: Window,
    },
    List {
        user: usize,
        page_size: u32,
    },
    /// Takes back the newest `n` messages.
    Pop {
        user: usize,
        conv: Conv,
        n: u32,
    },
    /// Removes the messages after seq `after`.
    Truncate {
        user: usize,
        conv: Conv,
        after: i64,
    },
    Clear {
        user: usize,
        conv: Conv,
    },
    /// A sibling of the k-th message of the active path (counted modulo its length), on a new
    /// branch.
    Sibling {
        user: usize,
        conv: Conv,
        k: usize,
        batch: Vec<Draft>,
    },
    /// Makes the k-th live branch (counted modulo how many) active.
    Switch {
        user: usize,
        conv: Conv,
        k: usize,
    },
    /// Deletes the k-th live branch.
    DeleteBranch {
        user: usize,
        conv: Conv,
        k: usize,
    },
    /// Forks through the k-th message (counted modulo the history's length) of the conversation
    /// `of` resolves to, into the conversation `conv` resolves to: mostly the same one.
    Fork {
        user: usize,
        conv: Conv,
        of: Option<Conv>,
        k: usize,
    },
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::System),
        Just(Role::User),
        Just(Role::Assistant),
        Just(Role::Tool),
    ]
}

fn draft() -> impl Strategy<Value = Draft> {
    (
        role(),
        // Mostly plain text; now and then a NUL, which the store refuses.
        prop_oneof![9 => "[a-z é日\n]{0,12}", 1 => "[a-z]{0,3}\0[a-z]{0,3}"],
        prop_oneof![3 => Just(None), 1 => (0..5i64).prop_map(|n| Some(json!({ "n": n })))],
        prop_oneof![
            2 => Just(None),
            2 => (0..50u64, 0..50u64, 0..3u64)
                .prop_map(|(i, o, extra)| Some(Usage::new(i, o).with_total(i + o + extra))),
            1 => (1..50u64, 1..50u64).prop_map(|(i, o)| Some(Usage::new(i, o).with_total(i))),
        ],
        prop_oneof![
            6 => Just(Vec::new()),
            3 => ("[a-z é日\n]{0,8}", "(https://x\\.example|data:image)/[a-z]{1,4}").prop_map(
                |(text, url)| {
                    let image = Attachment::new(Reference::url(url), "image/png", 7);
                    vec![Part::text(text), Part::Image(image)]
                }
            ),
        ],
        any::<bool>(),
    )
        .prop_map(|(role, content, metadata, usage, parts, with_id)| Draft {
            role,
            content,
            metadata,
            usage,
            parts,
            with_id,
        })
}

fn title() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        4 => "[a-z ]{0,10}".prop_map(Some),
        1 => Just(Some("  ".into())),
        1 => Just(Some("tab\there".into())),
        1 => Just(Some("é".repeat(256))),
    ]
}

fn window() -> impl Strategy<Value = Window> {
    prop_oneof![
        Just(Window::All),
        (0..6u32).prop_map(Window::Latest),
        (-2..14i64, 0..6u32).prop_map(|(seq, limit)| Window::Before { seq, limit }),
        (-2..14i64, 0..6u32).prop_map(|(seq, limit)| Window::After { seq, limit }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS;
    let conv = prop_oneof![
        3 => (0..4usize).prop_map(Conv::Own),
        1 => (0..16usize).prop_map(Conv::Any),
    ];
    let batch = || prop::collection::vec(draft(), 0..6);
    prop_oneof![
        2 => (user.clone(), title()).prop_map(|(user, title)| Op::Create { user, title }),
        4 => (user.clone(), conv.clone(), batch())
            .prop_map(|(user, conv, batch)| Op::Append { user, conv, batch }),
        2 => (user.clone(), conv.clone(), -1..=1i64, prop::option::of(0..3usize), batch())
            .prop_map(|(user, conv, offset, branch, batch)| {
                Op::AppendIfLast { user, conv, offset, branch, batch }
            }),
        1 => (user.clone(), 0..8usize).prop_map(|(user, earlier)| Op::Retry { user, earlier }),
        1 => (user.clone(), conv.clone(), title())
            .prop_map(|(user, conv, title)| Op::Rename { user, conv, title }),
        1 => (user.clone(), conv.clone()).prop_map(|(user, conv)| Op::Delete { user, conv }),
        1 => user.clone().prop_map(|user| Op::DeleteUserData { user }),
        3 => (user.clone(), conv.clone(), window())
            .prop_map(|(user, conv, window)| Op::Read { user, conv, window }),
        1 => (user.clone(), 1..4u32).prop_map(|(user, page_size)| Op::List { user, page_size }),
        1 => (user.clone(), conv.clone(), 0..4u32).prop_map(|(user, conv, n)| Op::Pop { user, conv, n }),
        1 => (user.clone(), conv.clone(), -1..8i64)
            .prop_map(|(user, conv, after)| Op::Truncate { user, conv, after }),
        1 => (user.clone(), conv.clone()).prop_map(|(user, conv)| Op::Clear { user, conv }),
        2 => (user.clone(), conv.clone(), 0..8usize, prop::collection::vec(draft(), 1..4))
            .prop_map(|(user, conv, k, batch)| Op::Sibling { user, conv, k, batch }),
        2 => (user.clone(), conv.clone(), 0..4usize)
            .prop_map(|(user, conv, k)| Op::Switch { user, conv, k }),
        1 => (user.clone(), conv.clone(), 0..4usize)
            .prop_map(|(user, conv, k)| Op::DeleteBranch { user, conv, k }),
        1 => (user, conv.clone(), prop::option::weighted(0.2, conv), 0..8usize)
            .prop_map(|(user, conv, of, k)| Op::Fork { user, conv, of, k }),
    ]
}

/// A conversation as the model knows it. Times and ids are the store's, learnt from what its calls
/// returned; everything else the model works out itself.
#[derive(Debug, Clone)]
struct ModelConversation {
    id: ConversationId,
    owner: usize,
    title: Option<String>,
    updated_at: DateTime<Utc>,
    /// The active branch's path.
    messages: Vec<Message>,
    /// The active branch.
    active: BranchId,
    /// Every other live branch's path.
    others: BTreeMap<BranchId, Vec<Message>>,
    /// Every branch id the conversation has given, deleted ones too.
    given: BTreeSet<BranchId>,
    deleted: bool,
}

impl ModelConversation {
    fn new(
        id: ConversationId,
        owner: usize,
        title: Option<String>,
        updated_at: DateTime<Utc>,
    ) -> Self {
        ModelConversation {
            id,
            owner,
            title,
            updated_at,
            messages: Vec::new(),
            active: BranchId::ROOT,
            others: BTreeMap::new(),
            given: BTreeSet::from([BranchId::ROOT]),
            deleted: false,
        }
    }

    /// The live branches, by id.
    fn live(&self) -> Vec<BranchId> {
        let mut live: Vec<BranchId> = self.others.keys().copied().collect();
        live.push(self.active);
        live.sort();
        live
    }

    /// Every message stored, once.
    fn stored(&self) -> usize {
        let mut ids: HashSet<MessageId> = self.messages.iter().map(|m| m.id).collect();
        ids.extend(self.others.values().flatten().map(|m| m.id));
        ids.len()
    }

    /// The token usage of every message stored (each once, on whichever branches hold it).
    fn usage(&self) -> Usage {
        let mut seen = HashSet::new();
        std::iter::once(&self.messages)
            .chain(self.others.values())
            .flatten()
            .filter(|m| seen.insert(m.id))
            .filter_map(|m| m.usage)
            .sum()
    }

    /// A live branch's path, with the branch.
    fn path_with(&self, id: MessageId) -> Option<&Vec<Message>> {
        std::iter::once(&self.messages)
            .chain(self.others.values())
            .find(|path| path.iter().any(|m| m.id == id))
    }
}

/// A batch stored with client ids, and where; any user may send it again.
#[derive(Debug, Clone)]
struct Sent {
    /// The conversation's index in the model.
    conv: usize,
    batch: Vec<(MessageId, Draft)>,
}

#[derive(Default)]
struct Model {
    conversations: Vec<ModelConversation>,
    sent: Vec<Sent>,
}

/// What the title rules make of a title: trimmed, blank is none, at most 255 characters and no
/// control characters (written out again here rather than calling the library's parser).
fn expected_title(title: &Option<String>) -> Result<Option<String>, ()> {
    let Some(title) = title else { return Ok(None) };
    let trimmed = title.trim();
    if trimmed.is_empty() {
        Ok(None)
    } else if trimmed.chars().count() > 255 || trimmed.chars().any(char::is_control) {
        Err(())
    } else {
        Ok(Some(trimmed.to_owned()))
    }
}

fn new_messages<'a>(batch: &'a [(Option<MessageId>, Draft)]) -> Vec<NewMessage<'a>> {
    batch
        .iter()
        .map(|(id, d)| {
            let mut m = NewMessage::new(d.role, &d.content);
            if let Some(meta) = &d.metadata {
                m = m.with_metadata(meta);
            }
            if let Some(usage) = d.usage {
                m = m.with_usage(usage);
            }
            m = m.with_parts(&d.parts[..]);
            if let Some(id) = id {
                m = m.with_id(*id);
            }
            m
        })
        .collect()
}

impl Model {
    /// The index of the conversation `conv` refers to, if there is one.
    fn resolve(&self, user: usize, conv: Conv) -> Option<usize> {
        match conv {
            Conv::Own(k) => {
                let own: Vec<usize> = (0..self.conversations.len())
                    .filter(|&i| self.visible(user, i))
                    .collect();
                k.checked_rem(own.len()).map(|k| own[k])
            }
            Conv::Any(k) => k.checked_rem(self.conversations.len()),
        }
    }

    /// Whether `user` can see the conversation at index `i`.
    fn visible(&self, user: usize, i: usize) -> bool {
        let c = &self.conversations[i];
        c.owner == user && !c.deleted
    }

    /// The id to call the store with for `conv`, and the conversation's index if the user can see it.
    fn target(&self, user: usize, conv: Conv) -> (ConversationId, Option<usize>) {
        match self.resolve(user, conv) {
            Some(i) => (
                self.conversations[i].id,
                Some(i).filter(|&i| self.visible(user, i)),
            ),
            // No conversation to point at: one that does not exist.
            None => (ConversationId::from(uuid::Uuid::now_v7()), None),
        }
    }

    /// The user's conversations in list order: most recently updated first, then by id, descending.
    fn listed(&self, user: usize) -> Vec<(ConversationId, Option<String>, i64, DateTime<Utc>)> {
        let mut listed: Vec<_> = self
            .conversations
            .iter()
            .filter(|c| c.owner == user && !c.deleted)
            .map(|c| (c.id, c.title.clone(), c.messages.len() as i64, c.updated_at))
            .collect();
        listed.sort_by_key(|&(id, _, _, updated_at)| std::cmp::Reverse((updated_at, id)));
        listed
    }
}

/// Runs one step on the store and on the model, and checks that the call's result agrees.
/// Returns the conversation the step touched, if any, to compare in full afterwards.
fn step(store: &ChatStore, users: &[UserId], model: &mut Model, op: &Op) -> Option<usize> {
    match op {
        Op::Create { user, title } => {
            let result = store.create_conversation(&users[*user], title.as_deref());
            match expected_title(title) {
                Err(()) => assert!(matches!(result, Err(Error::InvalidTitle(_))), "{result:?}"),
                Ok(title) => {
                    let c: Conversation = result.unwrap();
                    assert_eq!((&c.title, c.message_count), (&title, 0));
                    model.conversations.push(ModelConversation::new(
                        c.id,
                        *user,
                        title,
                        c.updated_at,
                    ));
                    return Some(model.conversations.len() - 1);
                }
            }
        }
        Op::Append { user, conv, batch } => {
            return append(store, users, model, *user, *conv, batch, None);
        }
        Op::AppendIfLast {
            user,
            conv,
            offset,
            branch,
            batch,
        } => {
            let found = model.resolve(*user, *conv).map(|i| &model.conversations[i]);
            let last = found.map_or(0, |c| c.messages.len() as i64);
            let named = branch.map(|k| {
                found.map_or(BranchId::ROOT, |c| {
                    let live = c.live();
                    live[k % live.len()]
                })
            });
            return append(
                store,
                users,
                model,
                *user,
                *conv,
                batch,
                Some((last + offset, named)),
            );
        }
        Op::Retry { user, earlier } => {
            let sent = earlier
                .checked_rem(model.sent.len())
                .map(|i| model.sent[i].clone())?;
            let batch: Vec<(Option<MessageId>, Draft)> = sent
                .batch
                .iter()
                .map(|(id, d)| (Some(*id), d.clone()))
                .collect();
            let conv = model.conversations[sent.conv].id;
            let result = store.append_messages(&users[*user], conv, &new_messages(&batch));
            match Some(sent.conv).filter(|&i| model.visible(*user, i)) {
                // The conversation is gone (or never was the user's): so are its messages, and the
                // retry is an append to a conversation that is not there.
                None => assert!(matches!(result, Err(Error::NotFound)), "{result:?}"),
                Some(i) => {
                    let stored: Vec<Message> = sent
                        .batch
                        .iter()
                        .map(|(id, _)| {
                            let c = &model.conversations[i];
                            c.path_with(*id)
                                .and_then(|path| path.iter().find(|m| m.id == *id))
                                .cloned()
                                .expect("a sent batch is stored")
                        })
                        .collect();
                    assert_eq!(result.unwrap(), stored, "a retry returns what was stored");
                    return Some(i);
                }
            }
        }
        Op::Rename { user, conv, title } => {
            let (id, visible) = model.target(*user, *conv);
            let result = store.rename_conversation(&users[*user], id, title.as_deref());
            match (expected_title(title), visible) {
                (Err(()), _) => {
                    assert!(matches!(result, Err(Error::InvalidTitle(_))), "{result:?}")
                }
                (Ok(_), None) => assert!(matches!(result, Err(Error::NotFound)), "{result:?}"),
                (Ok(title), Some(i)) => {
                    let c = result.unwrap();
                    let m = &mut model.conversations[i];
                    assert_eq!(c.title, title);
                    assert!(c.updated_at >= m.updated_at, "updated_at never goes back");
                    m.title = title;
                    m.updated_at = c.updated_at;
                    return Some(i);
                }
            }
        }
        Op::Delete { user, conv } => {
            let (id, visible) = model.target(*user, *conv);
            let result = store.delete_conversation(&users[*user], id);
            match visible {
                None => assert!(matches!(result, Err(Error::NotFound)), "{result:?}"),
                Some(i) => {
                    result.unwrap();
                    model.conversations[i].deleted = true;
                    return Some(i);
                }
            }
        }
        Op::DeleteUserData { user } => {
            let counts = store.delete_user_data(&users[*user]).unwrap();
            let mut expected = (0, 0);
            for c in model.conversations.iter_mut() {
                if c.owner == *user && !c.deleted {
                    c.deleted = true;
                    expected.0 += 1;
                    expected.1 += c.stored() as u64;
                }
            }
            assert_eq!((counts.conversations, counts.messages), expected);
        }
        Op::Read { user, conv, window } => {
            let (id, visible) = model.target(*user, *conv);
            let result = store.messages(&users[*user], id, *window);
            match visible {
                None => assert!(matches!(result, Err(Error::NotFound)), "{result:?}"),
                Some(i) => {
                    let page = result.unwrap();
                    let all = &model.conversations[i].messages;
                    assert_eq!(page.total, all.len() as i64);
                    assert_eq!(page.messages, expected_window(all, *window), "{window:?}");
                    if let (Some(first), Some(last)) = (page.messages.first(), page.messages.last())
                    {
                        assert_eq!(page.older.is_some(), first.seq > 1);
                        assert_eq!(page.newer.is_some(), last.seq < page.total);
                    }
                }
            }
        }
        Op::List { user, page_size } => {
            let mut listed = Vec::new();
            let mut page = Page::first(*page_size);
            loop {
                let result = store.list_conversations(&users[*user], page).unwrap();
                assert!(result.conversations.len() <= *page_size as usize);
                listed.extend(result.conversations);
                match result.next {
                    Some(next) => page = next,
                    None => break,
                }
            }
            let listed: Vec<_> = listed
                .into_iter()
                .map(|c| (c.id, c.title, c.message_count, c.updated_at))
                .collect();
            assert_eq!(listed, model.listed(*user));
        }
        Op::Pop { user, conv, n } => {
            let (id, visible) = model.target(*user, *conv);
            let result = store.pop_messages(&users[*user], id, *n);
            let keep =
                visible.map(|i| model.conversations[i].messages.len() as i64 - i64::from(*n));
            return removed(store, users, model, visible, keep.map(|k| k.max(0)), result);
        }
        Op::Truncate { user, conv, after } => {
            let (id, visible) = model.target(*user, *conv);
            let result = store.truncate_messages(&users[*user], id, *after);
            if *after < 0 {
                assert!(matches!(result, Err(Error::InvalidSeq(_))), "{result:?}");
                return None;
            }
            return removed(store, users, model, visible, Some(*after), result);
        }
        Op::Clear { user, conv } => {
            let (id, visible) = model.target(*user, *conv);
            let before = visible.map_or(0, |i| model.conversations[i].messages.len() as u64);
            let result = store.clear_messages(&users[*user], id);
            let result = result.map(|count| {
                assert_eq!(count, before);
                Vec::new()
            });
            return removed(store, users, model, visible, Some(0), result);
        }
        Op::Sibling {
            user,
            conv,
            k,
            batch,
        } => {
            let (id, visible) = model.target(*user, *conv);
            let of = visible.and_then(|i| {
                let path = &model.conversations[i].messages;
                k.checked_rem(path.len()).map(|k| path[k].clone())
            });
            let of = of?;
            let i = visible.expect("a message of its");
            let drafts: Vec<(Option<MessageId>, Draft)> =
                batch.iter().map(|d| (None, d.clone())).collect();
            let result = store.append_sibling(&users[*user], id, of.id, &new_messages(&drafts));
            if let Some(expected) = refused(batch) {
                assert!(result.as_ref().is_err_and(expected), "{result:?}");
                return None;
            }
            let stored = result.unwrap();
            let c = &mut model.conversations[i];
            let branch = stored[0].branch;
            assert!(
                c.given.insert(branch),
                "a new branch, with an id never given before"
            );
            for (k, (m, d)) in stored.iter().zip(batch).enumerate() {
                assert_eq!((m.seq, m.branch), (of.seq + k as i64, branch));
                assert_eq!(
                    (m.role, &m.content, &m.metadata, m.usage, &m.parts),
                    (d.role, &d.content, &d.metadata, d.usage, &d.parts)
                );
            }
            let mut path = c.messages[..of.seq as usize - 1].to_vec();
            path.extend(stored.iter().cloned());
            let old = std::mem::replace(&mut c.messages, path);
            c.others.insert(c.active, old);
            c.active = branch;
            let now = store.conversation(&users[*user], id).unwrap();
            assert!(now.updated_at >= c.updated_at);
            assert_eq!(
                (now.branch, now.message_count),
                (branch, c.messages.len() as i64)
            );
            c.updated_at = now.updated_at;
            return Some(i);
        }
        Op::Switch { user, conv, k } => {
            let (id, visible) = model.target(*user, *conv);
            let Some(i) = visible else {
                let result = store.switch_branch(&users[*user], id, BranchId::ROOT);
                assert!(matches!(result, Err(Error::NotFound)), "{result:?}");
                return None;
            };
            let c = &mut model.conversations[i];
            let live = c.live();
            let to = live[k % live.len()];
            let now = store.switch_branch(&users[*user], id, to).unwrap();
            if to != c.active {
                let path = c.others.remove(&to).expect("live");
                let old = std::mem::replace(&mut c.messages, path);
                c.others.insert(c.active, old);
                c.active = to;
                assert!(now.updated_at >= c.updated_at);
            } else {
                assert_eq!(now.updated_at, c.updated_at, "nothing written");
            }
            assert_eq!(
                (now.branch, now.message_count),
                (to, c.messages.len() as i64)
            );
            c.updated_at = now.updated_at;
            return Some(i);
        }
        Op::DeleteBranch { user, conv, k } => {
            let (id, visible) = model.target(*user, *conv);
            let Some(i) = visible else {
                let result = store.delete_branch(&users[*user], id, BranchId::ROOT);
                assert!(matches!(result, Err(Error::NotFound)), "{result:?}");
                return None;
            };
            let c = &mut model.conversations[i];
            let live = c.live();
            let gone = live[k % live.len()];
            let result = store.delete_branch(&users[*user], id, gone);
            if live.len() == 1 {
                assert!(matches!(result, Err(Error::LastBranch)), "{result:?}");
                return Some(i);
            }
            let now = result.unwrap();
            if gone == c.active {
                let path = c
                    .others
                    .remove(&now.branch)
                    .expect("the new active branch was live");
                c.messages = path;
                c.active = now.branch;
            } else {
                c.others.remove(&gone);
                assert_eq!(now.branch, c.active);
            }
            assert_eq!(now.message_count, c.messages.len() as i64);
            assert!(now.updated_at >= c.updated_at);
            c.updated_at = now.updated_at;
            // A batch whose messages went with the branch is not one to retry as stored.
            let kept: HashSet<MessageId> = c
                .messages
                .iter()
                .chain(c.others.values().flatten())
                .map(|m| m.id)
                .collect();
            model.sent.retain(|sent| {
                sent.batch.iter().all(|(id, _)| kept.contains(id)) || sent.conv != i
            });
            return Some(i);
        }
        Op::Fork { user, conv, of, k } => {
            let (id, visible) = model.target(*user, *conv);
            // The message to fork through: one of the conversation's own, or of another.
            let through = model.resolve(*user, of.unwrap_or(*conv)).and_then(|i| {
                let messages = &model.conversations[i].messages;
                k.checked_rem(messages.len()).map(|k| messages[k].clone())
            });
            let through = through?;
            let result = store.fork_conversation(&users[*user], id, through.id);
            let source =
                visible.filter(|&i| model.conversations[i].path_with(through.id).is_some());
            let Some(i) = source else {
                assert!(matches!(result, Err(Error::NotFound)), "{result:?}");
                return None;
            };
            let fork = result.unwrap();
            let copied = store
                .messages(&users[*user], fork.id, Window::All)
                .unwrap()
                .messages;
            let source = &model.conversations[i];
            assert_eq!(fork.message_count, through.seq);
            assert_eq!(copied.len() as i64, through.seq);
            let path = source.path_with(through.id).expect("looked up above");
            for (copy, original) in copied.iter().zip(path) {
                crate::support::assert_copied(copy, original);
            }
            let mut forked =
                ModelConversation::new(fork.id, *user, source.title.clone(), fork.updated_at);
            forked.messages = copied;
            model.conversations.push(forked);
            return Some(model.conversations.len() - 1);
        }
    }
    None
}

/// A pop, truncation or clear of the conversation at `visible` (if the user sees it) down to
/// `keep` messages, on the model, checked against the store's `result`.
fn removed(
    store: &ChatStore,
    users: &[UserId],
    model: &mut Model,
    visible: Option<usize>,
    keep: Option<i64>,
    result: Result<Vec<Message>, Error>,
) -> Option<usize> {
    let (Some(i), Some(keep)) = (visible, keep) else {
        assert!(matches!(result, Err(Error::NotFound)), "{result:?}");
        return None;
    };
    let c = &mut model.conversations[i];
    let keep = (keep.max(0) as usize).min(c.messages.len());
    // The branch's own messages to remove that another branch's path holds too: refused.
    let others: HashSet<MessageId> = c.others.values().flatten().map(|m| m.id).collect();
    let shared = c.messages[keep..]
        .iter()
        .filter(|m| m.branch == c.active && others.contains(&m.id))
        .map(|m| m.seq)
        .max();
    if let Some(seq) = shared {
        assert!(
            matches!(result, Err(Error::SharedMessages { seq: s }) if s == seq),
            "{result:?}"
        );
        return Some(i);
    }
    let returned = result.unwrap();
    let gone = c.messages.split_off(keep);
    if !returned.is_empty() {
        assert_eq!(returned, gone, "what was removed, oldest first");
    }
    let now = store.conversation(&users[c.owner], c.id).unwrap();
    assert_eq!(now.message_count, keep as i64);
    if gone.is_empty() {
        assert_eq!(
            now.updated_at, c.updated_at,
            "nothing removed, nothing written"
        );
    } else {
        assert!(now.updated_at >= c.updated_at, "updated_at never goes back");
    }
    c.updated_at = now.updated_at;
    // A batch some of whose messages went is no longer one to retry as stored.
    model.sent.retain(|sent| {
        !sent
            .batch
            .iter()
            .any(|(id, _)| gone.iter().any(|m| m.id == *id))
    });
    Some(i)
}

/// An append (optionally stating the last seq, and perhaps the branch) on the store and the model.
fn append(
    store: &ChatStore,
    users: &[UserId],
    model: &mut Model,
    user: usize,
    conv: Conv,
    drafts: &[Draft],
    last_seq: Option<(i64, Option<BranchId>)>,
) -> Option<usize> {
    let batch: Vec<(Option<MessageId>, Draft)> = drafts
        .iter()
        .map(|d| {
            (
                d.with_id.then(|| MessageId::from(uuid::Uuid::now_v7())),
                d.clone(),
            )
        })
        .collect();
    let new = new_messages(&batch);
    let (id, visible) = model.target(user, conv);
    let result = match last_seq {
        None => store.append_messages(&users[user], id, &new),
        Some((last, None)) => store.append_if_last_seq(&users[user], id, last, &new),
        Some((last, Some(branch))) => {
            store.append_if_last_seq_on(&users[user], id, branch, last, &new)
        }
    };
    let bad = refused(drafts);
    let Some(i) = visible.filter(|_| bad.is_none()) else {
        // Input is checked before ownership: bad content, parts or usage is refused even in a
        // conversation that is not there.
        match bad {
            Some(expected) => assert!(result.as_ref().is_err_and(expected), "{result:?}"),
            None => assert!(matches!(result, Err(Error::NotFound)), "{result:?}"),
        }
        return None;
    };
    let c = &mut model.conversations[i];
    let count = c.messages.len() as i64;
    // The branch is checked first: a count on another branch means nothing.
    if let Some(named) = last_seq.and_then(|(_, b)| b).filter(|&b| b != c.active) {
        match result {
            Err(Error::BranchSwitched { expected, actual }) => {
                assert_eq!((expected, actual), (named, c.active))
            }
            other => panic!("expected another branch, got {other:?}"),
        }
        return Some(i);
    }
    if let Some((expected, _)) = last_seq.filter(|&(last, _)| last != count) {
        match result {
            Err(Error::Conflict {
                expected: e,
                actual,
            }) => assert_eq!((e, actual), (expected, count)),
            other => panic!("expected a conflict, got {other:?}"),
        }
        return Some(i);
    }
    let stored = result.unwrap();
    assert_eq!(stored.len(), drafts.len());
    for (k, (m, (id, d))) in stored.iter().zip(&batch).enumerate() {
        assert_eq!(m.seq, count + 1 + k as i64, "seqs continue without a gap");
        assert_eq!(
            (m.role, &m.content, &m.metadata, m.usage, &m.parts),
            (d.role, &d.content, &d.metadata, d.usage, &d.parts)
        );
        assert_eq!(m.conversation_id, c.id);
        if let Some(id) = id {
            assert_eq!(m.id, *id);
        }
    }
    if let Some(last) = stored.last() {
        assert!(last.created_at >= c.updated_at, "time follows seq");
        c.updated_at = last.created_at;
    }
    c.messages.extend(stored.iter().cloned());
    if !stored.is_empty() && batch.iter().all(|(id, _)| id.is_some()) {
        model.sent.push(Sent {
            conv: i,
            batch: batch.into_iter().map(|(id, d)| (id.unwrap(), d)).collect(),
        });
    }
    Some(i)
}

/// The window, worked out on the whole history.
pub(crate) fn expected_window(all: &[Message], window: Window) -> Vec<Message> {
    fn take_last(v: Vec<&Message>, n: usize) -> Vec<&Message> {
        v[v.len().saturating_sub(n)..].to_vec()
    }
    let picked: Vec<&Message> = match window {
        Window::All => all.iter().collect(),
        Window::Latest(n) => take_last(all.iter().collect(), n as usize),
        Window::Before { seq, limit } => {
            take_last(all.iter().filter(|m| m.seq < seq).collect(), limit as usize)
        }
        Window::After { seq, limit } => all
            .iter()
            .filter(|m| m.seq > seq)
            .take(limit as usize)
            .collect(),
        _ => unreachable!("a window the model does not know"),
    };
    picked.into_iter().cloned().collect()
}

/// Everything the acting user can see after a step, against the model: the whole list, and the
/// touched conversation's whole history (or its absence).
fn agree(store: &ChatStore, users: &[UserId], model: &Model, touched: Option<usize>) {
    for (u, user) in users.iter().enumerate() {
        let listed: Vec<_> = store
            .list_conversations(user, Page::first(100))
            .unwrap()
            .conversations
            .into_iter()
            .map(|c| (c.id, c.title, c.message_count, c.updated_at))
            .collect();
        assert_eq!(listed, model.listed(u), "{user}'s list");
        let usage: Usage = model
            .conversations
            .iter()
            .filter(|c| c.owner == u && !c.deleted)
            .map(ModelConversation::usage)
            .sum();
        assert_eq!(store.usage(user).unwrap(), usage, "{user}'s usage");
    }
    if let Some(c) = touched.map(|i| &model.conversations[i]) {
        let owner = &users[c.owner];
        let read = store.messages(owner, c.id, Window::All);
        if c.deleted {
            assert!(matches!(read, Err(Error::NotFound)), "{read:?}");
        } else {
            assert_eq!(read.unwrap().messages, c.messages);
            let totals = store.conversation(owner, c.id).unwrap().usage;
            assert_eq!(totals, c.usage(), "the conversation's usage, summed");
        }
    }
}

/// Cases and steps per case: a short run always, a long one with `CHATSTORE_SLOW=1`.
fn config() -> (Config, usize) {
    let (cases, steps) = if super::slow() {
        (1000, 150)
    } else {
        (128, 60)
    };
    let config = Config {
        cases,
        // A failure prints its shrunk sequence; nothing is written into the source tree.
        failure_persistence: None,
        ..Config::default()
    };
    (config, steps)
}

/// Each user's export, imported into `copy`, exports the same records: whatever tree the steps
/// left — retired branches, branches re-forked by pops — an import rebuilds it exactly.
fn exports_import_exactly(store: &ChatStore, copy: &ChatStore, users: &[UserId]) {
    for user in users {
        let records: Vec<ExportItem> = store.export_user(user).map(Result::unwrap).collect();
        let mut rest = records.as_slice();
        while let [ExportItem::Conversation(conversation), tail @ ..] = rest {
            let end = tail
                .iter()
                .position(|r| matches!(r, ExportItem::Conversation(_)))
                .unwrap_or(tail.len());
            let (mut branches, mut messages) = (Vec::new(), Vec::new());
            for record in &tail[..end] {
                match record {
                    ExportItem::Branch(b) => branches.push(b.clone()),
                    ExportItem::Message(m) => messages.push(m.clone()),
                    other => panic!("{other:?}"),
                }
            }
            copy.import_tree(user, conversation, &branches, &messages)
                .unwrap_or_else(|e| panic!("{e}: {conversation:?} {branches:?}"));
            rest = &tail[end..];
        }
        assert!(rest.is_empty());
        let again: Vec<ExportItem> = copy.export_user(user).map(Result::unwrap).collect();
        assert_eq!(
            again, records,
            "{user}'s export, imported and exported again"
        );
    }
}

fn the_store_agrees_with_the_model_after_every_step(db: &TestDb) {
    let store = db.open();
    let copy_db = TestDb::new(db.kind);
    let copy = copy_db.open();
    // Each case has users of its own, so cases share the database and never see each other.
    let case = AtomicUsize::new(0);
    let (config, steps) = config();
    let mut runner = TestRunner::new(config);
    runner
        .run(&prop::collection::vec(op(), 1..steps), |ops| {
            let n = case.fetch_add(1, Ordering::Relaxed);
            let users: Vec<UserId> = (0..USERS)
                .map(|u| UserId::new(format!("case{n}-user{u}")).unwrap())
                .collect();
            let mut model = Model::default();
            for op in &ops {
                let touched = step(&store, &users, &mut model, op);
                agree(&store, &users, &model, touched);
            }
            exports_import_exactly(&store, &copy, &users);
            Ok(())
        })
        .unwrap();
}

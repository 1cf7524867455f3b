//! Cursors: where a read starts — a place in a user's conversation list ([`ConversationCursor`])
//! or a window of a conversation's messages ([`Window`], and the seq bounds it reads) — their serde
//! forms, and the token format that carries either to a client and back. A new kind of cursor
//! (say, for another list order) is a new `Kind` here and nowhere else.
//!
//! A token is URL-safe base64 without padding (the `base64` crate, read strictly: no padding, no
//! other alphabet, no stray bits) of
//!
//! ```text
//! version (1 byte) | kind (1) | payload (0 to 24) | binding (8) | check (4)
//! ```
//!
//! with fixed-width big-endian fields: a list position is `updated_at` in microseconds since 1970
//! (`i64`) and the conversation id (16 bytes), its kind saying which rank of the lists it is in
//! (pinned, listed or archived: kind 1, the only list position before pins, is the listed one);
//! a window is nothing (`All`), its limit (`u32`, `Latest`), or its seq (`i64`) and limit
//! (`Before`, `After`). The binding is a 64-bit hash of
//! everything before it together with the user id (and, for a window, the conversation id); the
//! check is a 32-bit hash of everything before it. The check tells damage from a token that was
//! not made for this user or conversation, which the binding catches.
//!
//! The hash is FNV-1a (64 bits) under a fixed prefix, finished with MurmurHash3's mixer. Both steps
//! are bijections of the state for inputs of equal length, so a change to any one byte changes the
//! hash: a token with one damaged byte is always refused (by the binding, if the truncated check
//! happens to agree), and larger damage all but always. It is not a MAC: the key is in this source,
//! not on a server. (Hand-written on purpose: the tokens already handed out depend on these exact
//! bytes, and a crate's hash may change its output between versions.)

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SubsecRound, Utc};

use crate::ids::{ConversationId, UserId};
use crate::models::{Conversation, ListRank};
use crate::{Error, Result};

/// A position in a user's conversation lists: just after the last conversation of a page, named by
/// its `(updated_at, id)` and whether it is pinned, listed or archived. A service can hand the
/// parts to a client (say, as query parameters) and rebuild the cursor with
/// [`ConversationCursor::new`] (a conversation neither pinned nor archived),
/// [`pinned`](ConversationCursor::pinned) or [`archived`](ConversationCursor::archived) on the
/// next request; a cursor only ever selects among the acting user's conversations, whatever values
/// it holds.
///
/// For an opaque string to hand out instead, see [`to_token`](ConversationCursor::to_token). With
/// the `serde` feature a cursor is `{"updated_at", "id"}`, with `"pinned": true` or
/// `"archived": true` when it follows such a conversation, read back through
/// [`ConversationCursor::new`].
///
/// ```
/// use chatstore::{ConversationCursor, ConversationId};
/// use chrono::{TimeZone, Utc};
///
/// let id: ConversationId = "0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d".parse()?;
/// let when = Utc.with_ymd_and_hms(2026, 11, 24, 8, 15, 56).unwrap();
/// let cursor = ConversationCursor::new(when, id);
/// assert_eq!((cursor.updated_at(), cursor.id()), (when, id));
/// # Ok::<(), chatstore::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "CursorForm", into = "CursorForm")
)]
pub struct ConversationCursor {
    pub(crate) updated_at: NaiveDateTime,
    pub(crate) id: ConversationId,
    pub(crate) rank: ListRank,
}

impl ConversationCursor {
    /// The position just after a conversation with this `updated_at` and `id`, neither pinned nor
    /// archived. Sub-microsecond precision is dropped, as in storage, and a time outside the years
    /// 1 to 9999 is moved to the nearest end of that range: SQLite keeps timestamps as text, which
    /// sorts in time order only with four-digit years (and every stored time is within them).
    pub fn new(updated_at: DateTime<Utc>, id: ConversationId) -> Self {
        Self::ranked(ListRank::Listed, updated_at, id)
    }

    /// The position just after a pinned conversation with this `updated_at` and `id`, in
    /// [`list_conversations`](crate::ChatStore::list_conversations): the pinned conversations
    /// come first, and the list goes on to the others after the last of them.
    ///
    /// ```
    /// # use chatstore::{ChatStore, ConversationCursor, Page, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let first = store.create_conversation(&alice, Some("first"))?;
    /// let second = store.create_conversation(&alice, Some("second"))?;
    /// let pinned = store.pin_conversation(&alice, first.id)?;
    /// let cursor = ConversationCursor::pinned(pinned.updated_at, pinned.id);
    /// let rest = store.list_conversations(&alice, Page::after(cursor, 10))?;
    /// assert_eq!(rest.conversations[0].id, second.id);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn pinned(updated_at: DateTime<Utc>, id: ConversationId) -> Self {
        Self::ranked(ListRank::Pinned, updated_at, id)
    }

    /// The position just after an archived conversation with this `updated_at` and `id`, in
    /// [`list_archived_conversations`](crate::ChatStore::list_archived_conversations).
    pub fn archived(updated_at: DateTime<Utc>, id: ConversationId) -> Self {
        Self::ranked(ListRank::Archived, updated_at, id)
    }

    /// The position just after `conversation` in the list that shows it: the pinned, listed or
    /// archived position its flags say.
    ///
    /// ```
    /// # use chatstore::{ChatStore, ConversationCursor, Page, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// # for _ in 0..3 { store.create_conversation(&alice, None)?; }
    /// let page = store.list_conversations(&alice, Page::first(2))?;
    /// let last = page.conversations.last().expect("two conversations");
    /// assert_eq!(page.next, Some(Page::after(ConversationCursor::after(last), 2)));
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn after(conversation: &Conversation) -> Self {
        Self::ranked(
            conversation.list_rank(),
            conversation.updated_at,
            conversation.id,
        )
    }

    pub(crate) fn ranked(rank: ListRank, updated_at: DateTime<Utc>, id: ConversationId) -> Self {
        let (earliest, latest) = four_digit_years();
        let updated_at = updated_at
            .trunc_subsecs(6)
            .naive_utc()
            .clamp(earliest, latest);
        ConversationCursor {
            updated_at,
            id,
            rank,
        }
    }

    /// Whether it follows a pinned conversation.
    pub fn is_pinned(&self) -> bool {
        self.rank == ListRank::Pinned
    }

    /// Whether it follows an archived conversation (a position in the archived list).
    pub fn is_archived(&self) -> bool {
        self.rank == ListRank::Archived
    }

    /// The `updated_at` of the conversation the cursor follows.
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at.and_utc()
    }

    /// The id of the conversation the cursor follows.
    pub fn id(&self) -> ConversationId {
        self.id
    }
}

/// A [`ConversationCursor`] in serde: `{"updated_at": RFC 3339, "id": UUID}`, with `"pinned":
/// true` or `"archived": true` (absent means false: what every cursor was before pins), read back
/// through [`ConversationCursor::new`], which keeps the time within what storage can compare.
#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename = "ConversationCursor")]
struct CursorForm {
    updated_at: DateTime<Utc>,
    id: ConversationId,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pinned: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    archived: bool,
}

#[cfg(feature = "serde")]
impl TryFrom<CursorForm> for ConversationCursor {
    type Error = &'static str;

    fn try_from(form: CursorForm) -> std::result::Result<Self, Self::Error> {
        let rank = ListRank::of(form.pinned, form.archived)
            .ok_or("a conversation cursor cannot be both pinned and archived")?;
        Ok(ConversationCursor::ranked(rank, form.updated_at, form.id))
    }
}

#[cfg(feature = "serde")]
impl From<ConversationCursor> for CursorForm {
    fn from(cursor: ConversationCursor) -> Self {
        CursorForm {
            updated_at: cursor.updated_at(),
            id: cursor.id(),
            pinned: cursor.is_pinned(),
            archived: cursor.is_archived(),
        }
    }
}

/// The token format; a token of any other version is refused.
const VERSION: u8 = 1;

/// The longest token read, in bytes: the longest token made is 51 characters. Anything longer is
/// refused before it is decoded.
const MAX_TOKEN_BYTES: usize = 64;

/// The fixed key of the binding hash: not a secret, only a name for what is hashed.
const KEY: &[u8] = b"chatstore cursor token\0";

/// Bytes of the binding and the check at the end of a frame.
const BINDING: usize = 8;
const CHECK: usize = 4;

const DAMAGED: &str = "the cursor is damaged";
const FOREIGN: &str = "the cursor was not made for this user or conversation";

/// What a token holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A position among the listed conversations (neither pinned nor archived).
    List = 1,
    /// [`Window::All`].
    All = 2,
    /// [`Window::Latest`].
    Latest = 3,
    /// [`Window::Before`].
    Before = 4,
    /// [`Window::After`].
    After = 5,
    /// A position among the pinned conversations.
    PinnedList = 6,
    /// A position in the archived list.
    ArchivedList = 7,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        [
            Kind::List,
            Kind::All,
            Kind::Latest,
            Kind::Before,
            Kind::After,
            Kind::PinnedList,
            Kind::ArchivedList,
        ]
        .into_iter()
        .find(|kind| *kind as u8 == byte)
    }

    /// Bytes of its payload.
    fn payload_len(self) -> usize {
        match self {
            Kind::List | Kind::PinnedList | Kind::ArchivedList => 8 + 16,
            Kind::All => 0,
            Kind::Latest => 4,
            Kind::Before | Kind::After => 8 + 4,
        }
    }

    fn is_window(self) -> bool {
        !matches!(self, Kind::List | Kind::PinnedList | Kind::ArchivedList)
    }
}

impl ConversationCursor {
    /// This cursor as an opaque token for `user`, to hand to a client and read back with
    /// [`from_token`](Self::from_token): URL-safe base64 without padding, at most 51 characters.
    ///
    /// A token is tamper-evident, not secret and not unforgeable: anyone can decode the time and
    /// the conversation id in it, and since it is not signed with a server key, someone who reads
    /// this crate's source can make one that is accepted. What it catches is a token that was
    /// damaged, cut short, or handed to another user. None of this guards access: every query
    /// filters by the acting user, so any cursor, forged or not, selects among that user's own
    /// conversations only.
    ///
    /// ```
    /// # use chatstore::{ChatStore, ConversationCursor, Page, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// # for _ in 0..3 { store.create_conversation(&alice, None)?; }
    /// let page = store.list_conversations(&alice, Page::first(2))?;
    /// let token = page.next_token(&alice); // page.next's cursor, as a token
    /// // …sent to the client, and back with its next request:
    /// if let Some(token) = token {
    ///     let cursor = ConversationCursor::from_token(&token, &alice)?;
    ///     let rest = store.list_conversations(&alice, Page::after(cursor, 2))?;
    ///     assert_eq!(rest.conversations.len(), 1);
    /// }
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn to_token(&self, user: &UserId) -> String {
        let micros = self.updated_at.and_utc().timestamp_micros();
        let payload = [&micros.to_be_bytes()[..], self.id.as_bytes()].concat();
        let kind = match self.rank {
            ListRank::Listed => Kind::List,
            ListRank::Pinned => Kind::PinnedList,
            ListRank::Archived => Kind::ArchivedList,
        };
        seal(kind, &payload, user, None)
    }

    /// Reads a token made by [`to_token`](Self::to_token) for `user`.
    ///
    /// # Errors
    /// [`Error::InvalidCursor`] if the token is empty, longer than any token made, not URL-safe
    /// base64 without padding, damaged (it carries a checksum; a change to any one of its bytes is
    /// always caught), made by another
    /// version of chatstore, a [`Window`] token, or made for another user.
    pub fn from_token(token: &str, user: &UserId) -> Result<ConversationCursor> {
        let (kind, payload) = open(token, user, None)?;
        let rank = match kind {
            Kind::List => ListRank::Listed,
            Kind::PinnedList => ListRank::Pinned,
            Kind::ArchivedList => ListRank::Archived,
            // Refused by `open`: a list position is expected.
            Kind::All | Kind::Latest | Kind::Before | Kind::After => return Err(damaged()),
        };
        let micros = i64::from_be_bytes(field(&payload, 0)?);
        let id = uuid::Uuid::from_bytes(field(&payload, 8)?);
        let updated_at = DateTime::from_timestamp_micros(micros).ok_or_else(damaged)?;
        Ok(ConversationCursor::ranked(rank, updated_at, id.into()))
    }
}

impl Window {
    /// This window as an opaque token for `user`'s `conversation`, to hand to a client and read back
    /// with [`from_token`](Self::from_token): URL-safe base64 without padding, at most 35
    /// characters. Typically the [`older`](crate::MessagePage::older) and
    /// [`newer`](crate::MessagePage::newer) windows of a page.
    ///
    /// Like a [`ConversationCursor`] token it is tamper-evident, not secret and not unforgeable
    /// (see [`ConversationCursor::to_token`]); it cannot select another user's messages, whatever
    /// it holds.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, UserId, Window};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&alice, None)?.id;
    /// # store.append_messages(&alice, conv, &[NewMessage::user("a"), NewMessage::user("b")])?;
    /// let page = store.messages(&alice, conv, Window::Latest(1))?;
    /// let token = page.older_token(&alice); // page.older, as a token
    /// // …sent to the client, and back when it scrolls up:
    /// if let Some(token) = token {
    ///     let older = Window::from_token(&token, &alice, conv)?;
    ///     assert_eq!(store.messages(&alice, conv, older)?.messages[0].content, "a");
    /// }
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn to_token(&self, user: &UserId, conversation: ConversationId) -> String {
        let seq_and =
            |seq: i64, limit: u32| [&seq.to_be_bytes()[..], &limit.to_be_bytes()].concat();
        let (kind, payload) = match *self {
            Window::All => (Kind::All, Vec::new()),
            Window::Latest(limit) => (Kind::Latest, limit.to_be_bytes().to_vec()),
            Window::Before { seq, limit } => (Kind::Before, seq_and(seq, limit)),
            Window::After { seq, limit } => (Kind::After, seq_and(seq, limit)),
        };
        seal(kind, &payload, user, Some(conversation))
    }

    /// Reads a token made by [`to_token`](Self::to_token) for `user` and `conversation`.
    ///
    /// # Errors
    /// [`Error::InvalidCursor`] if the token is empty, longer than any token made, not URL-safe
    /// base64 without padding, damaged (it carries a checksum; a change to any one of its bytes is
    /// always caught), made by another
    /// version of chatstore, a [`ConversationCursor`] token, or made for another user or another
    /// conversation.
    pub fn from_token(token: &str, user: &UserId, conversation: ConversationId) -> Result<Window> {
        let (kind, payload) = open(token, user, Some(conversation))?;
        let seq = || field(&payload, 0).map(i64::from_be_bytes);
        let limit = |at| field(&payload, at).map(u32::from_be_bytes);
        Ok(match kind {
            // Refused by `open`: a window is expected.
            Kind::List | Kind::PinnedList | Kind::ArchivedList => return Err(damaged()),
            Kind::All => Window::All,
            Kind::Latest => Window::Latest(limit(0)?),
            Kind::Before => Window::Before {
                seq: seq()?,
                limit: limit(8)?,
            },
            Kind::After => Window::After {
                seq: seq()?,
                limit: limit(8)?,
            },
        })
    }
}

fn invalid<T>(why: &str) -> Result<T> {
    Err(Error::InvalidCursor(why.to_owned()))
}

fn damaged() -> Error {
    Error::InvalidCursor(DAMAGED.to_owned())
}

/// `N` bytes of `payload` from `at` (whose length was checked against its kind).
fn field<const N: usize>(payload: &[u8], at: usize) -> Result<[u8; N]> {
    payload
        .get(at..at + N)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(damaged)
}

/// The token of `payload`, bound to `user` (and `conversation`).
fn seal(kind: Kind, payload: &[u8], user: &UserId, conversation: Option<ConversationId>) -> String {
    let mut frame = Vec::with_capacity(2 + payload.len() + BINDING + CHECK);
    frame.extend([VERSION, kind as u8]);
    frame.extend_from_slice(payload);
    let binding = binding(&frame, user, conversation);
    frame.extend(binding.to_be_bytes());
    let check = check(&frame);
    frame.extend(check);
    encode(&frame)
}

/// The kind and payload of `token`, if it is whole and was made for `user` — and if it is a window
/// made for `conversation`, when one is given, or else a list position.
fn open(
    token: &str,
    user: &UserId,
    conversation: Option<ConversationId>,
) -> Result<(Kind, Vec<u8>)> {
    if token.is_empty() {
        return invalid("the cursor is empty");
    }
    if token.len() > MAX_TOKEN_BYTES {
        return invalid(&format!(
            "the cursor is longer than {MAX_TOKEN_BYTES} bytes"
        ));
    }
    let Some(frame) = decode(token) else {
        return invalid("the cursor is not URL-safe base64 without padding");
    };
    if frame.len() < 2 + BINDING + CHECK {
        return Err(damaged());
    }
    let (sealed, stated_check) = frame.split_at(frame.len() - CHECK);
    if check(sealed) != stated_check {
        return Err(damaged());
    }
    if sealed[0] != VERSION {
        return invalid("the cursor was made by another version of chatstore");
    }
    let kind = Kind::from_byte(sealed[1]).ok_or_else(damaged)?;
    match (kind.is_window(), conversation.is_some()) {
        (true, false) => {
            return invalid(
                "the cursor is a window of messages, not a place in the conversation list",
            )
        }
        (false, true) => {
            return invalid(
                "the cursor is a place in the conversation list, not a window of messages",
            )
        }
        _ => {}
    }
    if sealed.len() != 2 + kind.payload_len() + BINDING {
        return Err(damaged());
    }
    let (content, stated_binding) = sealed.split_at(sealed.len() - BINDING);
    if binding(content, user, conversation).to_be_bytes() != stated_binding {
        return invalid(FOREIGN);
    }
    Ok((kind, content[2..].to_vec()))
}

/// The hash that ties a token's content to its user and conversation.
fn binding(content: &[u8], user: &UserId, conversation: Option<ConversationId>) -> u64 {
    let user = user.as_str().as_bytes();
    hash(&[
        KEY,
        content,
        &(user.len() as u64).to_be_bytes(),
        user,
        conversation.as_ref().map_or(&[], ConversationId::as_bytes),
    ])
}

/// The checksum that tells a damaged token.
fn check(frame: &[u8]) -> [u8; CHECK] {
    let [.., a, b, c, d] = hash(&[frame]).to_be_bytes();
    [a, b, c, d]
}

/// FNV-1a (64 bits) of the concatenated `parts`, finished with MurmurHash3's `fmix64` so that
/// every input bit reaches every output bit. Both steps are bijections of the state, so inputs of
/// equal length that differ in one byte always hash apart.
fn hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in parts.iter().flat_map(|part| part.iter()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// `bytes` as URL-safe base64 without padding.
fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The bytes of URL-safe base64 without padding, read strictly: only the alphabet, no padding, and
/// no bit set past the last byte, so that each byte string has exactly one text.
fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// The first and last microsecond of the years 1 to 9999 (checked at compile time).
pub(crate) fn four_digit_years() -> (NaiveDateTime, NaiveDateTime) {
    const FIRST: NaiveDateTime = match NaiveDate::from_ymd_opt(1, 1, 1) {
        Some(day) => day.and_time(NaiveTime::MIN),
        None => panic!("year 1 is a date"),
    };
    const LAST: NaiveDateTime = match (
        NaiveDate::from_ymd_opt(9999, 12, 31),
        NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999),
    ) {
        (Some(day), Some(time)) => day.and_time(time),
        _ => panic!("the last microsecond of 9999 is a time"),
    };
    (FIRST, LAST)
}

/// Which messages of a conversation to read. Every window comes back in chronological order
/// (ascending `seq`), and reads only the rows it returns: `Latest(50)` costs the same on a
/// 100-message history as on a 100,000-message one. A window holds at most the store's
/// [`max_window`](crate::StoreBuilder::max_window) messages: larger sizes are cut to it, and
/// `All` is refused on a longer history.
///
/// With the `serde` feature: `"all"`, `{"latest": n}`, `{"before": {"seq", "limit"}}` or
/// `{"after": {"seq", "limit"}}`. For an opaque string to hand out instead, see
/// [`to_token`](Window::to_token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Window {
    /// The whole history — if it has at most the store's
    /// [`max_window`](crate::StoreBuilder::max_window) messages; otherwise the call is refused
    /// with [`Error::WindowTooLarge`] (read it with `After { seq: 0, limit }` and each page's
    /// [`newer`](crate::MessagePage::newer) instead).
    All,
    /// The newest `n` messages — what a prompt builder asks for.
    Latest(u32),
    /// Up to `limit` messages immediately older than `seq` (exclusive).
    Before {
        /// Exclusive upper bound.
        seq: i64,
        /// Most messages to return.
        limit: u32,
    },
    /// Up to `limit` messages immediately newer than `seq` (exclusive); `After { seq: 0, .. }` starts
    /// at the beginning.
    After {
        /// Exclusive lower bound.
        seq: i64,
        /// Most messages to return.
        limit: u32,
    },
}

impl Window {
    /// The seq bounds of this window, for a read that learns the message count (`count`) in the
    /// same statement: the rows with `lo <= seq <= hi` and `seq > min(count, hi) - back`. Seqs
    /// have no gaps, so the bounds select exactly the window's rows from an index range.
    pub(crate) fn bounds(self) -> SeqBounds {
        const ANY: i64 = i64::MAX;
        match self {
            Window::All => SeqBounds::new(1, ANY, ANY),
            Window::Latest(n) => SeqBounds::new(1, ANY, i64::from(n)),
            // A cursor past the end counts back from the end.
            Window::Before { seq, limit } => {
                SeqBounds::new(1, seq.saturating_sub(1), i64::from(limit))
            }
            Window::After { seq, limit } => {
                let lo = seq.saturating_add(1).max(1);
                SeqBounds::new(lo, lo.saturating_add(i64::from(limit)) - 1, ANY)
            }
        }
    }

    pub(crate) fn limit(self) -> u32 {
        match self {
            Window::All => u32::MAX,
            Window::Latest(limit) | Window::Before { limit, .. } | Window::After { limit, .. } => {
                limit
            }
        }
    }

    /// This window within a store's cap of `max` messages: a sized window asking for more is cut
    /// to `max`; `All` stays `All`, and is read as the first `max` messages (see
    /// [`StoreBuilder::max_window`](crate::StoreBuilder::max_window)). Returns the window as
    /// answered and the window to read.
    pub(crate) fn capped(self, max: u32) -> (Window, Window) {
        let window = match self {
            Window::All => return (Window::All, Window::After { seq: 0, limit: max }),
            Window::Latest(n) => Window::Latest(n.min(max)),
            Window::Before { seq, limit } => Window::Before {
                seq,
                limit: limit.min(max),
            },
            Window::After { seq, limit } => Window::After {
                seq,
                limit: limit.min(max),
            },
        };
        (window, window)
    }
}

/// Seq bounds: see [`Window::bounds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeqBounds {
    pub(crate) lo: i64,
    pub(crate) hi: i64,
    pub(crate) back: i64,
}

impl SeqBounds {
    /// `hi` is clamped to 0 or more, so `min(count, hi) - back` cannot overflow in SQL (`back` is
    /// at most `i64::MAX` and the count is never negative).
    fn new(lo: i64, hi: i64, back: i64) -> Self {
        SeqBounds {
            lo,
            hi: hi.max(0),
            back,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn alice() -> UserId {
        UserId::new("alice").unwrap()
    }

    #[test]
    fn base64_matches_the_rfc_and_refuses_other_spellings() {
        // RFC 4648 §10, without padding.
        let vectors = [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ];
        for (bytes, text) in vectors {
            assert_eq!(encode(bytes.as_bytes()), text);
            assert_eq!(decode(text).as_deref(), Some(bytes.as_bytes()));
        }
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
        // Padding, the standard alphabet, a dangling character, stray bits past the end.
        for bad in ["Zg==", "+/8", "Zm9vY", "Zh", "Zm9", "Zm 9v"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn base64_round_trips_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = encode(&bytes);
            prop_assert!(text
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
            prop_assert_eq!(decode(&text), Some(bytes));
        }
    }

    /// Every token kind, for alice in `conversation`.
    fn tokens(conversation: ConversationId) -> Vec<String> {
        let cursor = ConversationCursor::new(chrono::Utc::now(), conversation);
        let mut tokens = vec![cursor.to_token(&alice())];
        for window in [
            Window::All,
            Window::Latest(50),
            Window::Before { seq: 7, limit: 20 },
            Window::After {
                seq: i64::MIN,
                limit: u32::MAX,
            },
        ] {
            tokens.push(window.to_token(&alice(), conversation));
        }
        tokens
    }

    /// Whether `token` reads as either kind, for alice in `conversation`.
    fn accepted(token: &str, conversation: ConversationId) -> bool {
        ConversationCursor::from_token(token, &alice()).is_ok()
            || Window::from_token(token, &alice(), conversation).is_ok()
    }

    #[test]
    fn every_changed_bit_of_a_frame_is_caught() {
        let conversation = ConversationId::generate();
        for token in tokens(conversation) {
            assert!(accepted(&token, conversation));
            assert!(token.len() <= 51, "{token}");
            let frame = decode(&token).unwrap();
            for bit in 0..frame.len() * 8 {
                let mut flipped = frame.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                let flipped = encode(&flipped);
                assert!(!accepted(&flipped, conversation), "{token}: bit {bit}");
                // Caught by the check, not mistaken for another user's token.
                let error = ConversationCursor::from_token(&flipped, &alice()).unwrap_err();
                assert_eq!(error.to_string(), DAMAGED, "{token}: bit {bit}");
            }
        }
    }

    #[test]
    fn a_whole_token_with_an_impossible_time_is_refused_without_a_panic() {
        let mut payload = [0; 24];
        payload[..8].copy_from_slice(&i64::MAX.to_be_bytes());
        let token = seal(Kind::List, &payload, &alice(), None);
        let error = ConversationCursor::from_token(&token, &alice()).unwrap_err();
        assert_eq!(error.to_string(), DAMAGED);
        // A payload too short for its kind, with a valid check and binding.
        let conversation = ConversationId::generate();
        let token = seal(Kind::Before, &[0; 4], &alice(), Some(conversation));
        let error = Window::from_token(&token, &alice(), conversation).unwrap_err();
        assert_eq!(error.to_string(), DAMAGED);
    }

    /// The fixed inputs of the pinned tokens below.
    fn pinned_inputs() -> (ConversationId, ConversationCursor) {
        let conversation: ConversationId = "0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d".parse().unwrap();
        let time = DateTime::parse_from_rfc3339("2026-11-24T08:15:56.724622Z").unwrap();
        (
            conversation,
            ConversationCursor::new(time.into(), conversation),
        )
    }

    /// Tokens already handed out must keep working: the exact text of each kind, for fixed inputs,
    /// and that each reads back as what made it.
    #[test]
    fn tokens_are_pinned_byte_for_byte() {
        let (conversation, cursor) = pinned_inputs();
        let bob = UserId::new("bôb 日本").unwrap();
        for (user, expected) in [
            (
                alice(),
                "AQEABmEBUd91jgGTo8Reb3qLnA0eLzpLXG1c9rwCbq6_crVpcjc",
            ),
            (
                bob.clone(),
                "AQEABmEBUd91jgGTo8Reb3qLnA0eLzpLXG23F7wWIvauyqY4cUo",
            ),
        ] {
            let token = cursor.to_token(&user);
            assert_eq!(token, expected);
            assert_eq!(
                ConversationCursor::from_token(expected, &user).unwrap(),
                cursor
            );
        }
        let windows = [
            (Window::All, "AQIm8x_YFndNh4AnUKY"),
            (Window::Latest(50), "AQMAAAAypIR7PGEHiif1qyT0"),
            (
                Window::Before { seq: 7, limit: 20 },
                "AQQAAAAAAAAABwAAABQkuJpU9qPnwR0Ih5o",
            ),
            (
                Window::After {
                    seq: i64::MIN,
                    limit: u32::MAX,
                },
                "AQWAAAAAAAAAAP____-AFBLIfI7yVqsclvk",
            ),
        ];
        for (window, expected) in windows {
            assert_eq!(window.to_token(&alice(), conversation), expected);
            let back = Window::from_token(expected, &alice(), conversation).unwrap();
            assert_eq!(back, window);
        }
        assert_eq!(
            Window::Latest(50).to_token(&bob, conversation),
            "AQMAAAAy_lpExMsHdpw21fF0"
        );
    }

    /// Each refusal of a token, with its exact message (which never repeats the token).
    #[test]
    fn token_refusals_are_pinned() {
        let (conversation, cursor) = pinned_inputs();
        let other: ConversationId = "0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6e".parse().unwrap();
        let bob = UserId::new("bob").unwrap();
        let list = cursor.to_token(&alice());
        let window = Window::Latest(50).to_token(&alice(), conversation);
        let as_list = |token: &str, user: &UserId| {
            ConversationCursor::from_token(token, user)
                .unwrap_err()
                .to_string()
        };
        let as_window = |token: &str, user: &UserId, conversation| {
            Window::from_token(token, user, conversation)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(as_list("", &alice()), "the cursor is empty");
        assert_eq!(
            as_list(&"A".repeat(65), &alice()),
            "the cursor is longer than 64 bytes"
        );
        for bad in ["Zg==", "+/8", "Zm9vY", "Zh", "Zm 9v", "é"] {
            assert_eq!(
                as_list(bad, &alice()),
                "the cursor is not URL-safe base64 without padding",
                "{bad}"
            );
        }
        assert_eq!(as_list("AAAA", &alice()), DAMAGED);
        let frame = decode(&list).unwrap();
        assert_eq!(
            as_list(&encode(&frame[..frame.len() - 1]), &alice()),
            DAMAGED
        );
        assert_eq!(as_list(&list, &bob), FOREIGN);
        assert_eq!(as_window(&window, &bob, conversation), FOREIGN);
        assert_eq!(as_window(&window, &alice(), other), FOREIGN);
        assert_eq!(
            as_list(&window, &alice()),
            "the cursor is a window of messages, not a place in the conversation list"
        );
        assert_eq!(
            as_window(&list, &alice(), conversation),
            "the cursor is a place in the conversation list, not a window of messages"
        );
    }

    #[test]
    fn tokens_of_another_version_are_refused_as_such() {
        let mut frame = vec![VERSION + 1, Kind::All as u8];
        let binding = binding(&frame, &alice(), None);
        frame.extend(binding.to_be_bytes());
        let check = check(&frame);
        frame.extend(check);
        let error = ConversationCursor::from_token(&encode(&frame), &alice()).unwrap_err();
        assert!(error.to_string().contains("another version"), "{error}");
    }
}

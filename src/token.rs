//! Cursor tokens: a [`ConversationCursor`] or a [`Window`] as a short opaque string that a web
//! service can hand to a client (say, as a query parameter) and take back on the next request.
//!
//! A token is URL-safe base64 without padding of
//!
//! ```text
//! version (1 byte) | kind (1) | payload (0 to 24) | binding (8) | check (4)
//! ```
//!
//! with fixed-width big-endian fields: a list position is `updated_at` in microseconds since 1970
//! (`i64`) and the conversation id (16 bytes); a window is nothing (`All`), its limit (`u32`,
//! `Latest`), or its seq (`i64`) and limit (`Before`, `After`). The binding is a 64-bit hash of
//! everything before it together with the user id (and, for a window, the conversation id); the
//! check is a 32-bit hash of everything before it. The check tells damage from a token that was
//! not made for this user or conversation, which the binding catches.
//!
//! The hash is FNV-1a (64 bits) under a fixed prefix, finished with MurmurHash3's mixer. Both steps
//! are bijections of the state for inputs of equal length, so a change to any one byte changes the
//! hash: a token with one damaged byte is always refused (by the binding, if the truncated check
//! happens to agree), and larger damage all but always. It is not a MAC: the key is in this source,
//! not on a server.

use chrono::DateTime;

use crate::ids::{ConversationId, UserId};
use crate::page::{ConversationCursor, Window};
use crate::{Error, Result};

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
    /// A position in the conversation list.
    List = 1,
    /// [`Window::All`].
    All = 2,
    /// [`Window::Latest`].
    Latest = 3,
    /// [`Window::Before`].
    Before = 4,
    /// [`Window::After`].
    After = 5,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        [
            Kind::List,
            Kind::All,
            Kind::Latest,
            Kind::Before,
            Kind::After,
        ]
        .into_iter()
        .find(|kind| *kind as u8 == byte)
    }

    /// Bytes of its payload.
    fn payload_len(self) -> usize {
        match self {
            Kind::List => 8 + 16,
            Kind::All => 0,
            Kind::Latest => 4,
            Kind::Before | Kind::After => 8 + 4,
        }
    }

    fn is_window(self) -> bool {
        self != Kind::List
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
    /// let token = page.next.and_then(|next| next.cursor()).map(|c| c.to_token(&alice));
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
        seal(Kind::List, &payload, user, None)
    }

    /// Reads a token made by [`to_token`](Self::to_token) for `user`.
    ///
    /// # Errors
    /// [`Error::InvalidCursor`] if the token is empty, longer than any token made, not URL-safe
    /// base64 without padding, damaged (it carries a checksum; a change to any one of its bytes is
    /// always caught), made by another
    /// version of chatstore, a [`Window`] token, or made for another user.
    pub fn from_token(token: &str, user: &UserId) -> Result<ConversationCursor> {
        let (_, payload) = open(token, user, None)?;
        let micros = i64::from_be_bytes(field(&payload, 0)?);
        let id = uuid::Uuid::from_bytes(field(&payload, 8)?);
        let updated_at = DateTime::from_timestamp_micros(micros).ok_or_else(damaged)?;
        Ok(ConversationCursor::new(updated_at, id.into()))
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
    /// let token = page.older.map(|older| older.to_token(&alice, conv));
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
            Kind::List => return Err(damaged()),
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

/// The URL-safe base64 alphabet (RFC 4648 §5).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `bytes` as URL-safe base64 without padding.
fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word = chunk
            .iter()
            .enumerate()
            .fold(0u32, |word, (i, &b)| word | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(word >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

/// The value of one base64 character, if it is one of the URL-safe alphabet.
fn sextet(c: u8) -> Option<u32> {
    let value = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    };
    Some(u32::from(value))
}

/// The bytes of URL-safe base64 without padding, read strictly: only the alphabet, and no bit set
/// past the last byte, so that each byte string has exactly one text.
fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    for chunk in text.chunks(4) {
        let word = chunk.iter().enumerate().try_fold(0u32, |word, (i, &c)| {
            Some(word | sextet(c)? << (18 - 6 * i))
        })?;
        // Four characters make three bytes, three make two, two make one.
        let bytes = chunk.len() - 1;
        if word & (0x00ff_ffff >> (8 * bytes)) != 0 {
            return None;
        }
        out.extend_from_slice(&word.to_be_bytes()[1..=bytes]);
    }
    Some(out)
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
            prop_assert!(text.bytes().all(|c| sextet(c).is_some()));
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

//! Full-text search over a user's messages: the query language, the words the indexes hold, and
//! the highlighted snippets. The SQL is in `queries/search.rs`.
//!
//! One reader of words serves every backend, for messages and queries alike ([`tokens`]), so
//! that a query finds the same messages on each: the store's own word index (MySQL) holds what it
//! reads, and the SQLite and PostgreSQL indexes are given its words ([`search_text`]) wherever
//! their own tokenizers would read the text otherwise — which they do beyond ASCII (SQLite splits
//! words at combining marks, PostgreSQL drops `²` and, in a `C`-locale database, folds no case
//! beyond ASCII) and in a few ASCII words (PostgreSQL reads `8e1ba` as `8e1` and `ba`). Query
//! words are sent folded, as the indexes hold them. The measurements behind the alphabet are in
//! `search/alphabet.rs`.

use std::ops::Range;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::UnicodeGeneralCategory;

use crate::ids::ConversationId;
use crate::models::Message;
use crate::{Error, Result};

mod alphabet;

/// The largest [`SearchQuery::offset`] a search serves: with the largest page, the first 1,100
/// matches can be read. It bounds the work a request can ask for, since every match before the
/// page is found (and on MySQL, checked) to be skipped.
pub const MAX_SEARCH_OFFSET: u32 = 1000;

/// A search: what to look for, where, in which order, which page.
///
/// The query is words, all of which must occur (in any order); `"quoted words"` must occur
/// together in that order; a word ending in `*` matches any word it begins. There are no
/// operators. Messages and queries are read into words by one rule, the same on every backend,
/// so a query finds the same messages on each:
///
/// - **Words** are runs of letters and digits: ASCII ones, and those of the alphabet every
///   backend's index holds alike — the letters, decimal digits and letter numbers of Unicode 10
///   (every script in common use; see `src/search/alphabet.rs` for the measurements). In a
///   script written without spaces (Chinese, Japanese, Thai, Lao, Khmer), each character is a
///   word of its own, so "東京" is found as a phrase of two inside "東京タワー". No word is
///   stemmed or dropped as a stop word, in any language.
/// - **Folded**: case is ignored (with Unicode's case folding: "ΟΔΟΣ" finds "οδος"), and so are
///   the combining diacritical marks U+0300–U+036F ("creme" finds "Crème", "мои" finds "мой",
///   "καφες" finds "Καφές"). Other marks count where they compose with their letter ("が" is not
///   "か") and are ignored where they do not (Arabic vowel marks, Hebrew points, Thai vowel
///   signs), as are invisible format characters (zero-width joiners, soft hyphens).
/// - **Between words**: white space, punctuation (of any script) and ASCII symbols, so
///   `e-mail` is the phrase "e mail", `C++` is the word "c", and `example.com` and `3.14` are
///   two words. A number in scientific notation is a word of its own (`8e1ba` is "8e1" "ba"), and
///   a word of more than 2,047 bytes is not indexed: PostgreSQL's parser reads them so.
/// - **Refused**: any other character — symbols beyond ASCII (`©`, `€`, `→`, emoji), numbers
///   that are not digits (`²`, `½`), letters no index holds alike (`Ⓐ`, scripts added since
///   Unicode 10). A message holding one is stored as it is, and found by its other words (the
///   character is between words there: "x² plus" is found by "x" and by "plus"); a query word
///   holding one is refused with [`Error::InvalidQuery`](crate::Error::InvalidQuery) naming it,
///   rather than searched for without it, which would find more than was asked.
///
/// A query is also refused if a quote is not closed, if it has no word, if it is longer than
/// 1,024 bytes or 32 words, or if its offset is past [`MAX_SEARCH_OFFSET`]. Only the first
/// 100,000 characters of a message are indexed.
///
/// ```
/// use chatstore::{ChatStore, Error, NewMessage, SearchOrder, SearchQuery, UserId};
/// let query = SearchQuery::new(r#"oat "almond milk" groc*"#).order(SearchOrder::BestMatch).limit(10);
/// assert_eq!(query.text(), r#"oat "almond milk" groc*"#);
///
/// let store = ChatStore::open(":memory:")?;
/// let user = UserId::new("alice")?;
/// let conv = store.create_conversation(&user, None)?;
/// store.append_message(&user, conv.id, NewMessage::user("x² plus y²"))?;
/// match store.search_messages(&user, &SearchQuery::new("x² plus")) {
///     Err(Error::InvalidQuery(why)) => assert!(why.contains(r#"the word "x²""#), "{why}"),
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(store.search_messages(&user, &SearchQuery::new("x plus"))?.hits.len(), 1);
/// # Ok::<(), chatstore::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchQuery<'a> {
    text: &'a str,
    conversation: Option<ConversationId>,
    order: SearchOrder,
    limit: u32,
    offset: u32,
    include_archived: bool,
}

/// The order of search results. With the `serde` feature: `"newest"` or `"best_match"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum SearchOrder {
    /// Most recent message first (the default).
    #[default]
    Newest,
    /// Best match first (BM25 on SQLite, `ts_rank` on PostgreSQL), then most recent.
    BestMatch,
}

impl<'a> SearchQuery<'a> {
    /// The first page (20 results), newest first, across all the user's conversations.
    pub fn new(text: &'a str) -> Self {
        SearchQuery {
            text,
            conversation: None,
            order: SearchOrder::Newest,
            limit: 20,
            offset: 0,
            include_archived: false,
        }
    }

    /// Searches one conversation only.
    pub fn in_conversation(mut self, conversation: ConversationId) -> Self {
        self.conversation = Some(conversation);
        self
    }

    /// Searches the archived conversations too (see
    /// [`archive_conversation`](crate::ChatStore::archive_conversation)), which a search across
    /// the user's conversations leaves out otherwise. A search in one conversation
    /// ([`in_conversation`](Self::in_conversation)) searches it, archived or not.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, SearchQuery, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let old = store.create_conversation(&alice, Some("Last year"))?;
    /// store.append_message(&alice, old.id, NewMessage::user("kumquat jam"))?;
    /// store.archive_conversation(&alice, old.id)?;
    /// let query = SearchQuery::new("kumquat");
    /// assert!(store.search_messages(&alice, &query)?.hits.is_empty());
    /// assert_eq!(store.search_messages(&alice, &query.include_archived(true))?.hits.len(), 1);
    /// assert_eq!(store.search_messages(&alice, &query.in_conversation(old.id))?.hits.len(), 1);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn include_archived(mut self, include: bool) -> Self {
        self.include_archived = include;
        self
    }

    /// The order of the results.
    pub fn order(mut self, order: SearchOrder) -> Self {
        self.order = order;
        self
    }

    /// Results per page (at least 1; at most the store's page size cap).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Results to skip: the page that starts there, at most [`MAX_SEARCH_OFFSET`]. A search
    /// serves the first pages only: a larger offset is refused with
    /// [`Error::InvalidQuery`](crate::Error::InvalidQuery), and the page that reaches it has no
    /// [`next_offset`](SearchResults::next_offset). (Lists page with cursors and have no such
    /// end; a search ranks its matches, and a client that wants more narrows the query.)
    ///
    /// ```
    /// # use chatstore::{ChatStore, Error, SearchQuery, UserId, MAX_SEARCH_OFFSET};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// let too_far = SearchQuery::new("tea").offset(MAX_SEARCH_OFFSET + 1);
    /// assert!(matches!(store.search_messages(&user, &too_far), Err(Error::InvalidQuery(_))));
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn offset(mut self, offset: u32) -> Self {
        self.offset = offset;
        self
    }

    /// The query text.
    pub fn text(&self) -> &'a str {
        self.text
    }

    pub(crate) fn conversation(&self) -> Option<ConversationId> {
        self.conversation
    }

    /// Whether archived conversations are searched: asked for, or the one conversation searched.
    pub(crate) fn searches_archived(&self) -> bool {
        self.include_archived || self.conversation.is_some()
    }

    pub(crate) fn ordering(&self) -> SearchOrder {
        self.order
    }

    pub(crate) fn page(&self) -> (u32, u32) {
        (self.limit, self.offset)
    }

    /// The same query with another text: how a query moves to another thread with its text owned
    /// (the async store's blocking pool).
    #[cfg(feature = "tokio")]
    pub(crate) fn with_text<'b>(&self, text: &'b str) -> SearchQuery<'b> {
        // Destructured, so that a field added to SearchQuery cannot be left behind unnoticed.
        let SearchQuery {
            text: _,
            conversation,
            order,
            limit,
            offset,
            include_archived,
        } = *self;
        SearchQuery {
            text,
            conversation,
            order,
            limit,
            offset,
            include_archived,
        }
    }
}

/// One message found, with where it is and why it matched. With the `serde` feature:
/// `{"message", "conversation_title", "snippet"}`, and `"on_active_branch": false` for a message
/// off its conversation's active branch (absent: on it).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct SearchHit {
    /// The message (its branch is `message.branch`).
    pub message: Message,
    /// The title of its conversation (its id is `message.conversation_id`).
    pub conversation_title: Option<String>,
    /// An excerpt of the content around the first match, with the matches marked.
    pub snippet: Snippet,
    /// Whether the message is on its conversation's active branch — what
    /// [`ChatStore::messages`](crate::ChatStore::messages) shows — rather than only on another
    /// branch (an older version of an edited message, say): search covers every branch.
    #[cfg_attr(
        feature = "serde",
        serde(
            default = "on_active_branch",
            skip_serializing_if = "is_on_active_branch"
        )
    )]
    pub on_active_branch: bool,
}

#[cfg(feature = "serde")]
fn on_active_branch() -> bool {
    true
}

#[cfg(feature = "serde")]
fn is_on_active_branch(on: &bool) -> bool {
    *on
}

/// An excerpt of a message, with the matched words as byte ranges into `text` — mark them up as
/// your output needs (escaped HTML, a terminal's bold…); see [`marked`](Snippet::marked).
///
/// With the `serde` feature: `{"text", "highlights": [{"start", "end"}, …]}`; highlights that are
/// not ranges of the text, in order, are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "SnippetForm"))]
#[non_exhaustive]
pub struct Snippet {
    /// The excerpt, with `…` where it cuts the content.
    pub text: String,
    /// Byte ranges of `text` that matched, in order, not overlapping.
    pub highlights: Vec<Range<usize>>,
}

/// A [`Snippet`] as read: `{"text": …, "highlights": [{"start": …, "end": …}, …]}`, before its
/// highlights are checked.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
#[serde(rename = "Snippet")]
struct SnippetForm {
    text: String,
    highlights: Vec<Range<usize>>,
}

#[cfg(feature = "serde")]
impl TryFrom<SnippetForm> for Snippet {
    type Error = String;

    /// Refuses highlights that are not ranges of the text on character boundaries, in order and
    /// apart, which [`Snippet::marked`] could not mark.
    fn try_from(SnippetForm { text, highlights }: SnippetForm) -> Result<Self, String> {
        let mut at = 0;
        for range in &highlights {
            let fits = at <= range.start
                && range.start <= range.end
                && range.end <= text.len()
                && text.is_char_boundary(range.start)
                && text.is_char_boundary(range.end);
            if !fits {
                return Err(format!(
                    "snippet highlight {}..{} is not a range of its text, in order",
                    range.start, range.end
                ));
            }
            at = range.end;
        }
        Ok(Snippet { text, highlights })
    }
}

impl Snippet {
    /// The excerpt with each match between `open` and `close`.
    ///
    /// ```
    /// # use chatstore::Snippet;
    /// # fn show(snippet: &Snippet) -> String {
    /// snippet.marked("**", "**")
    /// # }
    /// ```
    pub fn marked(&self, open: &str, close: &str) -> String {
        let mut out = String::with_capacity(self.text.len() + 8 * self.highlights.len());
        let mut at = 0;
        for range in &self.highlights {
            out.push_str(&self.text[at..range.start]);
            out.push_str(open);
            out.push_str(&self.text[range.clone()]);
            out.push_str(close);
            at = range.end;
        }
        out.push_str(&self.text[at..]);
        out
    }
}

/// A page of search results. With the `serde` feature: `{"hits", "next_offset"}`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct SearchResults {
    /// The messages found on this page.
    pub hits: Vec<SearchHit>,
    /// The offset of the next page, or `None` if this was the last, or if the next would start
    /// past [`MAX_SEARCH_OFFSET`].
    pub next_offset: Option<u32>,
}

/// The longest query accepted, in bytes, and the most words in it.
const MAX_QUERY_BYTES: usize = 1024;
const MAX_QUERY_WORDS: usize = 32;

/// A parsed query: every phrase must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub(crate) phrases: Vec<Phrase>,
}

/// Words that must occur together in order; with `prefix`, the last one as the start of a word.
/// Words are folded as the index holds them ([`tokens`]): they hold only characters of the
/// alphabet every backend's index holds alike, so nothing in them is any backend's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Phrase {
    pub(crate) words: Vec<String>,
    pub(crate) prefix: bool,
}

/// Reads a query (see [`SearchQuery`]).
pub(crate) fn parse(text: &str) -> Result<Query> {
    let invalid = |why: String| Err(Error::InvalidQuery(why));
    if text.len() > MAX_QUERY_BYTES {
        return invalid(format!("the query is longer than {MAX_QUERY_BYTES} bytes"));
    }
    if text.chars().filter(|&c| c == '"').count() % 2 == 1 {
        return invalid("a quote is not closed".to_owned());
    }
    let mut phrases = Vec::new();
    // Even pieces are outside quotes, odd ones inside.
    for (i, piece) in text.split('"').enumerate() {
        // A character the index keeps no trace of would be dropped from the query, which would
        // then find more than was asked for: the word that holds it is refused instead.
        for word in piece.split_whitespace() {
            if let Some(c) = word.chars().find(|&c| class(c) == Class::Unindexed) {
                return invalid(format!(
                    "the word {word:?} holds {c:?}, which the search index does not keep \
                     (it keeps letters and digits)"
                ));
            }
        }
        let quoted = i % 2 == 1;
        let parts: Vec<&str> = if quoted {
            vec![piece]
        } else {
            piece.split_whitespace().collect()
        };
        for part in parts {
            let prefix = part.trim_end().ends_with('*');
            let words: Vec<String> = tokens(part).words.into_iter().map(|(w, _)| w).collect();
            if !words.is_empty() {
                phrases.push(Phrase { words, prefix });
            }
        }
    }
    let count: usize = phrases.iter().map(|p| p.words.len()).sum();
    if count == 0 {
        return invalid("there is no word to search for".to_owned());
    }
    if count > MAX_QUERY_WORDS {
        return invalid(format!(
            "the query has {count} words, the most is {MAX_QUERY_WORDS}"
        ));
    }
    Ok(Query { phrases })
}

/// How the store reads a character, in messages and queries alike (see [`SearchQuery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Part of a word: an ASCII letter or digit, or a character of [`alphabet::RANGES`].
    Word,
    /// A word of its own: a letter of a script written without spaces (Chinese, Japanese, Thai…).
    Unspaced,
    /// Part of the character before it, never a boundary: a combining mark (composed with its
    /// letter where Unicode composes them, else left out) or a format character (zero-width
    /// joiners and non-joiners, soft hyphens, direction marks), left out.
    Attached,
    /// Between words: white space, control characters, punctuation, ASCII symbols.
    Separator,
    /// A character no index keeps: symbols beyond ASCII (`©`, `€`, `→`, emoji), numbers that are
    /// not decimal digits (`²`, `½`, `Ⓐ`'s kin), letters some backend would split words at
    /// (scripts newer than Unicode 10), private use, unassigned. Between words in a message;
    /// refused in a query.
    Unindexed,
}

fn class(c: char) -> Class {
    if c.is_ascii() {
        return match c.is_ascii_alphanumeric() {
            true => Class::Word,
            false => Class::Separator,
        };
    }
    if in_alphabet(c) {
        return match unspaced(c) {
            true => Class::Unspaced,
            false => Class::Word,
        };
    }
    use unicode_properties::GeneralCategory as G;
    match c.general_category() {
        G::NonspacingMark | G::SpacingMark | G::EnclosingMark | G::Format => Class::Attached,
        G::SpaceSeparator
        | G::LineSeparator
        | G::ParagraphSeparator
        | G::Control
        | G::ConnectorPunctuation
        | G::DashPunctuation
        | G::OpenPunctuation
        | G::ClosePunctuation
        | G::InitialPunctuation
        | G::FinalPunctuation
        | G::OtherPunctuation => Class::Separator,
        _ => Class::Unindexed,
    }
}

/// Whether `c` (not ASCII) is in the alphabet every backend's index holds alike.
fn in_alphabet(c: char) -> bool {
    let c = u32::from(c);
    alphabet::RANGES
        .binary_search_by(|&(first, last)| {
            if last < c {
                std::cmp::Ordering::Less
            } else if first > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Whether the letter `c` belongs to a script written without spaces between words, where each
/// character is indexed as a word of its own.
fn unspaced(c: char) -> bool {
    matches!(c,
        '\u{0E00}'..='\u{0EFF}'       // Thai, Lao
        | '\u{1780}'..='\u{17FF}'     // Khmer
        | '\u{3040}'..='\u{30FF}'     // Hiragana, Katakana
        | '\u{3400}'..='\u{4DBF}'     // CJK Extension A
        | '\u{4E00}'..='\u{9FFF}'     // CJK Unified Ideographs
        | '\u{F900}'..='\u{FAFF}'     // CJK Compatibility Ideographs
        | '\u{FF66}'..='\u{FF9F}'     // Halfwidth Katakana
        | '\u{20000}'..='\u{3134F}' // CJK Extensions B–G
    )
}

/// Appends `c` as the index holds it: lowercased (and the few letters Unicode's case folding
/// maps further, as SQLite does: `ς` as `σ`, `ſ` as `s`…), without the combining diacritical
/// marks U+0300–U+036F after canonical decomposition (`é` as `e`, `й` as `и`, `ά` as `α`),
/// recomposed, and without any other mark that did not compose (`क़` as `क`). ASCII, most of
/// most text, takes the short way.
fn fold_into(word: &mut String, c: char) {
    if c.is_ascii() {
        word.push(c.to_ascii_lowercase());
        return;
    }
    let lower: String = c.to_lowercase().map(case_fold).collect();
    let bare: String = lower
        .nfd()
        .filter(|c| !('\u{0300}'..='\u{036F}').contains(c))
        .nfc()
        .collect();
    word.extend(bare.chars().filter(|&c| class(c) != Class::Attached));
}

/// The lowercase letters that Unicode's case folding maps to another letter (SQLite's tokenizer
/// folds them so; PostgreSQL's lowercasing does not, so the store does it for both).
fn case_fold(c: char) -> char {
    match c {
        'µ' => 'μ',
        'ſ' => 's',
        'ς' => 'σ',
        'ϐ' => 'β',
        'ϑ' => 'θ',
        'ϕ' => 'φ',
        'ϖ' => 'π',
        'ϰ' => 'κ',
        'ϱ' => 'ρ',
        'ϵ' => 'ε',
        'ẛ' => 'ṡ',
        'ι' => 'ι',
        _ => c,
    }
}

/// The longest word the indexes hold, in bytes once folded: PostgreSQL leaves longer ones out
/// ("word is too long to be indexed"), so every backend does.
const MAX_WORD_BYTES: usize = 2047;

/// The words of a text.
struct Tokens {
    /// Each word as the index holds it, with the bytes of the text it was read from.
    words: Vec<(String, Range<usize>)>,
    /// Whether a word was left out or split for another backend's sake (see [`tokens`]): then
    /// even an ASCII text must be given to the indexes as the store read it.
    rewritten: bool,
}

/// The words of `text`, folded, each with the byte range it spans in `text`: runs of word
/// characters, and each unspaced character alone, with the marks and format characters attached
/// to them (see [`Class`]). Two rules follow PostgreSQL's parser, so that every backend reads
/// alike: a word longer than [`MAX_WORD_BYTES`] is left out, and a word that starts as a number in
/// scientific notation (`8e1ba`) is two (`8e1`, `ba`).
fn tokens(text: &str) -> Tokens {
    let mut tokens = Tokens {
        words: Vec::new(),
        rewritten: false,
    };
    // The word being read, and whether it is an unspaced character (which takes marks only).
    let mut current: Option<Range<usize>> = None;
    let mut current_unspaced = false;
    for (at, c) in text.char_indices() {
        let end = at + c.len_utf8();
        match class(c) {
            Class::Attached => {
                if let Some(range) = current.as_mut() {
                    range.end = end;
                }
            }
            Class::Unspaced => {
                tokens.push(text, current.take());
                current = Some(at..end);
                current_unspaced = true;
            }
            Class::Word => {
                if current_unspaced {
                    tokens.push(text, current.take());
                    current_unspaced = false;
                }
                current.get_or_insert(at..at).end = end;
            }
            Class::Separator | Class::Unindexed => {
                tokens.push(text, current.take());
                current_unspaced = false;
            }
        }
    }
    tokens.push(text, current);
    tokens
}

impl Tokens {
    /// Adds the word that `text[range]` holds.
    fn push(&mut self, text: &str, range: Option<Range<usize>>) {
        let Some(range) = range else {
            return;
        };
        let raw = &text[range.clone()];
        let mut word = String::with_capacity(raw.len());
        if raw.is_ascii() {
            word.extend(raw.chars().map(|c| c.to_ascii_lowercase()));
        } else {
            // Composed first, so that a letter and its marks fold as the one letter they make.
            for c in raw.nfc() {
                fold_into(&mut word, c);
            }
        }
        if word.len() > MAX_WORD_BYTES {
            self.rewritten = true;
            return;
        }
        // PostgreSQL reads digits, "e" and digits as a number, and what follows as another word.
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let mantissa = digits(&word);
        if mantissa > 0 && word[mantissa..].starts_with('e') {
            let exponent = digits(&word[mantissa + 1..]);
            let split = mantissa + 1 + exponent;
            if exponent > 0 && split < word.len() {
                self.rewritten = true;
                // The number is ASCII, a byte of the text per byte of the word.
                let rest = word.split_off(split);
                self.words.push((word, range.start..range.start + split));
                self.words.push((rest, range.start + split..range.end));
                return;
            }
        }
        self.words.push((word, range));
    }
}

/// Whether [`tokens`] would leave out or split a word of the ASCII `text`, found without
/// allocating a word: the byte runs of letters and digits, checked for their length and for a
/// number in scientific notation followed by more.
fn ascii_rewritten(text: &str) -> bool {
    text.as_bytes()
        .split(|b| !b.is_ascii_alphanumeric())
        .any(|word| {
            if word.len() > MAX_WORD_BYTES {
                return true;
            }
            let mantissa = word.iter().take_while(|b| b.is_ascii_digit()).count();
            let Some(rest) = word[mantissa..]
                .strip_prefix(b"e")
                .or_else(|| word[mantissa..].strip_prefix(b"E"))
            else {
                return false;
            };
            let exponent = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            mantissa > 0 && exponent > 0 && exponent < rest.len()
        })
}

/// How many characters of a message the indexes read (the migrations say the same).
pub(crate) const INDEXED_CHARS: usize = 100_000;

/// The bytes of `content`'s indexed start: a 1 MiB message is not read whole.
fn indexed_len(content: &str) -> usize {
    // No more characters than bytes: a text of at most that many bytes is read whole, without
    // walking its characters (every append asks, for every message).
    if content.len() <= INDEXED_CHARS {
        return content.len();
    }
    content
        .char_indices()
        .nth(INDEXED_CHARS)
        .map_or(content.len(), |(at, _)| at)
}

/// The words the indexes hold for `content`, each with its bytes in `content`, and whether the
/// SQLite and PostgreSQL indexes must be given them as the store's own text ([`search_text`]).
///
/// Every backend indexes the same words: the store's, read from the first [`INDEXED_CHARS`]
/// characters. Where the databases' own tokenizers read the content alike (ASCII, without the
/// words [`tokens`] rewrites), they read the content; otherwise they read the store's words,
/// folded and joined by spaces, at most [`INDEXED_CHARS`] characters of them (the migrations cut
/// there too). Scripts written without spaces take two characters a character there, so the words
/// of such a message stop where that text is full.
fn indexed(content: &str) -> (Vec<(String, Range<usize>)>, bool) {
    let start = &content[..indexed_len(content)];
    let Tokens {
        mut words,
        rewritten,
    } = tokens(start);
    if start.is_ascii() && !rewritten {
        return (words, false);
    }
    let mut chars = 0;
    let fit = words
        .iter()
        .take_while(|(word, _)| {
            chars += word.chars().count() + usize::from(chars > 0);
            chars <= INDEXED_CHARS
        })
        .count();
    words.truncate(fit);
    (words, true)
}

/// What the SQLite and PostgreSQL indexes read for a stored message (the `search_text` column),
/// when it is not the content itself: the text of [`search_text`], over the content and, when the
/// message has text parts (`parts`, their JSON column), the content with them.
pub(crate) fn message_search_text(content: &str, parts: Option<&str>) -> Option<String> {
    match crate::models::stored_text(content, parts) {
        std::borrow::Cow::Borrowed(content) => search_text(content),
        std::borrow::Cow::Owned(text) => search_text(&text).or(Some(text)),
    }
}

/// What the SQLite and PostgreSQL indexes read for `content` (the `search_text` column), when it
/// is not the content itself: the words the store reads in it, folded, joined by spaces.
pub(crate) fn search_text(content: &str) -> Option<String> {
    // Most messages are ASCII the indexes read as it is: told apart without reading words.
    let start = &content[..indexed_len(content)];
    if start.is_ascii() && !ascii_rewritten(start) {
        return None;
    }
    let (words, own) = indexed(content);
    own.then(|| {
        let words: Vec<String> = words.into_iter().map(|(word, _)| word).collect();
        words.join(" ")
    })
}

/// Every match of one of the query's phrases in `tokens`: the phrase's index in the query, and the
/// run of token indices it matched.
fn matches(tokens: &[(String, Range<usize>)], query: &Query) -> Vec<(usize, Range<usize>)> {
    let mut found = Vec::new();
    for start in 0..tokens.len() {
        for (p, phrase) in query.phrases.iter().enumerate() {
            let n = phrase.words.len();
            let Some(run) = tokens.get(start..start + n) else {
                continue;
            };
            let hit =
                run.iter().zip(&phrase.words).enumerate().all(
                    |(i, ((token, _), word))| match phrase.prefix && i == n - 1 {
                        true => token.starts_with(word.as_str()),
                        false => token == word,
                    },
                );
            if hit {
                found.push((p, start..start + n));
            }
        }
    }
    found
}

/// The most characters of a word in the store's own word index (MySQL): a longer word is kept
/// cut, in the index and in the query alike, and [`matches_all`] has the last word.
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(crate) const INDEXED_WORD_CHARS: usize = 64;

/// A folded query word as the store's own word index holds it: cut to [`INDEXED_WORD_CHARS`].
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(crate) fn index_word(word: &str) -> String {
    match word.char_indices().nth(INDEXED_WORD_CHARS) {
        Some((at, _)) => word[..at].to_owned(),
        None => word.to_owned(),
    }
}

/// The distinct words the indexes hold for `content` ([`indexed`]), as [`index_word`] gives
/// them, each with how often it occurs: what the store's own word index (MySQL) holds for a
/// message.
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(crate) fn index_words(content: &str) -> Vec<(String, i32)> {
    let mut counts: std::collections::BTreeMap<String, i32> = std::collections::BTreeMap::new();
    for (word, _) in indexed(content).0 {
        *counts.entry(index_word(&word)).or_default() += 1;
    }
    counts.into_iter().collect()
}

/// Whether every phrase of `query` occurs among the words the indexes hold for `content` (or
/// for the start of it: the first [`INDEXED_CHARS`] characters are enough): the last word on a
/// candidate that the store's own word index (MySQL) found by its words alone.
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(crate) fn matches_all(content: &str, query: &Query) -> bool {
    let words = indexed(content).0;
    let mut seen = vec![false; query.phrases.len()];
    for (p, _) in matches(&words, query) {
        seen[p] = true;
    }
    seen.iter().all(|&s| s)
}

/// Words of context shown before the first match, the most words a snippet holds, and the most
/// bytes (unless the match itself is longer).
const SNIPPET_BEFORE: usize = 6;
const SNIPPET_WORDS: usize = 24;
const SNIPPET_BYTES: usize = 320;

/// An excerpt of `content` around the first match of `query`, with every match in it marked. If
/// the store's index matched what these rules do not see (another tokenization at the edges), the
/// excerpt is the start of the content, unmarked.
pub(crate) fn snippet(content: &str, query: &Query) -> Snippet {
    let indexed = indexed_len(content);
    let tokens = self::indexed(content).0;
    let mut matches: Vec<Range<usize>> = matches(&tokens, query)
        .into_iter()
        .map(|(_, run)| run)
        .collect();
    matches.sort_by_key(|m| (m.start, m.end));
    let first = matches.first().map_or(0, |m| m.start);
    let from = first.saturating_sub(SNIPPET_BEFORE);
    let to = (from + SNIPPET_WORDS).min(tokens.len());
    let (start, mut end) = match (
        tokens.get(from),
        to.checked_sub(1).and_then(|i| tokens.get(i)),
    ) {
        (Some((_, a)), Some((_, b))) => (
            if from == 0 { 0 } else { a.start },
            if to == tokens.len() { indexed } else { b.end },
        ),
        _ => (0, indexed),
    };
    // However long its words, an excerpt stays short: it ends at most SNIPPET_BYTES past its
    // start, or just past the first match if that is further.
    let first_end = matches.first().map_or(start, |m| tokens[m.end - 1].1.end);
    let longest = start + SNIPPET_BYTES.max(first_end - start);
    if end > longest {
        end = content.floor_char_boundary(longest);
    }
    let lead = if start > 0 { "…" } else { "" };
    let mut text = format!("{lead}{}", &content[start..end]);
    if end < content.len() {
        text.push('…');
    }
    let shift = |byte: usize| byte - start + lead.len();
    let mut highlights: Vec<Range<usize>> = Vec::new();
    let shown = matches
        .iter()
        .filter(|m| m.start >= from && m.end <= to && tokens[m.end - 1].1.end <= end);
    for m in shown {
        let range = shift(tokens[m.start].1.start)..shift(tokens[m.end - 1].1.end);
        match highlights.last_mut() {
            // Overlapping or touching matches become one.
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => highlights.push(range),
        }
    }
    Snippet { text, highlights }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// The quick test of ASCII text agrees with reading its words.
        #[test]
        fn ascii_rewrites_are_found_without_reading_words(text in "[0-9eEx ,.-]{0,40}") {
            prop_assert_eq!(ascii_rewritten(&text), tokens(&text).rewritten);
        }

        /// Any content and any query: a snippet never panics, and its highlights are ranges of its
        /// text on character boundaries, in order, apart.
        #[test]
        fn snippets_of_anything_are_well_formed(
            content in "(?s).{0,400}",
            query in "[a-zé東京* \"]{1,12}",
        ) {
            if let Ok(query) = parse(&query) {
                let s = snippet(&content, &query);
                let mut at = 0;
                for range in &s.highlights {
                    prop_assert!(at <= range.start && range.start < range.end);
                    prop_assert!(range.end <= s.text.len());
                    prop_assert!(s.text.is_char_boundary(range.start));
                    prop_assert!(s.text.is_char_boundary(range.end));
                    at = range.end;
                }
            }
        }
    }

    /// Each phrase as its words joined by spaces, and whether it is a prefix.
    fn phrases(text: &str) -> Vec<(String, bool)> {
        let query = parse(text).unwrap();
        query
            .phrases
            .iter()
            .map(|p| (p.words.join(" "), p.prefix))
            .collect()
    }

    #[test]
    fn queries_are_words_phrases_and_prefixes() {
        assert_eq!(
            phrases(r#"Oat "Almond  milk" GROC* e-mail 東京"#),
            [
                ("oat".to_owned(), false),
                ("almond milk".to_owned(), false),
                ("groc".to_owned(), true),
                ("e mail".to_owned(), false),
                ("東 京".to_owned(), false),
            ]
        );
        assert_eq!(phrases("Café"), [("cafe".to_owned(), false)]);
        for bad in [r#""unclosed"#, "", "  ", "!!! ???", r#""""#] {
            assert!(matches!(parse(bad), Err(Error::InvalidQuery(_))), "{bad:?}");
        }
        assert!(matches!(
            parse(&"a ".repeat(33)),
            Err(Error::InvalidQuery(_))
        ));
    }

    /// Each word of `text` as the index holds it.
    fn words(text: &str) -> Vec<String> {
        tokens(text).words.into_iter().map(|(w, _)| w).collect()
    }

    #[test]
    fn words_are_read_alike_for_every_backend() {
        // Letters and digits, folded; punctuation and ASCII symbols between words.
        assert_eq!(
            words("Ça VA? e-mail C++ don’t snake_case x2"),
            ["ca", "va", "e", "mail", "c", "don", "t", "snake", "case", "x2"]
        );
        // Every diacritical mark U+0300–U+036F goes, other marks stay where they compose.
        assert_eq!(
            words("Καφές мой ёлка cafe\u{301} か\u{3099} क\u{93C}"),
            ["καφεσ", "мои", "елка", "cafe", "が", "क"]
        );
        // Case folding beyond lowercase, as SQLite's tokenizer folds.
        assert_eq!(words("ΟΔΟΣ οδος µ ſ"), ["οδοσ", "οδοσ", "μ", "s"]);
        // Marks without a composition and format characters are left out, not boundaries.
        assert_eq!(
            words("مُحَمَّد می\u{200c}خواهم hy\u{ad}phen"),
            ["محمد", "میخواهم", "hyphen"]
        );
        // What no index keeps is between words.
        assert_eq!(words("x² Ⓐb ©2024 🎉party"), ["x", "b", "2024", "party"]);
        // PostgreSQL's parser reads a number in scientific notation as a word of its own, and
        // leaves out words of more than 2047 bytes: so does every backend.
        assert_eq!(words("8E1ba 1e5 e1x"), ["8e1", "ba", "1e5", "e1x"]);
        assert_eq!(words(&format!("a {} b", "ж".repeat(1024))), ["a", "b"]);
        assert_eq!(words(&format!("a {} b", "ж".repeat(1023))).len(), 3);
        assert!(ascii_rewritten(&format!("a {} b", "z".repeat(2048))));
        assert!(!ascii_rewritten(&format!("a {} b", "z".repeat(2047))));
    }

    #[test]
    fn queries_refuse_words_the_index_cannot_hold() {
        for (query, word) in [
            ("Ⓐ other", "Ⓐ"),
            ("Ⓐ", "Ⓐ"),
            ("² plus", "²"),
            ("x² plus", "x²"),
            (r#""oat milk 🎉""#, "🎉"),
            ("price €5", "€5"),
        ] {
            match parse(query) {
                Err(Error::InvalidQuery(message)) => {
                    assert!(message.contains(&format!("{word:?}")), "{query}: {message}")
                }
                other => panic!("{query}: {other:?}"),
            }
        }
        // Punctuation is between words, in queries as in messages.
        assert_eq!(
            phrases("«oat» milk…"),
            [("oat".into(), false), ("milk".into(), false)]
        );
    }

    #[test]
    fn unspaced_scripts_are_indexed_a_character_at_a_time() {
        assert_eq!(
            search_text("plain text, 8 words: the indexes read it as it is"),
            None
        );
        assert_eq!(
            search_text("plain text, accents: é").as_deref(),
            Some("plain text accents e")
        );
        assert_eq!(
            search_text("東京タワー・ok").as_deref(),
            Some("東 京 タ ワ ー ok")
        );
        // Combining marks stay with their character; Thai's vowel signs compose with nothing.
        assert_eq!(search_text("สวัสดี").as_deref(), Some("ส ว ส ด"));
        // The indexes' text stops at their limit: a character and a space each.
        let (words, own) = indexed(&"東".repeat(INDEXED_CHARS));
        assert!(own);
        assert_eq!(words.len(), INDEXED_CHARS / 2);
        assert_eq!(
            search_text(&"東".repeat(INDEXED_CHARS))
                .unwrap()
                .chars()
                .count(),
            INDEXED_CHARS - 1
        );
    }

    #[test]
    fn snippets_mark_every_match_in_the_excerpt() {
        let query = parse(r#"milk "oat milk" caf*"#).unwrap();
        let s = snippet("Add Oat Milk, then a CAFÉ crème and more milk.", &query);
        assert_eq!(
            s.marked("[", "]"),
            "Add [Oat Milk], then a [CAFÉ] crème and more [milk]."
        );
        // A long text is cut around the first match.
        let long = format!("{} needle {}", "word ".repeat(50), "word ".repeat(50));
        let s = snippet(&long, &parse("needle").unwrap());
        assert!(
            s.text.starts_with('…') && s.text.ends_with('…'),
            "{}",
            s.text
        );
        assert_eq!(&s.text[s.highlights[0].clone()], "needle");
        // Only the indexed start is read; the excerpt still says the content goes on.
        let huge = format!("needle {}", "x".repeat(INDEXED_CHARS * 2));
        let s = snippet(&huge, &parse("needle").unwrap());
        assert!(s.text.starts_with("needle") && s.text.ends_with('…'));
        assert_eq!(s.highlights, vec![Range { start: 0, end: 6 }]);
        // CJK: a phrase of characters.
        let s = snippet("今日は東京タワーへ", &parse("東京").unwrap());
        assert_eq!(s.marked("[", "]"), "今日は[東京]タワーへ");
    }
}

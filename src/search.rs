//! Full-text search over a user's messages: the query language, the text the index reads, and the
//! highlighted snippets. The SQL is in `queries/search.rs`.
//!
//! Both backends split words alike — runs of letters and digits, ASCII punctuation between them
//! (so `example.com`, `src/main.rs` and `3.14` are words apart), each character of a script written
//! without spaces (Chinese, Japanese, Thai…) a word of its own, so that "東京" is found as a phrase
//! of two inside "東京タワー" — and neither stems nor drops stop words, so every language is treated
//! alike. Both fold case and the accents of Latin letters ("Café" is found by "cafe");
//! PostgreSQL also folds other combining diacritics (Greek, Cyrillic), SQLite keeps them, in the
//! index and in the query alike. Only the first 100,000 characters of a message are indexed.

use std::ops::Range;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use crate::ids::ConversationId;
use crate::models::Message;
use crate::{Error, Result};

/// The largest [`SearchQuery::offset`] a search serves: with the largest page, the first 1,100
/// matches can be read. It bounds the work a request can ask for, since every match before the
/// page is found (and on MySQL, checked) to be skipped.
pub const MAX_SEARCH_OFFSET: u32 = 1000;

/// A search: what to look for, where, in which order, which page.
///
/// The query is words, all of which must occur (in any order, case and Latin accents ignored);
/// `"quoted words"` must occur together in that order; a word ending in `*` matches any word it
/// begins. Punctuation separates words. There are no operators: any text is a valid query, except
/// an unclosed quote or one with no word in it.
///
/// ```
/// use chatstore::{SearchOrder, SearchQuery};
/// let query = SearchQuery::new(r#"oat "almond milk" groc*"#).order(SearchOrder::BestMatch).limit(10);
/// assert_eq!(query.text(), r#"oat "almond milk" groc*"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchQuery<'a> {
    text: &'a str,
    conversation: Option<ConversationId>,
    order: SearchOrder,
    limit: u32,
    offset: u32,
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
        }
    }

    /// Searches one conversation only.
    pub fn in_conversation(mut self, conversation: ConversationId) -> Self {
        self.conversation = Some(conversation);
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
        } = *self;
        SearchQuery {
            text,
            conversation,
            order,
            limit,
            offset,
        }
    }
}

/// One message found, with where it is and why it matched. With the `serde` feature:
/// `{"message", "conversation_title", "snippet"}`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct SearchHit {
    /// The message.
    pub message: Message,
    /// The title of its conversation (its id is `message.conversation_id`).
    pub conversation_title: Option<String>,
    /// An excerpt of the content around the first match, with the matches marked.
    pub snippet: Snippet,
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
/// Words are as written, and hold only letters, digits and combining marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Phrase {
    pub(crate) words: Vec<String>,
    pub(crate) prefix: bool,
}

/// Reads a query (see [`SearchQuery`]).
pub(crate) fn parse(text: &str) -> Result<Query> {
    let invalid = |why: &str| Err(Error::InvalidQuery(why.to_owned()));
    if text.len() > MAX_QUERY_BYTES {
        return invalid(&format!("the query is longer than {MAX_QUERY_BYTES} bytes"));
    }
    if text.chars().filter(|&c| c == '"').count() % 2 == 1 {
        return invalid("a quote is not closed");
    }
    let mut phrases = Vec::new();
    // Even pieces are outside quotes, odd ones inside.
    for (i, piece) in text.split('"').enumerate() {
        let quoted = i % 2 == 1;
        let parts: Vec<&str> = if quoted {
            vec![piece]
        } else {
            piece.split_whitespace().collect()
        };
        for part in parts {
            let prefix = part.trim_end().ends_with('*');
            let words = words(part);
            if !words.is_empty() {
                phrases.push(Phrase { words, prefix });
            }
        }
    }
    let count: usize = phrases.iter().map(|p| p.words.len()).sum();
    if count == 0 {
        return invalid("there is no word to search for");
    }
    if count > MAX_QUERY_WORDS {
        return invalid(&format!(
            "the query has {count} words, the most is {MAX_QUERY_WORDS}"
        ));
    }
    Ok(Query { phrases })
}

/// Whether `c` belongs to a script written without spaces between words, where each character is
/// indexed as a word of its own.
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

/// A combining mark: it belongs to the character before it, wherever words are split.
fn mark(c: char) -> bool {
    is_combining_mark(c)
}

/// What the index reads for `content`, when it is not the content itself: a space around each
/// character of an unspaced script (with the marks that combine with it).
pub(crate) fn search_text(content: &str) -> Option<String> {
    if !content.chars().any(unspaced) {
        return None;
    }
    let mut text = String::with_capacity(content.len() + content.len() / 2);
    let mut after_unspaced = false;
    for c in content.chars() {
        if !mark(c) {
            if unspaced(c) || after_unspaced {
                text.push(' ');
            }
            after_unspaced = unspaced(c);
        }
        text.push(c);
    }
    Some(text)
}

/// Appends `c` lowercased, without the accents both indexes strip (the combining diacritical marks
/// U+0300–U+036F, after canonical decomposition), recomposed: what both indexes compare. ASCII,
/// most of most text, takes the short way.
fn fold_into(word: &mut String, c: char) {
    if c.is_ascii() {
        word.push(c.to_ascii_lowercase());
        return;
    }
    let lower: String = c.to_lowercase().collect();
    word.extend(
        lower
            .nfd()
            .filter(|c| !('\u{0300}'..='\u{036F}').contains(c))
            .nfc(),
    );
}

/// The words of `text` as written: runs of letters and digits, and each unspaced character alone,
/// each with the combining marks that follow it. They go to the database as they are, so that each
/// index folds them exactly as it folded the text (SQLite's tokenizer strips the accents of Latin
/// letters only; PostgreSQL's expression every combining diacritical mark).
fn words(text: &str) -> Vec<String> {
    tokens(text)
        .into_iter()
        .map(|(_, range)| text[range].to_owned())
        .collect()
}

/// `word` folded for comparison with folded tokens.
fn folded(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        fold_into(&mut out, c);
    }
    out
}

/// The words of `text`, folded, each with the byte range it spans in `text`.
fn tokens(text: &str) -> Vec<(String, Range<usize>)> {
    let mut tokens: Vec<(String, Range<usize>)> = Vec::new();
    // The word being read, and whether it is an unspaced character (which takes marks only).
    let mut current: Option<(String, Range<usize>)> = None;
    let mut current_unspaced = false;
    for (at, c) in text.char_indices() {
        let end = at + c.len_utf8();
        if mark(c) {
            if let Some((word, range)) = current.as_mut() {
                fold_into(word, c);
                range.end = end;
            }
        } else if unspaced(c) {
            tokens.extend(current.take());
            let mut word = String::new();
            fold_into(&mut word, c);
            current = Some((word, at..end));
            current_unspaced = true;
        } else if c.is_alphanumeric() {
            if current_unspaced {
                tokens.extend(current.take());
                current_unspaced = false;
            }
            let (word, range) = current.get_or_insert_with(|| (String::new(), at..at));
            fold_into(word, c);
            range.end = end;
        } else {
            tokens.extend(current.take());
            current_unspaced = false;
        }
    }
    tokens.extend(current);
    tokens.retain(|(word, _)| !word.is_empty());
    tokens
}

/// How many characters of a message the indexes read (the migrations say the same).
pub(crate) const INDEXED_CHARS: usize = 100_000;

/// The bytes of `content`'s indexed start: a 1 MiB message is not read whole.
fn indexed_len(content: &str) -> usize {
    content
        .char_indices()
        .nth(INDEXED_CHARS)
        .map_or(content.len(), |(at, _)| at)
}

/// Every match of one of the query's phrases in `tokens`: the phrase's index in the query, and the
/// run of token indices it matched.
fn matches(tokens: &[(String, Range<usize>)], query: &Query) -> Vec<(usize, Range<usize>)> {
    let phrases: Vec<(Vec<String>, bool)> = query
        .phrases
        .iter()
        .map(|p| (p.words.iter().map(|w| folded(w)).collect(), p.prefix))
        .collect();
    let mut found = Vec::new();
    for start in 0..tokens.len() {
        for (p, (words, prefix)) in phrases.iter().enumerate() {
            let n = words.len();
            let Some(run) = tokens.get(start..start + n) else {
                continue;
            };
            let hit =
                run.iter()
                    .zip(words)
                    .enumerate()
                    .all(|(i, ((token, _), word))| match *prefix && i == n - 1 {
                        true => token.starts_with(word.as_str()),
                        false => token == word,
                    });
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

/// `word` as the store's own word index holds it: folded, and cut to [`INDEXED_WORD_CHARS`].
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(crate) fn index_word(word: &str) -> String {
    let mut word = folded(word);
    if let Some((at, _)) = word.char_indices().nth(INDEXED_WORD_CHARS) {
        word.truncate(at);
    }
    word
}

/// The distinct words of `content`'s indexed start, as [`index_word`] gives them, each with how
/// often it occurs: what the store's own word index (MySQL) holds for a message.
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(crate) fn index_words(content: &str) -> Vec<(String, i32)> {
    let mut counts: std::collections::BTreeMap<String, i32> = std::collections::BTreeMap::new();
    for (word, _) in tokens(&content[..indexed_len(content)]) {
        let word = match word.char_indices().nth(INDEXED_WORD_CHARS) {
            Some((at, _)) => word[..at].to_owned(),
            None => word,
        };
        *counts.entry(word).or_default() += 1;
    }
    counts.into_iter().collect()
}

/// Whether every phrase of `query` occurs in `content`'s indexed start: the last word on a
/// candidate that the store's own word index (MySQL) found by its words alone.
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(crate) fn matches_all(content: &str, query: &Query) -> bool {
    let tokens = tokens(&content[..indexed_len(content)]);
    let mut seen = vec![false; query.phrases.len()];
    for (p, _) in matches(&tokens, query) {
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
    let tokens = tokens(&content[..indexed]);
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
                ("Oat".to_owned(), false),
                ("Almond milk".to_owned(), false),
                ("GROC".to_owned(), true),
                ("e mail".to_owned(), false),
                ("東 京".to_owned(), false),
            ]
        );
        assert_eq!(phrases("Café"), [("Café".to_owned(), false)]);
        for bad in [r#""unclosed"#, "", "  ", "!!! ???", r#""""#] {
            assert!(matches!(parse(bad), Err(Error::InvalidQuery(_))), "{bad:?}");
        }
        assert!(matches!(
            parse(&"a ".repeat(33)),
            Err(Error::InvalidQuery(_))
        ));
    }

    #[test]
    fn unspaced_scripts_are_indexed_a_character_at_a_time() {
        assert_eq!(search_text("plain text, accents: é"), None);
        assert_eq!(
            search_text("東京タワー ok").as_deref(),
            Some(" 東 京 タ ワ ー  ok")
        );
        // Combining marks stay with their character.
        assert_eq!(search_text("สวัสดี").as_deref(), Some(" ส วั ส ดี"));
        assert_eq!(words("สวัสดี Café"), ["ส", "วั", "ส", "ดี", "Café"]);
        assert_eq!(folded("Ça VA"), "ca va");
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

//! Running a search: the query parsed, one page of hits read, each with its snippet.

use std::collections::HashMap;

use crate::conn::Conn;
use crate::ids::{BranchId, ConversationId, UserId};
use crate::models::Message;
use crate::queries::search::Find;
use crate::queries::{self, branches, conversations};
use crate::search::{self, Query, SearchHit, SearchQuery, SearchResults, MAX_SEARCH_OFFSET};
use crate::tree::Segment;
use crate::{Error, Result};

/// A search checked before it touches the database: its query parsed, its page size capped.
pub(crate) struct Search<'q> {
    request: &'q SearchQuery<'q>,
    parsed: Query,
    limit: u32,
}

impl<'q> Search<'q> {
    /// Parses the query; pages hold at most `max_page_size` hits.
    pub(crate) fn new(request: &'q SearchQuery<'q>, max_page_size: u32) -> Result<Self> {
        let (_, offset) = request.page();
        if offset > MAX_SEARCH_OFFSET {
            return Err(Error::InvalidQuery(format!(
                "the offset is {offset}, the largest a search serves is {MAX_SEARCH_OFFSET}"
            )));
        }
        Ok(Search {
            request,
            parsed: search::parse(request.text())?,
            limit: request.page().0.clamp(1, max_page_size),
        })
    }

    /// The page of hits. On MySQL the caller runs it in [`crate::conn::snapshot`].
    pub(crate) fn run(&self, conn: &mut Conn, user: &UserId) -> Result<SearchResults> {
        let (_, offset) = self.request.page();
        let conversation = self.request.conversation();
        if let Some(conversation) = conversation {
            conversations::find(conn, user, conversation)?.ok_or(Error::NotFound)?;
        }
        // The archived conversations are left out by a condition on each match, added only for a
        // user who has any: one indexed look first, rather than a look per match for everyone.
        let hide_archived =
            !self.request.searches_archived() && conversations::has_archived(conn, user)?;
        // One row more than asked tells whether a next page exists.
        let found = queries::search::find(
            conn,
            Find {
                user,
                conversation,
                hide_archived,
                query: &self.parsed,
                order: self.request.ordering(),
                limit: i64::from(self.limit) + 1,
                offset: i64::from(offset),
            },
        )?;
        let more = found.len() > self.limit as usize;
        let mut found: Vec<_> = found.into_iter().take(self.limit as usize).collect();
        let on_active = on_active_branches(conn, user, &found)?;
        let hits = found
            .drain(..)
            .zip(on_active)
            .map(
                |((message, conversation_title), on_active_branch)| SearchHit {
                    snippet: search::snippet(&message.text(), &self.parsed),
                    message,
                    conversation_title,
                    on_active_branch,
                },
            )
            .collect();
        Ok(SearchResults {
            hits,
            next_offset: more
                .then(|| offset.saturating_add(self.limit))
                .filter(|&next| next <= MAX_SEARCH_OFFSET),
        })
    }
}

/// For each message found, whether it is on its conversation's active branch: for a conversation
/// whose root branch is active, a root message within its count; otherwise on the active branch's
/// path, read from its tree. One statement for the conversations, one per branched one.
fn on_active_branches(
    conn: &mut Conn,
    user: &UserId,
    found: &[(Message, Option<String>)],
) -> Result<Vec<bool>> {
    let mut ids: Vec<ConversationId> = found.iter().map(|(m, _)| m.conversation_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut paths: HashMap<ConversationId, Vec<Segment>> = HashMap::with_capacity(ids.len());
    for row in conversations::by_ids(conn, user, &ids)? {
        let active = BranchId::from_db(row.branch);
        let path = branches::path(
            conn,
            user,
            row.id,
            active,
            row.message_count,
            row.message_count,
        )?;
        paths.insert(row.id, path);
    }
    Ok(found
        .iter()
        .map(|(m, _)| {
            paths.get(&m.conversation_id).is_some_and(|path| {
                path.iter()
                    .any(|s| s.branch == m.branch && s.after < m.seq && m.seq <= s.through)
            })
        })
        .collect())
}

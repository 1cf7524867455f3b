//! Reading a context window: the newest page of the history, then older pages, each larger, until
//! the budget is spent. What goes in is decided by `context::Builder`, without the database.

use crate::conn::Conn;
use crate::context::{Builder, ContextOptions, ContextWindow};
use crate::cursor::Window;
use crate::ids::{ConversationId, UserId};
use crate::models::Message;
use crate::queries::{branches, messages};
use crate::{Error, Result};

/// The first page read; each older one doubles, up to the last size.
const PAGES: (u32, u32) = (64, 1024);

/// What a context window is asked for: its budget, as `cost` counts it, and the options.
pub(crate) struct Budget<F> {
    pub(crate) budget: u64,
    pub(crate) options: ContextOptions,
    pub(crate) cost: F,
}

/// The conversation's context window.
pub(crate) fn read<F: FnMut(&Message) -> u64>(
    conn: &mut Conn,
    user: &UserId,
    conversation: ConversationId,
    Budget {
        budget,
        options,
        mut cost,
    }: Budget<F>,
) -> Result<ContextWindow> {
    // A page read after the active branch was switched would mix two branches: the read starts
    // again (the last time, it takes what it finds).
    let mut attempt = 0;
    'read: loop {
        attempt += 1;
        let first = Window::Latest(PAGES.0).bounds();
        let found = messages::window(conn, user, conversation, first)?.ok_or(Error::NotFound)?;
        let (total, mut page) = (found.count, found.messages);
        let pinned = match options.pins_system() {
            true => {
                let path = branches::path(conn, user, conversation, found.branch, total, total)?;
                messages::system(conn, user, conversation, &path)?
            }
            false => Vec::new(),
        };
        let mut builder = Builder::new(budget, &mut cost, pinned)?;
        let mut limit = PAGES.0;
        loop {
            let oldest = page.first().map_or(1, |m| m.seq);
            if !builder.take(page) || oldest <= 1 {
                break;
            }
            limit = (limit * 2).min(PAGES.1);
            let older = Window::Before { seq: oldest, limit }.bounds();
            // Deleted since the first page: as if it had been before.
            let next = messages::window(conn, user, conversation, older)?.ok_or(Error::NotFound)?;
            if next.branch != found.branch && attempt < 3 {
                continue 'read;
            }
            page = next.messages;
        }
        return Ok(builder.finish(total, found.branch));
    }
}

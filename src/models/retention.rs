use chrono::{DateTime, Utc};

use crate::ids::UserId;

/// A retention rule: which conversations [`ChatStore::purge`](crate::ChatStore::purge) deletes —
/// those not updated since `cutoff` (their `updated_at` is earlier), every user's or one user's —
/// and how many it deletes per transaction.
///
/// Pinned, archived and tagged conversations are no exception: a conversation nobody touched
/// since the cutoff goes, with its messages, branches, tags and search index entries. An append,
/// a rename, a branch change moves `updated_at`, and so keeps a conversation; pinning, archiving,
/// tagging and metadata do not.
///
/// ```
/// use chatstore::{Retention, UserId};
/// use chrono::{Duration, Utc};
///
/// let ninety_days = Retention::not_updated_since(Utc::now() - Duration::days(90));
/// let alices = Retention::not_updated_since(Utc::now() - Duration::days(30))
///     .of_user(UserId::new("alice")?)
///     .batch_size(50);
/// assert_eq!(alices.user().map(|u| u.as_str()), Some("alice"));
/// assert!(ninety_days.user().is_none());
/// # Ok::<(), chatstore::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    cutoff: DateTime<Utc>,
    user: Option<UserId>,
    batch: u32,
}

impl Retention {
    /// Conversations per transaction unless [`batch_size`](Retention::batch_size) says otherwise.
    pub const DEFAULT_BATCH: u32 = 100;

    /// A transaction holds at most this many messages' conversations, unless one conversation
    /// alone holds more (a conversation is deleted whole, in one transaction): what keeps each
    /// batch short, whatever the batch size.
    pub const MESSAGES_PER_BATCH: i64 = 10_000;

    /// Every user's conversations whose `updated_at` is earlier than `cutoff`.
    pub fn not_updated_since(cutoff: DateTime<Utc>) -> Self {
        Retention {
            cutoff,
            user: None,
            batch: Self::DEFAULT_BATCH,
        }
    }

    /// Only `user`'s conversations.
    pub fn of_user(mut self, user: UserId) -> Self {
        self.user = Some(user);
        self
    }

    /// At most `conversations` conversations per transaction (at least 1), and at most
    /// [`MESSAGES_PER_BATCH`](Retention::MESSAGES_PER_BATCH) messages unless one conversation
    /// holds more. Default [`DEFAULT_BATCH`](Retention::DEFAULT_BATCH).
    pub fn batch_size(mut self, conversations: u32) -> Self {
        self.batch = conversations.max(1);
        self
    }

    /// The cutoff: conversations updated before it go.
    pub fn cutoff(&self) -> DateTime<Utc> {
        self.cutoff
    }

    /// Whose conversations: one user's, or every user's (`None`).
    pub fn user(&self) -> Option<&UserId> {
        self.user.as_ref()
    }

    /// Conversations per transaction.
    pub fn batch(&self) -> u32 {
        self.batch
    }
}

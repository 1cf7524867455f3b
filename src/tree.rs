//! A conversation's branches as a tree, and where each branch's messages are stored: pure logic,
//! no database.
//!
//! A branch is a run of messages of its own with a link to its parent branch and the position it
//! forks at: the messages up to that position are its ancestors', the ones after it its own. Branch
//! `b`'s message at position `p` is stored with the seq `b · 2³² + p` ([`stored_seq`]), so the root
//! branch (0) keeps the seqs a conversation without branches always had, and every branch is one
//! range of the `(conversation_id, seq)` index. Reading a branch's path is then one index range per
//! branch on it ([`Tree::path`]), newest first, rather than a walk of parent pointers.
//!
//! The rules that keep reads simple, which every change of the tree keeps:
//! - A branch's parent owns the position the branch forks at (the root owns position 0): the
//!   parent is the branch whose message the fork follows, so the siblings of a message are its
//!   owner's message and the first messages of the branches that fork right before it.
//! - No message ever moves, and a message stays while any branch's path goes through it: a branch
//!   that is deleted while others fork from it is *retired* — no longer listed or made active —
//!   and keeps the messages they share. So a reader that has found a branch's path (its fork
//!   and parent, read with the branch's own messages in one statement) finds its ancestors'
//!   messages unchanged, without a snapshot.
//! - A branch's parent and fork change only while it has no messages of its own and no branches
//!   forking from it (a pop below its fork: see [`Tree::cut`]).
//! - A branch id is never given twice in a conversation, so that a caller holding a stale id (a
//!   tab that listed the branches before one was deleted) never switches to, deletes or appends to
//!   another branch than it means. Ids are handed out in order, and a deleted branch that held the
//!   highest id leaves a *tombstone* ([`Node::tombstone`]) that keeps the id taken.

use chrono::NaiveDateTime;

use crate::ids::BranchId;

/// How many seqs each branch has: branch `b` stores its messages at `b · SPAN + 1` onwards.
pub(crate) const SPAN: i64 = 1 << 32;

/// The most messages a path holds: positions run from 1 to this.
pub(crate) const MAX_POSITION: i64 = SPAN - 1;

/// The seq that stores position `position` of `branch`.
pub(crate) fn stored_seq(branch: BranchId, position: i64) -> i64 {
    branch.as_i64() * SPAN + position
}

/// The branch and position of a stored seq.
pub(crate) fn split_seq(stored: i64) -> (BranchId, i64) {
    (BranchId::from_db(stored / SPAN), stored % SPAN)
}

/// How many of the active branch's nearest ancestors the conversation row keeps
/// ([`Tree::ancestors`]).
pub(crate) const KEPT_ANCESTORS: usize = 4;

/// One branch as the tree knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) branch: BranchId,
    /// `None` for the root.
    pub(crate) parent: Option<BranchId>,
    /// The last position it shares with its parent (0: none).
    pub(crate) fork: i64,
    /// Its last position: the length of its path.
    pub(crate) length: i64,
    pub(crate) retired: bool,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) updated_at: NaiveDateTime,
}

impl Node {
    /// A deleted branch kept only so that its id, the highest given, is not given again: retired,
    /// with no parent, no messages and nothing forking from it. At most one; it goes when a newer
    /// branch takes a higher id.
    pub(crate) fn tombstone(branch: BranchId, updated_at: NaiveDateTime) -> Node {
        Node {
            branch,
            parent: None,
            fork: 0,
            length: 0,
            retired: true,
            created_at: updated_at,
            updated_at,
        }
    }

    /// Whether it is a [`tombstone`](Self::tombstone).
    pub(crate) fn is_tombstone(&self) -> bool {
        self.retired && self.parent.is_none() && !self.branch.is_root()
    }

    /// How many messages it stores itself.
    pub(crate) fn own(&self) -> i64 {
        (self.length - self.fork).max(0)
    }

    /// Whether its own run holds `position`.
    fn owns(&self, position: i64) -> bool {
        position > self.fork && position <= self.length
    }
}

/// Positions `after + 1 ..= through` of one branch's own messages: a piece of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) branch: BranchId,
    pub(crate) after: i64,
    pub(crate) through: i64,
}

impl Segment {
    /// The stored seqs of the segment: those greater than the first and at most the second.
    pub(crate) fn stored(&self) -> (i64, i64) {
        (
            stored_seq(self.branch, self.after),
            stored_seq(self.branch, self.through),
        )
    }
}

/// The branches of one conversation.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    /// By branch id.
    nodes: Vec<Node>,
}

impl Tree {
    /// The tree of a conversation whose stored branches are `nodes` (none if it never branched:
    /// then the root alone), whose active branch is `active`, `count` long and last changed at
    /// `updated_at` (the conversation's row knows those better than the branch's own row, which
    /// is written when the branch stops being active).
    pub(crate) fn new(
        mut nodes: Vec<Node>,
        active: BranchId,
        count: i64,
        updated_at: NaiveDateTime,
    ) -> Tree {
        if nodes.is_empty() {
            nodes.push(Node {
                branch: BranchId::ROOT,
                parent: None,
                fork: 0,
                length: count,
                retired: false,
                created_at: updated_at,
                updated_at,
            });
        }
        nodes.sort_by_key(|n| n.branch);
        let mut tree = Tree { nodes };
        if let Some(node) = tree.get_mut(active) {
            node.length = count;
            node.updated_at = node.updated_at.max(updated_at);
        }
        tree
    }

    /// Every branch, by id.
    pub(crate) fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub(crate) fn get(&self, branch: BranchId) -> Option<&Node> {
        self.nodes
            .binary_search_by_key(&branch, |n| n.branch)
            .ok()
            .map(|i| &self.nodes[i])
    }

    pub(crate) fn get_mut(&mut self, branch: BranchId) -> Option<&mut Node> {
        self.nodes
            .binary_search_by_key(&branch, |n| n.branch)
            .ok()
            .map(|i| &mut self.nodes[i])
    }

    /// Adds a branch (its id [`next_id`](Self::next_id)); returns the tombstone it makes
    /// unneeded, whose row goes.
    pub(crate) fn insert(&mut self, node: Node) -> Option<BranchId> {
        let gone = self
            .nodes
            .iter()
            .find(|n| n.is_tombstone())
            .map(|n| n.branch);
        self.nodes.retain(|n| !n.is_tombstone());
        let at = self.nodes.partition_point(|n| n.branch < node.branch);
        self.nodes.insert(at, node);
        gone
    }

    /// The branch that may be listed and made active, if `branch` is one.
    pub(crate) fn live(&self, branch: BranchId) -> Option<&Node> {
        self.get(branch).filter(|n| !n.retired)
    }

    /// The id a new branch takes: after every id given, a deleted one's too.
    pub(crate) fn next_id(&self) -> Option<BranchId> {
        let last = self.nodes.last().map_or(0, |n| n.branch.get());
        BranchId::new(last + 1)
    }

    /// The branches that fork from `branch`.
    pub(crate) fn children(&self, branch: BranchId) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |n| n.parent == Some(branch))
    }

    /// The last position of `branch` that a branch forking from it shares (its fork if none).
    pub(crate) fn shared_through(&self, branch: BranchId) -> i64 {
        let fork = self.get(branch).map_or(0, |n| n.fork);
        self.children(branch).map(|c| c.fork).fold(fork, i64::max)
    }

    /// The path of `branch` through position `through`, newest segment first: its own run, then
    /// each ancestor's up to where its child forks.
    pub(crate) fn path(&self, branch: BranchId, through: i64) -> Vec<Segment> {
        let mut segments = Vec::new();
        let mut through = through;
        let mut node = self.get(branch);
        while let Some(n) = node {
            if through > n.fork {
                segments.push(Segment {
                    branch: n.branch,
                    after: n.fork,
                    through,
                });
            }
            through = through.min(n.fork);
            node = n.parent.and_then(|p| self.get(p));
        }
        segments
    }

    /// The nearest ancestors of `branch` on its path, nearest first, as the conversation row keeps
    /// them while `branch` is active: for each, the stored seq of the last message it holds on the
    /// path; -1 past the path's last ancestor (everywhere, on the root branch). An ancestor whose
    /// part of the path is empty (a child forking where it forks itself) is not one.
    pub(crate) fn ancestors(&self, branch: BranchId) -> [i64; KEPT_ANCESTORS] {
        let length = self.get(branch).map_or(0, |n| n.length);
        let mut kept = [-1; KEPT_ANCESTORS];
        let path = self.path(branch, length);
        let above = path.iter().filter(|s| s.branch != branch);
        for (slot, segment) in kept.iter_mut().zip(above) {
            *slot = stored_seq(segment.branch, segment.through);
        }
        kept
    }

    /// The branch whose message is at `position` on `branch`'s path (the root for position 0).
    pub(crate) fn owner_at(&self, branch: BranchId, position: i64) -> BranchId {
        let mut node = self.get(branch);
        while let Some(n) = node {
            match n.parent {
                Some(parent) if position <= n.fork => node = self.get(parent),
                _ => return n.branch,
            }
        }
        BranchId::ROOT
    }

    /// The branches whose messages at `position` are the siblings of `owner`'s message there,
    /// oldest first: that message's parent slot — the branch owning the position before it —
    /// holds its own next message and the first messages of the branches forking there.
    pub(crate) fn siblings(&self, owner: BranchId, position: i64) -> Vec<BranchId> {
        let Some(node) = self.get(owner) else {
            return Vec::new();
        };
        // The branch the slot hangs from.
        let base = match node.parent {
            Some(parent) if node.fork == position - 1 => parent,
            _ => owner,
        };
        let mut members: Vec<BranchId> = Vec::new();
        if self.get(base).is_some_and(|b| b.owns(position)) {
            members.push(base);
        }
        members.extend(
            self.children(base)
                .filter(|c| c.fork == position - 1 && c.owns(position))
                .map(|c| c.branch),
        );
        members
    }

    /// The branch to make active to show `branch`'s message at `position`: the branch itself, or
    /// for a retired one, the oldest branch under it whose path goes through that message.
    pub(crate) fn shown_by(&self, branch: BranchId, position: i64) -> BranchId {
        let mut current = branch;
        while let Some(node) = self.get(current).filter(|n| n.retired) {
            let next = self
                .children(node.branch)
                .filter(|c| c.fork >= position)
                .map(|c| c.branch)
                .min();
            match next {
                Some(next) => current = next,
                None => break,
            }
        }
        current
    }

    /// How many messages are stored off `active`'s own run: every other branch's own.
    pub(crate) fn off_branch(&self, active: BranchId) -> i64 {
        self.nodes
            .iter()
            .filter(|n| n.branch != active)
            .map(Node::own)
            .sum()
    }

    /// The branch to make active once `gone` is deleted: the live branch last changed.
    pub(crate) fn successor(&self, gone: BranchId) -> Option<BranchId> {
        self.nodes
            .iter()
            .filter(|n| !n.retired && n.branch != gone)
            .max_by_key(|n| (n.updated_at, n.branch))
            .map(|n| n.branch)
    }

    /// Deletes `branch` from the tree: the messages only it holds go, the ones that branches
    /// forking from it share stay (it is retired, then), and an ancestor retired before that no
    /// branch needs any more goes too. Returns what to delete: each branch's own messages after a
    /// position, and the branches whose rows go.
    pub(crate) fn delete(&mut self, branch: BranchId) -> Cut {
        let mut cut = Cut::default();
        let shared = self.shared_through(branch);
        let has_children = self.children(branch).next().is_some();
        let highest = self.nodes.last().is_some_and(|n| n.branch == branch);
        let Some(node) = self.get_mut(branch) else {
            return cut;
        };
        if node.length > shared {
            cut.messages.push((branch, shared));
        }
        if has_children {
            node.retired = true;
            node.length = shared;
            cut.changed.push(branch);
        } else {
            let parent = node.parent;
            if highest {
                // The highest id given: kept taken.
                *node = Node::tombstone(branch, node.updated_at);
                cut.changed.push(branch);
            } else {
                self.nodes.retain(|n| n.branch != branch);
                cut.rows.push(branch);
            }
            // A retired parent was kept for its branches: it goes, or shrinks, with this one.
            self.prune(parent, &mut cut);
        }
        cut
    }

    /// Shortens the active branch `branch` to `keep` positions, if no other branch needs what goes:
    /// its own messages after `keep` are deleted; below its fork, it forks at `keep` instead, from
    /// the branch owning that position. `Err` with the first position another branch shares, if
    /// any of the positions after `keep` is on another branch's path.
    pub(crate) fn cut(&mut self, branch: BranchId, keep: i64) -> Result<Cut, i64> {
        let shared = self.shared_through(branch);
        let Some(node) = self.get(branch) else {
            return Ok(Cut::default());
        };
        let fork = node.fork;
        if self.children(branch).next().is_some() && keep < shared {
            return Err(shared);
        }
        let mut cut = Cut::default();
        if node.length > keep.max(fork) {
            cut.messages.push((branch, keep.max(fork)));
        }
        let parent = (keep < fork).then(|| self.owner_at(branch, keep));
        let node = self.get_mut(branch).expect("looked up above");
        node.length = keep;
        let old_parent = node.parent;
        if let Some(parent) = parent {
            node.fork = keep;
            node.parent = Some(parent);
        }
        cut.changed.push(branch);
        if parent.is_some() {
            // A retired parent kept its messages up to the fork for this branch alone, perhaps.
            self.prune(old_parent, &mut cut);
        }
        Ok(cut)
    }

    /// From `branch` up, the retired branches that lost what they were kept for: one that no
    /// branch forks from goes, with its messages; one that others still fork from keeps only
    /// what they share.
    fn prune(&mut self, mut branch: Option<BranchId>, cut: &mut Cut) {
        while let Some(b) = branch.take() {
            let shared = self.shared_through(b);
            let has_children = self.children(b).next().is_some();
            let Some(node) = self.get_mut(b).filter(|n| n.retired) else {
                return;
            };
            if node.length > shared {
                cut.messages.push((b, shared));
                node.length = shared;
            }
            if has_children {
                cut.changed.push(b);
                return;
            }
            branch = node.parent;
            self.nodes.retain(|n| n.branch != b);
            cut.rows.push(b);
        }
    }
}

/// What a change of the tree removes and rewrites.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Cut {
    /// Each branch's own messages after a position, to delete.
    pub(crate) messages: Vec<(BranchId, i64)>,
    /// Branches whose rows go.
    pub(crate) rows: Vec<BranchId>,
    /// Branches whose rows change (length, fork, parent, retired).
    pub(crate) changed: Vec<BranchId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> BranchId {
        BranchId::new(n).unwrap()
    }

    fn node(branch: u32, parent: Option<u32>, fork: i64, length: i64) -> Node {
        let time = chrono::DateTime::from_timestamp(1_700_000_000 + i64::from(branch), 0)
            .unwrap()
            .naive_utc();
        Node {
            branch: id(branch),
            parent: parent.map(id),
            fork,
            length,
            retired: false,
            created_at: time,
            updated_at: time,
        }
    }

    /// Root 1..=10; branch 1 forks after 4 (5..=8); branch 2 forks from branch 1 after 6
    /// (7..=9); branch 3 forks from the root after 4 (5..=5).
    fn sample() -> Tree {
        let time = chrono::DateTime::from_timestamp(1_700_000_000, 0)
            .unwrap()
            .naive_utc();
        Tree::new(
            vec![
                node(0, None, 0, 10),
                node(1, Some(0), 4, 8),
                node(2, Some(1), 6, 9),
                node(3, Some(0), 4, 5),
            ],
            id(2),
            9,
            time,
        )
    }

    #[test]
    fn seqs_split_back_into_branch_and_position() {
        for (branch, position) in [(0, 1), (0, MAX_POSITION), (7, 1), (BranchId::MAX, 42)] {
            let stored = stored_seq(id(branch), position);
            assert!(stored >= 1);
            assert_eq!(split_seq(stored), (id(branch), position));
        }
        assert_eq!(stored_seq(BranchId::ROOT, 5), 5, "the root keeps its seqs");
    }

    #[test]
    fn a_path_is_one_segment_per_branch_newest_first() {
        let tree = sample();
        let segment = |b, after, through| Segment {
            branch: id(b),
            after,
            through,
        };
        assert_eq!(
            tree.path(id(2), 9),
            [segment(2, 6, 9), segment(1, 4, 6), segment(0, 0, 4)]
        );
        assert_eq!(tree.path(id(2), 5), [segment(1, 4, 5), segment(0, 0, 4)]);
        assert_eq!(tree.path(id(0), 10), [segment(0, 0, 10)]);
        assert_eq!(tree.path(id(3), 5), [segment(3, 4, 5), segment(0, 0, 4)]);
    }

    #[test]
    fn owners_and_siblings_follow_the_fork_points() {
        let tree = sample();
        assert_eq!(tree.owner_at(id(2), 9), id(2));
        assert_eq!(tree.owner_at(id(2), 6), id(1));
        assert_eq!(tree.owner_at(id(2), 4), id(0));
        assert_eq!(tree.owner_at(id(2), 0), id(0));
        // Position 5: the root's own, branch 1's and branch 3's first messages.
        for owner in [0, 1, 3] {
            assert_eq!(tree.siblings(id(owner), 5), [id(0), id(1), id(3)]);
        }
        // Position 7: branch 1's own and branch 2's first.
        assert_eq!(tree.siblings(id(2), 7), [id(1), id(2)]);
        assert_eq!(tree.siblings(id(1), 7), [id(1), id(2)]);
        // Position 8 of branch 2: alone.
        assert_eq!(tree.siblings(id(2), 8), [id(2)]);
    }

    #[test]
    fn deleting_keeps_what_other_branches_share() {
        let mut tree = sample();
        // Branch 1 has branch 2 forking after 6: its 7..=8 go, 5..=6 stay, retired.
        let cut = tree.delete(id(1));
        assert_eq!(cut.messages, [(id(1), 6)]);
        assert!(cut.rows.is_empty());
        assert!(tree.get(id(1)).unwrap().retired);
        assert_eq!(tree.path(id(2), 9).len(), 3, "branch 2 reads as before");
        assert_eq!(tree.shown_by(id(1), 5), id(2));
        // Then branch 2: nothing needs branch 1 any more either.
        let cut = tree.delete(id(2));
        assert_eq!(cut.messages, [(id(2), 6), (id(1), 4)]);
        assert_eq!(cut.rows, [id(2), id(1)]);
        assert_eq!(
            tree.nodes().iter().map(|n| n.branch).collect::<Vec<_>>(),
            [id(0), id(3)]
        );
    }

    #[test]
    fn a_deleted_highest_branch_keeps_its_id_taken() {
        let mut tree = sample();
        // Branch 3, the highest id, forks from the root with nothing forking from it.
        let cut = tree.delete(id(3));
        assert_eq!(cut.messages, [(id(3), 4)]);
        assert!(cut.rows.is_empty());
        assert_eq!(cut.changed, [id(3)]);
        let tombstone = tree.get(id(3)).unwrap();
        assert!(tombstone.is_tombstone() && tombstone.own() == 0);
        assert!(tree.live(id(3)).is_none());
        assert_eq!(
            tree.children(id(0)).count(),
            1,
            "branch 1 alone forks from the root"
        );
        assert_eq!(tree.off_branch(id(2)), 10 + 4, "the root's and branch 1's");
        assert_eq!(tree.next_id(), Some(id(4)), "not 3 again");
        // A new branch takes 4, and the tombstone goes.
        let gone = tree.insert(node(4, Some(0), 1, 2));
        assert_eq!(gone, Some(id(3)));
        assert!(tree.get(id(3)).is_none());
        assert_eq!(tree.next_id(), Some(id(5)));
        // A deleted branch below the highest leaves no tombstone.
        let cut = tree.delete(id(2));
        assert_eq!(cut.rows, [id(2)]);
        assert!(tree.nodes().iter().all(|n| !n.is_tombstone()));
    }

    #[test]
    fn a_cut_never_takes_what_another_branch_shares() {
        let mut tree = sample();
        // Branch 1 shares up to 6 with branch 2.
        assert_eq!(tree.cut(id(1), 5), Err(6));
        assert_eq!(tree.cut(id(1), 6).unwrap().messages, [(id(1), 6)]);
        // Branch 3 (5..=5) cut to 2: it now forks from the root after 2, holding nothing.
        let cut = tree.cut(id(3), 2).unwrap();
        assert_eq!(cut.messages, [(id(3), 4)]);
        let three = tree.get(id(3)).unwrap();
        assert_eq!(
            (three.fork, three.length, three.parent),
            (2, 2, Some(id(0)))
        );
        // The root has branches forking after 4 (branch 1) and 2 (branch 3).
        assert_eq!(tree.cut(id(0), 3), Err(4));
    }

    #[test]
    fn a_cut_below_a_fork_lets_a_retired_parent_go() {
        let mut tree = sample();
        // Branch 1 retired: it keeps 5..=6 for branch 2 alone.
        tree.delete(id(1));
        // Branch 2 (7..=9) cut to 3: it forks from the root now, and branch 1 holds nothing
        // anyone needs.
        let cut = tree.cut(id(2), 3).unwrap();
        assert_eq!(cut.messages, [(id(2), 6), (id(1), 4)]);
        assert_eq!(cut.rows, [id(1)]);
        assert!(tree.get(id(1)).is_none());
        let two = tree.get(id(2)).unwrap();
        assert_eq!((two.parent, two.fork, two.length), (Some(id(0)), 3, 3));
    }
}

-- Branches: an edited or regenerated message is a sibling of the one it replaces, the first
-- message of a new branch that shares everything before it. A branch is a run of messages of its
-- own, stored in the conversation's one ordering key: branch b's message at position p has
-- seq = b * 2^32 + p, so the root branch (0) keeps the seqs it always had (no message is rewritten)
-- and each branch is one range of the (conversation_id, seq) index. A branch records its parent
-- and the position it forks at: the messages up to that position are its ancestors'.
--
-- The conversation names its active branch, where its own run starts (`branch_fork`), and how many
-- of its messages are off that run (`off_branch`: the other branches' own messages), so that
-- `message_count` stays the active branch's length and a delete still counts every message. A
-- conversation that never branched has no rows below and zeros here.
ALTER TABLE chatstore_conversations ADD COLUMN branch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE chatstore_conversations ADD COLUMN branch_fork BIGINT NOT NULL DEFAULT 0;
ALTER TABLE chatstore_conversations ADD COLUMN off_branch BIGINT NOT NULL DEFAULT 0;

-- A branched conversation's branches, the root's included. `length` is the branch's last position
-- while it is not active (the active branch's is the conversation's message_count). A branch's
-- parent and fork never change while it holds messages or has branches of its own, and no message
-- ever moves: a read that found a branch's path reads its ancestors' part without a snapshot.
CREATE TABLE chatstore_branches (
    conversation_id VARBINARY(16) NOT NULL,
    user_id VARBINARY(1020) NOT NULL,
    branch BIGINT NOT NULL,
    parent BIGINT,
    fork_seq BIGINT NOT NULL,
    length BIGINT NOT NULL,
    -- Deleted while other branches still fork from it: its messages up to their forks stay, as
    -- theirs; it is no longer listed, nor made active.
    retired BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    CONSTRAINT chatstore_branches_branch_range CHECK (branch BETWEEN 0 AND 2147483647),
    CONSTRAINT chatstore_branches_fork_nonnegative CHECK (fork_seq >= 0),
    CONSTRAINT chatstore_branches_key PRIMARY KEY (conversation_id, branch),
    CONSTRAINT chatstore_branches_conversation_fk FOREIGN KEY (conversation_id, user_id)
        REFERENCES chatstore_conversations (id, user_id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

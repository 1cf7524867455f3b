//! Turns across processes: the writers of one database file queue on a lock file beside it, first
//! come first served, and a process that dies in the queue or holding its turn leaves it at once.
//!
//! The queue is a ticket lock made of byte-range locks on the lock file, which the kernel keeps:
//! - a ticket is the next number of a counter kept in the file's first bytes, read and written
//!   under a lock on byte 0 (held for two system calls);
//! - its holder locks the ticket's own byte (`SLOTS + ticket`) at once, and keeps it until its turn
//!   is over;
//! - its turn comes when no earlier ticket's byte is locked any more: a wait for a lock over all
//!   the bytes before its own. It first waits on the byte of the ticket just before, which is the
//!   one that is usually still held, so that a release wakes one waiter, not all.
//!
//! The locks are open file description locks (`F_OFD_SETLKW`): the kernel drops them when the
//! process dies however it dies, they belong to this file description rather than to the process
//! (closing another descriptor of the file drops nothing, as it would with POSIX record locks), and
//! they are never taken on SQLite's own files. A ticket's turn is only fair among the processes
//! that use the queue: SQLite's own lock still decides who writes, so anything that goes around the
//! queue (another program, a file whose lock file could not be made) is arbitrated as before,
//! never let in twice.
//!
//! A wait that must respect a timeout cannot block in `fcntl` on the caller's thread, so a process's
//! blocking wait runs on a helper thread of its queue, which hands the turn to the caller, or — if
//! the caller gave up meanwhile — straight back to the next ticket. Only Linux has these locks;
//! elsewhere [`TurnQueue::open`] fails with [`io::ErrorKind::Unsupported`].

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// The byte whose lock guards the counter; the counter itself is the file's first 8 bytes.
const COUNTER: u64 = 0;
/// Where the tickets' bytes start.
const SLOTS: u64 = 64;
/// Tickets wrap before their bytes could leave the range of a file offset.
const MAX_TICKET: u64 = 1 << 62;

/// One process's place in the queue of a lock file. It takes one ticket at a time: the caller is
/// one writer at a time (`&mut self`).
pub(crate) struct TurnQueue {
    shared: Arc<Shared>,
}

/// What the caller and the helper thread share.
struct Shared {
    /// The lock file, opened by this queue alone: its locks belong to this open file description.
    file: File,
    state: Mutex<State>,
    changed: Condvar,
}

/// The helper thread's work, and what it hands over.
#[derive(Default)]
struct State {
    /// What the helper is to do next, or is doing.
    job: Option<Job>,
    /// Whether a caller is waiting for the job's turn. If not when the turn comes (the caller gave
    /// up), the helper ends the turn at once.
    wanted: bool,
    /// The turn the helper got for the waiting caller, or why it could not.
    granted: Option<io::Result<u64>>,
    /// Whether the helper thread is running.
    helper: bool,
    /// Whether the queue was dropped: the helper ends when it has nothing left to do.
    closed: bool,
}

#[derive(Clone, Copy)]
enum Job {
    /// Take a ticket, then wait for its turn.
    Take,
    /// Wait for the turn of this ticket, already taken.
    Wait(u64),
}

/// A turn: until it is dropped, no other holder of a ticket from the same lock file has its turn.
pub(crate) struct Turn {
    shared: Arc<Shared>,
    ticket: u64,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.shared.end(self.ticket);
    }
}

impl TurnQueue {
    /// Opens the lock file at `path`, creating it (with the permissions `mode`, if given, as SQLite
    /// gives its own files those of the database) if it does not exist.
    pub(crate) fn open(path: &Path, mode: Option<u32>) -> io::Result<TurnQueue> {
        Ok(TurnQueue::of(sys::open(path, mode)?))
    }

    fn of(file: File) -> TurnQueue {
        TurnQueue {
            shared: Arc::new(Shared {
                file,
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
            }),
        }
    }

    /// Waits up to `timeout` for this process's next turn; `Ok(None)` if it did not come in time
    /// (the ticket stays in the queue, and the next call waits for the same turn). An error means
    /// the lock file could not be used.
    pub(crate) fn turn(&mut self, timeout: Duration) -> io::Result<Option<Turn>> {
        let deadline = Instant::now().checked_add(timeout);
        let shared = &self.shared;
        let mut state = shared.state.lock();
        if state.job.is_none() {
            // Nothing left over from a caller that gave up: take a ticket here, and when no one is
            // ahead, take the turn without waking the helper.
            let job = match shared.try_take()? {
                None => Job::Take,
                Some(ticket) => match shared.try_turn(ticket) {
                    Ok(true) => return Ok(Some(self.turn_of(ticket))),
                    Ok(false) => Job::Wait(ticket),
                    Err(e) => {
                        shared.end(ticket);
                        return Err(e);
                    }
                },
            };
            state.job = Some(job);
            if !state.helper {
                state.helper = true;
                let helper = Arc::clone(shared);
                let spawned = std::thread::Builder::new()
                    .name("chatstore-turns".into())
                    .spawn(move || helper.help());
                if let Err(e) = spawned {
                    state.helper = false;
                    if let Some(Job::Wait(ticket)) = state.job.take() {
                        shared.end(ticket);
                    }
                    return Err(e);
                }
            }
            shared.changed.notify_all();
        }
        state.wanted = true;
        loop {
            if let Some(granted) = state.granted.take() {
                return granted.map(|ticket| Some(self.turn_of(ticket)));
            }
            let timed_out = match deadline {
                Some(deadline) => shared.changed.wait_until(&mut state, deadline).timed_out(),
                None => {
                    shared.changed.wait(&mut state);
                    false
                }
            };
            if timed_out && state.granted.is_none() {
                state.wanted = false;
                return Ok(None);
            }
        }
    }

    fn turn_of(&self, ticket: u64) -> Turn {
        Turn {
            shared: Arc::clone(&self.shared),
            ticket,
        }
    }
}

impl Drop for TurnQueue {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        state.closed = true;
        self.shared.changed.notify_all();
    }
}

impl Shared {
    /// The helper thread: runs each job to its turn, hands the turn to the caller if one is still
    /// waiting, else ends it; stops when the queue is dropped and nothing is left to do.
    fn help(&self) {
        let mut state = self.state.lock();
        loop {
            let Some(job) = state.job else {
                if state.closed {
                    state.helper = false;
                    return;
                }
                self.changed.wait(&mut state);
                continue;
            };
            let result = parking_lot::MutexGuard::unlocked(&mut state, || {
                let ticket = match job {
                    Job::Take => self.take()?,
                    Job::Wait(ticket) => ticket,
                };
                match self.wait_turn(ticket) {
                    Ok(()) => Ok(ticket),
                    Err(e) => {
                        self.end(ticket);
                        Err(e)
                    }
                }
            });
            state.job = None;
            if state.wanted {
                state.wanted = false;
                state.granted = Some(result);
                self.changed.notify_all();
            } else if let Ok(ticket) = result {
                self.end(ticket);
            }
        }
    }

    /// A new ticket, its byte locked; `None` if the counter's lock is held at this moment.
    fn try_take(&self) -> io::Result<Option<u64>> {
        if !lock(&self.file, Lock::Write, COUNTER, 1, false)? {
            return Ok(None);
        }
        let ticket = self.next_ticket();
        unlock(&self.file, COUNTER, 1)?;
        ticket.map(Some)
    }

    /// A new ticket, its byte locked, waiting for the counter's lock if need be.
    fn take(&self) -> io::Result<u64> {
        lock(&self.file, Lock::Write, COUNTER, 1, true)?;
        let ticket = self.next_ticket();
        unlock(&self.file, COUNTER, 1)?;
        ticket
    }

    /// Under the counter's lock: reads the counter, locks the ticket's byte, writes the counter on.
    fn next_ticket(&self) -> io::Result<u64> {
        let mut ticket = sys::read_counter(&self.file)?;
        // A byte still locked by a ticket of the same number means the counter went back (the file
        // was cut short while in use): the next free number will do, as the queue's order then is
        // the kernel's.
        loop {
            if ticket >= MAX_TICKET {
                ticket = 0;
            }
            if lock(&self.file, Lock::Write, SLOTS + ticket, 1, false)? {
                break;
            }
            ticket += 1;
        }
        if let Err(e) = sys::write_counter(&self.file, ticket + 1) {
            unlock(&self.file, SLOTS + ticket, 1)?;
            return Err(e);
        }
        Ok(ticket)
    }

    /// Whether `ticket`'s turn has come: no earlier ticket's byte is locked.
    fn try_turn(&self, ticket: u64) -> io::Result<bool> {
        if ticket == 0 {
            return Ok(true);
        }
        let free = lock(&self.file, Lock::Read, SLOTS, ticket, false)?;
        if free {
            unlock(&self.file, SLOTS, ticket)?;
        }
        Ok(free)
    }

    /// Blocks until `ticket`'s turn has come: first for the ticket before it, then (if that one
    /// died before its turn, say) for every earlier one.
    fn wait_turn(&self, ticket: u64) -> io::Result<()> {
        if ticket == 0 {
            return Ok(());
        }
        lock(&self.file, Lock::Read, SLOTS + ticket - 1, 1, true)?;
        unlock(&self.file, SLOTS + ticket - 1, 1)?;
        lock(&self.file, Lock::Read, SLOTS, ticket, true)?;
        unlock(&self.file, SLOTS, ticket)
    }

    /// Ends `ticket`'s turn (or its place in the queue), which lets the next ticket's turn come.
    fn end(&self, ticket: u64) {
        // Unlocking a byte this description holds fails only on a bad descriptor, which it is not;
        // were it to fail, the lock would go when the file is closed.
        let _ = unlock(&self.file, SLOTS + ticket, 1);
    }
}

#[derive(Clone, Copy)]
enum Lock {
    Read,
    Write,
}

fn lock(file: &File, kind: Lock, start: u64, len: u64, wait: bool) -> io::Result<bool> {
    sys::lock(file, kind, start, len, wait)
}

fn unlock(file: &File, start: u64, len: u64) -> io::Result<()> {
    sys::unlock(file, start, len)
}

/// Open file description locks, and the counter's reads and writes: Linux.
#[cfg(target_os = "linux")]
mod sys {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
    use std::path::Path;

    use super::Lock;

    pub(super) fn open(path: &Path, mode: Option<u32>) -> io::Result<File> {
        let mut options = File::options();
        options.read(true).write(true).create(true);
        if let Some(mode) = mode {
            options.mode(mode);
        }
        let file = options.open(path)?;
        if let Some(mode) = mode {
            // The umask may have taken bits away; a file is set only when it is new (empty).
            if file.metadata()?.len() == 0 {
                let _ = file.set_permissions(std::fs::Permissions::from_mode(mode));
            }
        }
        Ok(file)
    }

    pub(super) fn read_counter(file: &File) -> io::Result<u64> {
        let mut bytes = [0u8; 8];
        match file.read_exact_at(&mut bytes, 0) {
            Ok(()) => Ok(u64::from_le_bytes(bytes)),
            // A new file.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => Err(e),
        }
    }

    pub(super) fn write_counter(file: &File, value: u64) -> io::Result<()> {
        file.write_all_at(&value.to_le_bytes(), 0)
    }

    /// Locks `len` bytes from `start` (reads share, a write excludes), waiting if `wait`; `false`
    /// if not waiting and another holds a conflicting lock.
    pub(super) fn lock(
        file: &File,
        kind: Lock,
        start: u64,
        len: u64,
        wait: bool,
    ) -> io::Result<bool> {
        let kind = match kind {
            Lock::Read => libc::F_RDLCK,
            Lock::Write => libc::F_WRLCK,
        };
        let command = if wait {
            libc::F_OFD_SETLKW
        } else {
            libc::F_OFD_SETLK
        };
        match fcntl_lock(file, command, kind, start, len) {
            Ok(()) => Ok(true),
            Err(e) if !wait && matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    pub(super) fn unlock(file: &File, start: u64, len: u64) -> io::Result<()> {
        fcntl_lock(file, libc::F_OFD_SETLK, libc::F_UNLCK, start, len)
    }

    /// One `fcntl` lock command on the file, retried when a signal interrupts it.
    fn fcntl_lock(
        file: &File,
        command: libc::c_int,
        kind: libc::c_int,
        start: u64,
        len: u64,
    ) -> io::Result<()> {
        let range = |n: u64| libc::off_t::try_from(n).map_err(|_| io::ErrorKind::InvalidInput);
        // SAFETY: `flock` is plain data, for which all zeroes is a valid value (and OFD locks need
        // `l_pid` to be 0).
        let mut request: libc::flock = unsafe { std::mem::zeroed() };
        request.l_type = kind as libc::c_short;
        request.l_whence = libc::SEEK_SET as libc::c_short;
        request.l_start = range(start)?;
        request.l_len = range(len)?;
        loop {
            // SAFETY: the descriptor is open for as long as `file` is borrowed, and `request`
            // outlives the call, which only reads it (the set-lock commands write nothing back).
            let done = unsafe { libc::fcntl(file.as_raw_fd(), command, &request) };
            if done == 0 {
                return Ok(());
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

/// Elsewhere: no queue (the store then leaves the order to SQLite's busy handler).
#[cfg(not(target_os = "linux"))]
mod sys {
    use std::fs::File;
    use std::io;
    use std::path::Path;

    use super::Lock;

    pub(super) fn open(_path: &Path, _mode: Option<u32>) -> io::Result<File> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(super) fn read_counter(_file: &File) -> io::Result<u64> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(super) fn write_counter(_file: &File, _value: u64) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(super) fn lock(
        _file: &File,
        _kind: Lock,
        _start: u64,
        _len: u64,
        _wait: bool,
    ) -> io::Result<bool> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(super) fn unlock(_file: &File, _start: u64, _len: u64) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    use super::*;

    fn queue(path: &Path) -> TurnQueue {
        TurnQueue::open(path, None).unwrap()
    }

    const LONG: Duration = Duration::from_secs(60);
    const SHORT: Duration = Duration::from_millis(50);

    #[test]
    fn one_turn_at_a_time_in_the_order_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-chatstore.lock");
        let mut first = queue(&path);
        let turn = first.turn(LONG).unwrap().unwrap();
        // Three more queue members (as other processes would be), each asking from a thread of its
        // own, in a known order: each asks only once the one before it is waiting.
        let (done, order) = mpsc::channel();
        let mut waiting = Vec::new();
        for i in 0..3 {
            let mut member = queue(&path);
            let done = done.clone();
            let (asked, asked_rx) = mpsc::channel();
            waiting.push(std::thread::spawn(move || {
                asked.send(()).unwrap();
                let turn = member.turn(LONG).unwrap().unwrap();
                done.send(i).unwrap();
                // Held a moment, so that a turn given out of order would show.
                std::thread::sleep(Duration::from_millis(20));
                drop(turn);
            }));
            asked_rx.recv().unwrap();
            // The member's ticket is taken once its helper (or it) locked a byte; wait for that.
            while tickets_taken(&path) < i + 2 {
                std::thread::yield_now();
            }
        }
        assert!(
            order.try_recv().is_err(),
            "nobody's turn while the first holds it"
        );
        drop(turn);
        for t in waiting {
            t.join().unwrap();
        }
        assert_eq!(order.iter().take(3).collect::<Vec<_>>(), [0, 1, 2]);
    }

    /// How many tickets the lock file at `path` gave out: its counter.
    fn tickets_taken(path: &Path) -> usize {
        let bytes = std::fs::read(path).unwrap_or_default();
        bytes
            .get(..8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
    }

    #[test]
    fn a_caller_that_gives_up_keeps_its_place_and_the_queue_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-chatstore.lock");
        let mut first = queue(&path);
        let mut second = queue(&path);
        let mut third = queue(&path);
        let turn = first.turn(LONG).unwrap().unwrap();
        assert!(second.turn(SHORT).unwrap().is_none(), "the first holds it");
        drop(turn);
        // The second gave up, so its helper hands its turn straight back: the third gets one.
        let turn = third.turn(LONG).unwrap().unwrap();
        drop(turn);
        // And the second, asking again, gets its next turn.
        assert!(second.turn(LONG).unwrap().is_some());
    }

    /// A child process, killed when dropped, that takes a turn of the lock file at `path` and
    /// holds it; its output lines.
    fn spawn_holder(path: &Path) -> (Kill, std::io::Lines<BufReader<std::process::ChildStdout>>) {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args([
                "turns::tests::child_holds_a_turn",
                "--exact",
                "--ignored",
                "--nocapture",
                "--quiet",
            ])
            .env("CHATSTORE_TURNS_CHILD", path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        (Kill(child), lines)
    }

    struct Kill(std::process::Child);

    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    impl Kill {
        fn now(mut self) {
            self.0.kill().unwrap();
            self.0.wait().unwrap();
        }
    }

    #[test]
    fn a_process_killed_holding_its_turn_lets_the_next_one_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-chatstore.lock");
        let (child, lines) = spawn_holder(&path);
        let holding = lines.map_while(Result::ok).any(|line| line == "holding");
        assert!(holding, "the child never held its turn");
        let mut mine = queue(&path);
        assert!(mine.turn(SHORT).unwrap().is_none(), "the child holds it");
        child.now();
        // The kernel dropped the child's locks with the process: this ticket's turn comes.
        assert!(mine.turn(LONG).unwrap().is_some());
    }

    #[test]
    fn a_process_killed_waiting_for_its_turn_lets_the_next_one_in_after_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-chatstore.lock");
        let mut first = queue(&path);
        let turn = first.turn(LONG).unwrap().unwrap();
        let (child, _lines) = spawn_holder(&path);
        while tickets_taken(&path) < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut third = queue(&path);
        assert!(third.turn(SHORT).unwrap().is_none(), "two are before it");
        child.now();
        // The ticket before the third's is gone, but the first still holds its turn.
        assert!(third.turn(SHORT).unwrap().is_none(), "the first holds it");
        drop(turn);
        assert!(third.turn(LONG).unwrap().is_some());
    }

    #[test]
    #[ignore = "the child process of a_process_killed_holding_its_turn_lets_the_next_one_in"]
    fn child_holds_a_turn() {
        let Ok(path) = std::env::var("CHATSTORE_TURNS_CHILD") else {
            return;
        };
        let mut queue = queue(Path::new(&path));
        let _turn = queue.turn(LONG).unwrap().unwrap();
        println!("holding");
        std::io::stdout().flush().unwrap();
        std::thread::sleep(Duration::from_secs(600));
    }
}

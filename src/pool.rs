//! The store's connection pool, which does all its work on the calling thread.
//!
//! A call takes the connection returned last (the one most likely still warm), or, while the pool
//! holds fewer than its maximum, opens one itself, on its own thread; otherwise it waits for one to
//! come back, up to the connection timeout, and then fails with [`Error::Pool`]. The pool starts
//! no thread and keeps no timer: connections idle too long or open too long are closed when a
//! call next comes for one, by that call. So connections are opened only on the calling thread,
//! and nothing of the store runs once the program's last call has returned.
//!
//! That is the point of this module. The pool it replaces (r2d2) opened every connection on worker
//! threads of its own, also for a call waiting for one, and kept a spare connection open in the
//! background: a short program that returned from `main` while a worker was in the middle of a TLS
//! handshake crashed (SIGSEGV in libcrypto, which the main thread was tearing down at exit) in
//! about one run in eight over TLS. `tests/hardening/exit.rs` runs such programs.
//!
//! The pool knows nothing of backends: a [`Connector`] opens connections and says which came back
//! unusable (`conn.rs` has the one the store uses).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::{Error, Result};

/// Opens the pool's connections, and tells which of those handed back must not be used again.
pub(crate) trait Connector {
    /// The connections pooled.
    type Conn: Send;

    /// A new connection, opened on the calling thread.
    fn connect(&self) -> Result<Self::Conn>;

    /// Whether `conn`, handed back after a call, must be closed rather than used again (a
    /// transaction left open, say).
    fn is_broken(&self, conn: &mut Self::Conn) -> bool;
}

/// How many connections a pool keeps, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Most connections open at once (in use, idle, or being opened); at least 1.
    pub(crate) max_size: u32,
    /// How long a call waits for a connection before failing with [`Error::Pool`]. An attempt to
    /// open one that began before then runs to its end (on PostgreSQL, libpq's `connect_timeout`
    /// bounds it).
    pub(crate) timeout: Duration,
    /// A connection idle longer than this is closed instead of handed out: the server or a
    /// firewall between may have dropped it meanwhile, and it holds a server process for nothing.
    pub(crate) idle_timeout: Duration,
    /// A connection open longer than this is closed instead of handed out or taken back, so that
    /// a long-running program moves to a restarted or failed-over server and sheds whatever
    /// memory a server process gathers over time.
    pub(crate) max_lifetime: Duration,
}

impl Options {
    /// r2d2's defaults, which the store used until it had a pool of its own.
    pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
    /// r2d2's default, as [`IDLE_TIMEOUT`](Self::IDLE_TIMEOUT).
    pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
}

/// First wait before a call tries again to open a connection that failed to open; it doubles at
/// each failure, up to [`MAX_RETRY_DELAY`]. A connection handed back meanwhile ends the wait.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(10);
/// Longest wait between two attempts of a call to open a connection.
const MAX_RETRY_DELAY: Duration = Duration::from_millis(500);

/// A pool of connections; clones share it.
pub(crate) struct Pool<C: Connector> {
    shared: Arc<Shared<C>>,
}

impl<C: Connector> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Pool {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<C: Connector> {
    connector: C,
    options: Options,
    state: Mutex<State<C::Conn>>,
    /// Signalled whenever a connection comes back or a place for one frees up.
    returned: Condvar,
}

struct State<T> {
    /// Connections not in use, the one returned last at the end.
    idle: Vec<Idle<T>>,
    /// Connections open or being opened: in use, idle, and those a call is opening.
    open: u32,
}

struct Idle<T> {
    conn: T,
    opened: Instant,
    returned: Instant,
}

impl<C: Connector> Pool<C> {
    /// A pool holding `first`, if given, as its one idle connection: the connection a store opened
    /// to migrate the database serves its first call.
    pub(crate) fn new(connector: C, options: Options, first: Option<C::Conn>) -> Self {
        let now = Instant::now();
        let idle: Vec<Idle<C::Conn>> = first
            .into_iter()
            .map(|conn| Idle {
                conn,
                opened: now,
                returned: now,
            })
            .collect();
        let options = Options {
            max_size: options.max_size.max(1),
            ..options
        };
        Pool {
            shared: Arc::new(Shared {
                connector,
                state: Mutex::new(State {
                    open: idle.len() as u32,
                    idle,
                }),
                options,
                returned: Condvar::new(),
            }),
        }
    }

    /// Runs `f` on a connection of the pool, then takes the connection back — unless the call
    /// found it lost ([`Error::ConnectionLost`]), the connector finds it broken, it is past its
    /// lifetime, or the thread is panicking: such a connection is closed, and the next call opens
    /// a new one. If `f` panics, the connection is closed too.
    ///
    /// # Errors
    /// [`Error::Pool`] if no connection was to be had within the timeout (the last failure to open
    /// one is its source); otherwise what `f` returns.
    pub(crate) fn run<T>(&self, f: impl FnOnce(&mut C::Conn) -> Result<T>) -> Result<T> {
        let (mut conn, opened) = self.shared.checkout()?;
        let place = Place(&self.shared);
        let result = f(&mut conn);
        place.keep();
        let lost = matches!(result, Err(Error::ConnectionLost(_)));
        self.shared.check_in(conn, opened, lost);
        result
    }
}

impl<C: Connector> Shared<C> {
    /// A connection, and when it was opened: the idle one returned last, or a new one opened on
    /// this thread while the pool holds fewer than its maximum; otherwise the first to come back
    /// within the timeout.
    fn checkout(&self) -> Result<(C::Conn, Instant)> {
        let started = Instant::now();
        let deadline = started.checked_add(self.options.timeout);
        let mut failed: Option<Error> = None;
        let mut retry_delay = FIRST_RETRY_DELAY;
        let mut retry_at = started;
        let mut state = self.state.lock();
        loop {
            let now = Instant::now();
            self.close_expired(&mut state, now);
            if let Some(idle) = state.idle.pop() {
                return Ok((idle.conn, idle.opened));
            }
            if state.open < self.options.max_size && now >= retry_at {
                state.open += 1;
                let opened = MutexGuard::unlocked(&mut state, || {
                    // Given up if connecting panics, with the lock still released.
                    let place = Place(self);
                    let opened = self.connector.connect();
                    place.keep();
                    opened
                });
                match opened {
                    Ok(conn) => return Ok((conn, Instant::now())),
                    Err(e) => {
                        // The place is free again: another waiting call may try.
                        state.open -= 1;
                        self.returned.notify_one();
                        failed = Some(e);
                        retry_at = Instant::now() + retry_delay;
                        retry_delay = (retry_delay * 2).min(MAX_RETRY_DELAY);
                        continue;
                    }
                }
            }
            if deadline.is_some_and(|deadline| now >= deadline) {
                return Err(Error::pool_timeout(failed));
            }
            // Until a connection comes back or a place frees up; a call whose last attempt to
            // open one failed also wakes to try again.
            let retry = (now < retry_at).then_some(retry_at);
            match retry.into_iter().chain(deadline).min() {
                Some(wake) => {
                    self.returned.wait_until(&mut state, wake);
                }
                None => self.returned.wait(&mut state),
            }
        }
    }

    /// Takes back a connection checked out `opened`, or closes it (see [`Pool::run`]).
    fn check_in(&self, mut conn: C::Conn, opened: Instant, lost: bool) {
        let now = Instant::now();
        let reusable = !lost
            && !std::thread::panicking()
            && now.duration_since(opened) < self.options.max_lifetime
            && !self.connector.is_broken(&mut conn);
        let mut state = self.state.lock();
        if reusable {
            state.idle.push(Idle {
                conn,
                opened,
                returned: now,
            });
            self.returned.notify_one();
        } else {
            state.open -= 1;
            self.returned.notify_one();
            drop(state);
            // Closed outside the lock: closing talks to the server.
            drop(conn);
        }
    }

    /// Closes the idle connections past the idle timeout or their lifetime, outside the lock.
    fn close_expired(&self, state: &mut MutexGuard<'_, State<C::Conn>>, now: Instant) {
        let options = &self.options;
        let expired = |idle: &Idle<C::Conn>| {
            now.duration_since(idle.returned) >= options.idle_timeout
                || now.duration_since(idle.opened) >= options.max_lifetime
        };
        if !state.idle.iter().any(expired) {
            return;
        }
        let (closing, kept): (Vec<_>, Vec<_>) = state.idle.drain(..).partition(expired);
        state.idle = kept;
        state.open -= closing.len() as u32;
        // Places freed up: calls waiting for one may open a connection.
        self.returned.notify_all();
        MutexGuard::unlocked(state, || drop(closing));
    }
}

/// A place in the pool taken for a connection being opened or checked out, given up if the call
/// panics (a connection checked out is then closed by the unwinding, not taken back).
struct Place<'a, C: Connector>(&'a Shared<C>);

impl<C: Connector> Place<'_, C> {
    /// The call returned: the connection goes through [`Shared::check_in`] instead.
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl<C: Connector> Drop for Place<'_, C> {
    fn drop(&mut self) {
        self.0.state.lock().open -= 1;
        self.0.returned.notify_one();
    }
}

impl<C: Connector> fmt::Debug for Pool<C> {
    /// How many connections are open and how many of those idle, and the most allowed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (open, idle) = {
            let state = self.shared.state.lock();
            (state.open, state.idle.len())
        };
        f.debug_struct("Pool")
            .field("connections", &open)
            .field("idle_connections", &idle)
            .field("max_size", &self.shared.options.max_size)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Barrier;
    use std::thread::{self, ThreadId};

    use super::*;

    /// A connector of numbered connections that records where it opened them and which it closed.
    #[derive(Default)]
    struct Fake {
        next: AtomicUsize,
        refuse: AtomicBool,
        opened_on: Mutex<Vec<ThreadId>>,
        closed: Arc<Mutex<Vec<(usize, ThreadId)>>>,
    }

    struct FakeConn {
        id: usize,
        broken: bool,
        closed: Arc<Mutex<Vec<(usize, ThreadId)>>>,
    }

    impl Drop for FakeConn {
        fn drop(&mut self) {
            self.closed.lock().push((self.id, thread::current().id()));
        }
    }

    impl Connector for Fake {
        type Conn = FakeConn;

        fn connect(&self) -> Result<FakeConn> {
            if self.refuse.load(Ordering::SeqCst) {
                return Err(Error::connect(diesel::ConnectionError::BadConnection(
                    "connection refused".into(),
                )));
            }
            self.opened_on.lock().push(thread::current().id());
            Ok(FakeConn {
                id: self.next.fetch_add(1, Ordering::SeqCst) + 1,
                broken: false,
                closed: Arc::clone(&self.closed),
            })
        }

        fn is_broken(&self, conn: &mut FakeConn) -> bool {
            conn.broken
        }
    }

    fn options(max_size: u32) -> Options {
        Options {
            max_size,
            timeout: Duration::from_millis(200),
            idle_timeout: Options::IDLE_TIMEOUT,
            max_lifetime: Options::MAX_LIFETIME,
        }
    }

    fn id(pool: &Pool<Fake>) -> usize {
        pool.run(|conn| Ok(conn.id)).unwrap()
    }

    fn closed(pool: &Pool<Fake>) -> Vec<usize> {
        let closed = pool.shared.connector.closed.lock();
        closed.iter().map(|(id, _)| *id).collect()
    }

    #[test]
    fn the_first_connection_serves_the_first_call_and_nothing_opens_until_a_call_needs_it() {
        let fake = Fake::default();
        let first = fake.connect().unwrap();
        let pool = Pool::new(fake, options(10), Some(first));
        assert_eq!(pool.shared.connector.next.load(Ordering::SeqCst), 1);
        for _ in 0..5 {
            assert_eq!(id(&pool), 1, "one call at a time needs one connection");
        }
        assert_eq!(pool.shared.connector.next.load(Ordering::SeqCst), 1);
        assert_eq!(
            format!("{pool:?}"),
            "Pool { connections: 1, idle_connections: 1, max_size: 10 }"
        );
    }

    #[test]
    fn every_connection_is_opened_on_the_thread_of_the_call_that_needs_it() {
        let pool = Pool::new(Fake::default(), options(4), None);
        let barrier = Barrier::new(4);
        let callers: Vec<ThreadId> = thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        // All four hold a connection at once: four are opened.
                        pool.run(|_| Ok(barrier.wait())).unwrap();
                        thread::current().id()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut opened_on = pool.shared.connector.opened_on.lock().clone();
        let mut callers = callers;
        opened_on.sort_by_key(|t| format!("{t:?}"));
        callers.sort_by_key(|t| format!("{t:?}"));
        assert_eq!(opened_on, callers);
    }

    #[test]
    fn the_connection_returned_last_is_handed_out_first() {
        let pool = Pool::new(Fake::default(), options(3), None);
        let (a, b) = pool
            .run(|a| Ok((a.id, pool.run(|b| Ok(b.id)).unwrap())))
            .unwrap();
        assert_eq!((a, b), (1, 2));
        // b came back first, then a.
        assert_eq!(id(&pool), a);
    }

    #[test]
    fn a_call_waits_for_a_connection_to_come_back() {
        let pool = Pool::new(
            Fake::default(),
            Options {
                timeout: Duration::from_secs(30),
                ..options(1)
            },
            None,
        );
        let (taken, go) = (Barrier::new(2), Barrier::new(2));
        thread::scope(|scope| {
            scope.spawn(|| {
                pool.run(|_| {
                    taken.wait();
                    go.wait();
                    thread::sleep(Duration::from_millis(50));
                    Ok(())
                })
                .unwrap()
            });
            taken.wait();
            go.wait();
            assert_eq!(
                id(&pool),
                1,
                "the connection of the other call, once it returned"
            );
        });
    }

    #[test]
    fn a_call_that_gets_no_connection_within_the_timeout_fails_with_a_retryable_pool_error() {
        let pool = Pool::new(Fake::default(), options(1), None);
        let started = Instant::now();
        let err = pool.run(|_| pool.run(|_| Ok(()))).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(
            matches!(err, Error::Pool(_)) && err.is_retryable(),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "no database connection available");
        assert_eq!(
            crate::error::tests::chain(&err),
            "no database connection available: timed out waiting for connection"
        );
        assert_eq!(id(&pool), 1, "the pool is whole again");
    }

    #[test]
    fn a_connection_that_fails_to_open_is_tried_again_until_the_timeout_and_then_reported() {
        let pool = Pool::new(Fake::default(), options(2), None);
        pool.shared.connector.refuse.store(true, Ordering::SeqCst);
        let err = pool.run(|_| Ok(())).unwrap_err();
        assert!(matches!(err, Error::Pool(_)), "{err:?}");
        assert_eq!(
            crate::error::tests::chain(&err),
            "no database connection available: timed out waiting for connection: could not \
             connect to the database: connection refused"
        );
        let timeout = err.source().unwrap();
        let connect = timeout.source().unwrap().downcast_ref::<Error>().unwrap();
        assert!(matches!(connect, Error::Connect(_)), "{connect:?}");
        // The server is back: the next call opens a connection.
        pool.shared.connector.refuse.store(false, Ordering::SeqCst);
        assert_eq!(id(&pool), 1);
    }

    #[test]
    fn a_call_retrying_to_open_takes_a_connection_handed_back_meanwhile() {
        let pool = Pool::new(
            Fake::default(),
            Options {
                timeout: Duration::from_secs(30),
                ..options(2)
            },
            None,
        );
        let (taken, go) = (Barrier::new(2), Barrier::new(2));
        thread::scope(|scope| {
            scope.spawn(|| {
                pool.run(|_| {
                    taken.wait();
                    go.wait();
                    thread::sleep(Duration::from_millis(100));
                    Ok(())
                })
                .unwrap()
            });
            taken.wait();
            pool.shared.connector.refuse.store(true, Ordering::SeqCst);
            go.wait();
            assert_eq!(id(&pool), 1);
        });
    }

    #[test]
    fn lost_broken_and_panicking_connections_are_closed_not_reused() {
        let pool = Pool::new(Fake::default(), options(1), None);
        let lost = pool.run(|_| -> Result<()> {
            Err(Error::from(diesel::result::Error::BrokenTransactionManager))
        });
        assert!(matches!(lost, Err(Error::ConnectionLost(_))));
        assert_eq!(closed(&pool), [1]);
        pool.run(|conn| {
            conn.broken = true;
            Ok(())
        })
        .unwrap();
        assert_eq!(closed(&pool), [1, 2]);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(|_| -> Result<()> { panic!("a panic in a call") })
        }));
        assert!(panicked.is_err());
        assert_eq!(closed(&pool), [1, 2, 3]);
        // A call made while the thread unwinds (from a destructor) closes its connection too.
        struct CallWhileUnwinding<'a>(&'a Pool<Fake>);
        impl Drop for CallWhileUnwinding<'_> {
            fn drop(&mut self) {
                assert_eq!(id(self.0), 4);
            }
        }
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _call = CallWhileUnwinding(&pool);
            panic!("unwinding");
        }));
        assert!(unwound.is_err());
        assert_eq!(closed(&pool), [1, 2, 3, 4]);
        // Each closed connection gave up its place: the pool of one still serves.
        assert_eq!(id(&pool), 5);
        assert_eq!(id(&pool), 5);
    }

    #[test]
    fn a_panic_while_connecting_gives_the_place_back() {
        struct Panicking;
        impl Connector for Panicking {
            type Conn = ();
            fn connect(&self) -> Result<()> {
                panic!("a driver panics while connecting")
            }
            fn is_broken(&self, _: &mut ()) -> bool {
                false
            }
        }
        let pool = Pool::new(Panicking, options(1), None);
        for _ in 0..2 {
            let panicked =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.run(|_| Ok(()))));
            assert!(
                panicked.is_err(),
                "a second attempt panics too: no place was lost"
            );
        }
        assert_eq!(
            format!("{pool:?}"),
            "Pool { connections: 0, idle_connections: 0, max_size: 1 }"
        );
    }

    #[test]
    fn expired_connections_are_closed_by_the_next_call_on_its_own_thread() {
        let pool = Pool::new(
            Fake::default(),
            Options {
                idle_timeout: Duration::from_millis(50),
                ..options(3)
            },
            None,
        );
        pool.run(|_| pool.run(|_| Ok(()))).unwrap();
        assert!(format!("{pool:?}").contains("connections: 2"));
        thread::sleep(Duration::from_millis(80));
        assert!(closed(&pool).is_empty(), "nothing runs between calls");
        assert_eq!(id(&pool), 3, "both idle ones expired");
        let closed = pool.shared.connector.closed.lock().clone();
        let here = thread::current().id();
        assert_eq!(closed, [(2, here), (1, here)], "the newest idle first");
        assert_eq!(
            format!("{pool:?}"),
            "Pool { connections: 1, idle_connections: 1, max_size: 3 }"
        );

        let pool = Pool::new(
            Fake::default(),
            Options {
                max_lifetime: Duration::from_millis(50),
                ..options(3)
            },
            None,
        );
        assert_eq!(id(&pool), 1);
        let id_after_its_lifetime = pool
            .run(|conn| {
                thread::sleep(Duration::from_millis(80));
                Ok(conn.id)
            })
            .unwrap();
        assert_eq!(id_after_its_lifetime, 1);
        assert_eq!(id(&pool), 2, "not taken back past its lifetime");
    }
}

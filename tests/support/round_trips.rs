//! Round trips between a store and its server, counted on the wire: a TCP proxy in front of the
//! test database that reads the client's side of the protocol and counts each request the server
//! answers. Exact where the server's own statistics are not (PostgreSQL's are flushed about once a
//! second, MariaDB's are server-wide), and it counts what a transaction's BEGIN and COMMIT cost too.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use super::{Kind, TestDb};

/// A proxy to a test database's server that counts round trips; dropped, it accepts no more
/// connections (those open run until their client closes them).
pub struct RoundTrips {
    url: String,
    addr: SocketAddr,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RoundTrips {
    /// A proxy in front of `db`'s server (PostgreSQL or MySQL); [`url`](Self::url) reaches the
    /// same database through it.
    pub fn new(db: &TestDb) -> RoundTrips {
        let (scheme, rest) = db.url.split_once("://").expect("a server URL");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, host) = match authority.rsplit_once('@') {
            Some((user, host)) => (format!("{user}@"), host),
            None => (String::new(), authority),
        };
        let (protocol, default_port) = match db.kind {
            Kind::Postgres | Kind::Citus => (Protocol::Postgres, 5432),
            Kind::Mysql => (Protocol::Mysql, 3306),
            other => panic!("no server behind {other:?}"),
        };
        let upstream = match host.contains(':') {
            true => host.to_owned(),
            false => format!("{host}:{default_port}"),
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        // The client's side must be readable: PostgreSQL would otherwise be asked for TLS.
        // (The test MariaDB runs without TLS.)
        let separator = if path.contains('?') { '&' } else { '?' };
        let path = match protocol {
            Protocol::Postgres => format!("{path}{separator}sslmode=disable&gssencmode=disable"),
            Protocol::Mysql => path.to_owned(),
        };
        let url = format!("{scheme}://{user}{addr}/{path}");
        let (count, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        {
            let (count, stop) = (count.clone(), stop.clone());
            thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let server = TcpStream::connect(&upstream).expect("connect to the server");
                    relay(client, server, protocol, count.clone());
                }
            });
        }
        RoundTrips {
            url,
            addr,
            count,
            stop,
        }
    }

    /// The test database's URL, through the proxy.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Round trips so far, on every connection made through the proxy.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// The round trips `f` makes (run while no other call uses the proxy's connections).
    pub fn of<T>(&self, f: impl FnOnce() -> T) -> (T, u64) {
        let before = self.count();
        let value = f();
        (value, self.count() - before)
    }
}

impl Drop for RoundTrips {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then ends.
        let _ = TcpStream::connect(self.addr);
    }
}

#[derive(Debug, Clone, Copy)]
enum Protocol {
    Postgres,
    Mysql,
}

/// Relays one connection both ways, counting the client's requests.
fn relay(client: TcpStream, server: TcpStream, protocol: Protocol, count: Arc<AtomicU64>) {
    let (client_in, server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    thread::spawn(move || {
        let _ = match protocol {
            Protocol::Postgres => postgres_requests(client_in, &server_out, &count),
            Protocol::Mysql => mysql_requests(client_in, &server_out, &count),
        };
        let _ = server_out.shutdown(Shutdown::Write);
    });
    thread::spawn(move || {
        let (mut server, mut client) = (server, client);
        let _ = io::copy(&mut server, &mut client);
        let _ = client.shutdown(Shutdown::Write);
    });
}

/// PostgreSQL's frontend messages: after the untyped startup message, a type byte and a length
/// each. The client waits for the server after a Sync (`S`, which ends a prepare or an execute of
/// the extended protocol) and after a simple Query (`Q`: `BEGIN`, `COMMIT`, `batch_execute`).
fn postgres_requests(mut from: TcpStream, mut to: &TcpStream, count: &AtomicU64) -> io::Result<()> {
    let mut length = [0; 4];
    from.read_exact(&mut length)?;
    let mut body = vec![0; u32::from_be_bytes(length) as usize - 4];
    from.read_exact(&mut body)?;
    let code = u32::from_be_bytes(body[..4].try_into().unwrap());
    // SSLRequest, GSSENCRequest: what follows would be encrypted.
    assert!(
        ![80877103, 80877104].contains(&code),
        "the client asked for encryption"
    );
    to.write_all(&length)?;
    to.write_all(&body)?;
    loop {
        let mut header = [0; 5];
        from.read_exact(&mut header)?;
        let length = u32::from_be_bytes(header[1..].try_into().unwrap()) as usize;
        let mut body = vec![0; length - 4];
        from.read_exact(&mut body)?;
        if matches!(header[0], b'S' | b'Q') {
            count.fetch_add(1, Ordering::SeqCst);
        }
        to.write_all(&header)?;
        to.write_all(&body)?;
    }
}

/// MySQL's packets: a 3-byte length and a sequence number each; a command starts a new sequence
/// (0). Every command is answered but a statement's close, a long parameter's data and quitting.
fn mysql_requests(mut from: TcpStream, mut to: &TcpStream, count: &AtomicU64) -> io::Result<()> {
    const UNANSWERED: [u8; 3] = [0x01, 0x18, 0x19];
    loop {
        let mut header = [0; 4];
        from.read_exact(&mut header)?;
        let length = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        let mut body = vec![0; length];
        from.read_exact(&mut body)?;
        if header[3] == 0 && body.first().is_some_and(|c| !UNANSWERED.contains(c)) {
            count.fetch_add(1, Ordering::SeqCst);
        }
        to.write_all(&header)?;
        to.write_all(&body)?;
    }
}

//! The axum example (`src/main.rs`) served on a local port and driven over real HTTP,
//! on every enabled backend: the whole flow, `Link` headers, the context window, isolation between
//! users, authentication, cursors that were tampered with or made for someone else, malformed
//! requests and the router's own errors, and retried appends. `process` runs the built server and
//! stops it with SIGTERM while a request is in flight.

// The repository's test databases and backend matrix, shared with chatstore's own tests.
#[path = "../../../tests/support/mod.rs"]
mod support;

// The example itself, `main` included, which only the binary calls.
#[allow(dead_code)]
#[path = "../src/main.rs"]
mod server;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;

use chatstore::AsyncChatStore;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ALLOW, LINK};
use hyper::HeaderMap;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use support::{backend_tests, Kind, TestDb};

// Each behaviour is served by `serve`, on a database that outlives the requests.
backend_tests! {
    run: crate::serve,
    every: [],
    persistent: [
        the_full_flow_pages_reads_renames_and_deletes,
        link_headers_lead_through_every_list_as_the_body_tokens_do,
        the_context_route_serves_the_next_prompt_within_the_budget,
        the_routers_own_errors_are_json,
        another_users_conversation_is_not_found_and_stays_unchanged,
        requests_without_a_valid_user_are_unauthorized,
        tampered_and_foreign_cursors_are_refused_without_data,
        malformed_requests_are_client_errors_that_write_nothing,
        a_retried_append_with_client_ids_returns_the_stored_messages,
        undo_truncate_clear_and_fork_over_http,
        edit_regenerate_switch_and_siblings_over_http,
        pin_and_archive_over_http,
        tags_and_metadata_over_http,
        usage_over_http,
        retention_over_http,
        parts_over_http,
    ],
}

/// Serves the example's app on a fresh database of `kind`, at a free local port, and runs `test`
/// against it.
fn serve<F, Fut>(kind: Kind, test: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = TestDb::new(kind);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = AsyncChatStore::open(&db.url).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, server::app(store)).await });
        test(Client { addr }).await;
    });
}

/// A status, the headers and the JSON body (`null` for an empty one).
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    /// The URL of the one `Link` header with relation `rel`, if there is one.
    #[track_caller]
    fn link(&self, rel: &str) -> Option<String> {
        let suffix = format!(">; rel=\"{rel}\"");
        let links: Vec<&str> = self
            .headers
            .get_all(LINK)
            .iter()
            .map(|value| value.to_str().unwrap())
            .filter(|value| value.ends_with(&suffix))
            .collect();
        assert!(links.len() <= 1, "{links:?}");
        links.first().map(|link| {
            let url = link.strip_prefix('<').unwrap().strip_suffix(&suffix);
            url.unwrap().to_owned()
        })
    }

    /// The body, after checking the status.
    #[track_caller]
    fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        self.body
    }

    /// Checks that this is an error answer: `status`, and a body that is `{"error": "…"}` alone,
    /// with no data beside it.
    #[track_caller]
    fn expect_error(self, status: u16) -> String {
        let body = self.expect(status);
        let object = body.as_object().expect("an error body is an object");
        assert_eq!(
            object.len(),
            1,
            "an error body holds the error only: {body}"
        );
        let message = object["error"].as_str().expect("a message");
        assert!(!message.is_empty());
        message.to_owned()
    }
}

/// An HTTP/1.1 client on a connection of its own per request.
#[derive(Clone, Copy)]
struct Client {
    addr: SocketAddr,
}

impl Client {
    /// Sends a request with any header and body bytes, as a client that is not well-behaved would.
    async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, HeaderValue)],
        body: &[u8],
    ) -> Reply {
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, value.clone());
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {bytes:?}"))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A request by `user`, with a JSON body if one is given.
    async fn send(&self, method: Method, path: &str, user: &str, body: Option<&Value>) -> Reply {
        let mut headers = vec![(server::USER_HEADER, HeaderValue::from_str(user).unwrap())];
        let body = match body {
            Some(body) => {
                headers.push(("content-type", HeaderValue::from_static("application/json")));
                serde_json::to_vec(body).unwrap()
            }
            None => Vec::new(),
        };
        self.raw(method, path, &headers, &body).await
    }

    async fn get(&self, user: &str, path: &str) -> Reply {
        self.send(Method::GET, path, user, None).await
    }

    async fn post(&self, user: &str, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, user, Some(&body)).await
    }

    async fn patch(&self, user: &str, path: &str, body: Value) -> Reply {
        self.send(Method::PATCH, path, user, Some(&body)).await
    }

    async fn put(&self, user: &str, path: &str) -> Reply {
        self.send(Method::PUT, path, user, None).await
    }

    async fn delete(&self, user: &str, path: &str) -> Reply {
        self.send(Method::DELETE, path, user, None).await
    }

    /// Creates a conversation for `user` and returns its id.
    async fn create(&self, user: &str, title: &str) -> String {
        let body = self
            .post(user, "/conversations", json!({ "title": title }))
            .await
            .expect(201);
        body["id"].as_str().unwrap().to_owned()
    }

    /// Every message of a conversation, read as one page.
    async fn history(&self, user: &str, conv: &str) -> Value {
        self.get(user, &format!("/conversations/{conv}/messages?limit=200"))
            .await
            .expect(200)
    }
}

fn seqs(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

fn token<'a>(page: &'a Value, key: &str) -> Option<&'a str> {
    page.get(key).map(|t| t.as_str().unwrap())
}

/// Create, list in pages, append one and a batch, read 120 messages back in both directions,
/// search, rename, delete.
async fn the_full_flow_pages_reads_renames_and_deletes(client: Client) {
    // A conversation without a body has no title; the rest are titled.
    let untitled = client
        .raw(
            Method::POST,
            "/conversations",
            &[("x-user-id", HeaderValue::from_static("alice"))],
            b"",
        )
        .await
        .expect(201);
    assert_eq!(untitled["title"], Value::Null);
    assert_eq!(untitled["user_id"], "alice");
    assert_eq!(untitled["message_count"], 0);
    let mut created = vec![untitled["id"].as_str().unwrap().to_owned()];
    for i in 0..4 {
        created.push(client.create("alice", &format!("  Chat {i} ")).await);
    }
    let one = client
        .get("alice", &format!("/conversations/{}", created[1]))
        .await
        .expect(200);
    assert_eq!(one["title"], "Chat 0");

    // Two at a time: three pages, each conversation exactly once, newest first.
    let mut listed = Vec::new();
    let mut pages = 0;
    let mut path = "/conversations?limit=2".to_owned();
    loop {
        let page = client.get("alice", &path).await.expect(200);
        pages += 1;
        let conversations = page["conversations"].as_array().unwrap();
        assert!(!conversations.is_empty() && conversations.len() <= 2);
        listed.extend(
            conversations
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned()),
        );
        match token(&page, "next_cursor") {
            Some(cursor) => path = format!("/conversations?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);

    // One message, then a batch of 119 with metadata.
    let conv = &created[2];
    let messages = format!("/conversations/{conv}/messages");
    let first = client
        .post(
            "alice",
            &messages,
            json!({"role": "system", "content": "You keep the todo list."}),
        )
        .await
        .expect(201);
    assert_eq!(first["seq"], 1);
    assert_eq!(first["role"], "system");
    assert_eq!(first["conversation_id"], conv.as_str());
    let batch: Vec<Value> = (2..=120)
        .map(|i| {
            json!({
                "role": if i % 2 == 0 { "user" } else { "assistant" },
                "content": format!("message {i}"),
                "metadata": {"n": i},
            })
        })
        .collect();
    let stored = client
        .post("alice", &messages, json!({ "messages": batch }))
        .await
        .expect(201);
    assert_eq!(seqs(&stored), (2..=120).collect::<Vec<_>>());
    assert_eq!(stored["messages"][0]["metadata"], json!({"n": 2}));

    // No cursor: the newest 50 by default.
    let latest = client.get("alice", &messages).await.expect(200);
    assert_eq!(seqs(&latest), (71..=120).collect::<Vec<_>>());
    assert_eq!(latest["total"], 120);
    assert!(token(&latest, "newer").is_none());

    // Scrolling up 25 at a time, then down again from the oldest page.
    let mut page = client
        .get("alice", &format!("{messages}?limit=25"))
        .await
        .expect(200);
    let mut backwards = seqs(&page);
    while let Some(older) = token(&page, "older") {
        let next = client
            .get("alice", &format!("{messages}?before={older}"))
            .await
            .expect(200);
        assert!(seqs(&next).len() <= 25);
        backwards.splice(0..0, seqs(&next));
        page = next;
    }
    assert_eq!(backwards, (1..=120).collect::<Vec<_>>());
    assert_eq!(seqs(&page)[0], 1);

    let mut forwards = seqs(&page);
    while let Some(newer) = token(&page, "newer") {
        page = client
            .get("alice", &format!("{messages}?after={newer}"))
            .await
            .expect(200);
        forwards.extend(seqs(&page));
    }
    assert_eq!(forwards, (1..=120).collect::<Vec<_>>());
    let last = page["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["content"], "message 120");
    assert_eq!(last["metadata"], json!({"n": 120}));

    // A limit next to a cursor changes the page size.
    let newest = client
        .get("alice", &format!("{messages}?limit=5"))
        .await
        .expect(200);
    let older = token(&newest, "older").unwrap();
    let wider = client
        .get("alice", &format!("{messages}?before={older}&limit=10"))
        .await
        .expect(200);
    assert_eq!(seqs(&wider), (106..=115).collect::<Vec<_>>());

    // Search finds the message, in its conversation.
    let found = client
        .get("alice", "/search?q=%22message%2077%22")
        .await
        .expect(200);
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["message"]["seq"], 77);
    assert_eq!(hits[0]["conversation_title"], "Chat 1");

    // Rename, clear the title, and the count stays.
    let conv_path = format!("/conversations/{conv}");
    let renamed = client
        .patch("alice", &conv_path, json!({"title": "Weekend groceries"}))
        .await
        .expect(200);
    assert_eq!(renamed["title"], "Weekend groceries");
    assert_eq!(renamed["message_count"], 120);
    let read = client.get("alice", &conv_path).await.expect(200);
    assert_eq!(read, renamed);
    let cleared = client
        .patch("alice", &conv_path, json!({"title": null}))
        .await
        .expect(200);
    assert_eq!(cleared["title"], Value::Null);

    // Delete: gone, with its messages, and from the list.
    assert_eq!(
        client.delete("alice", &conv_path).await.expect(204),
        Value::Null
    );
    client.get("alice", &conv_path).await.expect_error(404);
    client.get("alice", &messages).await.expect_error(404);
    client.delete("alice", &conv_path).await.expect_error(404);
    client
        .post("alice", &messages, json!({"role": "user", "content": "hi"}))
        .await
        .expect_error(404);
    let list = client
        .get("alice", "/conversations?limit=100")
        .await
        .expect(200);
    assert_eq!(list["conversations"].as_array().unwrap().len(), 4);
    assert!(token(&list, "next_cursor").is_none());
    let found = client.get("alice", "/search?q=message").await.expect(200);
    assert_eq!(found["hits"], json!([]));
}

/// Alice can neither read nor change Bob's conversation, and cannot tell it from a missing one.
async fn another_users_conversation_is_not_found_and_stays_unchanged(client: Client) {
    let bob_conv = client.create("bob", "Bob's plans").await;
    client
        .post(
            "bob",
            &format!("/conversations/{bob_conv}/messages"),
            json!({"messages": [
                {"role": "user", "content": "secret plan"},
                {"role": "assistant", "content": "noted"},
            ]}),
        )
        .await
        .expect(201);
    let bob_before = client
        .get("bob", &format!("/conversations/{bob_conv}"))
        .await
        .expect(200);
    let history_before = client.history("bob", &bob_conv).await;
    let bob_first = history_before["messages"][0]["id"].clone();
    let missing = uuid::Uuid::now_v7().to_string();

    // Each request, on Bob's conversation and on one that does not exist: the same 404.
    for conv in [bob_conv.as_str(), missing.as_str()] {
        let one = format!("/conversations/{conv}");
        let messages = format!("{one}/messages");
        let answers = [
            client.get("alice", &one).await,
            client.get("alice", &messages).await,
            client
                .patch("alice", &one, json!({"title": "mine now"}))
                .await,
            client
                .post(
                    "alice",
                    &messages,
                    json!({"role": "user", "content": "injected"}),
                )
                .await,
            client
                .post(
                    "alice",
                    &messages,
                    json!({"messages": [{"role": "user", "content": "injected"}]}),
                )
                .await,
            client
                .post(
                    "alice",
                    &messages,
                    json!({"role": "user", "content": "injected", "id": uuid::Uuid::now_v7().to_string()}),
                )
                .await,
            client
                .delete("alice", &format!("{messages}?after_seq=0"))
                .await,
            client.delete("alice", &messages).await,
            client
                .post("alice", &format!("{one}/pop"), json!({"n": 2}))
                .await,
            client
                .post("alice", &format!("{one}/fork"), json!({"through": bob_first}))
                .await,
            client
                .post(
                    "alice",
                    &format!("{messages}/{}/siblings", bob_first.as_str().unwrap()),
                    json!({"role": "user", "content": "injected"}),
                )
                .await,
            client
                .get(
                    "alice",
                    &format!("{messages}/{}/siblings", bob_first.as_str().unwrap()),
                )
                .await,
            client.get("alice", &format!("{one}/branches")).await,
            client
                .send(
                    Method::PUT,
                    &format!("{one}/branch"),
                    "alice",
                    Some(&json!({"branch": 0})),
                )
                .await,
            client.delete("alice", &format!("{one}/branches/0")).await,
            client.delete("alice", &one).await,
        ];
        for answer in answers {
            assert_eq!(answer.expect_error(404), "conversation not found");
        }
    }

    // Bob's conversation is as it was, and nowhere in Alice's list or searches.
    let bob_after = client
        .get("bob", &format!("/conversations/{bob_conv}"))
        .await
        .expect(200);
    assert_eq!(bob_after, bob_before);
    assert_eq!(client.history("bob", &bob_conv).await, history_before);
    let alice_list = client.get("alice", "/conversations").await.expect(200);
    assert_eq!(alice_list["conversations"], json!([]));
    let found = client.get("alice", "/search?q=secret").await.expect(200);
    assert_eq!(found["hits"], json!([]));
    let found = client
        .get(
            "alice",
            &format!("/search?q=secret&conversation={bob_conv}"),
        )
        .await;
    assert!(
        found.status == 404 || found.body["hits"] == json!([]),
        "{found:?}"
    );
}

/// Undo (pop), truncate, clear and fork, over HTTP: what each answers, and what the history
/// holds after it. A fork through another user's message, from one's own conversation, is a 404.
async fn undo_truncate_clear_and_fork_over_http(client: Client) {
    let conv = client.create("alice", "Trip").await;
    let messages = format!("/conversations/{conv}/messages");
    let texts = ["Lisbon or Porto?", "Lisbon.", "Why?", "Trams.", "And food?"];
    let batch: Vec<Value> = texts
        .iter()
        .map(|t| json!({"role": "user", "content": t}))
        .collect();
    client
        .post("alice", &messages, json!({ "messages": batch }))
        .await
        .expect(201);
    let contents = |page: &Value| -> Vec<String> {
        let list = page["messages"].as_array().unwrap();
        list.iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect()
    };

    let popped = client
        .post("alice", &format!("/conversations/{conv}/pop"), json!({}))
        .await
        .expect(200);
    assert_eq!(contents(&popped), ["And food?"]);
    assert_eq!(popped["messages"][0]["seq"], 5);
    let truncated = client
        .delete("alice", &format!("{messages}?after_seq=2"))
        .await
        .expect(200);
    assert_eq!(contents(&truncated), ["Why?", "Trams."]);
    assert_eq!(
        contents(&client.history("alice", &conv).await),
        ["Lisbon or Porto?", "Lisbon."]
    );
    let refused = client
        .delete("alice", &format!("{messages}?after_seq=-1"))
        .await;
    assert!(refused.expect_error(422).contains("-1"));

    let history = client.history("alice", &conv).await;
    let question = history["messages"][0]["id"].clone();
    let forked = client
        .post(
            "alice",
            &format!("/conversations/{conv}/fork"),
            json!({ "through": question }),
        )
        .await;
    let location = forked.headers["location"].to_str().unwrap().to_owned();
    let fork = forked.expect(201);
    assert_eq!(
        location,
        format!("/conversations/{}", fork["id"].as_str().unwrap())
    );
    assert_eq!(
        (fork["title"].clone(), fork["message_count"].clone()),
        (json!("Trip"), json!(1))
    );
    let fork_id = fork["id"].as_str().unwrap();
    let copied = client.history("alice", fork_id).await;
    assert_eq!(contents(&copied), ["Lisbon or Porto?"]);
    assert_ne!(copied["messages"][0]["id"], question);

    let cleared = client.delete("alice", &messages).await.expect(200);
    assert_eq!(cleared, json!({"removed": 2}));
    let emptied = client
        .get("alice", &format!("/conversations/{conv}"))
        .await
        .expect(200);
    assert_eq!(
        (emptied["title"].clone(), emptied["message_count"].clone()),
        (json!("Trip"), json!(0))
    );

    // Another user's message id, through one's own conversation: as missing.
    let bob = client.create("bob", "Bob's").await;
    client
        .post(
            "bob",
            &format!("/conversations/{bob}/messages"),
            json!({"role": "user", "content": "secret"}),
        )
        .await
        .expect(201);
    let bobs = client.history("bob", &bob).await["messages"][0]["id"].clone();
    let refused = client
        .post(
            "alice",
            &format!("/conversations/{fork_id}/fork"),
            json!({ "through": bobs }),
        )
        .await;
    assert_eq!(refused.expect_error(404), "conversation not found");
    let listed = client.get("alice", "/conversations").await.expect(200);
    assert_eq!(listed["conversations"].as_array().unwrap().len(), 2);
}

/// Regenerate a reply and edit a question over HTTP, read the versions of a message, list the
/// branches, switch back, delete a branch; another user's message id in one's own conversation is
/// a 404.
async fn edit_regenerate_switch_and_siblings_over_http(client: Client) {
    let conv = client.create("alice", "Trip").await;
    let messages = format!("/conversations/{conv}/messages");
    let first = client
        .post(
            "alice",
            &messages,
            json!({"messages": [
                {"role": "user", "content": "Lisbon or Porto?"},
                {"role": "assistant", "content": "Lisbon."},
            ]}),
        )
        .await
        .expect(201);
    let reply = first["messages"][1]["id"].as_str().unwrap().to_owned();
    let contents = |page: &Value| -> Vec<String> {
        let list = page["messages"].as_array().unwrap();
        list.iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect()
    };

    // Regenerate: one message, answered as one.
    let again = client
        .post(
            "alice",
            &format!("{messages}/{reply}/siblings"),
            json!({"role": "assistant", "content": "Porto."}),
        )
        .await
        .expect(201);
    assert_eq!(
        (again["seq"].clone(), again["branch"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(
        contents(&client.history("alice", &conv).await),
        ["Lisbon or Porto?", "Porto."]
    );
    let versions = client
        .get("alice", &format!("{messages}/{reply}/siblings"))
        .await
        .expect(200);
    assert_eq!(versions["position"], 0);
    assert_eq!(versions["siblings"].as_array().unwrap().len(), 2);
    assert_eq!(versions["siblings"][1]["branch"], 1);

    let branches = client
        .get("alice", &format!("/conversations/{conv}/branches"))
        .await
        .expect(200);
    let shape: Vec<(Value, Value)> = branches["branches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["id"].clone(), b["active"].clone()))
        .collect();
    assert_eq!(shape, [(json!(0), json!(false)), (json!(1), json!(true))]);

    // Back to the first reply.
    let switched = client
        .send(
            Method::PUT,
            &format!("/conversations/{conv}/branch"),
            "alice",
            Some(&json!({"branch": 0})),
        )
        .await
        .expect(200);
    assert_eq!(switched["message_count"], 2);
    assert_eq!(switched.get("branch"), None, "the root is not named");
    assert_eq!(
        contents(&client.history("alice", &conv).await),
        ["Lisbon or Porto?", "Lisbon."]
    );
    let unknown = client
        .send(
            Method::PUT,
            &format!("/conversations/{conv}/branch"),
            "alice",
            Some(&json!({"branch": 9})),
        )
        .await;
    assert_eq!(unknown.expect_error(404), "conversation not found");

    // Delete branch 1; the root is the last, and stays.
    let after = client
        .delete("alice", &format!("/conversations/{conv}/branches/1"))
        .await
        .expect(200);
    assert_eq!(after["message_count"], 2);
    let last = client
        .delete("alice", &format!("/conversations/{conv}/branches/0"))
        .await;
    assert!(last.expect_error(409).contains("last branch"));

    // Bob's message id through Alice's conversation: as missing.
    let bob = client.create("bob", "Bob's").await;
    let bobs = client
        .post(
            "bob",
            &format!("/conversations/{bob}/messages"),
            json!({"role": "user", "content": "secret"}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = client
        .post(
            "alice",
            &format!("{messages}/{bobs}/siblings"),
            json!({"role": "user", "content": "x"}),
        )
        .await;
    assert_eq!(refused.expect_error(404), "conversation not found");
    let malformed = client
        .get("alice", &format!("{messages}/not-a-uuid/siblings"))
        .await;
    malformed.expect_error(400);
}

/// No `x-user-id`, an empty one, one too long or not UTF-8: 401 on every route, before anything
/// else about the request is looked at.
async fn requests_without_a_valid_user_are_unauthorized(client: Client) {
    let conv = client.create("alice", "Mine").await;
    let routes = [
        (Method::POST, "/conversations".to_owned()),
        (Method::GET, "/conversations".to_owned()),
        (Method::GET, format!("/conversations/{conv}")),
        (Method::PATCH, format!("/conversations/{conv}")),
        (Method::DELETE, format!("/conversations/{conv}")),
        (Method::GET, format!("/conversations/{conv}/messages")),
        (Method::POST, format!("/conversations/{conv}/messages")),
        (Method::GET, "/search?q=x".to_owned()),
        (
            Method::GET,
            format!("/conversations/{conv}/context?budget=100"),
        ),
        // A malformed id or body is not looked at either.
        (Method::GET, "/conversations/not-a-uuid".to_owned()),
    ];
    let bad_users = [
        None,
        Some(HeaderValue::from_static("")),
        Some(HeaderValue::from_str(&"a".repeat(256)).unwrap()),
        Some(HeaderValue::from_bytes(b"caf\xe9").unwrap()),
    ];
    for (method, path) in &routes {
        for user in &bad_users {
            let mut headers = vec![("content-type", HeaderValue::from_static("application/json"))];
            if let Some(user) = user {
                headers.push(("x-user-id", user.clone()));
            }
            let answer = client.raw(method.clone(), path, &headers, b"{").await;
            answer.expect_error(401);
        }
    }
    // Nothing was changed.
    let read = client
        .get("alice", &format!("/conversations/{conv}"))
        .await
        .expect(200);
    assert_eq!(read["title"], "Mine");
    assert_eq!(read["message_count"], 0);
    let list = client.get("alice", "/conversations").await.expect(200);
    assert_eq!(list["conversations"].as_array().unwrap().len(), 1);
}

/// Flips one character of a token.
fn tampered(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let middle = chars.len() / 2;
    chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// A damaged cursor, another user's, another conversation's, or one of the wrong kind: 400 with
/// an error and nothing else.
async fn tampered_and_foreign_cursors_are_refused_without_data(client: Client) {
    let mut alice_convs = Vec::new();
    for user in ["alice", "bob"] {
        for i in 0..3 {
            let conv = client.create(user, &format!("{user} {i}")).await;
            let batch: Vec<Value> = (0..10)
                .map(|n| json!({"role": "user", "content": format!("{user} {n}")}))
                .collect();
            client
                .post(
                    user,
                    &format!("/conversations/{conv}/messages"),
                    json!({ "messages": batch }),
                )
                .await
                .expect(201);
            if user == "alice" {
                alice_convs.push(conv);
            }
        }
    }
    let alice_page = client
        .get("alice", "/conversations?limit=1")
        .await
        .expect(200);
    let alice_cursor = token(&alice_page, "next_cursor").unwrap().to_owned();
    let bob_page = client
        .get("bob", "/conversations?limit=1")
        .await
        .expect(200);
    let bob_cursor = token(&bob_page, "next_cursor").unwrap().to_owned();
    let bob_conv = bob_page["conversations"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The list: alice's own cursor works; damaged, bob's, garbage and empty ones do not.
    client
        .get(
            "alice",
            &format!("/conversations?limit=1&cursor={alice_cursor}"),
        )
        .await
        .expect(200);
    for cursor in [
        tampered(&alice_cursor),
        bob_cursor.clone(),
        "not a cursor".replace(' ', "%20"),
        String::new(),
        "A".repeat(500),
    ] {
        let answer = client
            .get("alice", &format!("/conversations?limit=1&cursor={cursor}"))
            .await;
        answer.expect_error(400);
    }

    // Message windows: bound to the user and the conversation, and to their direction.
    let (a, b) = (&alice_convs[0], &alice_convs[1]);
    let page = client
        .get("alice", &format!("/conversations/{a}/messages?limit=3"))
        .await
        .expect(200);
    let older = token(&page, "older").unwrap().to_owned();
    let bob_window = client
        .get(
            "bob",
            &format!("/conversations/{bob_conv}/messages?limit=3"),
        )
        .await
        .expect(200);
    let bob_older = token(&bob_window, "older").unwrap().to_owned();
    client
        .get(
            "alice",
            &format!("/conversations/{a}/messages?before={older}"),
        )
        .await
        .expect(200);
    let refused = [
        format!("/conversations/{a}/messages?before={}", tampered(&older)),
        format!("/conversations/{b}/messages?before={older}"),
        format!("/conversations/{a}/messages?before={bob_older}"),
        format!("/conversations/{bob_conv}/messages?before={bob_older}"),
        format!("/conversations/{a}/messages?after={older}"),
        format!("/conversations/{a}/messages?before={older}&after={older}"),
        format!("/conversations/{a}/messages?before={alice_cursor}"),
        format!("/conversations/{a}/messages?before=%2F%2F%2F"),
    ];
    for path in &refused {
        client.get("alice", path).await.expect_error(400);
    }
}

/// Broken JSON, the wrong shape, a bad role, input the store refuses, a bad id or query string:
/// each a 4xx with an error body, and nothing written.
async fn malformed_requests_are_client_errors_that_write_nothing(client: Client) {
    let conv = client.create("alice", "Mine").await;
    let messages = format!("/conversations/{conv}/messages");
    let json_type = ("content-type", HeaderValue::from_static("application/json"));
    let alice = ("x-user-id", HeaderValue::from_static("alice"));

    let conv_path = format!("/conversations/{conv}");
    let raw: [(Method, &str, &[u8], u16); 4] = [
        (Method::POST, &messages, b"{\"role\": \"user\",", 400),
        (Method::POST, &messages, b"", 400),
        (Method::POST, "/conversations", b"{\"title\": ", 400),
        (Method::PATCH, &conv_path, b"nope", 400),
    ];
    for (method, path, body, status) in raw {
        let answer = client
            .raw(method, path, &[alice.clone(), json_type.clone()], body)
            .await;
        answer.expect_error(status);
    }
    // JSON without saying so.
    client
        .raw(
            Method::POST,
            &messages,
            std::slice::from_ref(&alice),
            br#"{"role": "user", "content": "hi"}"#,
        )
        .await
        .expect_error(415);

    let refused = [
        json!({"role": "bot", "content": "hi"}),
        json!({"role": "User", "content": "hi"}),
        json!({"role": "user"}),
        json!({"role": "user", "content": 5}),
        json!({"role": "user", "content": "hi", "colour": "red"}),
        json!({"role": "user", "content": "hi", "metadata": [1, 2]}),
        json!({"role": "user", "content": "hi", "id": "not-a-uuid"}),
        json!({"role": "user", "content": "a\u{0}b"}),
        json!(["user", "hi"]),
        json!({"messages": "hi"}),
        json!({"messages": [
            {"role": "user", "content": "fine"},
            {"role": "robot", "content": "not fine"},
        ]}),
        json!({"messages": [
            {"role": "user", "content": "fine"},
            {"role": "user", "content": "fine", "metadata": "not an object"},
        ]}),
    ];
    for body in refused {
        let answer = client.post("alice", &messages, body.clone()).await;
        assert!(answer.status == 422, "{body}: {answer:?}");
        answer.expect_error(422);
    }
    let long_title = "t".repeat(256);
    for (method, path) in [
        (Method::POST, "/conversations".to_owned()),
        (Method::PATCH, format!("/conversations/{conv}")),
    ] {
        client
            .send(
                method.clone(),
                &path,
                "alice",
                Some(&json!({"title": long_title})),
            )
            .await
            .expect_error(422);
        client
            .send(method, &path, "alice", Some(&json!({"title": "a\nb"})))
            .await
            .expect_error(422);
    }
    // A rename must say what the title becomes.
    client
        .patch("alice", &format!("/conversations/{conv}"), json!({}))
        .await
        .expect_error(422);

    // Ids, query strings and routes.
    client
        .get("alice", "/conversations/not-a-uuid")
        .await
        .expect_error(400);
    client
        .get("alice", "/conversations/not-a-uuid/messages")
        .await
        .expect_error(400);
    client
        .get("alice", "/conversations?limit=many")
        .await
        .expect_error(400);
    client
        .get("alice", &format!("{messages}?limit=-1"))
        .await
        .expect_error(400);
    client.get("alice", "/search").await.expect_error(400);
    client
        .get("alice", "/search?q=%22unclosed")
        .await
        .expect_error(400);
    client
        .get("alice", "/search?q=x&conversation=nope")
        .await
        .expect_error(400);
    client.get("alice", "/nowhere").await.expect_error(404);

    // Nothing was written, and the title is as it was.
    let read = client
        .get("alice", &format!("/conversations/{conv}"))
        .await
        .expect(200);
    assert_eq!(read["message_count"], 0);
    assert_eq!(read["title"], "Mine");
    let list = client.get("alice", "/conversations").await.expect(200);
    assert_eq!(list["conversations"].as_array().unwrap().len(), 1);
}

/// A message or batch sent again with the same client ids comes back as stored, not twice; the
/// same id on a different message is a conflict.
async fn a_retried_append_with_client_ids_returns_the_stored_messages(client: Client) {
    let conv = client.create("alice", "Retries").await;
    let messages = format!("/conversations/{conv}/messages");
    let id = uuid::Uuid::now_v7().to_string();
    let message = json!({"role": "user", "content": "Add oat milk", "id": id});
    let first = client
        .post("alice", &messages, message.clone())
        .await
        .expect(201);
    assert_eq!(first["id"], id.as_str());
    let again = client.post("alice", &messages, message).await.expect(201);
    assert_eq!(again, first);

    let ids: Vec<String> = (0..3).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let batch = json!({"messages": [
        {"role": "assistant", "content": "", "metadata": {"tool_calls": [{"id": "call_1"}]}, "id": ids[0]},
        {"role": "tool", "content": "ok", "metadata": {"tool_call_id": "call_1"}, "id": ids[1]},
        {"role": "assistant", "content": "Added.", "id": ids[2]},
    ]});
    let stored = client
        .post("alice", &messages, batch.clone())
        .await
        .expect(201);
    assert_eq!(seqs(&stored), [2, 3, 4]);
    let retried = client.post("alice", &messages, batch).await.expect(201);
    assert_eq!(retried, stored);

    // The same id on other content, or in another conversation: 409, nothing written.
    client
        .post(
            "alice",
            &messages,
            json!({"role": "user", "content": "Add almond milk", "id": id}),
        )
        .await
        .expect_error(409);
    let other = client.create("alice", "Other").await;
    client
        .post(
            "alice",
            &format!("/conversations/{other}/messages"),
            json!({"role": "user", "content": "Add oat milk", "id": id}),
        )
        .await
        .expect_error(409);
    // And twice in one batch.
    let twice = uuid::Uuid::now_v7().to_string();
    client
        .post(
            "alice",
            &messages,
            json!({"messages": [
                {"role": "user", "content": "a", "id": twice},
                {"role": "user", "content": "b", "id": twice},
            ]}),
        )
        .await
        .expect_error(409);

    let history = client.history("alice", &conv).await;
    assert_eq!(seqs(&history), [1, 2, 3, 4]);
    assert_eq!(history["total"], 4);
    let ids_read: HashSet<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids_read.contains(id.as_str()));
    assert!(ids.iter().all(|i| ids_read.contains(i.as_str())));
    assert_eq!(client.history("alice", &other).await["total"], 0);
}

/// The `Link` headers of every list hold the same next page as its body's token: following them
/// alone reads each list whole, in order, and the last page has none.
async fn link_headers_lead_through_every_list_as_the_body_tokens_do(client: Client) {
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(client.create("alice", &format!("Chat {i}")).await);
    }
    let mut listed = Vec::new();
    let mut next = Some("/conversations?limit=2".to_owned());
    while let Some(path) = next {
        let page = client.get("alice", &path).await;
        next = page.link("next");
        assert_eq!(page.link("prev"), None);
        let body = page.expect(200);
        let expected = token(&body, "next_cursor")
            .map(|cursor| format!("/conversations?limit=2&cursor={cursor}"));
        assert_eq!(next, expected);
        listed.extend(
            body["conversations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned()),
        );
    }
    created.reverse();
    assert_eq!(listed, created);

    // Messages: older pages are "prev", newer ones "next"; each link keeps `limit` and carries
    // one cursor.
    let conv = &created[0];
    let messages = format!("/conversations/{conv}/messages");
    let batch: Vec<Value> = (1..=7)
        .map(|i| json!({"role": "user", "content": format!("milk {i}")}))
        .collect();
    client
        .post("alice", &messages, json!({ "messages": batch }))
        .await
        .expect(201);
    let mut page = client.get("alice", &format!("{messages}?limit=3")).await;
    let mut backwards = Vec::new();
    let (oldest, mut next) = loop {
        let (prev, next) = (page.link("prev"), page.link("next"));
        let body = page.expect(200);
        let older = token(&body, "older").map(|t| format!("{messages}?limit=3&before={t}"));
        let newer = token(&body, "newer").map(|t| format!("{messages}?limit=3&after={t}"));
        assert_eq!((&prev, &next), (&older, &newer));
        backwards.splice(0..0, seqs(&body));
        match prev {
            Some(prev) => page = client.get("alice", &prev).await,
            None => break (body, next),
        }
    };
    assert_eq!(backwards, (1..=7).collect::<Vec<_>>());
    // From the oldest page (read with `before`) forwards: its "next" link has `after` instead.
    let mut forwards = seqs(&oldest);
    while let Some(path) = next {
        let page = client.get("alice", &path).await;
        next = page.link("next");
        let body = page.expect(200);
        let newer = token(&body, "newer").map(|t| format!("{messages}?limit=3&after={t}"));
        assert_eq!(next, newer);
        forwards.extend(seqs(&body));
    }
    assert_eq!(forwards, (1..=7).collect::<Vec<_>>());

    // Search: the link carries the query and the limit, with the next offset.
    let mut found = Vec::new();
    let mut next = Some("/search?q=milk&limit=3".to_owned());
    while let Some(path) = next {
        let page = client.get("alice", &path).await;
        next = page.link("next");
        let body = page.expect(200);
        let expected = body["next_offset"]
            .as_u64()
            .map(|offset| format!("/search?q=milk&limit=3&offset={offset}"));
        assert_eq!(next, expected);
        found.extend(
            body["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|hit| hit["message"]["seq"].as_i64().unwrap()),
        );
    }
    found.sort();
    assert_eq!(found, (1..=7).collect::<Vec<_>>());
}

/// The context route answers the store's context window: the system message pinned, then the
/// newest messages that fit, oldest first; a budget the system messages do not fit is a 422, and
/// a missing, malformed or too large one a 400.
async fn the_context_route_serves_the_next_prompt_within_the_budget(client: Client) {
    let conv = client.create("alice", "Todo").await;
    let batch = json!({"messages": [
        {"role": "system", "content": "You keep the todo list."},
        {"role": "user", "content": "Add oat milk"},
        {"role": "assistant", "content": "Added."},
        {"role": "user", "content": "And bread"},
    ]});
    client
        .post("alice", &format!("/conversations/{conv}/messages"), batch)
        .await
        .expect(201);
    let context = format!("/conversations/{conv}/context");
    let contents = |window: &Value| -> Vec<String> {
        window["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect()
    };

    let tight = client
        .get("alice", &format!("{context}?budget=35"))
        .await
        .expect(200);
    assert_eq!(contents(&tight), ["You keep the todo list.", "And bread"]);
    assert_eq!((&tight["cost"], &tight["omitted"]), (&json!(32), &json!(2)));
    let roomy = client
        .get("alice", &format!("{context}?budget=1000"))
        .await
        .expect(200);
    assert_eq!(roomy["messages"].as_array().unwrap().len(), 4);
    assert_eq!(roomy["omitted"], 0);

    client
        .get("alice", &format!("{context}?budget=10"))
        .await
        .expect_error(422);
    for query in ["", "?budget=lots", "?budget=-1", "?budget=1000001"] {
        client
            .get("alice", &format!("{context}{query}"))
            .await
            .expect_error(400);
    }
    client
        .get("bob", &format!("{context}?budget=1000"))
        .await
        .expect_error(404);
}

/// What the router answers by itself — an unknown route, a method a route does not take — is JSON
/// like every other error, and a 405 still says which methods the route takes.
async fn the_routers_own_errors_are_json(client: Client) {
    let conv = client.create("alice", "Mine").await;
    let not_allowed = [
        (
            Method::PUT,
            "/conversations".to_owned(),
            "GET,HEAD,POST,DELETE",
        ),
        (
            Method::POST,
            format!("/conversations/{conv}"),
            "GET,HEAD,PATCH,DELETE",
        ),
        (Method::DELETE, "/search?q=x".to_owned(), "GET,HEAD"),
        (
            Method::POST,
            format!("/conversations/{conv}/context"),
            "GET,HEAD",
        ),
    ];
    for (method, path, allowed) in not_allowed {
        let answer = client.send(method, &path, "alice", None).await;
        let mut allow: Vec<String> = answer.headers[ALLOW]
            .to_str()
            .unwrap()
            .split(',')
            .map(|m| m.trim().to_owned())
            .collect();
        allow.sort();
        let mut expected: Vec<&str> = allowed.split(',').collect();
        expected.sort();
        assert_eq!(allow, expected, "{path}");
        answer.expect_error(405);
    }
    for path in [
        "/nowhere".to_owned(),
        format!("/conversations/{conv}/nothing"),
        "/".to_owned(),
    ] {
        client.get("alice", &path).await.expect_error(404);
    }
    // Nothing was changed.
    let read = client
        .get("alice", &format!("/conversations/{conv}"))
        .await
        .expect(200);
    assert_eq!(read["title"], "Mine");
}

/// The built server, run as a process of its own.
#[cfg(unix)]
mod process {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::process::{Child, ChildStdout, Command, Stdio};
    use std::time::Duration;

    use chatstore::{Page, UserId};
    use serde_json::Value;

    use crate::support::{backend_tests, TestDb};

    backend_tests! {
        every: [],
        persistent: [sigterm_lets_the_request_in_flight_finish_closes_the_store_and_exits_0],
    }

    /// Kills the server if a test ends without it having exited.
    struct Server(Child);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Reads the server's output up to a line that holds `needle`, and returns that line.
    #[track_caller]
    fn line_with(out: &mut impl BufRead, needle: &str) -> String {
        let mut read = Vec::new();
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("the server's output ended without {needle:?}: {read:?}");
            }
            if line.contains(needle) {
                return line;
            }
            read.push(line);
        }
    }

    /// A request whose handler is running when SIGTERM arrives is answered in full, what it wrote
    /// is there for the next process, and the server closes its store and exits with status 0.
    /// Each step waits for a sign from the server, never for time: its listening address, hyper's
    /// `100 Continue` (sent when the handler starts reading the body), its "shutting down" line.
    fn sigterm_lets_the_request_in_flight_finish_closes_the_store_and_exits_0(db: &TestDb) {
        let mut server = Server(
            Command::new(env!("CARGO_BIN_EXE_axum_server"))
                .env("DATABASE_URL", &db.url)
                .env("BIND", "127.0.0.1:0")
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut out: BufReader<ChildStdout> = BufReader::new(server.0.stdout.take().unwrap());
        let listening = line_with(&mut out, "listening on http://");
        let addr = listening
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .unwrap()
            .to_owned();

        // The head of a request, and the body only once it is asked for.
        let body = br#"{"title": "in flight"}"#;
        let mut stream = TcpStream::connect(&addr).unwrap();
        // A guard against a hang, not part of the choreography.
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(
            stream,
            "POST /conversations HTTP/1.1\r\nhost: {addr}\r\nx-user-id: alice\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
            body.len()
        )
        .unwrap();
        let mut interim = [0; 25];
        stream.read_exact(&mut interim).unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");

        let kill = Command::new("kill")
            .args(["-TERM", &server.0.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        line_with(&mut out, "shutting down");

        // The request finishes after the signal, and the server closes the connection then.
        stream.write_all(body).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, json) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 201 "), "{response}");
        let created: Value = serde_json::from_str(json).unwrap();
        assert_eq!(created["title"], "in flight");

        let status = server.0.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{status}");
        line_with(&mut out, "stopped");

        let alice = UserId::new("alice").unwrap();
        let page = db
            .open()
            .list_conversations(&alice, Page::first(10))
            .unwrap();
        let ids: Vec<String> = page
            .conversations
            .iter()
            .map(|c| c.id.to_string())
            .collect();
        assert_eq!(ids, [created["id"].as_str().unwrap()]);
    }
}

/// The ids of a list page's conversations.
fn listed(page: &Value) -> Vec<String> {
    page["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Pinning and archiving: the default list shows pinned conversations first and hides archived
/// ones, `archived=true` lists those (its links keep the parameter), each route answers the
/// conversation with its flag, someone else's conversation is a 404, and one list's cursor is a
/// 400 in the other.
async fn pin_and_archive_over_http(client: Client) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(client.create("alice", &format!("Chat {i}")).await);
    }
    let pinned = client
        .put("alice", &format!("/conversations/{}/pinned", ids[0]))
        .await
        .expect(200);
    assert_eq!(pinned["pinned"], true);
    for id in &ids[3..] {
        let archived = client
            .put("alice", &format!("/conversations/{id}/archived"))
            .await
            .expect(200);
        assert_eq!(
            (&archived["archived"], &archived["pinned"]),
            (&json!(true), &Value::Null)
        );
    }
    let page = client.get("alice", "/conversations").await.expect(200);
    assert_eq!(
        listed(&page),
        [ids[0].clone(), ids[2].clone(), ids[1].clone()]
    );
    // The archived list, a page at a time through its links.
    let first = client
        .get("alice", "/conversations?archived=true&limit=1")
        .await;
    let next = first.link("next").expect("a second archived conversation");
    assert!(next.contains("archived=true"), "{next}");
    let mut archived = listed(&first.expect(200));
    let second = client.get("alice", &next).await;
    assert_eq!(second.link("next"), None);
    archived.extend(listed(&second.expect(200)));
    assert_eq!(archived, [ids[4].clone(), ids[3].clone()]);
    // A cursor of the default list is refused by the archived one.
    let page = client
        .get("alice", "/conversations?limit=1")
        .await
        .expect(200);
    let cursor = token(&page, "next_cursor").unwrap();
    let refused = client
        .get(
            "alice",
            &format!("/conversations?archived=true&cursor={cursor}"),
        )
        .await
        .expect_error(400);
    assert!(refused.contains("cursor"), "{refused}");
    // Someone else's conversation: a 404 for every route, and nothing moves.
    for method in [Method::PUT, Method::DELETE] {
        for route in ["pinned", "archived"] {
            let path = format!("/conversations/{}/{route}", ids[1]);
            client
                .send(method.clone(), &path, "mallory", None)
                .await
                .expect_error(404);
        }
    }
    // Unpinned and restored: the plain list again, newest first.
    let unpinned = client
        .delete("alice", &format!("/conversations/{}/pinned", ids[0]))
        .await
        .expect(200);
    assert_eq!(unpinned["pinned"], Value::Null);
    client
        .delete("alice", &format!("/conversations/{}/archived", ids[3]))
        .await
        .expect(200);
    let page = client.get("alice", "/conversations").await.expect(200);
    let expected: Vec<String> = [3, 2, 1, 0].iter().map(|&i| ids[i].clone()).collect();
    assert_eq!(listed(&page), expected);
    // An archived conversation is searched on request.
    client
        .post(
            "alice",
            &format!("/conversations/{}/messages", ids[4]),
            json!({"role": "user", "content": "kumquat jam"}),
        )
        .await
        .expect(201);
    let hits = |reply: Value| reply["hits"].as_array().unwrap().len();
    assert_eq!(
        hits(client.get("alice", "/search?q=kumquat").await.expect(200)),
        0
    );
    let archived = client.get("alice", "/search?q=kumquat&archived=true").await;
    assert_eq!(hits(archived.expect(200)), 1);
}

async fn tags_and_metadata_over_http(client: Client) {
    // Created with tags and metadata; a tag given twice is kept once, and the tags come back
    // sorted.
    let created = client
        .post(
            "alice",
            "/conversations",
            json!({
                "title": "Kitchen",
                "tags": ["home", "diy", "home"],
                "metadata": {"project": {"id": 42}},
            }),
        )
        .await
        .expect(201);
    assert_eq!(created["tags"], json!(["diy", "home"]));
    assert_eq!(created["metadata"], json!({"project": {"id": 42}}));
    let kitchen = created["id"].as_str().unwrap().to_owned();
    let plain = client.create("alice", "Plain").await;
    let plain_read = client
        .get("alice", &format!("/conversations/{plain}"))
        .await
        .expect(200);
    assert_eq!(
        (&plain_read["tags"], &plain_read["metadata"]),
        (&Value::Null, &Value::Null),
        "absent when there are none"
    );

    // One tag added and removed through its path (percent-encoded), all of them set at once.
    let tagged = client
        .put("alice", &format!("/conversations/{plain}/tags/to%20do"))
        .await
        .expect(200);
    assert_eq!(tagged["tags"], json!(["to do"]));
    let set = client
        .send(
            Method::PUT,
            &format!("/conversations/{plain}/tags"),
            "alice",
            Some(&json!({"tags": ["home", "to do"]})),
        )
        .await
        .expect(200);
    assert_eq!(set["tags"], json!(["home", "to do"]));
    let untagged = client
        .delete("alice", &format!("/conversations/{plain}/tags/to%20do"))
        .await
        .expect(200);
    assert_eq!(untagged["tags"], json!(["home"]));

    // The list of one tag, a page at a time through its links, and the user's tags.
    let first = client.get("alice", "/conversations?tag=home&limit=1").await;
    let next = first
        .link("next")
        .expect("a second conversation tagged home");
    assert!(next.contains("tag=home"), "{next}");
    let mut home = listed(&first.expect(200));
    home.extend(listed(&client.get("alice", &next).await.expect(200)));
    assert_eq!(home, [plain.clone(), kitchen.clone()]);
    let tags = client.get("alice", "/tags").await.expect(200);
    assert_eq!(
        tags,
        json!({"tags": [
            {"tag": "diy", "conversations": 1, "archived": 0},
            {"tag": "home", "conversations": 2, "archived": 0},
        ]})
    );

    // Metadata replaced, then cleared with null.
    let described = client
        .send(
            Method::PUT,
            &format!("/conversations/{plain}/metadata"),
            "alice",
            Some(&json!({"model": "m-1"})),
        )
        .await
        .expect(200);
    assert_eq!(described["metadata"], json!({"model": "m-1"}));
    let cleared = client
        .send(
            Method::PUT,
            &format!("/conversations/{plain}/metadata"),
            "alice",
            Some(&Value::Null),
        )
        .await
        .expect(200);
    assert_eq!(cleared["metadata"], Value::Null);

    // Refused: tags and metadata the store does not take, a tag filter on the archived list.
    let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    for (method, path, body, status) in [
        (
            Method::PUT,
            format!("/conversations/{plain}/tags"),
            json!({"tags": many}),
            422,
        ),
        (
            Method::PUT,
            format!("/conversations/{plain}/tags"),
            json!({"tags": [" "]}),
            422,
        ),
        (
            Method::PUT,
            format!("/conversations/{plain}/metadata"),
            json!([1, 2]),
            422,
        ),
        (
            Method::POST,
            "/conversations".to_owned(),
            json!({"tags": ["a\nb"]}),
            422,
        ),
    ] {
        client
            .send(method, &path, "alice", Some(&body))
            .await
            .expect_error(status);
    }
    client
        .put("alice", &format!("/conversations/{plain}/tags/%20"))
        .await
        .expect_error(400);
    client
        .get("alice", "/conversations?tag=home&archived=true")
        .await
        .expect_error(400);

    // Someone else's conversation: 404 on every route, and nothing changes.
    let theirs = [
        (
            Method::PUT,
            format!("/conversations/{kitchen}/tags/mine"),
            None,
        ),
        (
            Method::DELETE,
            format!("/conversations/{kitchen}/tags/home"),
            None,
        ),
        (
            Method::PUT,
            format!("/conversations/{kitchen}/tags"),
            Some(json!({"tags": []})),
        ),
        (
            Method::PUT,
            format!("/conversations/{kitchen}/metadata"),
            Some(json!({"stolen": true})),
        ),
    ];
    for (method, path, body) in theirs {
        client
            .send(method, &path, "mallory", body.as_ref())
            .await
            .expect_error(404);
    }
    let kept = client
        .get("alice", &format!("/conversations/{kitchen}"))
        .await
        .expect(200);
    assert_eq!(kept, created);
    let mallorys = client.get("mallory", "/tags").await.expect(200);
    assert_eq!(mallorys, json!({"tags": []}));
}

/// Messages appended with usage return it, alone and in batches; the conversation and the user
/// carry the totals; a usage that does not add up is a 422 that writes nothing; another user sees
/// none of it.
async fn usage_over_http(client: Client) {
    let conv = client.create("alice", "Costs").await;
    let messages = format!("/conversations/{conv}/messages");
    let one = client
        .post(
            "alice",
            &messages,
            json!({
                "role": "assistant",
                "content": "Sure.",
                "usage": {"input_tokens": 100, "output_tokens": 20},
            }),
        )
        .await
        .expect(201);
    assert_eq!(
        one["usage"],
        json!({"input_tokens": 100, "output_tokens": 20, "total_tokens": 120})
    );
    let batch = client
        .post(
            "alice",
            &messages,
            json!({"messages": [
                {"role": "user", "content": "More?"},
                {"role": "assistant", "content": "Yes.",
                 "usage": {"input_tokens": 130, "output_tokens": 5, "total_tokens": 140}},
            ]}),
        )
        .await
        .expect(201);
    assert_eq!(batch["messages"][0].get("usage"), None, "absent when none");
    assert_eq!(batch["messages"][1]["usage"]["total_tokens"], 140);
    let totals = json!({"input_tokens": 230, "output_tokens": 25, "total_tokens": 260});
    let read = client
        .get("alice", &format!("/conversations/{conv}"))
        .await
        .expect(200);
    assert_eq!(read["usage"], totals);
    let history = client.get("alice", &messages).await.expect(200);
    assert_eq!(history["messages"][2]["usage"]["total_tokens"], 140);
    assert_eq!(client.get("alice", "/usage").await.expect(200), totals);

    // A total below input plus output: refused, nothing written.
    client
        .post(
            "alice",
            &messages,
            json!({
                "role": "assistant",
                "content": "no",
                "usage": {"input_tokens": 10, "output_tokens": 10, "total_tokens": 5},
            }),
        )
        .await
        .expect_error(422);
    client
        .post(
            "alice",
            &messages,
            json!({"role": "assistant", "content": "no", "usage": {"input_tokens": -1, "output_tokens": 0}}),
        )
        .await
        .expect_error(422);
    assert_eq!(client.get("alice", "/usage").await.expect(200), totals);
    let after = client.get("alice", &messages).await.expect(200);
    assert_eq!(after["total"], 3);

    // Someone else: their conversation is not found, their usage is their own.
    client
        .post(
            "mallory",
            &messages,
            json!({"role": "assistant", "content": "x", "usage": {"input_tokens": 1, "output_tokens": 1}}),
        )
        .await
        .expect_error(404);
    assert_eq!(
        client.get("mallory", "/usage").await.expect(200),
        json!({"input_tokens": 0, "output_tokens": 0, "total_tokens": 0})
    );
    assert_eq!(client.get("alice", "/usage").await.expect(200), totals);
}

/// A user's own retention: counted with `dry_run=true`, then deleted; another user's
/// conversations stay; a cutoff in the future is a 422 and one that is no time a 400.
async fn retention_over_http(client: Client) {
    let first = client.create("alice", "Old one").await;
    client
        .post(
            "alice",
            &format!("/conversations/{first}/messages"),
            json!({"role": "user", "content": "hello"}),
        )
        .await
        .expect(201);
    client.create("alice", "Old two").await;
    let bobs = client.create("bob", "Bob's").await;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let counted = client
        .delete(
            "alice",
            &format!("/conversations?not_updated_since={now}&dry_run=true"),
        )
        .await
        .expect(200);
    assert_eq!(counted, json!({"conversations": 2, "messages": 1}));
    let listed = client.get("alice", "/conversations").await.expect(200);
    assert_eq!(listed["conversations"].as_array().unwrap().len(), 2);
    let deleted = client
        .delete("alice", &format!("/conversations?not_updated_since={now}"))
        .await
        .expect(200);
    assert_eq!(deleted, counted);
    let listed = client.get("alice", "/conversations").await.expect(200);
    assert_eq!(listed["conversations"], json!([]));
    client
        .get("bob", &format!("/conversations/{bobs}"))
        .await
        .expect(200);

    client
        .delete(
            "alice",
            "/conversations?not_updated_since=2999-01-01T00:00:00Z",
        )
        .await
        .expect_error(422);
    client
        .delete("alice", "/conversations?not_updated_since=yesterday")
        .await
        .expect_error(400);
    client
        .delete("alice", "/conversations")
        .await
        .expect_error(400);
}

/// Messages with parts: appended with or without content, returned as sent (alone and in a
/// batch, by the history and by search, whose text parts it finds); a part the store refuses is a
/// 422 that writes nothing; someone else's conversation is a 404.
async fn parts_over_http(client: Client) {
    let conv = client.create("alice", "Pictures").await;
    let messages = format!("/conversations/{conv}/messages");
    let photo = json!({
        "type": "image", "url": "https://cdn.example.com/cat.png",
        "media_type": "image/png", "size": 48213, "name": "cat.png",
    });
    let asked = json!([{"type": "text", "text": "Which breed is this okapi-coloured cat?"}, photo]);
    let one = client
        .post("alice", &messages, json!({"role": "user", "parts": asked}))
        .await
        .expect(201);
    assert_eq!(one["content"], "");
    assert_eq!(one["parts"], asked);
    let report =
        json!({"type": "file", "key": "uploads/7f3a", "media_type": "application/pdf", "size": 9});
    let batch = client
        .post(
            "alice",
            &messages,
            json!({"messages": [
                {"role": "assistant", "content": "A tabby."},
                {"role": "user", "content": "And this?", "parts": [report]},
            ]}),
        )
        .await
        .expect(201);
    assert_eq!(batch["messages"][0].get("parts"), None, "absent when none");
    assert_eq!(batch["messages"][1]["parts"], json!([report]));
    let history = client.get("alice", &messages).await.expect(200);
    assert_eq!(history["messages"][0], one);
    assert_eq!(history["messages"][2], batch["messages"][1]);
    let found = client.get("alice", "/search?q=okapi").await.expect(200);
    assert_eq!(found["hits"][0]["message"], one);

    // Refused parts: a data: URL, an image that is a PDF, an unknown type, a size below zero.
    for bad in [
        json!({"type": "image", "url": "data:image/png;base64,AAAA", "media_type": "image/png", "size": 4}),
        json!({"type": "image", "key": "k", "media_type": "application/pdf", "size": 4}),
        json!({"type": "video", "url": "https://x.example/v.mp4", "media_type": "video/mp4", "size": 4}),
        json!({"type": "file", "key": "k", "media_type": "text/plain", "size": -1}),
    ] {
        client
            .post(
                "alice",
                &messages,
                json!({"role": "user", "content": "x", "parts": [bad]}),
            )
            .await
            .expect_error(422);
    }
    let after = client.get("alice", &messages).await.expect(200);
    assert_eq!(after["total"], 3);

    client
        .post(
            "mallory",
            &messages,
            json!({"role": "user", "parts": [{"type": "text", "text": "mine now"}]}),
        )
        .await
        .expect_error(404);
    assert_eq!(client.get("alice", &messages).await.expect(200), after);
}

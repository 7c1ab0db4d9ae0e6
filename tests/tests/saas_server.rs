//! kitty-saas-dev against CONTRACT.md §3–4: run in-process through the
//! library, and once as the binary. Every wait is on an event with a generous
//! deadline that only guards against a hang; nothing asserts on elapsed time.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kitty_tests::saas::{Config, Db, Faults, Server, ServerHandle, User};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Only against a hang: a healthy run never comes near it.
const DEADLINE: Duration = Duration::from_secs(30);
/// Long enough that no ping interleaves with frames a test expects in order.
const NO_PINGS: Duration = Duration::from_secs(3600);

fn users() -> Vec<User> {
    vec![
        User::new("alice", "secret", Some("acme")),
        User::new("bob", "pw", Some("other")),
        User::new("carol", "pw", None),
    ]
}

async fn start(faults: Faults) -> ServerHandle {
    Server::start(Config {
        users: users(),
        faults,
        ping_interval: NO_PINGS,
        ..Config::default()
    })
    .await
    .expect("starting the server")
}

fn envelope(team: &str) -> Value {
    status_change(
        team,
        "WP01",
        json!({"wp_id": "WP01", "from_lane": "planned", "to_lane": "claimed"}),
        1,
    )
}

fn status_change(team: &str, wp: &str, payload: Value, lamport: u64) -> Value {
    json!({
        "event_id": ulid::Ulid::generate().to_string(),
        "event_type": "WPStatusChanged",
        "aggregate_id": wp,
        "aggregate_type": "WorkPackage",
        "payload": payload,
        "node_id": "3f9a0c1b2d4e",
        "lamport_clock": lamport,
        "causation_id": null,
        "timestamp": "2026-02-04T13:47:09.123456+00:00",
        "team_slug": team,
        "project_uuid": null,
        "project_slug": null,
        "git_branch": "main"
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    fn new(base: String) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = tokio::time::timeout(
            DEADLINE,
            self.client.request(req.body(Full::from(body)).unwrap()),
        )
        .await
        .expect("the server answers")
        .expect("the request goes through");
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        self.send(Method::POST, path, &headers, body.to_string().into_bytes())
            .await
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.send(Method::GET, path, &[], Vec::new()).await;
        assert_eq!(r.status, StatusCode::OK, "GET {path}: {}", r.json);
        r.json
    }

    async fn login(&self, user: &str, password: &str) -> Value {
        let r = self
            .post(
                "/api/v1/token/",
                None,
                &json!({"username": user, "password": password}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        r.json
    }

    async fn access(&self, user: &str, password: &str) -> String {
        self.login(user, password).await["access"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The batch as the daemon sends it: gzip and all.
    async fn batch(&self, token: &str, events: &[Value]) -> Reply {
        self.batch_with(token, events, &[]).await
    }

    async fn batch_one(&self, token: &str, event: &Value) -> Reply {
        self.batch(token, std::slice::from_ref(event)).await
    }

    async fn batch_with(&self, token: &str, events: &[Value], extra: &[(&str, &str)]) -> Reply {
        let body = gzip(json!({ "events": events }).to_string().as_bytes());
        let auth = format!("Bearer {token}");
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ];
        headers.extend_from_slice(extra);
        self.send(Method::POST, "/api/v1/events/batch/", &headers, body)
            .await
    }

    async fn raw_batch(&self, token: &str, encoding: Option<&str>, body: Vec<u8>) -> Reply {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(e) = encoding {
            headers.push(("content-encoding", e));
        }
        self.send(Method::POST, "/api/v1/events/batch/", &headers, body)
            .await
    }

    async fn set_faults(&self, patch: Value) -> Reply {
        self.post("/admin/faults", None, &patch).await
    }

    async fn counter(&self, name: &str) -> u64 {
        self.get("/admin/counters").await[name].as_u64().unwrap()
    }

    async fn stored_ids(&self) -> Vec<String> {
        let v = self.get("/admin/events").await;
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn statuses(reply: &Reply) -> Vec<&str> {
    reply.json["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {}", reply.json))
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect()
}

fn id(e: &Value) -> &str {
    e["event_id"].as_str().unwrap()
}

#[tokio::test]
async fn login_answers_tokens_lifetimes_and_team() {
    let server = start(Faults::default()).await;
    let http = Http::new(server.url());

    let alice = http.login("alice", "secret").await;
    assert!(
        alice["access"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );
    assert!(alice["refresh"].is_string());
    assert_eq!(alice["access_lifetime"], 900);
    assert_eq!(alice["refresh_lifetime"], 604_800);
    assert_eq!(alice["team_slug"], "acme");
    let carol = http.login("carol", "pw").await;
    assert!(
        carol.get("team_slug").is_none(),
        "a user without a team gets no team_slug: {carol}"
    );

    let bad = http
        .post(
            "/api/v1/token/",
            None,
            &json!({"username": "alice", "password": "nope"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.json["error"].is_string());
    let missing = http
        .post("/api/v1/token/", None, &json!({"username": "alice"}))
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let garbage = http
        .send(Method::POST, "/api/v1/token/", &[], b"{not json".to_vec())
        .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert_eq!(garbage.json["error"], "Invalid JSON body");

    assert_eq!(http.counter("logins").await, 2);
    assert_eq!(http.counter("bad_logins").await, 1);
}

#[tokio::test]
async fn refresh_rotates_and_a_used_token_is_refused() {
    let server = start(Faults::default()).await;
    let http = Http::new(server.url());
    let login = http.login("alice", "secret").await;
    let r1 = login["refresh"].as_str().unwrap();

    let first = http
        .post("/api/v1/token/refresh/", None, &json!({"refresh": r1}))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.json);
    let r2 = first.json["refresh"].as_str().unwrap();
    assert_ne!(r1, r2);
    assert!(first.json["access"].is_string());
    assert_eq!(first.json["access_lifetime"], 900);
    assert_eq!(first.json["team_slug"], "acme");

    let reused = http
        .post("/api/v1/token/refresh/", None, &json!({"refresh": r1}))
        .await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED, "{}", reused.json);

    let second = http
        .post("/api/v1/token/refresh/", None, &json!({"refresh": r2}))
        .await;
    assert_eq!(second.status, StatusCode::OK);
    let r3 = second.json["refresh"].as_str().unwrap();
    // The new access token works where an access token is needed.
    let access = second.json["access"].as_str().unwrap();
    assert_eq!(
        http.batch(access, &[envelope("acme")]).await.status,
        StatusCode::OK
    );

    let as_refresh = http
        .post("/api/v1/token/refresh/", None, &json!({"refresh": access}))
        .await;
    assert_eq!(as_refresh.status, StatusCode::UNAUTHORIZED);

    http.set_faults(json!({"refuse_refresh": true})).await;
    let refused = http
        .post("/api/v1/token/refresh/", None, &json!({"refresh": r3}))
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    http.set_faults(json!({"refuse_refresh": false})).await;
    // The fault refused r3 without using it up.
    let after = http
        .post("/api/v1/token/refresh/", None, &json!({"refresh": r3}))
        .await;
    assert_eq!(after.status, StatusCode::OK);

    assert_eq!(http.counter("refreshes").await, 3);
    assert_eq!(http.counter("refresh_refused").await, 3);
}

#[tokio::test]
async fn batch_answers_each_event_and_deduplicates() {
    let server = start(Faults::default()).await;
    let http = Http::new(server.url());
    let token = http.access("alice", "secret").await;

    let (e1, e2) = (envelope("acme"), envelope("acme"));
    let mut broken = envelope("acme");
    broken["lamport_clock"] = json!("5");
    let reply = http
        .batch(
            &token,
            &[
                e1.clone(),
                e2.clone(),
                broken.clone(),
                json!(42),
                e1.clone(),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(
        statuses(&reply),
        ["success", "success", "error", "error", "duplicate"]
    );
    let results = reply.json["results"].as_array().unwrap();
    assert_eq!(results[0]["event_id"], e1["event_id"]);
    assert_eq!(results[2]["event_id"], broken["event_id"]);
    assert!(
        results[2]["error_message"]
            .as_str()
            .unwrap()
            .contains("lamport_clock")
    );
    assert!(results[3]["event_id"].is_null());
    assert!(results[3]["error_message"].is_string());

    // Uncompressed bodies are read too.
    let plain = json!({ "events": [e1.clone()] }).to_string().into_bytes();
    let again = http.raw_batch(&token, None, plain).await;
    assert_eq!(statuses(&again), ["duplicate"]);

    let stored = http.get("/admin/events").await;
    assert_eq!(stored["total"], 2);
    assert_eq!(
        stored["events"],
        json!([e1, e2]),
        "stored byte for byte, in arrival order"
    );
    assert_eq!(server.events().await.unwrap(), vec![e1.clone(), e2.clone()]);
    let first = http.get("/admin/events?limit=1&offset=1").await;
    assert_eq!(first["events"], json!([e2]));

    let c = server.counters().await.unwrap();
    assert_eq!(
        (c.events_stored, c.unique_event_ids, c.duplicates_seen),
        (2, 2, 2)
    );
    assert_eq!((c.rejected, c.batches, c.batch_events), (2, 2, 6));
}

#[tokio::test]
async fn batch_refuses_bad_tokens_with_401() {
    let server = start(Faults::default()).await;
    let http = Http::new(server.url());
    let login = http.login("alice", "secret").await;
    let body = gzip(json!({"events": [envelope("acme")]}).to_string().as_bytes());

    let none = http
        .send(
            Method::POST,
            "/api/v1/events/batch/",
            &[("content-encoding", "gzip")],
            body,
        )
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        http.batch("not.a.jwt", &[envelope("acme")]).await.status,
        StatusCode::UNAUTHORIZED
    );
    let refresh = login["refresh"].as_str().unwrap();
    assert_eq!(
        http.batch(refresh, &[envelope("acme")]).await.status,
        StatusCode::UNAUTHORIZED
    );

    let other = Server::start(Config {
        users: users(),
        ..Config::default()
    })
    .await
    .unwrap();
    let foreign = Http::new(other.url()).access("alice", "secret").await;
    assert_eq!(
        http.batch(&foreign, &[envelope("acme")]).await.status,
        StatusCode::UNAUTHORIZED,
        "a token signed with another secret"
    );

    http.set_faults(json!({"access_ttl_secs": 0})).await;
    let expired = http.login("alice", "secret").await;
    assert_eq!(expired["access_lifetime"], 0);
    let reply = http
        .batch(expired["access"].as_str().unwrap(), &[envelope("acme")])
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(http.counter("events_stored").await, 0);
}

#[tokio::test]
async fn batch_refuses_another_teams_events_whole_with_403() {
    let server = start(Faults::default()).await;
    let http = Http::new(server.url());
    let alice = http.access("alice", "secret").await;

    let mixed = http
        .batch(&alice, &[envelope("acme"), envelope("other")])
        .await;
    assert_eq!(mixed.status, StatusCode::FORBIDDEN, "{}", mixed.json);
    assert!(mixed.json["error"].is_string());
    let local = http.batch(&alice, &[envelope("local")]).await;
    assert_eq!(
        local.status,
        StatusCode::FORBIDDEN,
        "the daemon must rewrite local first"
    );
    let header = http
        .batch_with(&alice, &[envelope("acme")], &[("x-team-slug", "other")])
        .await;
    assert_eq!(header.status, StatusCode::FORBIDDEN);
    assert_eq!(
        http.counter("events_stored").await,
        0,
        "a refused batch stores nothing"
    );

    let same = http
        .batch_with(&alice, &[envelope("acme")], &[("x-team-slug", "acme")])
        .await;
    assert_eq!(statuses(&same), ["success"]);
    // A user without a team sends team_slug "local", which is theirs.
    let carol = http.access("carol", "pw").await;
    assert_eq!(
        statuses(&http.batch(&carol, &[envelope("local")]).await),
        ["success"]
    );
    assert_eq!(http.counter("forbidden").await, 3);
}

#[tokio::test]
async fn batch_refuses_hostile_bodies_with_400() {
    let server = start(Faults::default()).await;
    let http = Http::new(server.url());
    let token = http.access("alice", "secret").await;

    let too_many: Vec<Value> = (0..1001).map(|_| envelope("acme")).collect();
    let reply = http.batch(&token, &too_many).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json["error"], "Max 1000 events per batch");
    let most = http.batch(&token, &too_many[..1000]).await;
    assert_eq!(statuses(&most).len(), 1000);

    let zeros = vec![0u8; kitty_tests::saas::MAX_BODY_BYTES + 1024];
    let bodies: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        ("bad JSON", None, b"{\"events\": [".to_vec()),
        ("bad JSON, gzipped", Some("gzip"), gzip(b"{oops")),
        (
            "plain body, gzip header",
            Some("gzip"),
            b"{\"events\": []}".to_vec(),
        ),
        (
            "truncated gzip",
            Some("gzip"),
            gzip(b"{\"events\": []}")[..10].to_vec(),
        ),
        ("no events key", Some("gzip"), gzip(b"{\"evnts\": []}")),
        ("events not a list", Some("gzip"), gzip(b"{\"events\": {}}")),
        ("empty list", Some("gzip"), gzip(b"{\"events\": []}")),
        ("a list, not an object", Some("gzip"), gzip(b"[]")),
        ("unknown encoding", Some("br"), b"{}".to_vec()),
        ("gzip bomb", Some("gzip"), gzip(&zeros)),
        ("too large", None, zeros.clone()),
    ];
    for (what, encoding, body) in bodies {
        let reply = http.raw_batch(&token, encoding, body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            reply.json
        );
        assert!(reply.json["error"].is_string(), "{what}: {}", reply.json);
    }
    assert_eq!(http.counter("events_stored").await, 1000);
}

#[tokio::test]
async fn batch_faults_500_429_empty_results_and_rate_limit() {
    let server = start(Faults::default()).await;
    let http = Http::new(server.url());
    let token = http.access("alice", "secret").await;
    let e = envelope("acme");

    assert_eq!(
        http.set_faults(json!({"batch_500_fraction": 1.0}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        http.batch_one(&token, &e).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    http.set_faults(
        json!({"batch_500_fraction": 0.0, "batch_429_fraction": 1.0, "retry_after_secs": 7}),
    )
    .await;
    let limited = http.batch_one(&token, &e).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers["retry-after"], "7");
    assert_eq!(http.counter("events_stored").await, 0);

    let reset = http
        .send(Method::DELETE, "/admin/faults", &[], Vec::new())
        .await;
    assert_eq!(reset.json, serde_json::to_value(Faults::default()).unwrap());
    http.set_faults(json!({"empty_results": true})).await;
    let empty = http.batch_one(&token, &e).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.json, json!({"results": []}));
    http.set_faults(json!({"empty_results": false})).await;
    assert_eq!(
        statuses(&http.batch_one(&token, &e).await),
        ["duplicate"],
        "stored all the same"
    );

    http.set_faults(json!({"rate_limit_batch_secs": 3600}))
        .await;
    assert_eq!(
        http.batch(&token, &[envelope("acme")]).await.status,
        StatusCode::OK
    );
    let second = http.batch(&token, &[envelope("acme")]).await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = second.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&wait), "Retry-After {wait}");
    let bob = http.access("bob", "pw").await;
    assert_eq!(
        http.batch(&bob, &[envelope("other")]).await.status,
        StatusCode::OK,
        "limits are per user"
    );

    let typo = http.set_faults(json!({"batch_500_fractoin": 1.0})).await;
    assert_eq!(typo.status, StatusCode::BAD_REQUEST);
    let out_of_range = http.set_faults(json!({"batch_429_fraction": 1.5})).await;
    assert_eq!(out_of_range.status, StatusCode::BAD_REQUEST);
    let latency = http.set_faults(json!({"latency_ms": 1})).await;
    assert_eq!(latency.json["latency_ms"], 1);
    assert_eq!(
        latency.json["rate_limit_batch_secs"], 3600,
        "a patch keeps the other switches"
    );
    assert_eq!(http.get("/admin/faults").await, latency.json);

    let c = server.counters().await.unwrap();
    assert_eq!((c.faults_500, c.faults_429, c.rate_limited), (1, 1, 1));
}

#[tokio::test]
async fn reset_clears_events_and_counters() {
    let server = start(Faults::default()).await;
    let http = Http::new(server.url());
    let token = http.access("alice", "secret").await;
    let e = envelope("acme");
    http.batch_one(&token, &e).await;
    assert_eq!(
        http.post("/admin/reset", None, &json!({})).await.status,
        StatusCode::OK
    );
    assert_eq!(server.counters().await.unwrap(), Default::default());
    assert!(http.stored_ids().await.is_empty());
    // The session survives a reset, and the event counts as new again.
    assert_eq!(statuses(&http.batch(&token, &[e]).await), ["success"]);
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn ws_token(http: &Http, user: &str, password: &str) -> String {
    let access = http.access(user, password).await;
    let r = http
        .post("/api/v1/ws-token/", Some(&access), &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    r.json["ws_token"].as_str().unwrap().to_owned()
}

async fn try_connect(server: &ServerHandle, token: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut req = server.ws_url().into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(req))
        .await
        .expect("the upgrade is answered")
        .map(|(ws, _)| ws)
}

/// Connects and returns the socket with its first frame, the snapshot.
async fn connect(server: &ServerHandle, http: &Http, user: &str, password: &str) -> (Ws, Value) {
    let token = ws_token(http, user, password).await;
    let mut ws = try_connect(server, Some(&token)).await.expect("connecting");
    let snapshot = next(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    (ws, snapshot)
}

/// The next text frame, as JSON.
async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a frame arrives")
            .expect("the socket is open")
            .expect("the frame is readable");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

async fn send(ws: &mut Ws, v: &Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

fn upgrade_status(e: tungstenite::Error) -> StatusCode {
    match e {
        tungstenite::Error::Http(resp) => StatusCode::from_u16(resp.status().as_u16()).unwrap(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test]
async fn ws_upgrade_needs_a_ws_token() {
    let server = start(Faults::default()).await;
    let http = Http::new(server.url());
    let access = http.access("alice", "secret").await;

    for token in [None, Some("garbage"), Some(access.as_str())] {
        let err = try_connect(&server, token).await.expect_err("refused");
        assert_eq!(upgrade_status(err), StatusCode::UNAUTHORIZED, "{token:?}");
    }
    // The ws token takes the access lifetime in force when it is issued.
    http.set_faults(json!({"access_ttl_secs": 0})).await;
    let r = http
        .post("/api/v1/ws-token/", Some(&access), &json!({}))
        .await;
    let expired = r.json["ws_token"].as_str().unwrap();
    let err = try_connect(&server, Some(expired))
        .await
        .expect_err("refused");
    assert_eq!(upgrade_status(err), StatusCode::UNAUTHORIZED);

    http.set_faults(json!({"access_ttl_secs": 900, "ws_refuse_upgrade": true}))
        .await;
    let token = ws_token(&http, "alice", "secret").await;
    let err = try_connect(&server, Some(&token))
        .await
        .expect_err("refused");
    assert_eq!(upgrade_status(err), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn ws_snapshot_acks_and_broadcasts_to_the_team() {
    let server = start(Faults {
        ack: true,
        ..Faults::default()
    })
    .await;
    let http = Http::new(server.url());
    let alice = http.access("alice", "secret").await;
    let history = [
        status_change(
            "acme",
            "WP01",
            json!({"wp_id": "WP01", "previous_status": "planned", "new_status": "doing"}),
            1,
        ),
        status_change(
            "acme",
            "WP02",
            json!({"wp_id": "WP02", "from_lane": "planned", "to_lane": "for_review"}),
            2,
        ),
        status_change(
            "acme",
            "WP01",
            json!({"wp_id": "WP01", "from_lane": "doing", "to_lane": "done"}),
            5,
        ),
        // Arrives later but is older by its clock: does not win.
        status_change(
            "acme",
            "WP01",
            json!({"wp_id": "WP01", "previous_status": "planned", "new_status": "doing"}),
            3,
        ),
    ];
    http.batch(&alice, &history).await;

    let (mut a, snapshot) = connect(&server, &http, "alice", "secret").await;
    let wps = snapshot["work_packages"].as_array().unwrap();
    let got: Vec<(&str, &str)> = wps
        .iter()
        .map(|w| (w["wp_id"].as_str().unwrap(), w["status"].as_str().unwrap()))
        .collect();
    assert_eq!(got, [("WP01", "done"), ("WP02", "for_review")]);
    let (mut b, _) = connect(&server, &http, "alice", "secret").await;
    let (mut c, other_snapshot) = connect(&server, &http, "bob", "pw").await;
    assert_eq!(
        other_snapshot["work_packages"],
        json!([]),
        "another team's history stays hidden"
    );

    let e = envelope("acme");
    send(&mut a, &e).await;
    assert_eq!(
        next(&mut a).await,
        json!({"type": "ack", "event_id": id(&e), "status": "accepted"})
    );
    let relayed = next(&mut b).await;
    assert_eq!(relayed["type"], "event");
    assert_eq!(relayed["event_id"], e["event_id"]);
    assert_eq!(relayed["lamport_clock"], 1);
    assert_eq!(
        relayed["git_branch"], "main",
        "every envelope field is relayed"
    );

    send(&mut a, &e).await;
    assert_eq!(next(&mut a).await["status"], "duplicate");
    let mut broken = envelope("acme");
    broken["event_id"] = json!("nope");
    send(&mut a, &broken).await;
    let error = next(&mut a).await;
    assert_eq!(
        (&error["type"], &error["status"], &error["event_id"]),
        (&json!("error"), &json!("rejected"), &json!("nope"))
    );
    assert!(error["error"].as_str().unwrap().contains("event_id"));
    let foreign = envelope("other");
    send(&mut a, &foreign).await;
    assert_eq!(next(&mut a).await["status"], "rejected");
    a.send(Message::text("{not json")).await.unwrap();
    assert_eq!(next(&mut a).await["type"], "error");

    // Broadcasts are queued before the sender's ack, and a socket sends what
    // is queued before answering a later frame: so each socket's next frame
    // proves what it was (not) sent.
    let from_c = envelope("other");
    send(&mut c, &from_c).await;
    let ack = json!({"type": "ack", "event_id": id(&from_c), "status": "accepted"});
    assert_eq!(next(&mut c).await, ack, "c saw nothing of acme's events");
    let from_b = envelope("acme");
    send(&mut b, &from_b).await;
    assert_eq!(
        next(&mut b).await["type"],
        "ack",
        "b got no echo of a's duplicate or rejects"
    );
    let at_a = next(&mut a).await;
    assert_eq!(
        (at_a["type"].as_str(), id(&at_a)),
        (Some("event"), id(&from_b))
    );

    // Events from a batch reach every socket of the team.
    let by_batch = envelope("acme");
    assert_eq!(
        statuses(&http.batch_one(&alice, &by_batch).await),
        ["success"]
    );
    assert_eq!(id(&next(&mut a).await), id(&by_batch));
    assert_eq!(id(&next(&mut b).await), id(&by_batch));

    let stored = http.stored_ids().await;
    assert_eq!(
        &stored[history.len()..],
        [id(&e), id(&from_c), id(&from_b), id(&by_batch)]
    );
    let counters = server.counters().await.unwrap();
    assert_eq!(counters.ws_connected, 3);
    assert_eq!(counters.rejected, 3);
    assert_eq!(counters.ws_broadcasts, 4);
}

#[tokio::test]
async fn ws_without_ack_is_silent_and_pings_want_pongs() {
    let server = Server::start(Config {
        users: users(),
        ping_interval: Duration::from_millis(100),
        ..Config::default()
    })
    .await
    .unwrap();
    let http = Http::new(server.url());
    let (mut ws, _) = connect(&server, &http, "alice", "secret").await;
    let e = envelope("acme");
    send(&mut ws, &e).await;
    let mut broken = envelope("acme");
    broken["lamport_clock"] = json!(-1);
    send(&mut ws, &broken).await;

    // With no acknowledgements, all that comes is pings; each is answered.
    for _ in 0..3 {
        let ping = next(&mut ws).await;
        assert_eq!(ping["type"], "ping", "{ping}");
        assert!(ping["timestamp"].is_number());
        send(
            &mut ws,
            &json!({"type": "pong", "timestamp": ping["timestamp"]}),
        )
        .await;
    }
    send(&mut ws, &json!({"type": "pong", "timestamp": 1})).await;
    // The client's own ping is answered in kind.
    send(&mut ws, &json!({"type": "ping", "timestamp": 42})).await;
    loop {
        let frame = next(&mut ws).await;
        if frame["type"] == "pong" {
            assert_eq!(frame["timestamp"], 42);
            break;
        }
        assert_eq!(frame["type"], "ping", "{frame}");
    }

    let c = server.counters().await.unwrap();
    assert!(c.ws_pongs >= 3, "{c:?}");
    assert_eq!(c.ws_bad_pongs, 1);
    assert_eq!(c.ws_events, 2);
    assert_eq!(c.rejected, 1);
    assert_eq!(server.events().await.unwrap(), vec![e]);
}

#[tokio::test]
async fn ws_closes_after_n_frames_when_told() {
    let server = start(Faults {
        ack: true,
        ws_close_after_frames: 2,
        ..Faults::default()
    })
    .await;
    let http = Http::new(server.url());
    let (mut ws, _) = connect(&server, &http, "alice", "secret").await;
    let (e1, e2) = (envelope("acme"), envelope("acme"));
    send(&mut ws, &e1).await;
    send(&mut ws, &e2).await;
    assert_eq!(next(&mut ws).await["status"], "accepted");
    assert_eq!(
        next(&mut ws).await["status"],
        "accepted",
        "the last frame is handled before the close"
    );
    let close = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("closed")
        .expect("a close frame");
    assert!(matches!(close, Ok(Message::Close(Some(_)))), "{close:?}");
    assert_eq!(http.stored_ids().await, [id(&e1), id(&e2)]);
}

#[tokio::test]
async fn shutdown_closes_websockets() {
    let server = start(Faults::default()).await;
    let http = Http::new(server.url());
    let (mut ws, _) = connect(&server, &http, "alice", "secret").await;
    server.shutdown().await.unwrap();
    let end = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("the socket ends");
    assert!(
        matches!(end, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
        "{end:?}"
    );
}

#[tokio::test]
async fn a_db_file_keeps_events_and_sessions_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        users: users(),
        db: Db::File(dir.path().join("saas.db")),
        jwt_secret: Some(b"fixed for this test".to_vec()),
        ..Config::default()
    };
    let first = Server::start(config.clone()).await.unwrap();
    let http = Http::new(first.url());
    let login = http.login("alice", "secret").await;
    let e = envelope("acme");
    http.batch_one(login["access"].as_str().unwrap(), &e).await;
    first.shutdown().await.unwrap();

    let second = Server::start(config).await.unwrap();
    let http = Http::new(second.url());
    assert_eq!(second.events().await.unwrap(), vec![e.clone()]);
    let refreshed = http
        .post(
            "/api/v1/token/refresh/",
            None,
            &json!({"refresh": login["refresh"]}),
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.json);
    let again = http
        .batch(refreshed.json["access"].as_str().unwrap(), &[e])
        .await;
    assert_eq!(statuses(&again), ["duplicate"]);
}

#[tokio::test]
async fn the_binary_prints_its_address_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kitty-saas-dev"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--user",
            "alice:secret:acme",
            "--ack",
        ])
        .args(["--batch-429-fraction", "1", "--retry-after-secs", "9"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting kitty-saas-dev");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .to_owned();
    let http = Http::new(base);
    let token = http.access("alice", "secret").await;
    let limited = http.batch(&token, &[envelope("acme")]).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers["retry-after"], "9");
    assert_eq!(http.get("/admin/faults").await["ack"], true);

    // SAFETY: kill(2) on our own child's pid, which we have not reaped.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn the_binary_refuses_bad_flags_cleanly() {
    for args in [
        &["--user", "alice"][..],
        &["--user", "alice:secret:ac me"],
        &["--batch-500-fraction", "2"],
        &["--listen", "nowhere"],
        &["--db", "x.db", "--memory"],
        &["--db", "x.db", "--sink"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kitty-saas-dev"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Were a bad flag accepted, the server would run on: stop it rather than hang.
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > DEADLINE {
                child.kill().unwrap();
                panic!("{args:?} was accepted");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "{args:?}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

async fn start_with(db: Db, faults: Faults) -> ServerHandle {
    Server::start(Config {
        users: users(),
        faults,
        db,
        ping_interval: NO_PINGS,
        ..Config::default()
    })
    .await
    .expect("starting the server")
}

/// `count` envelopes of `team` with fresh ids.
fn envelopes(team: &str, count: usize) -> Vec<Value> {
    (0..count).map(|_| envelope(team)).collect()
}

#[tokio::test]
async fn the_sink_answers_each_event_and_deduplicates_but_keeps_none() {
    let server = start_with(Db::Sink, Faults::default()).await;
    let http = Http::new(server.url());
    let token = http.access("alice", "secret").await;

    let (e1, e2) = (envelope("acme"), envelope("acme"));
    let mut broken = envelope("acme");
    broken["lamport_clock"] = json!("5");
    let reply = http
        .batch(
            &token,
            &[
                e1.clone(),
                e2.clone(),
                broken.clone(),
                json!(42),
                e1.clone(),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(
        statuses(&reply),
        ["success", "success", "error", "error", "duplicate"]
    );
    let results = reply.json["results"].as_array().unwrap();
    assert_eq!(results[1]["event_id"], e2["event_id"]);
    assert!(
        results[2]["error_message"]
            .as_str()
            .unwrap()
            .contains("lamport_clock")
    );
    let again = http.batch(&token, &[e2.clone(), envelope("acme")]).await;
    assert_eq!(statuses(&again), ["duplicate", "success"]);

    let c = server.counters().await.unwrap();
    assert_eq!(
        (c.events_stored, c.unique_event_ids, c.duplicates_seen),
        (3, 3, 2)
    );
    assert_eq!(c.rejected, 2);
    // Counted per team too, but nothing kept to list.
    let listed = http.get("/admin/events?team=acme").await;
    assert_eq!(listed["total"], 3, "{listed}");
    assert_eq!(listed["events"], json!([]), "{listed}");
    assert!(server.events().await.unwrap().is_empty());

    // A reset forgets the ids: the same event is new again.
    server.reset().await.unwrap();
    let after = http.batch_one(&token, &e1).await;
    assert_eq!(statuses(&after), ["success"]);
    assert_eq!(server.counters().await.unwrap().unique_event_ids, 1);
}

#[tokio::test]
async fn the_sink_checks_tokens_and_refuses_bad_bodies() {
    let server = start_with(Db::Sink, Faults::default()).await;
    let http = Http::new(server.url());
    let token = http.access("alice", "secret").await;
    let e = envelope("acme");

    for bad in ["", "not-a-jwt", &format!("{token}x")] {
        let reply = http.batch_one(bad, &e).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{bad:?}: {}",
            reply.json
        );
    }
    // A ws token is not an access token.
    let ws = ws_token(&http, "alice", "secret").await;
    assert_eq!(
        http.batch_one(&ws, &e).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Another team's event refuses the whole batch.
    let mixed = http
        .batch(&token, &[envelope("acme"), envelope("other")])
        .await;
    assert_eq!(mixed.status, StatusCode::FORBIDDEN, "{}", mixed.json);

    let bodies: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        ("bad JSON", None, b"{\"events\": [".to_vec()),
        ("bad JSON, gzipped", Some("gzip"), gzip(b"{oops")),
        (
            "plain body, gzip header",
            Some("gzip"),
            b"{\"events\": []}".to_vec(),
        ),
        (
            "truncated gzip",
            Some("gzip"),
            gzip(json!({ "events": [e.clone()] }).to_string().as_bytes())[..20].to_vec(),
        ),
        ("events not a list", Some("gzip"), gzip(b"{\"events\": {}}")),
        ("empty list", Some("gzip"), gzip(b"{\"events\": []}")),
    ];
    for (what, encoding, body) in bodies {
        let reply = http.raw_batch(&token, encoding, body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            reply.json
        );
    }
    let c = server.counters().await.unwrap();
    assert_eq!((c.events_stored, c.unique_event_ids), (0, 0), "{c:?}");

    // Over the WebSocket too: no upgrade without a ws token, and acks
    // (accepted, duplicate, rejected) as with a store.
    let refused = try_connect(&server, Some(&token)).await.unwrap_err();
    assert_eq!(upgrade_status(refused), StatusCode::UNAUTHORIZED);
    http.set_faults(json!({"ack": true})).await;
    let (mut ws, snapshot) = connect(&server, &http, "alice", "secret").await;
    assert_eq!(snapshot["work_packages"], json!([]));
    let mut broken = envelope("acme");
    broken["timestamp"] = json!("yesterday");
    for frame in [&e, &e, &broken] {
        send(&mut ws, frame).await;
    }
    let acks: Vec<Value> = [
        next(&mut ws).await,
        next(&mut ws).await,
        next(&mut ws).await,
    ]
    .into();
    assert_eq!(
        acks.iter()
            .map(|a| a["status"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["accepted", "duplicate", "rejected"],
        "{acks:?}"
    );
    assert_eq!(server.counters().await.unwrap().unique_event_ids, 1);
}

#[tokio::test]
async fn the_store_keeps_every_event_of_large_batches_in_order() {
    let server = start(Faults::default()).await;
    let http = Http::new(server.url());
    let token = http.access("alice", "secret").await;

    // 1,000 events cut into statements of several sizes, with duplicates of
    // an earlier batch and of this one at both ends and inside.
    let first = envelopes("acme", 3);
    assert_eq!(statuses(&http.batch(&token, &first).await).len(), 3);
    let mut batch = envelopes("acme", 995);
    batch.insert(0, first[0].clone());
    batch.insert(300, batch[10].clone());
    batch.insert(600, first[2].clone());
    batch.push(batch[997].clone());
    batch.push(batch[5].clone());
    assert_eq!(batch.len(), 1000);
    let reply = http.batch(&token, &batch).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    let got = statuses(&reply);
    let dups: Vec<usize> = (0..got.len()).filter(|&i| got[i] == "duplicate").collect();
    assert_eq!(dups, [0, 300, 600, 998, 999], "{got:?}");
    assert_eq!(got.iter().filter(|s| **s == "success").count(), 995);
    let results = reply.json["results"].as_array().unwrap();
    for (r, e) in results.iter().zip(&batch) {
        assert_eq!(r["event_id"], e["event_id"]);
    }

    // Stored byte for byte, in arrival order, each once.
    let mut expected = first.clone();
    let mut seen: std::collections::HashSet<String> =
        first.iter().map(|e| id(e).to_owned()).collect();
    for e in &batch {
        if seen.insert(id(e).to_owned()) {
            expected.push(e.clone());
        }
    }
    assert_eq!(expected.len(), 998);
    assert_eq!(server.events().await.unwrap(), expected);
    let c = server.counters().await.unwrap();
    assert_eq!(
        (c.events_stored, c.unique_event_ids, c.duplicates_seen),
        (998, 998, 5)
    );
    assert_eq!(http.get("/admin/events?team=acme").await["total"], 998);
}

#[tokio::test]
async fn frames_streamed_without_waiting_are_all_stored_and_acked_in_order() {
    let server = start(Faults {
        ack: true,
        ..Faults::default()
    })
    .await;
    let http = Http::new(server.url());
    let (mut ws, _) = connect(&server, &http, "alice", "secret").await;

    // Sent back to back, so the server reads them in runs; a duplicate, a
    // broken envelope and a ping among them.
    let mut frames = envelopes("acme", 600);
    frames.insert(100, frames[50].clone());
    let mut broken = envelope("acme");
    broken["aggregate_type"] = json!("not pascal");
    frames.insert(400, broken);
    frames.insert(450, json!({"type": "ping", "timestamp": 7}));
    for f in &frames {
        ws.feed(Message::text(f.to_string())).await.unwrap();
    }
    ws.flush().await.unwrap();
    let mut answers = Vec::new();
    for _ in 0..frames.len() {
        answers.push(next(&mut ws).await);
    }
    for (i, (a, f)) in answers.iter().zip(&frames).enumerate() {
        let want = match i {
            100 => "duplicate",
            400 => "rejected",
            450 => {
                assert_eq!(a, &json!({"type": "pong", "timestamp": 7}));
                continue;
            }
            _ => "accepted",
        };
        assert_eq!(a["status"], want, "frame {i}: {a}");
        assert_eq!(a["event_id"], f["event_id"], "frame {i}: {a}");
    }
    let expected: Vec<Value> = frames
        .iter()
        .enumerate()
        .filter(|(i, _)| ![100, 400, 450].contains(i))
        .map(|(_, f)| f.clone())
        .collect();
    assert_eq!(server.events().await.unwrap(), expected);
    let c = server.counters().await.unwrap();
    assert_eq!(
        (c.unique_event_ids, c.duplicates_seen, c.rejected),
        (600, 1, 1)
    );
}

//! The HTTP API against its contract, `docs/openapi.json`: the spec's
//! operations are the router's table (`http::ROUTES`), and the real
//! service's answers, every status that can be produced on demand, have a
//! documented status, content type and headers, and a body the documented
//! schema accepts (`schema`, a validator of the keywords the spec uses).

use crate::common;
use crate::schema::Validator;

use alpes_tracking::app::{self, open_store, ServiceConfig};
use alpes_tracking::http::{resolve, Listener, ROUTES};
use common::faulty::FaultyStore;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Documented (operation, status) pairs no test here produces, and why.
const UNREACHED: &[(&str, &str, &str)] = &[
    (
        "metrics",
        "503",
        "busy: needs the connection cap full (flood.rs)",
    ),
    (
        "list_interactions",
        "503",
        "the test store's reads do not fail",
    ),
    (
        "get_interaction",
        "503",
        "the test store's reads do not fail",
    ),
    (
        "user_interactions",
        "503",
        "the test store's reads do not fail",
    ),
    ("user_stats", "503", "the test store's reads do not fail"),
    ("stats_daily", "503", "the test store's reads do not fail"),
    ("stats_status", "503", "the test store's reads do not fail"),
    ("post_interaction", "408", "takes the 10 s body timeout"),
];

fn load_spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let text = std::fs::read_to_string(path).expect("docs/openapi.json");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

/// Every operation of the spec: (METHOD, path template, operationId, operation).
fn operations(spec: &Value) -> Vec<(String, String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                let id = op["operationId"].as_str().expect("an operationId");
                out.push((method.to_uppercase(), path.clone(), id.to_string(), op));
            }
        }
    }
    out
}

/// A concrete path of a template (`{..}` segments replaced by `value`).
fn concrete(template: &str, value: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { value } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn the_spec_describes_exactly_the_routers_routes() {
    let spec = load_spec();
    let documented: BTreeSet<(String, String, String)> = operations(&spec)
        .into_iter()
        .map(|(m, p, id, _)| (m, p, id))
        .collect();
    let routed: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .map(|r| {
            let name = r.operation.name().to_string();
            (r.method.to_string(), r.path.to_string(), name)
        })
        .collect();
    assert_eq!(
        spec["info"]["version"],
        env!("CARGO_PKG_VERSION"),
        "info.version"
    );
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes missing from docs/openapi.json: {undocumented:?}; \
         operations of docs/openapi.json the router lacks: {unrouted:?}"
    );
    for (method, path, id, op) in operations(&spec) {
        // The router itself sends the documented request to the operation.
        let path_x = concrete(&path, "x");
        let found = resolve(&method, &path_x).found.map(|(op, _)| op.name());
        assert_eq!(found, Some(id.as_str()), "{method} {path}");
        // Its listeners and its token are documented.
        let route = ROUTES.iter().find(|r| r.operation.name() == id).unwrap();
        let operation = route.operation;
        let mut listeners = BTreeSet::new();
        if operation.served_on(Listener::Public, false) {
            listeners.insert("public");
        }
        if operation.served_on(Listener::Internal, true) {
            listeners.insert("internal");
        }
        let doc_listeners: BTreeSet<&str> = op["x-listeners"]
            .as_array()
            .expect("x-listeners")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(doc_listeners, listeners, "{id}: x-listeners");
        assert_eq!(
            op.get("security").is_some(),
            operation.guarded(),
            "{id}: security"
        );
        // Each path parameter is described, and nothing else is.
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let validator = Validator::new(&spec);
        let described: BTreeSet<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| match p.get("$ref").and_then(Value::as_str) {
                Some(r) => validator.resolve(r).expect("parameter"),
                None => p,
            })
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(described, in_path, "{id}: path parameters");
    }
}

#[test]
fn every_schema_of_the_spec_uses_only_what_the_validator_checks() {
    let spec = load_spec();
    let validator = Validator::new(&spec);
    let mut errors = Vec::new();
    fn walk<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
        match v {
            Value::Object(map) => {
                for (k, sub) in map {
                    if k == "schema" {
                        out.push((format!("{at}/{k}"), sub));
                    } else {
                        walk(sub, format!("{at}/{k}"), out);
                    }
                }
            }
            Value::Array(list) => {
                for (i, sub) in list.iter().enumerate() {
                    walk(sub, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut schemas = Vec::new();
    walk(&spec, String::new(), &mut schemas);
    for (name, schema) in spec["components"]["schemas"].as_object().unwrap() {
        schemas.push((format!("/components/schemas/{name}"), schema));
    }
    assert!(schemas.len() > 40, "{} schemas found", schemas.len());
    for (at, schema) in schemas {
        errors.extend(
            validator
                .lint(schema)
                .into_iter()
                .map(|e| format!("{at}{e}")),
        );
    }
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_examples_of_the_spec_match_their_schemas() {
    let spec = load_spec();
    let validator = Validator::new(&spec);
    let mut checked = 0;
    for (_, path, id, op) in operations(&spec) {
        let mut media = Vec::new();
        media.extend(op["requestBody"]["content"].as_object());
        for response in op["responses"].as_object().into_iter().flatten() {
            media.extend(response.1["content"].as_object());
        }
        for content in media.into_iter().flat_map(|c| c.values()) {
            let examples = content["examples"]
                .as_object()
                .into_iter()
                .flat_map(|e| e.values().map(|x| &x["value"]))
                .chain(content.get("example"));
            for example in examples {
                let errors = validator.validate(&content["schema"], example);
                assert!(errors.is_empty(), "{id} {path}: {example}: {errors:?}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 4, "{checked} examples");
    // The wire's golden interactions (the same JSON as the API's items).
    let interaction = json!({"$ref": "#/components/schemas/Interaction"});
    for golden in ["interaction.json", "interaction_v1.json"] {
        let path = format!("{}/src/wire/golden/{golden}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("a golden file");
        let value: Value = serde_json::from_str(&text).expect("JSON");
        let errors = validator.validate(&interaction, &value);
        assert!(errors.is_empty(), "{golden}: {errors:?}");
    }
}

/// An answer: status, headers (names lower case) and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A request, `Connection: close`, with a `Content-Length`.
fn raw(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Sends `bytes` on a fresh connection and reads the answer until close.
async fn exchange(addr: SocketAddr, bytes: Vec<u8>) -> Answer {
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        // The server may answer (and close) before everything is written.
        let _ = s.write_all(&bytes);
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got).to_string();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no answer: {text:?}"));
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status: {head:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Answer {
            status,
            headers,
            body: body.to_string(),
        }
    })
    .await
    .expect("client thread")
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    exchange(addr, raw("GET", path, &[], b"")).await
}

async fn post(addr: SocketAddr, body: &str) -> Answer {
    let headers = [("Content-Type", "application/json")];
    let bytes = raw("POST", "/tracking/interactions", &headers, body.as_bytes());
    exchange(addr, bytes).await
}

/// GETs `path` until `ok` holds for the answer (20 s at most).
async fn get_until(addr: SocketAddr, path: &str, ok: impl Fn(&Answer) -> bool) -> Answer {
    common::eventually(path, Duration::from_secs(20), || async {
        let a = get(addr, path).await;
        ok(&a).then_some(a)
    })
    .await
}

/// The spec, and which (operation, status) pairs the answers covered.
struct Contract {
    spec: Value,
    covered: Mutex<BTreeSet<(String, String)>>,
}

impl Contract {
    fn load() -> Self {
        Self {
            spec: load_spec(),
            covered: Mutex::default(),
        }
    }

    fn validator(&self) -> Validator<'_> {
        Validator::new(&self.spec)
    }

    /// `v`, or what it `$ref`s.
    fn deref<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => self.validator().resolve(r).expect("a $ref of the spec"),
            None => v,
        }
    }

    fn operation(&self, id: &str) -> &Value {
        operations(&self.spec)
            .into_iter()
            .find(|(_, _, i, _)| i == id)
            .unwrap_or_else(|| panic!("no operation {id}"))
            .3
    }

    /// Checks an answer of operation `id`: a status it documents, and the
    /// answer matches that response.
    fn conforms(&self, id: &str, a: &Answer) {
        let status = a.status.to_string();
        let response = self.operation(id)["responses"]
            .get(&status)
            .unwrap_or_else(|| panic!("{id}: status {status} is not documented: {}", a.body));
        self.matches(&format!("{id} {status}"), self.deref(response), a);
        self.covered.lock().unwrap().insert((id.into(), status));
    }

    /// Checks an answer against `components/responses/<name>`.
    fn conforms_to(&self, name: &str, status: u16, a: &Answer) {
        assert_eq!(a.status, status, "{name}: {}", a.body);
        let response = &self.spec["components"]["responses"][name];
        assert!(response.is_object(), "no response {name}");
        self.matches(name, response, a);
    }

    fn matches(&self, what: &str, response: &Value, a: &Answer) {
        let v = self.validator();
        let media = a
            .header("content-type")
            .and_then(|ct| ct.split(';').next())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let content = response["content"]
            .as_object()
            .and_then(|c| c.get(&media))
            .unwrap_or_else(|| panic!("{what}: content type {media:?} is not documented"));
        let body = match media.as_str() {
            "application/json" => serde_json::from_str(&a.body)
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", a.body)),
            _ => Value::String(a.body.clone()),
        };
        let errors = v.validate(&content["schema"], &body);
        assert!(errors.is_empty(), "{what}: {errors:#?}\n{}", a.body);
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let header = self.deref(header);
            let Some(value) = a.header(&name.to_ascii_lowercase()) else {
                assert_ne!(header["required"], true, "{what}: no {name} header");
                continue;
            };
            let value = match header["schema"]["type"].as_str() {
                Some("integer") => value.parse::<i64>().map(Value::from).unwrap_or_default(),
                _ => Value::from(value),
            };
            let errors = v.validate(&header["schema"], &value);
            assert!(errors.is_empty(), "{what}: header {name}: {errors:?}");
        }
        // The documented rule of every 503 with the error JSON.
        if a.status == 503 && body.get("error").is_some() {
            assert_eq!(a.header("retry-after"), Some("1"), "{what}: Retry-After");
        }
    }

    /// Checks a body the test sends against the operation's request schema.
    fn request_is_valid(&self, id: &str, body: &str) {
        let schema = &self.operation(id)["requestBody"]["content"]["application/json"]["schema"];
        let body: Value = serde_json::from_str(body).expect("JSON");
        let errors = self.validator().validate(schema, &body);
        assert!(errors.is_empty(), "{id} request {body}: {errors:?}");
    }

    /// Every documented pair the answers did not cover is listed (with
    /// its reason) in `UNREACHED`, and no listed pair was covered.
    fn assert_coverage(&self) {
        let covered = self.covered.lock().unwrap().clone();
        let mut documented = BTreeSet::new();
        for (_, _, id, op) in operations(&self.spec) {
            for status in op["responses"].as_object().unwrap().keys() {
                documented.insert((id.clone(), status.clone()));
            }
        }
        let unreached: BTreeSet<(String, String)> = UNREACHED
            .iter()
            .map(|(id, s, _)| (id.to_string(), s.to_string()))
            .collect();
        let missed: BTreeSet<_> = documented.difference(&covered).cloned().collect();
        assert_eq!(
            missed, unreached,
            "documented statuses not produced by this test (left) vs UNREACHED (right)"
        );
    }
}

fn canonical(id: Option<&str>, user: &str, kind: &str, occurred: &str) -> String {
    let mut v = json!({
        "user_id": user, "interaction_type": kind,
        "target": {"id": "post-9", "type": "post"},
        "campaign_id": "c-1", "affiliate_id": "a-7", "occurred_at": occurred,
    });
    if let Some(id) = id {
        v["interaction_id"] = json!(id);
    }
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_services_answers_match_the_spec() {
    let contract = Contract::load();
    let c = &contract;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FaultyStore::new(open_store(dir.path()).unwrap()));
    let svc = app::start_with_store(ServiceConfig::local(dir.path()), Some(store.clone()))
        .await
        .expect("service starts");
    let addr = svc.addr;

    // Probes.
    c.conforms("health", &get(addr, "/tracking/health").await);
    c.conforms(
        "ready",
        &get_until(addr, "/tracking/ready", |a| a.status == 200).await,
    );

    // Ingest, every format, with and without an id.
    let today = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let day = &today[..10];
    let accepted = [
        canonical(Some("ct-1"), "u-1", "click", &today),
        canonical(Some("ct-2"), "u-1", "like", &today),
        canonical(None, "u-2", "view", &today),
        json!({"interaction_type": "click", "target_element_id": "post-42",
            "target_element_type": "post", "campaign_id": "camp-7", "timestamp": today})
        .to_string(),
        json!({"type": "create_interaction", "user_id": 123, "interaction": "like",
            "timestamp": today})
        .to_string(),
    ];
    for body in &accepted {
        c.request_is_valid("post_interaction", body);
        let a = post(addr, body).await;
        assert_eq!(a.status, 202, "{}", a.body);
        c.conforms("post_interaction", &a);
    }

    // Reads with data.
    let one = get_until(addr, "/tracking/interactions/ct-2", |a| a.status == 200).await;
    c.conforms("get_interaction", &one);
    let page = get(addr, "/tracking/interactions?limit=1").await;
    assert!(page.json()["next_cursor"].is_string(), "{}", page.body);
    c.conforms("list_interactions", &page);
    let cursor = page.json()["next_cursor"].as_str().unwrap().to_string();
    let next = get(
        addr,
        &format!("/tracking/interactions?limit=1&cursor={cursor}"),
    )
    .await;
    c.conforms("list_interactions", &next);
    let mine = get(addr, "/tracking/users/u-1/interactions?limit=1").await;
    assert_eq!(mine.json()["items"].as_array().map(Vec::len), Some(1));
    c.conforms("user_interactions", &mine);
    let stats = get_until(addr, "/tracking/users/u-1/stats", |a| {
        a.status == 200 && a.json()["total"] == 2
    })
    .await;
    c.conforms("user_stats", &stats);
    let has_items = |a: &Answer| a.json()["items"].as_array().is_some_and(|i| i.len() >= 2);
    let daily = format!("/tracking/stats/daily?from={day}&to={day}");
    c.conforms("stats_daily", &get_until(addr, &daily, has_items).await);
    let filtered = format!("{daily}&campaign_id=c-1&interaction_type=LIKE");
    c.conforms("stats_daily", &get(addr, &filtered).await);
    let status = |a: &Answer| a.json()["items"][0]["accepted"] == 5;
    c.conforms(
        "stats_status",
        &get_until(addr, "/tracking/stats/status", status).await,
    );
    let metrics = get(addr, "/metrics").await;
    assert!(metrics.body.contains("tracking_http_requests_total"));
    c.conforms("metrics", &metrics);

    // Every operation: an undecodable query (400), a head over the limit (431).
    let huge = "a".repeat(200_000);
    for route in ROUTES {
        let id = route.operation.name();
        let path = concrete(route.path, "ct-1");
        let a = exchange(addr, raw(route.method, &format!("{path}?%zz"), &[], b"")).await;
        assert_eq!(a.status, 400, "{id}: {}", a.body);
        c.conforms(id, &a);
        let a = exchange(addr, raw(route.method, &path, &[("X-Big", &huge)], b"")).await;
        assert_eq!(a.status, 431, "{id}: {}", a.body);
        c.conforms(id, &a);
    }

    // Reads: bad parameters (400), nothing there (404).
    for (id, path) in [
        ("list_interactions", "/tracking/interactions?limit=0"),
        ("list_interactions", "/tracking/interactions?cursor=x"),
        ("get_interaction", "/tracking/interactions/%FF"),
        (
            "user_interactions",
            "/tracking/users/u-1/interactions?limit=1001",
        ),
        ("user_stats", "/tracking/users//stats"),
        ("stats_daily", "/tracking/stats/daily?from=2026-13-01"),
        ("stats_daily", "/tracking/stats/daily?interaction_type=hug"),
        (
            "stats_status",
            "/tracking/stats/status?from=2020-01-01&to=2026-01-01",
        ),
    ] {
        let a = get(addr, path).await;
        assert_eq!(a.status, 400, "{path}: {}", a.body);
        c.conforms(id, &a);
    }
    c.conforms(
        "get_interaction",
        &get(addr, "/tracking/interactions/nope").await,
    );
    c.conforms(
        "user_stats",
        &get(addr, "/tracking/users/nobody/stats").await,
    );

    // Ingest refusals, one per code a client can cause.
    let long = "u".repeat(300);
    for (body, code) in [
        (canonical(None, "u-1", "share", &today), "invalid_interaction_type"),
        (canonical(None, "   ", "click", &today), "missing_user"),
        (canonical(None, &long, "click", &today), "field_too_long"),
        (
            canonical(None, "u-1", "click", "2099-01-01T00:00:00Z"),
            "occurred_in_future",
        ),
        (
            canonical(None, "u-1", "click", "1969-12-31T23:59:59Z"),
            "occurred_too_long_ago",
        ),
        (
            r#"{"interaction_type":"click","target_element_id":"","target_element_type":"post","campaign_id":"c"}"#.into(),
            "missing_target",
        ),
        (
            r#"{"interaction_type":"click","target_element_id":"p","target_element_type":"post"}"#.into(),
            "missing_campaign",
        ),
        ("{nope".into(), "malformed"),
        (r#"{"type":"delete_everything"}"#.into(), "unknown_command"),
    ] {
        let a = post(addr, &body).await;
        assert_eq!((a.status, a.json()["error"]["code"].as_str()), (400, Some(code)), "{}", a.body);
        c.conforms("post_interaction", &a);
    }
    let chunked = [
        ("Content-Type", "application/json"),
        ("Transfer-Encoding", "chunked"),
    ];
    let mut bad_chunk = raw("POST", "/tracking/interactions", &chunked, b"");
    // Without the Content-Length `raw` adds: chunked framing only.
    let text = String::from_utf8(bad_chunk)
        .unwrap()
        .replace("Content-Length: 0\r\n", "");
    bad_chunk = format!("{text}zz\r\nnope\r\n0\r\n\r\n").into_bytes();
    let a = exchange(addr, bad_chunk).await;
    assert_eq!(a.json()["error"]["code"], "bad_body", "{}", a.body);
    c.conforms("post_interaction", &a);
    // 409: the id of u-1's click, for another user, or with other content.
    for (body, code) in [
        (
            canonical(Some("ct-1"), "u-9", "click", &today),
            "conflicting_interaction_id",
        ),
        (
            canonical(Some("ct-1"), "u-1", "view", &today),
            "interaction_id_reused",
        ),
    ] {
        get_until(addr, "/tracking/interactions/ct-1", |a| a.status == 200).await;
        let a = post(addr, &body).await;
        assert_eq!(a.json()["error"]["code"], code, "{}", a.body);
        c.conforms("post_interaction", &a);
    }
    // 413, declared and sent; 415.
    let declared = raw(
        "POST",
        "/tracking/interactions",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    let declared = String::from_utf8(declared)
        .unwrap()
        .replace("Content-Length: 2", "Content-Length: 10485760");
    c.conforms(
        "post_interaction",
        &exchange(addr, declared.into_bytes()).await,
    );
    c.conforms(
        "post_interaction",
        &post(addr, &" ".repeat(70 * 1024)).await,
    );
    let csv = raw(
        "POST",
        "/tracking/interactions",
        &[("Content-Type", "text/csv")],
        b"a,b",
    );
    c.conforms("post_interaction", &exchange(addr, csv).await);

    // Whatever the path: 405, 404, an unparsable request, HTTP/2.
    for route in ROUTES {
        let a = exchange(addr, raw("DELETE", &concrete(route.path, "x"), &[], b"")).await;
        c.conforms_to("MethodNotAllowed", 405, &a);
    }
    c.conforms_to("NotFound", 404, &get(addr, "/tracking/nothing").await);
    let garbage = exchange(addr, b"\x16\x03\x01 not http\r\n\r\n".to_vec()).await;
    c.conforms_to("BadRequest", 400, &garbage);
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    c.conforms_to(
        "HttpVersionNotSupported",
        505,
        &exchange(addr, preface).await,
    );

    // A store that needs a restart: liveness, readiness and ingest say so.
    store.broken.store(true, Ordering::SeqCst);
    for id in ["health", "ready"] {
        let a = get(addr, &format!("/tracking/{id}")).await;
        assert_eq!(a.status, 503, "{id}: {}", a.body);
        c.conforms(id, &a);
    }
    let a = post(addr, &canonical(None, "u-1", "click", &today)).await;
    assert_eq!(a.status, 503, "{}", a.body);
    c.conforms("post_interaction", &a);
    store.broken.store(false, Ordering::SeqCst);
    svc.stop().await.ok();

    // With a token and an internal listener.
    let dir = tempfile::tempdir().unwrap();
    let config = ServiceConfig {
        api_token: Some("s3cret".into()),
        internal_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ServiceConfig::local(dir.path())
    };
    let svc = app::start(config).await.expect("service starts");
    let (addr, internal) = (svc.addr, svc.internal_addr.expect("internal listener"));
    for route in ROUTES.iter().filter(|r| r.operation.guarded()) {
        let a = get(addr, &concrete(route.path, "x")).await;
        assert_eq!(a.status, 401, "{}", a.body);
        c.conforms(route.operation.name(), &a);
    }
    let authorized = raw(
        "GET",
        "/tracking/stats/status",
        &[("Authorization", "Bearer s3cret")],
        b"",
    );
    c.conforms("stats_status", &exchange(addr, authorized).await);
    c.conforms("metrics", &get(addr, "/metrics").await);
    c.conforms("metrics", &get(internal, "/metrics").await);
    c.conforms("health", &get(internal, "/tracking/health").await);
    c.conforms(
        "ready",
        &get_until(internal, "/tracking/ready", |a| a.status == 200).await,
    );
    for path in ["/tracking/stats/daily", "/tracking/nothing"] {
        c.conforms_to("NotFound", 404, &get(internal, path).await);
    }
    svc.stop().await.ok();

    contract.assert_coverage();
}

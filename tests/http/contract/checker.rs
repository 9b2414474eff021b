//! Checks answers against the spec and records which documented
//! (operation, status) pairs they covered.

use super::client::Answer;
use super::{load_spec, operations};
use crate::schema::Validator;

use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Mutex;

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

/// The spec, and which (operation, status) pairs the answers covered.
pub struct Contract {
    spec: Value,
    covered: Mutex<BTreeSet<(String, String)>>,
}

impl Contract {
    pub fn load() -> Self {
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
    pub fn conforms(&self, id: &str, a: &Answer) {
        let status = a.status.to_string();
        let response = self.operation(id)["responses"]
            .get(&status)
            .unwrap_or_else(|| panic!("{id}: status {status} is not documented: {}", a.body));
        self.matches(&format!("{id} {status}"), self.deref(response), a);
        self.covered.lock().unwrap().insert((id.into(), status));
    }

    /// Checks an answer against `components/responses/<name>`.
    pub fn conforms_to(&self, name: &str, status: u16, a: &Answer) {
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
    pub fn request_is_valid(&self, id: &str, body: &str) {
        let schema = &self.operation(id)["requestBody"]["content"]["application/json"]["schema"];
        let body: Value = serde_json::from_str(body).expect("JSON");
        let errors = self.validator().validate(schema, &body);
        assert!(errors.is_empty(), "{id} request {body}: {errors:?}");
    }

    /// Every documented pair the answers did not cover is listed (with
    /// its reason) in `UNREACHED`, and no listed pair was covered.
    pub fn assert_coverage(&self) {
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

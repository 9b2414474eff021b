//! The HTTP API against its contract, `docs/openapi.json`: the spec's
//! operations are the router's table (`http::ROUTES`), and the real
//! service's answers, every status that can be produced on demand, have a
//! documented status, content type and headers, and a body the documented
//! schema accepts (`schema`, a validator of the keywords the spec uses).
//!
//! Here: the spec against the table, its schemas against the validator,
//! its examples against its schemas; `answers`: the service against the
//! spec.

mod answers;
mod checker;
mod client;

use crate::schema::Validator;

use alpes_tracking::http::{resolve, Listener, ROUTES};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
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

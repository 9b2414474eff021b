//! A JSON Schema validator for exactly the keywords `docs/openapi.json`
//! uses: `$ref` (local), `type` (one or a list), `properties`, `required`,
//! `additionalProperties`, `items`, `enum`, `const`, `oneOf`, `anyOf`,
//! `minimum`, `maximum`, `minLength`, `maxLength`, `format` (`date-time`,
//! `date`), and the annotations. Any other keyword, or another format, is
//! an error, never skipped: the spec cannot lean on a keyword this
//! validator would not check.

use serde_json::Value;

/// Keywords that annotate and do not constrain.
const ANNOTATIONS: &[&str] = &["description", "title", "default", "examples", "example"];

/// Keywords that constrain, all of them checked.
const ASSERTIONS: &[&str] = &[
    "$ref",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "oneOf",
    "anyOf",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "format",
];

/// Validates instances against schemas of one document (`$ref`s resolve in it).
pub struct Validator<'a> {
    root: &'a Value,
}

impl<'a> Validator<'a> {
    pub fn new(root: &'a Value) -> Self {
        Self { root }
    }

    /// What is wrong with `instance` (each message with its JSON pointer);
    /// empty if `schema` accepts it.
    pub fn validate(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(schema, instance, "", &mut errors);
        errors
    }

    /// The schema a local `$ref` (`#/a/b`) points at.
    pub fn resolve(&self, reference: &str) -> Result<&'a Value, String> {
        let pointer = reference
            .strip_prefix('#')
            .ok_or_else(|| format!("only local $refs are supported: {reference}"))?;
        self.root
            .pointer(pointer)
            .ok_or_else(|| format!("$ref {reference} points at nothing"))
    }

    /// What is wrong with `schema` itself: unknown keywords or formats,
    /// dangling `$ref`s, keywords of the wrong shape (in every subschema,
    /// reached by an instance or not).
    pub fn lint(&self, schema: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.lint_at(schema, "", &mut errors);
        errors
    }

    fn lint_at(&self, schema: &Value, at: &str, errors: &mut Vec<String>) {
        let map = match schema {
            Value::Bool(_) => return,
            Value::Object(map) => map,
            other => return errors.push(format!("{at}: a schema must be an object, got {other}")),
        };
        for (key, value) in map {
            let here = format!("{at}/{key}");
            match key.as_str() {
                k if ANNOTATIONS.contains(&k) => {}
                "$ref" => match value.as_str().map(|r| self.resolve(r)) {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => errors.push(format!("{here}: {e}")),
                    None => errors.push(format!("{here}: not a string")),
                },
                "type" => {
                    let names: Vec<&Value> = match value {
                        Value::Array(list) => list.iter().collect(),
                        one => vec![one],
                    };
                    for name in names {
                        if !name.as_str().is_some_and(type_name_known) {
                            errors.push(format!("{here}: unknown type {name}"));
                        }
                    }
                }
                "properties" => match value.as_object() {
                    Some(props) => {
                        for (name, sub) in props {
                            self.lint_at(sub, &format!("{here}/{name}"), errors);
                        }
                    }
                    None => errors.push(format!("{here}: not an object")),
                },
                "required" | "enum" => {
                    if !value.is_array() {
                        errors.push(format!("{here}: not an array"));
                    }
                }
                "additionalProperties" | "items" => self.lint_at(value, &here, errors),
                "oneOf" | "anyOf" => match value.as_array() {
                    Some(list) => {
                        for (i, sub) in list.iter().enumerate() {
                            self.lint_at(sub, &format!("{here}/{i}"), errors);
                        }
                    }
                    None => errors.push(format!("{here}: not an array")),
                },
                "minimum" | "maximum" | "minLength" | "maxLength" => {
                    if !value.is_number() {
                        errors.push(format!("{here}: not a number"));
                    }
                }
                "format" => {
                    if !matches!(value.as_str(), Some("date-time" | "date")) {
                        errors.push(format!("{here}: unsupported format {value}"));
                    }
                }
                "const" => {}
                other => errors.push(format!("{here}: unsupported keyword {other:?}")),
            }
        }
    }

    fn check(&self, schema: &Value, instance: &Value, at: &str, errors: &mut Vec<String>) {
        let map = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => return errors.push(format!("{at}: no value is allowed here")),
            Value::Object(map) => map,
            other => return errors.push(format!("{at}: the schema {other} is not a schema")),
        };
        for (key, value) in map {
            let key = key.as_str();
            if ANNOTATIONS.contains(&key) {
                continue;
            }
            if !ASSERTIONS.contains(&key) {
                errors.push(format!("{at}: unsupported keyword {key:?} in the schema"));
                continue;
            }
            self.keyword(key, value, map, instance, at, errors);
        }
    }

    fn keyword(
        &self,
        key: &str,
        value: &Value,
        schema: &serde_json::Map<String, Value>,
        instance: &Value,
        at: &str,
        errors: &mut Vec<String>,
    ) {
        match key {
            "$ref" => match value.as_str().map(|r| self.resolve(r)) {
                Some(Ok(target)) => self.check(target, instance, at, errors),
                Some(Err(e)) => errors.push(format!("{at}: {e}")),
                None => errors.push(format!("{at}: $ref is not a string")),
            },
            "type" => {
                let allowed: Vec<&str> = match value {
                    Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
                    one => one.as_str().into_iter().collect(),
                };
                if !allowed.iter().any(|t| has_type(instance, t)) {
                    errors.push(format!("{at}: {instance} is not of type {value}"));
                }
            }
            "properties" => {
                let (Some(props), Some(object)) = (value.as_object(), instance.as_object()) else {
                    return;
                };
                for (name, sub) in props {
                    if let Some(v) = object.get(name) {
                        self.check(sub, v, &format!("{at}/{name}"), errors);
                    }
                }
            }
            "required" => {
                let Some(object) = instance.as_object() else {
                    return;
                };
                for name in value.as_array().into_iter().flatten() {
                    let name = name.as_str().unwrap_or_default();
                    if !object.contains_key(name) {
                        errors.push(format!("{at}: the required {name:?} is missing"));
                    }
                }
            }
            "additionalProperties" => {
                let Some(object) = instance.as_object() else {
                    return;
                };
                let declared = schema.get("properties").and_then(Value::as_object);
                for (name, v) in object {
                    if !declared.is_some_and(|d| d.contains_key(name)) {
                        self.check(value, v, &format!("{at}/{name}"), errors);
                    }
                }
            }
            "items" => {
                for (i, item) in instance.as_array().into_iter().flatten().enumerate() {
                    self.check(value, item, &format!("{at}/{i}"), errors);
                }
            }
            "enum" => {
                if !value.as_array().is_some_and(|l| l.contains(instance)) {
                    errors.push(format!("{at}: {instance} is not one of {value}"));
                }
            }
            "const" => {
                if value != instance {
                    errors.push(format!("{at}: {instance} is not {value}"));
                }
            }
            "oneOf" | "anyOf" => {
                let list = value.as_array().map(Vec::as_slice).unwrap_or_default();
                let matching = list
                    .iter()
                    .filter(|sub| self.validate(sub, instance).is_empty())
                    .count();
                let ok = if key == "oneOf" {
                    matching == 1
                } else {
                    matching >= 1
                };
                if !ok {
                    errors.push(format!(
                        "{at}: {instance} matches {matching} of the {} schemas of {key}",
                        list.len()
                    ));
                }
            }
            "minimum" | "maximum" => {
                let (Some(bound), Some(n)) = (value.as_f64(), instance.as_f64()) else {
                    return;
                };
                if (key == "minimum" && n < bound) || (key == "maximum" && n > bound) {
                    errors.push(format!("{at}: {n} breaks {key} {bound}"));
                }
            }
            "minLength" | "maxLength" => {
                let (Some(bound), Some(s)) = (value.as_u64(), instance.as_str()) else {
                    return;
                };
                let len = s.chars().count() as u64;
                if (key == "minLength" && len < bound) || (key == "maxLength" && len > bound) {
                    errors.push(format!("{at}: {len} characters break {key} {bound}"));
                }
            }
            "format" => {
                let Some(s) = instance.as_str() else {
                    return;
                };
                let ok = match value.as_str() {
                    Some("date-time") => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
                    Some("date") => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
                    _ => {
                        return errors.push(format!("{at}: unsupported format {value}"));
                    }
                };
                if !ok {
                    errors.push(format!("{at}: {s:?} is not a {value}"));
                }
            }
            _ => unreachable!("every assertion keyword is handled"),
        }
    }
}

fn type_name_known(name: &str) -> bool {
    matches!(
        name,
        "object" | "array" | "string" | "integer" | "number" | "boolean" | "null"
    )
}

fn has_type(v: &Value, name: &str) -> bool {
    match name {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::Validator;
    use serde_json::{json, Value};

    fn errors(schema: Value, instance: Value) -> Vec<String> {
        let root = json!({"components": {"schemas": {"Id": {"type": "string"}}}});
        Validator::new(&root).validate(&schema, &instance)
    }

    /// Each case: a schema, an instance it accepts, one it refuses.
    #[test]
    fn each_keyword_accepts_and_refuses() {
        let cases = [
            (
                json!({"$ref": "#/components/schemas/Id"}),
                json!("a"),
                json!(1),
            ),
            (json!({"type": "integer"}), json!(3), json!(3.5)),
            (json!({"type": ["string", "null"]}), json!(null), json!(1)),
            (
                json!({"properties": {"a": {"type": "string"}}}),
                json!({"a": "x"}),
                json!({"a": 1}),
            ),
            (json!({"required": ["a"]}), json!({"a": 1}), json!({"b": 1})),
            (
                json!({"properties": {"a": true}, "additionalProperties": false}),
                json!({"a": 1}),
                json!({"a": 1, "b": 2}),
            ),
            (
                json!({"items": {"type": "integer"}}),
                json!([1, 2]),
                json!([1, "2"]),
            ),
            (json!({"enum": ["x", "y"]}), json!("y"), json!("z")),
            (json!({"const": "x"}), json!("x"), json!("X")),
            (
                json!({"oneOf": [{"type": "integer"}, {"type": "number"}]}),
                json!(1.5),
                json!(1),
            ),
            (
                json!({"anyOf": [{"type": "integer"}, {"type": "string"}]}),
                json!("a"),
                json!(null),
            ),
            (json!({"minimum": 1}), json!(1), json!(0)),
            (json!({"maximum": 10}), json!(10), json!(11)),
            (json!({"minLength": 1}), json!("é"), json!("")),
            (json!({"maxLength": 2}), json!("éé"), json!("abc")),
            (
                json!({"format": "date-time"}),
                json!("2026-11-29T10:00:00.5Z"),
                json!("2026-11-29 10:00"),
            ),
            (
                json!({"format": "date"}),
                json!("2026-11-29"),
                json!("2026-13-01"),
            ),
        ];
        for (schema, good, bad) in cases {
            assert_eq!(
                errors(schema.clone(), good.clone()),
                Vec::<String>::new(),
                "{schema} {good}"
            );
            assert!(
                !errors(schema.clone(), bad.clone()).is_empty(),
                "{schema} accepted {bad}"
            );
        }
    }

    #[test]
    fn an_unknown_keyword_or_format_fails_loudly() {
        for schema in [
            json!({"pattern": "^a$"}),
            json!({"allOf": [{"type": "string"}]}),
            json!({"format": "uuid"}),
            json!({"$ref": "#/components/schemas/Nope"}),
            json!({"$ref": "other.json#/x"}),
        ] {
            assert!(!errors(schema.clone(), json!("a")).is_empty(), "{schema}");
            let root = json!({});
            assert!(!Validator::new(&root).lint(&schema).is_empty(), "{schema}");
        }
        // Also where no instance reaches: lint walks every subschema.
        let root = json!({});
        let nested = json!({"anyOf": [{"type": "string"}, {"items": {"patternProperties": {}}}]});
        assert_eq!(Validator::new(&root).lint(&nested).len(), 1);
        assert!(Validator::new(&root)
            .lint(&json!({"type": "string", "description": "d", "maxLength": 2}))
            .is_empty());
    }
}

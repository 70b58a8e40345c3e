//! SCIM PATCH (RFC 7644 §3.5.2) and filters (§3.4.2.2) over JSON resources.
//!
//! Resources are stored as the JSON the identity provider sent, so PATCH is
//! applied to that JSON generically: top-level and sub-attribute paths,
//! value filters on multi-valued attributes (`members[value eq "..."]`), and
//! path-less operations that carry an object. Attribute names compare
//! case-insensitively, as SCIM requires.

use serde_json::{Map, Value};

/// Why a PATCH or filter was refused; `scim_type` is the RFC 7644 error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ScimError {
    /// HTTP status.
    pub status: u16,
    /// `invalidFilter`, `invalidPath`, `noTarget`, `invalidValue`, `mutability`, `uniqueness`, ...
    pub scim_type: Option<&'static str>,
    /// What is wrong.
    pub detail: String,
}

impl ScimError {
    /// A 400 with a SCIM error type.
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self { status: 400, scim_type: Some(scim_type), detail: detail.into() }
    }
}

/// One parsed filter comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Attribute path (`userName`, `emails.value`).
    pub attr: String,
    /// `eq`, `ne`, `co`, `sw`, `ew`, `gt`, `ge`, `lt`, `le`, `pr`.
    pub op: String,
    /// The compared value (`None` for `pr`).
    pub value: Option<Value>,
}

/// A filter: comparisons joined by `and` / `or` (left to right, `and` binding tighter).
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Disjunction of conjunctions.
    pub any_of: Vec<Vec<Comparison>>,
}

fn tokens(s: &str) -> Result<Vec<String>, ScimError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut tok = String::from("\"");
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            tok.push(n);
                        }
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => tok.push(c),
                }
            }
            if !closed {
                return Err(ScimError::bad("invalidFilter", "unterminated string in filter"));
            }
            out.push(tok);
        } else if c == '(' || c == ')' {
            return Err(ScimError::bad("invalidFilter", "parentheses in filters are not supported"));
        } else {
            let mut tok = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                tok.push(c);
                chars.next();
            }
            out.push(tok);
        }
    }
    Ok(out)
}

fn literal(tok: &str) -> Result<Value, ScimError> {
    if let Some(s) = tok.strip_prefix('"') {
        return Ok(Value::String(s.to_owned()));
    }
    match tok.to_ascii_lowercase().as_str() {
        "true" => Ok(Value::Bool(true)),
        "false" => Ok(Value::Bool(false)),
        "null" => Ok(Value::Null),
        _ => tok
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| ScimError::bad("invalidFilter", format!("{tok:?} is not a filter value"))),
    }
}

/// Parses `userName eq "alice"`, `externalId eq "x" and active eq true`, `title pr`.
pub fn parse_filter(s: &str) -> Result<Filter, ScimError> {
    let toks = tokens(s)?;
    let mut any_of = vec![Vec::new()];
    let mut i = 0;
    while i < toks.len() {
        let attr = toks[i].clone();
        let op = toks
            .get(i + 1)
            .map(|o| o.to_ascii_lowercase())
            .ok_or_else(|| ScimError::bad("invalidFilter", format!("filter ends after {attr:?}")))?;
        let (value, used) = if op == "pr" {
            (None, 2)
        } else if matches!(op.as_str(), "eq" | "ne" | "co" | "sw" | "ew" | "gt" | "ge" | "lt" | "le") {
            let v = toks.get(i + 2).ok_or_else(|| ScimError::bad("invalidFilter", "comparison without a value"))?;
            (Some(literal(v)?), 3)
        } else {
            return Err(ScimError::bad("invalidFilter", format!("unknown filter operator {op:?}")));
        };
        if let Some(last) = any_of.last_mut() {
            last.push(Comparison { attr, op, value });
        }
        i += used;
        match toks.get(i).map(|t| t.to_ascii_lowercase()) {
            None => break,
            Some(j) if j == "and" => i += 1,
            Some(j) if j == "or" => {
                any_of.push(Vec::new());
                i += 1;
            }
            Some(other) => return Err(ScimError::bad("invalidFilter", format!("expected and/or, found {other:?}"))),
        }
    }
    if any_of.iter().any(Vec::is_empty) {
        return Err(ScimError::bad("invalidFilter", "empty filter"));
    }
    Ok(Filter { any_of })
}

/// Finds a key case-insensitively.
fn key_of(map: &Map<String, Value>, name: &str) -> Option<String> {
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

fn get_ci<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    key_of(map, name).and_then(|k| map.get(&k))
}

/// The values at a dotted path; arrays are flattened (`emails.value`).
fn values_at<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![v];
    for part in path.split('.') {
        let mut next = Vec::new();
        for c in current {
            match c {
                Value::Object(m) => {
                    if let Some(x) = get_ci(m, part) {
                        match x {
                            Value::Array(items) => next.extend(items.iter()),
                            other => next.push(other),
                        }
                    }
                }
                Value::Array(items) => {
                    for item in items {
                        if let Value::Object(m) = item
                            && let Some(x) = get_ci(m, part)
                        {
                            next.push(x);
                        }
                    }
                }
                _ => {}
            }
        }
        current = next;
    }
    current
}

fn compare(actual: &Value, op: &str, expected: Option<&Value>, case_exact: bool) -> bool {
    let Some(expected) = expected else { return !actual.is_null() };
    match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            let (a, e) = if case_exact { (a.clone(), e.clone()) } else { (a.to_lowercase(), e.to_lowercase()) };
            match op {
                "eq" => a == e,
                "ne" => a != e,
                "co" => a.contains(&e),
                "sw" => a.starts_with(&e),
                "ew" => a.ends_with(&e),
                "gt" => a > e,
                "ge" => a >= e,
                "lt" => a < e,
                "le" => a <= e,
                _ => false,
            }
        }
        (Value::Bool(a), Value::Bool(e)) => match op {
            "eq" => a == e,
            "ne" => a != e,
            _ => false,
        },
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (a.as_f64().unwrap_or(0.0), e.as_f64().unwrap_or(0.0));
            match op {
                "eq" => a == e,
                "ne" => a != e,
                "gt" => a > e,
                "ge" => a >= e,
                "lt" => a < e,
                "le" => a <= e,
                _ => false,
            }
        }
        _ => op == "ne",
    }
}

impl Filter {
    /// Whether `resource` matches.
    pub fn matches(&self, resource: &Value) -> bool {
        self.any_of.iter().any(|all| {
            all.iter().all(|c| {
                let case_exact = c.attr.eq_ignore_ascii_case("id") || c.attr.eq_ignore_ascii_case("externalId");
                let found = values_at(resource, &c.attr);
                if c.op == "pr" {
                    return found.iter().any(|v| !v.is_null() && v.as_str() != Some(""));
                }
                if c.op == "ne" && found.is_empty() {
                    return true;
                }
                found.iter().any(|v| compare(v, &c.op, c.value.as_ref(), case_exact))
            })
        })
    }
}

/// A parsed PATCH path.
#[derive(Debug, Clone, PartialEq)]
struct PatchPath {
    attr: String,
    filter: Option<Filter>,
    sub: Option<String>,
}

fn parse_path(path: &str, schema_urn: &str) -> Result<PatchPath, ScimError> {
    let mut p = path.trim();
    if let Some(rest) = p.strip_prefix(schema_urn).and_then(|r| r.strip_prefix(':')) {
        p = rest;
    }
    if p.is_empty() {
        return Err(ScimError::bad("invalidPath", "empty path"));
    }
    let (attr, filter, rest) = match p.find('[') {
        Some(open) => {
            let close = p[open..]
                .rfind(']')
                .map(|i| open + i)
                .ok_or_else(|| ScimError::bad("invalidPath", format!("unclosed [ in {path:?}")))?;
            let filter = parse_filter(&p[open + 1..close]).map_err(|e| ScimError::bad("invalidPath", e.detail))?;
            (p[..open].to_owned(), Some(filter), p[close + 1..].trim_start_matches('.').to_owned())
        }
        None => match p.split_once('.') {
            Some((a, sub)) => (a.to_owned(), None, sub.to_owned()),
            None => (p.to_owned(), None, String::new()),
        },
    };
    if attr.is_empty() || !attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '$' || c == '_' || c == '-') {
        return Err(ScimError::bad("invalidPath", format!("{path:?} is not an attribute path")));
    }
    Ok(PatchPath { attr, filter, sub: (!rest.is_empty()).then_some(rest) })
}

const READ_ONLY: &[&str] = &["id", "meta", "schemas"];

fn check_mutable(attr: &str) -> Result<(), ScimError> {
    if READ_ONLY.iter().any(|r| r.eq_ignore_ascii_case(attr)) {
        return Err(ScimError::bad("mutability", format!("{attr} cannot be modified")));
    }
    Ok(())
}

fn set_ci(map: &mut Map<String, Value>, name: &str, value: Value) {
    let key = key_of(map, name).unwrap_or_else(|| name.to_owned());
    map.insert(key, value);
}

fn merge_add(map: &mut Map<String, Value>, name: &str, value: Value) {
    let key = key_of(map, name).unwrap_or_else(|| name.to_owned());
    match (map.get_mut(&key), value) {
        (Some(Value::Array(existing)), Value::Array(new)) => {
            for v in new {
                if !existing.contains(&v) {
                    existing.push(v);
                }
            }
        }
        (Some(Value::Array(existing)), v) => {
            if !existing.contains(&v) {
                existing.push(v);
            }
        }
        (Some(Value::Object(existing)), Value::Object(new)) => {
            for (k, v) in new {
                set_ci(existing, &k, v);
            }
        }
        (_, v) => {
            map.insert(key, v);
        }
    }
}

/// Applies one PATCH operation to `resource` (a JSON object).
pub fn apply(
    resource: &mut Map<String, Value>,
    op: &str,
    path: Option<&str>,
    value: Option<Value>,
    schema_urn: &str,
) -> Result<(), ScimError> {
    let op = op.to_ascii_lowercase();
    let Some(path) = path.filter(|p| !p.trim().is_empty()) else {
        // No path: the value is an object of attributes to add or replace.
        let Some(Value::Object(values)) = value else {
            return Err(ScimError::bad(
                if op == "remove" { "noTarget" } else { "invalidValue" },
                "an operation without a path needs an object value",
            ));
        };
        for (k, v) in values {
            // An extension or core URN key holds the attributes themselves.
            if k.starts_with("urn:") {
                if let Value::Object(inner) = v {
                    for (ik, iv) in inner {
                        check_mutable(&ik)?;
                        if op == "add" { merge_add(resource, &ik, iv) } else { set_ci(resource, &ik, iv) }
                    }
                }
                continue;
            }
            check_mutable(&k)?;
            match op.as_str() {
                "add" => merge_add(resource, &k, v),
                "replace" => set_ci(resource, &k, v),
                _ => return Err(ScimError::bad("invalidSyntax", format!("unknown op {op:?}"))),
            }
        }
        return Ok(());
    };
    let p = parse_path(path, schema_urn)?;
    check_mutable(&p.attr)?;
    let key = key_of(resource, &p.attr).unwrap_or_else(|| p.attr.clone());
    match (op.as_str(), &p.filter, &p.sub) {
        ("add", None, None) => {
            merge_add(resource, &p.attr, value.ok_or_else(|| ScimError::bad("invalidValue", "add needs a value"))?);
        }
        ("replace", None, None) => {
            resource.insert(key, value.ok_or_else(|| ScimError::bad("invalidValue", "replace needs a value"))?);
        }
        ("add" | "replace", None, Some(sub)) => {
            let v = value.ok_or_else(|| ScimError::bad("invalidValue", "add/replace needs a value"))?;
            match resource.entry(key).or_insert_with(|| Value::Object(Map::new())) {
                Value::Object(inner) => set_ci(inner, sub, v),
                _ => return Err(ScimError::bad("invalidPath", format!("{} is not a complex attribute", p.attr))),
            }
        }
        ("add" | "replace", Some(filter), sub) => {
            let v = value.ok_or_else(|| ScimError::bad("invalidValue", "add/replace needs a value"))?;
            let Some(Value::Array(items)) = resource.get_mut(&key) else {
                return Err(ScimError::bad("noTarget", format!("{} has no values to filter", p.attr)));
            };
            let mut hit = false;
            for item in items.iter_mut().filter(|i| filter.matches(i)) {
                hit = true;
                match (sub, item) {
                    (Some(sub), Value::Object(inner)) => set_ci(inner, sub, v.clone()),
                    (None, slot) => *slot = v.clone(),
                    _ => {}
                }
            }
            if !hit {
                return Err(ScimError::bad("noTarget", format!("no value of {} matches the filter", p.attr)));
            }
        }
        ("remove", None, None) => match (resource.get_mut(&key), value) {
            // Remove listed values from a multi-valued attribute (a common IdP form).
            (Some(Value::Array(items)), Some(Value::Array(gone))) => {
                items.retain(|i| {
                    !gone.iter().any(|g| match (g, i) {
                        (Value::Object(go), Value::Object(io)) => go.iter().all(|(k, v)| get_ci(io, k) == Some(v)),
                        (g, i) => g == i,
                    })
                });
            }
            _ => {
                resource.remove(&key);
            }
        },
        ("remove", None, Some(sub)) => {
            if let Some(Value::Object(inner)) = resource.get_mut(&key)
                && let Some(k) = key_of(inner, sub)
            {
                inner.remove(&k);
            }
        }
        ("remove", Some(filter), sub) => {
            if let Some(Value::Array(items)) = resource.get_mut(&key) {
                match sub {
                    None => items.retain(|i| !filter.matches(i)),
                    Some(sub) => {
                        for item in items.iter_mut().filter(|i| filter.matches(i)) {
                            if let Value::Object(inner) = item
                                && let Some(k) = key_of(inner, sub)
                            {
                                inner.remove(&k);
                            }
                        }
                    }
                }
            }
        }
        (other, _, _) => return Err(ScimError::bad("invalidSyntax", format!("unknown op {other:?}"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!(),
        }
    }

    #[test]
    fn filters_match_like_the_rfc_says() {
        let u = json!({"userName": "Alice@Example.com", "externalId": "00u1", "active": true,
                       "emails": [{"value": "alice@example.com", "primary": true}]});
        assert!(parse_filter(r#"userName eq "alice@example.com""#).unwrap().matches(&u));
        assert!(!parse_filter(r#"externalId eq "00U1""#).unwrap().matches(&u), "externalId is case-exact");
        assert!(parse_filter(r#"externalId eq "00u1" and active eq true"#).unwrap().matches(&u));
        assert!(parse_filter(r#"userName eq "bob" or emails.value co "alice""#).unwrap().matches(&u));
        assert!(parse_filter("title pr").map(|f| !f.matches(&u)).unwrap());
        assert!(parse_filter(r#"userName zz "x""#).is_err());
        assert!(parse_filter(r#"userName eq "x"#).is_err());
    }

    #[test]
    fn patch_operations_follow_rfc_7644() {
        let mut u = obj(json!({"userName": "alice", "active": true, "emails": [{"value": "a@x", "type": "work"}]}));
        apply(&mut u, "Replace", Some("active"), Some(json!(false)), USER).unwrap();
        assert_eq!(u["active"], json!(false));
        apply(&mut u, "add", Some("emails"), Some(json!([{"value": "b@x", "type": "home"}])), USER).unwrap();
        assert_eq!(u["emails"].as_array().unwrap().len(), 2);
        apply(&mut u, "remove", Some(r#"emails[type eq "home"]"#), None, USER).unwrap();
        assert_eq!(u["emails"], json!([{"value": "a@x", "type": "work"}]));
        apply(&mut u, "replace", None, Some(json!({"displayName": "Alice", "active": true})), USER).unwrap();
        assert_eq!(u["displayName"], "Alice");
        apply(&mut u, "add", Some("name.givenName"), Some(json!("Alice")), USER).unwrap();
        assert_eq!(u["name"]["givenName"], "Alice");
        apply(&mut u, "replace", Some(&format!("{USER}:userName")), Some(json!("alice2")), USER).unwrap();
        assert_eq!(u["userName"], "alice2");
        assert_eq!(
            apply(&mut u, "replace", Some("id"), Some(json!("x")), USER).unwrap_err().scim_type,
            Some("mutability")
        );
        assert_eq!(apply(&mut u, "remove", None, None, USER).unwrap_err().scim_type, Some("noTarget"));
        assert_eq!(apply(&mut u, "remove", Some("a]b[c"), None, USER).unwrap_err().scim_type, Some("invalidPath"));

        let mut g = obj(json!({"displayName": "sre", "members": [{"value": "1"}, {"value": "2"}]}));
        apply(&mut g, "remove", Some(r#"members[value eq "1"]"#), None, "").unwrap();
        assert_eq!(g["members"], json!([{"value": "2"}]));
        apply(&mut g, "remove", Some("members"), Some(json!([{"value": "2"}])), "").unwrap();
        assert_eq!(g["members"], json!([]));
    }
}

#[cfg(test)]
#[path = "patch_proptests.rs"]
mod proptests;

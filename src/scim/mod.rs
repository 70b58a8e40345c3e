//! SCIM 2.0 (RFC 7643/7644) service provider under `/scim/v2`: the identity
//! provider pushes users and groups, and deprovisioning ends jitbot access
//! at once.
//!
//! Resources are stored as the JSON the IdP sent. jitbot matches a SCIM user
//! by `externalId` (= the IdP subject, `sub`) or by `userName` / email
//! (case-insensitively) to identity links and to the identity stored on
//! each request, so a person whose link is already gone is still found. SCIM
//! can only take privileges away: a user set `active: false` or deleted
//! loses every grant, pending request and link, and cannot link again until
//! SCIM reactivates them; a removal from a group (known in the groups claim
//! by its `displayName`, `externalId` or `id`) removes that group from the
//! link and revokes the grants that needed it. Adding members never adds
//! groups to a link (a leaked SCIM token cannot make anyone an approver).

pub mod patch;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use self::patch::ScimError;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::domain::{SlackUser, Timestamp};
use crate::service::{ScimLookup, ScimPerson, ScimResource, ScimResourceWrite, ScimWriteOutcome, Service};

const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Largest page a list returns.
const MAX_RESULTS: usize = 200;
/// Largest request body the SCIM routes read (1 MiB): a SCIM user or group,
/// or a PATCH of a large group's members, is far smaller; anything bigger is
/// answered 413 with a SCIM error before it is buffered further.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the SCIM handlers share.
#[derive(Clone)]
pub struct ScimState {
    /// The use cases (effects of deprovisioning).
    pub service: Service,
    /// Time.
    pub clock: SharedClock,
    /// Config (public URL for `meta.location`).
    pub config: Arc<Config>,
    /// SHA-256 of each accepted bearer token; the tokens themselves are not kept.
    pub token_hashes: Vec<[u8; 32]>,
}

impl ScimState {
    /// Builds the state from `[scim]`, keeping only token hashes.
    pub fn new(service: Service, clock: SharedClock, config: Arc<Config>) -> Option<Self> {
        let scim = config.scim.as_ref()?;
        let token_hashes = [Some(&scim.token), scim.previous_token.as_ref()]
            .into_iter()
            .flatten()
            .map(|t| crate::domain::token_digest(t.expose()))
            .collect();
        Some(Self { service, clock, config: config.clone(), token_hashes })
    }

    fn base(&self) -> String {
        format!("{}/scim/v2", self.config.server.public_base())
    }
}

/// The two resource kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    User,
    Group,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }
    fn urn(self) -> &'static str {
        match self {
            Kind::User => USER_URN,
            Kind::Group => GROUP_URN,
        }
    }
    fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }
    /// The attribute that must be present and unique.
    fn name_attr(self) -> &'static str {
        match self {
            Kind::User => "userName",
            Kind::Group => "displayName",
        }
    }
}

fn scim_json(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/scim+json"));
    resp
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut body = json!({"schemas": [ERROR_URN], "status": self.status.to_string(), "detail": self.detail});
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        scim_json(status, body)
    }
}

/// The stored resource `id` of `kind`, or SCIM's 404.
async fn resource(state: &ScimState, kind: Kind, id: &str) -> Result<crate::service::ScimResource, ScimError> {
    state.service.scim_resource(kind.name(), id).await.map_err(service_error)?.ok_or_else(|| not_found(kind.name()))
}

fn not_found(what: &str) -> ScimError {
    ScimError { status: 404, scim_type: None, detail: format!("{what} not found") }
}

fn service_error(e: crate::service::ServiceError) -> ScimError {
    match e {
        crate::service::ServiceError::Unavailable => {
            ScimError { status: 503, scim_type: None, detail: "the database is busy; try again".into() }
        }
        other => {
            tracing::error!(error = %other, "SCIM effect failed");
            ScimError { status: 500, scim_type: None, detail: "internal error".into() }
        }
    }
}

/// Whether `Authorization: Bearer ...` carries a configured token (compared
/// as SHA-256 hashes, in constant time).
fn authorized(state: &ScimState, headers: &HeaderMap) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    presented.is_some_and(|t| {
        let hash = crate::domain::token_digest(t.trim());
        state.token_hashes.iter().fold(false, |acc, h| acc | bool::from(h.ct_eq(&hash)))
    })
}

fn unauthorized() -> Response {
    let mut resp =
        ScimError { status: 401, scim_type: None, detail: "a valid bearer token is required".into() }.into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"jitbot SCIM\""));
    resp
}

/// Mounts `/scim/v2`.
pub fn router(state: ScimState) -> Router {
    Router::new()
        .route("/scim/v2/ServiceProviderConfig", get(service_provider_config))
        .route("/scim/v2/ResourceTypes", get(resource_types))
        .route("/scim/v2/ResourceTypes/{id}", get(resource_type))
        .route("/scim/v2/Schemas", get(schemas))
        .route("/scim/v2/Schemas/{id}", get(schema))
        .route("/scim/v2/Users", get(list_users).post(create_user))
        .route("/scim/v2/.search", axum::routing::post(search_all))
        .route("/scim/v2/Users/.search", axum::routing::post(search_users))
        .route("/scim/v2/Groups/.search", axum::routing::post(search_groups))
        .route("/scim/v2/Users/{id}", get(get_user).put(put_user).patch(patch_user).delete(delete_user))
        .route("/scim/v2/Groups", get(list_groups).post(create_group))
        .route("/scim/v2/Groups/{id}", get(get_group).put(put_group).patch(patch_group).delete(delete_group))
        .fallback(|| async { not_found("resource").into_response() })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(too_large_the_scim_way))
        .with_state(state)
}

/// The body limit's plain-text 413 as a SCIM error (RFC 7644 §3.12).
async fn too_large_the_scim_way(resp: Response) -> Response {
    if resp.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return resp;
    }
    ScimError {
        status: 413,
        scim_type: None,
        detail: format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
    }
    .into_response()
}

macro_rules! guarded {
    ($state:expr, $headers:expr, $body:expr) => {{
        if !authorized(&$state, &$headers) {
            return unauthorized();
        }
        match $body {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        }
    }};
}

async fn service_provider_config(State(state): State<ScimState>, headers: HeaderMap) -> Response {
    guarded!(state, headers, Ok::<_, ScimError>(scim_json(StatusCode::OK, spc(&state))))
}

fn spc(state: &ScimState) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/jitbot/jitbot#scim",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "The token configured as scim.token",
            "primary": true
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{}/ServiceProviderConfig", state.base())}
    })
}

fn resource_type_doc(state: &ScimState, kind: Kind) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": kind.name(),
        "name": kind.name(),
        "endpoint": format!("/{}", kind.endpoint()),
        "description": kind.name(),
        "schema": kind.urn(),
        "schemaExtensions": [],
        "meta": {"resourceType": "ResourceType", "location": format!("{}/ResourceTypes/{}", state.base(), kind.name())}
    })
}

fn list(resources: Vec<Value>, total: usize, start: usize) -> Value {
    json!({"schemas": [LIST_URN], "totalResults": total, "startIndex": start, "itemsPerPage": resources.len(), "Resources": resources})
}

async fn resource_types(State(state): State<ScimState>, headers: HeaderMap) -> Response {
    guarded!(state, headers, {
        let all = vec![resource_type_doc(&state, Kind::User), resource_type_doc(&state, Kind::Group)];
        Ok::<_, ScimError>(scim_json(StatusCode::OK, list(all, 2, 1)))
    })
}

async fn resource_type(State(state): State<ScimState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    guarded!(state, headers, {
        match id.as_str() {
            "User" => Ok(scim_json(StatusCode::OK, resource_type_doc(&state, Kind::User))),
            "Group" => Ok(scim_json(StatusCode::OK, resource_type_doc(&state, Kind::Group))),
            _ => Err(not_found("resource type")),
        }
    })
}

fn attr(name: &str, kind: &str, extra: Value) -> Value {
    let mut a = json!({
        "name": name, "type": kind, "multiValued": false, "required": false, "caseExact": false,
        "mutability": "readWrite", "returned": "default", "uniqueness": "none", "description": name
    });
    if let (Value::Object(a), Value::Object(extra)) = (&mut a, extra) {
        a.extend(extra);
    }
    a
}

fn schema_doc(state: &ScimState, kind: Kind) -> Value {
    let attributes = match kind {
        Kind::User => json!([
            attr("userName", "string", json!({"required": true, "uniqueness": "server"})),
            attr(
                "name",
                "complex",
                json!({"subAttributes": [
                    attr("formatted", "string", json!({})),
                    attr("familyName", "string", json!({})),
                    attr("givenName", "string", json!({})),
                ]})
            ),
            attr("displayName", "string", json!({})),
            attr(
                "emails",
                "complex",
                json!({"multiValued": true, "subAttributes": [
                    attr("value", "string", json!({})),
                    attr("type", "string", json!({"canonicalValues": ["work", "home", "other"]})),
                    attr("primary", "boolean", json!({})),
                ]})
            ),
            attr("active", "boolean", json!({})),
        ]),
        Kind::Group => json!([
            attr("displayName", "string", json!({"required": true, "uniqueness": "server"})),
            attr(
                "members",
                "complex",
                json!({"multiValued": true, "subAttributes": [
                    attr("value", "string", json!({"mutability": "immutable"})),
                    attr("display", "string", json!({"mutability": "immutable"})),
                    attr("type", "string", json!({"mutability": "immutable", "canonicalValues": ["User", "Group"]})),
                ]})
            ),
        ]),
    };
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": kind.urn(),
        "name": kind.name(),
        "description": kind.name(),
        "attributes": attributes,
        "meta": {"resourceType": "Schema", "location": format!("{}/Schemas/{}", state.base(), kind.urn())}
    })
}

async fn schemas(State(state): State<ScimState>, headers: HeaderMap) -> Response {
    guarded!(state, headers, {
        let all = vec![schema_doc(&state, Kind::User), schema_doc(&state, Kind::Group)];
        Ok::<_, ScimError>(scim_json(StatusCode::OK, list(all, 2, 1)))
    })
}

async fn schema(State(state): State<ScimState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    guarded!(state, headers, {
        if id == USER_URN {
            Ok(scim_json(StatusCode::OK, schema_doc(&state, Kind::User)))
        } else if id == GROUP_URN {
            Ok(scim_json(StatusCode::OK, schema_doc(&state, Kind::Group)))
        } else {
            Err(not_found("schema"))
        }
    })
}

fn new_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default()
}

/// The stored body plus `id`, `schemas` and `meta`.
fn render(state: &ScimState, kind: Kind, row: &ScimResource) -> Value {
    let mut body: Map<String, Value> = serde_json::from_str(&row.body).unwrap_or_default();
    body.insert("id".into(), json!(row.id));
    body.insert("schemas".into(), json!([kind.urn()]));
    body.insert(
        "meta".into(),
        json!({
            "resourceType": kind.name(),
            "created": rfc3339(row.created_at),
            "lastModified": rfc3339(row.updated_at),
            "location": format!("{}/{}/{}", state.base(), kind.endpoint(), row.id),
            "version": format!("W/\"{}\"", row.version),
        }),
    );
    Value::Object(body)
}

/// Applies `attributes` / `excludedAttributes` (top-level and one level of sub-attributes).
fn project(resource: Value, attributes: Option<&str>, excluded: Option<&str>, urn: &str) -> Value {
    let Value::Object(mut map) = resource else { return resource };
    let names = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|a| a.trim().strip_prefix(urn).and_then(|r| r.strip_prefix(':')).unwrap_or(a.trim()).to_owned())
            .filter(|a| !a.is_empty())
            .collect()
    };
    let always = ["id", "schemas", "meta"];
    if let Some(attrs) = attributes.map(names).filter(|a| !a.is_empty()) {
        let mut kept = Map::new();
        for (k, v) in map {
            if always.iter().any(|a| a.eq_ignore_ascii_case(&k)) {
                kept.insert(k, v);
                continue;
            }
            let wanted: Vec<&String> =
                attrs.iter().filter(|a| a.split('.').next().is_some_and(|top| top.eq_ignore_ascii_case(&k))).collect();
            if wanted.iter().any(|a| !a.contains('.')) {
                kept.insert(k, v);
            } else if !wanted.is_empty() {
                let subs: Vec<&str> = wanted.iter().filter_map(|a| a.split_once('.').map(|(_, s)| s)).collect();
                let keep_sub = |m: &Map<String, Value>| -> Value {
                    Value::Object(
                        m.iter()
                            .filter(|(sk, _)| subs.iter().any(|s| s.eq_ignore_ascii_case(sk)))
                            .map(|(a, b)| (a.clone(), b.clone()))
                            .collect(),
                    )
                };
                let projected = match &v {
                    Value::Object(m) => keep_sub(m),
                    Value::Array(items) => Value::Array(
                        items.iter().map(|i| if let Value::Object(m) = i { keep_sub(m) } else { i.clone() }).collect(),
                    ),
                    other => other.clone(),
                };
                kept.insert(k, projected);
            }
        }
        return Value::Object(kept);
    }
    if let Some(excluded) = excluded.map(names) {
        for e in excluded {
            if always.iter().any(|a| a.eq_ignore_ascii_case(&e)) {
                continue;
            }
            match e.split_once('.') {
                None => {
                    if let Some(k) = map.keys().find(|k| k.eq_ignore_ascii_case(&e)).cloned() {
                        map.remove(&k);
                    }
                }
                Some((top, sub)) => {
                    if let Some(k) = map.keys().find(|k| k.eq_ignore_ascii_case(top)).cloned() {
                        let strip = |m: &mut Map<String, Value>| {
                            if let Some(sk) = m.keys().find(|x| x.eq_ignore_ascii_case(sub)).cloned() {
                                m.remove(&sk);
                            }
                        };
                        match map.get_mut(&k) {
                            Some(Value::Object(m)) => strip(m),
                            Some(Value::Array(items)) => items.iter_mut().for_each(|i| {
                                if let Value::Object(m) = i {
                                    strip(m)
                                }
                            }),
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    Value::Object(map)
}

#[derive(serde::Deserialize)]
struct ListQuery {
    filter: Option<String>,
    #[serde(rename = "startIndex")]
    start_index: Option<i64>,
    count: Option<i64>,
    attributes: Option<String>,
    #[serde(rename = "excludedAttributes")]
    excluded_attributes: Option<String>,
}

#[derive(serde::Deserialize)]
struct ProjectionQuery {
    attributes: Option<String>,
    #[serde(rename = "excludedAttributes")]
    excluded_attributes: Option<String>,
}

/// An index-backed lookup that finds every candidate of a filter.
enum Lookup {
    /// Users by lower-cased `userName` (the unique `name_key` column).
    NameKey(String),
    /// Resources by `externalId` (case-exact, RFC 7643 §3.1).
    ExternalId(String),
}

/// The lookup that finds every resource `filter` can match, when the filter
/// is a conjunction containing `userName eq "..."` (users) or `externalId
/// eq "..."`: what IdPs send before every create. The filter still runs on
/// the candidates; anything else scans the kind.
fn indexed_lookup(kind: Kind, filter: &patch::Filter) -> Option<Lookup> {
    let [all] = filter.any_of.as_slice() else { return None };
    all.iter().find_map(|c| {
        let value = c.value.as_ref()?.as_str()?;
        if !c.op.eq_ignore_ascii_case("eq") {
            return None;
        }
        if kind == Kind::User && c.attr.eq_ignore_ascii_case("userName") {
            Some(Lookup::NameKey(value.trim().to_lowercase()))
        } else if c.attr.eq_ignore_ascii_case("externalId") {
            Some(Lookup::ExternalId(value.to_owned()))
        } else {
            None
        }
    })
}

async fn do_list(state: &ScimState, kinds: &[Kind], q: ListQuery) -> Result<Response, ScimError> {
    let filter = q.filter.as_deref().map(patch::parse_filter).transpose()?;
    let mut matching: Vec<(Kind, Value)> = Vec::new();
    for kind in kinds {
        let rows = match filter.as_ref().and_then(|f| indexed_lookup(*kind, f)) {
            Some(Lookup::NameKey(key)) => state.service.scim_resources(kind.name(), ScimLookup::NameKey(&key)).await,
            Some(Lookup::ExternalId(ext)) => {
                state.service.scim_resources(kind.name(), ScimLookup::ExternalId(&ext)).await
            }
            None => state.service.scim_resources(kind.name(), ScimLookup::All).await,
        }
        .map_err(service_error)?;
        matching.extend(
            rows.iter()
                .map(|r| (*kind, render(state, *kind, r)))
                .filter(|(_, r)| filter.as_ref().is_none_or(|f| f.matches(r))),
        );
    }
    let total = matching.len();
    let start = usize::try_from(q.start_index.unwrap_or(1).max(1)).unwrap_or(1);
    let count = usize::try_from(q.count.unwrap_or(MAX_RESULTS as i64).max(0)).unwrap_or(0).min(MAX_RESULTS);
    let page: Vec<Value> = matching
        .into_iter()
        .skip(start - 1)
        .take(count)
        .map(|(kind, r)| project(r, q.attributes.as_deref(), q.excluded_attributes.as_deref(), kind.urn()))
        .collect();
    Ok(scim_json(StatusCode::OK, list(page, total, start)))
}

async fn do_get(state: &ScimState, kind: Kind, id: &str, q: ProjectionQuery) -> Result<Response, ScimError> {
    let row = resource(state, kind, id).await?;
    let body =
        project(render(state, kind, &row), q.attributes.as_deref(), q.excluded_attributes.as_deref(), kind.urn());
    Ok(scim_json(StatusCode::OK, body))
}

/// Parses a resource body, dropping what the server owns.
fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ScimError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ScimError::bad("invalidSyntax", format!("not JSON: {e}")))?;
    let Value::Object(mut map) = v else {
        return Err(ScimError::bad("invalidSyntax", "the body must be a JSON object"));
    };
    for k in ["id", "meta", "schemas"] {
        map.remove(k);
    }
    normalize(&mut map);
    Ok(map)
}

/// Accepts the string booleans some IdPs send (`"active": "False"`).
fn normalize(map: &mut Map<String, Value>) {
    if let Some(k) = map.keys().find(|k| k.eq_ignore_ascii_case("active")).cloned()
        && let Some(Value::String(s)) = map.get(&k)
    {
        let b = s.eq_ignore_ascii_case("true");
        map.insert(k, Value::Bool(b));
    }
}

fn name_key(kind: Kind, map: &Map<String, Value>) -> Result<String, ScimError> {
    let name = map
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(kind.name_attr()))
        .and_then(|(_, v)| v.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ScimError::bad("invalidValue", format!("{} is required", kind.name_attr())))?;
    Ok(match kind {
        Kind::User => name.to_lowercase(),
        Kind::Group => name.to_owned(),
    })
}

fn external_id(map: &Map<String, Value>) -> Option<String> {
    map.iter().find(|(k, _)| k.eq_ignore_ascii_case("externalId")).and_then(|(_, v)| v.as_str()).map(str::to_owned)
}

async fn write(
    state: &ScimState,
    kind: Kind,
    id: &str,
    map: &Map<String, Value>,
    create: bool,
) -> Result<(), ScimError> {
    let key = name_key(kind, map)?;
    let ext = external_id(map);
    let body = Value::Object(map.clone()).to_string();
    let w = ScimResourceWrite { id, kind: kind.name(), name_key: &key, external_id: ext.as_deref(), body: &body };
    let now = state.clock.now();
    if create {
        match state.service.scim_create(w, now).await.map_err(service_error)? {
            ScimWriteOutcome::Conflict => Err(ScimError {
                status: 409,
                scim_type: Some("uniqueness"),
                detail: format!("a {} with this {} already exists", kind.name(), kind.name_attr()),
            }),
            _ => Ok(()),
        }
    } else {
        match state.service.scim_replace(w, now).await.map_err(service_error)? {
            ScimWriteOutcome::Written => Ok(()),
            ScimWriteOutcome::NotFound => Err(not_found(kind.name())),
            ScimWriteOutcome::Conflict => Err(ScimError {
                status: 409,
                scim_type: Some("uniqueness"),
                detail: format!("another {} has this {}", kind.name(), kind.name_attr()),
            }),
        }
    }
}

fn is_active(map: &Map<String, Value>) -> bool {
    !matches!(map.iter().find(|(k, _)| k.eq_ignore_ascii_case("active")).map(|(_, v)| v), Some(Value::Bool(false)))
}

fn member_ids(map: &Map<String, Value>) -> BTreeSet<String> {
    match map.iter().find(|(k, _)| k.eq_ignore_ascii_case("members")).map(|(_, v)| v) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|m| m.as_object())
            .filter_map(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case("value")).and_then(|(_, v)| v.as_str()))
            .map(str::to_owned)
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// The Slack users a SCIM user stands for.
async fn people(state: &ScimState, user: &Map<String, Value>) -> Result<Vec<SlackUser>, ScimError> {
    state.service.linked_users_of(&scim_person("", user)).await.map_err(service_error)
}

/// The IdP identity a SCIM user stands for: `externalId` as the subject,
/// `userName` and `emails` as emails.
fn scim_person(scim_id: &str, user: &Map<String, Value>) -> ScimPerson {
    let mut emails: Vec<String> = Vec::new();
    if let Some(u) = user.iter().find(|(k, _)| k.eq_ignore_ascii_case("userName")).and_then(|(_, v)| v.as_str()) {
        emails.push(u.to_owned());
    }
    if let Some(Value::Array(list)) = user.iter().find(|(k, _)| k.eq_ignore_ascii_case("emails")).map(|(_, v)| v) {
        emails.extend(list.iter().filter_map(|e| e.get("value").and_then(Value::as_str)).map(str::to_owned));
    }
    ScimPerson { scim_id: scim_id.to_owned(), subject: external_id(user), emails }
}

/// Ends everything the identity behind a SCIM user holds, found by the
/// identity stored on requests (not only through links, which `/jit
/// unlink` or a refused refresh may have removed already).
async fn deprovision(
    state: &ScimState,
    scim_id: &str,
    user: &Map<String, Value>,
    why: &str,
    now: Timestamp,
) -> Result<(), ScimError> {
    let person = scim_person(scim_id, user);
    let touched = state.service.deprovision(&person, why, now).await.map_err(service_error)?;
    tracing::info!(scim_id, touched, why, "SCIM deprovisioning");
    Ok(())
}

/// A SCIM user that is active (again) may link again.
async fn reactivated(
    state: &ScimState,
    scim_id: &str,
    user: &Map<String, Value>,
    now: Timestamp,
) -> Result<(), ScimError> {
    if state.service.scim_reactivated(&scim_person(scim_id, user), now).await.map_err(service_error)? {
        tracing::info!(scim_id, "SCIM reactivated an identity; it may link again");
    }
    Ok(())
}

/// Group members that were removed: their links lose the group. `groups`
/// are the names the group may have in the groups claim (see [`group_names`]).
async fn members_removed(
    state: &ScimState,
    groups: &BTreeSet<String>,
    removed: &BTreeSet<String>,
    now: Timestamp,
) -> Result<(), ScimError> {
    if removed.is_empty() || groups.is_empty() {
        return Ok(());
    }
    for id in removed {
        let Some(row) = state.service.scim_resource("User", id).await.map_err(service_error)? else { continue };
        let user: Map<String, Value> = serde_json::from_str(&row.body).unwrap_or_default();
        for person in people(state, &user).await? {
            state.service.remove_groups(&person, groups, now).await.map_err(service_error)?;
        }
    }
    Ok(())
}

/// The names a SCIM group may carry in the IdP's groups claim: its
/// `displayName` (Okta, Keycloak), its `externalId`, and its SCIM `id`
/// (Entra ID puts group object ids in the claim and sends the object id as
/// the SCIM `externalId`). A link loses whichever of them it holds.
fn group_names(scim_id: &str, map: &Map<String, Value>) -> BTreeSet<String> {
    let display = map
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("displayName"))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_owned);
    [display, external_id(map), Some(scim_id.to_owned())]
        .into_iter()
        .flatten()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect()
}

async fn created(state: &ScimState, kind: Kind, id: &str) -> Result<Response, ScimError> {
    let row = resource(state, kind, id).await?;
    let body = render(state, kind, &row);
    let mut resp = scim_json(StatusCode::CREATED, body.clone());
    if let Some(loc) = body["meta"]["location"].as_str().and_then(|l| HeaderValue::from_str(l).ok()) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

async fn create(state: &ScimState, kind: Kind, body: &[u8]) -> Result<Response, ScimError> {
    let map = parse_body(body)?;
    let id = new_id();
    write(state, kind, &id, &map, true).await?;
    if kind == Kind::User {
        if is_active(&map) {
            reactivated(state, &id, &map, state.clock.now()).await?;
        } else {
            deprovision(state, &id, &map, "deactivated at the identity provider", state.clock.now()).await?;
        }
    }
    created(state, kind, &id).await
}

/// Replaces (PUT) or patches (PATCH) a resource and applies the effects of
/// what changed.
async fn update(state: &ScimState, kind: Kind, id: &str, body: &[u8], is_patch: bool) -> Result<Response, ScimError> {
    let row = resource(state, kind, id).await?;
    let before: Map<String, Value> = serde_json::from_str(&row.body).unwrap_or_default();
    let after = if is_patch {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| ScimError::bad("invalidSyntax", format!("not JSON: {e}")))?;
        let schemas_ok = v["schemas"].as_array().is_some_and(|s| s.iter().any(|x| x == PATCH_URN));
        let ops = v.get("Operations").or_else(|| v.get("operations")).and_then(Value::as_array);
        let (true, Some(ops)) = (schemas_ok, ops) else {
            return Err(ScimError::bad(
                "invalidSyntax",
                format!("a PATCH body needs schemas [{PATCH_URN}] and Operations"),
            ));
        };
        let mut map = before.clone();
        for op in ops {
            let name = op.get("op").and_then(Value::as_str).unwrap_or("");
            let path = op.get("path").and_then(Value::as_str);
            patch::apply(&mut map, name, path, op.get("value").cloned(), kind.urn())?;
        }
        normalize(&mut map);
        map
    } else {
        parse_body(body)?
    };
    // Effects first, then the write: if the effects fail, the IdP's retry
    // still sees the change to make. Both are idempotent.
    let now = state.clock.now();
    match kind {
        Kind::User if !is_active(&after) => {
            deprovision(state, id, &after, "deactivated at the identity provider", now).await?;
        }
        Kind::User => reactivated(state, id, &after, now).await?,
        Kind::Group => {
            let removed: BTreeSet<String> = member_ids(&before).difference(&member_ids(&after)).cloned().collect();
            members_removed(state, &group_names(id, &before), &removed, now).await?;
        }
    }
    write(state, kind, id, &after, false).await?;
    let row = resource(state, kind, id).await?;
    Ok(scim_json(StatusCode::OK, render(state, kind, &row)))
}

async fn remove(state: &ScimState, kind: Kind, id: &str) -> Result<Response, ScimError> {
    let row = resource(state, kind, id).await?;
    let before: Map<String, Value> = serde_json::from_str(&row.body).unwrap_or_default();
    // Effects before the delete, so a failure leaves the resource for the IdP's retry.
    let now = state.clock.now();
    match kind {
        Kind::User => deprovision(state, id, &before, "deleted at the identity provider", now).await?,
        Kind::Group => members_removed(state, &group_names(id, &before), &member_ids(&before), now).await?,
    }
    if !state.service.scim_delete(kind.name(), id).await.map_err(service_error)? {
        return Err(not_found(kind.name()));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /.search` (RFC 7644 §3.4.3): the list query as a JSON body.
fn search_query(body: &[u8]) -> Result<ListQuery, ScimError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ScimError::bad("invalidSyntax", format!("not JSON: {e}")))?;
    let joined = |k: &str| -> Option<String> {
        match v.get(k) {
            Some(Value::Array(items)) => Some(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")),
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        }
    };
    Ok(ListQuery {
        filter: v.get("filter").and_then(Value::as_str).map(str::to_owned),
        start_index: v.get("startIndex").and_then(Value::as_i64),
        count: v.get("count").and_then(Value::as_i64),
        attributes: joined("attributes"),
        excluded_attributes: joined("excludedAttributes"),
    })
}

async fn search_users(State(s): State<ScimState>, headers: HeaderMap, body: Bytes) -> Response {
    guarded!(s, headers, async { do_list(&s, &[Kind::User], search_query(&body)?).await }.await)
}
async fn search_groups(State(s): State<ScimState>, headers: HeaderMap, body: Bytes) -> Response {
    guarded!(s, headers, async { do_list(&s, &[Kind::Group], search_query(&body)?).await }.await)
}

async fn search_all(State(s): State<ScimState>, headers: HeaderMap, body: Bytes) -> Response {
    guarded!(s, headers, async { do_list(&s, &[Kind::User, Kind::Group], search_query(&body)?).await }.await)
}

async fn list_users(State(s): State<ScimState>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    guarded!(s, headers, do_list(&s, &[Kind::User], q).await)
}
async fn list_groups(State(s): State<ScimState>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    guarded!(s, headers, do_list(&s, &[Kind::Group], q).await)
}
async fn get_user(
    State(s): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ProjectionQuery>,
) -> Response {
    guarded!(s, headers, do_get(&s, Kind::User, &id, q).await)
}
async fn get_group(
    State(s): State<ScimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ProjectionQuery>,
) -> Response {
    guarded!(s, headers, do_get(&s, Kind::Group, &id, q).await)
}
async fn create_user(State(s): State<ScimState>, headers: HeaderMap, body: Bytes) -> Response {
    guarded!(s, headers, create(&s, Kind::User, &body).await)
}
async fn create_group(State(s): State<ScimState>, headers: HeaderMap, body: Bytes) -> Response {
    guarded!(s, headers, create(&s, Kind::Group, &body).await)
}
async fn put_user(State(s): State<ScimState>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    guarded!(s, headers, update(&s, Kind::User, &id, &body, false).await)
}
async fn put_group(State(s): State<ScimState>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    guarded!(s, headers, update(&s, Kind::Group, &id, &body, false).await)
}
async fn patch_user(State(s): State<ScimState>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    guarded!(s, headers, update(&s, Kind::User, &id, &body, true).await)
}
async fn patch_group(State(s): State<ScimState>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    guarded!(s, headers, update(&s, Kind::Group, &id, &body, true).await)
}
async fn delete_user(State(s): State<ScimState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    guarded!(s, headers, remove(&s, Kind::User, &id).await)
}
async fn delete_group(State(s): State<ScimState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    guarded!(s, headers, remove(&s, Kind::Group, &id).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(kind: Kind, filter: &str) -> Option<String> {
        let f = patch::parse_filter(filter).unwrap();
        indexed_lookup(kind, &f).map(|l| match l {
            Lookup::NameKey(k) => format!("name_key={k}"),
            Lookup::ExternalId(e) => format!("external_id={e}"),
        })
    }

    #[test]
    fn the_filters_idps_send_before_a_create_are_answered_from_an_index() {
        assert_eq!(
            lookup(Kind::User, r#"userName eq "Alice@Example.com""#).as_deref(),
            Some("name_key=alice@example.com")
        );
        assert_eq!(lookup(Kind::User, r#"externalId eq "00u1AbC""#).as_deref(), Some("external_id=00u1AbC"));
        assert_eq!(lookup(Kind::Group, r#"externalId eq "0f6c""#).as_deref(), Some("external_id=0f6c"));
        assert_eq!(
            lookup(Kind::User, r#"active eq true and userName eq "bob@example.com""#).as_deref(),
            Some("name_key=bob@example.com")
        );
        // Anything else scans (and the filter decides).
        assert_eq!(lookup(Kind::Group, r#"userName eq "x""#), None);
        assert_eq!(lookup(Kind::User, r#"userName sw "a""#), None);
        assert_eq!(lookup(Kind::User, r#"userName eq "a" or userName eq "b""#), None);
    }
}

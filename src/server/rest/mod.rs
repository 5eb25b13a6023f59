//! The REST/JSON API on `http_addr`: every `Api` call under `/v1/` ([`routes::V1`]), and its
//! OpenAPI 3.1 document at `/v1/openapi.json` ([`openapi`]).
//!
//! A REST call is the gRPC call, run in this process: the gateway turns the path, the query
//! string and the JSON body into the request message (proto3's JSON mapping, through the
//! compiled descriptors), frames it as gRPC and hands it to the same `Api` service the gRPC
//! port serves, behind the same auth gate (`authorization: Bearer <secret>`). So validation,
//! roles, queue scopes, leader forwarding and audit are the gRPC ones, and nothing here can
//! drift from them. The reply message becomes JSON; a gRPC status becomes its HTTP status
//! (Google's mapping) with a JSON body naming the field.
//!
//! JSON: field names as in the proto (`snake_case`; lowerCamelCase is accepted too), every
//! field present in replies (zeros included), 64-bit integers as JSON numbers (strings are
//! accepted), `bytes` fields as base64, unknown fields refused.

pub mod openapi;
pub mod routes;

use std::convert::Infallible;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage, MethodDescriptor, SerializeOptions};
use serde_json::{json, Map, Value};
use tonic::Code;
use tower::ServiceExt;

use crate::machine::limits;
use crate::proto::pb::api_server::ApiServer;
use crate::server::api::ApiService;
use crate::server::auth::Authed;

/// The `Api` service behind its auth gate: what the gRPC port serves, called in process.
pub type ApiCall = Authed<ApiServer<ApiService>>;

/// The gRPC service name the REST paths call.
const SERVICE: &str = "raftline.v1.Api";

/// A refusal before the call runs: an HTTP status with the JSON error body.
type Refusal = (StatusCode, Value);

/// Serves one `/v1/...` request.
pub async fn handle(
    api: ApiCall,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let matched = match routes::find(routes::V1, method.as_str(), uri.path()) {
        routes::Match::Found(m) => m,
        routes::Match::WrongMethod(allowed) => {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                &format!(
                    "{} {}: this path takes {}",
                    method,
                    uri.path(),
                    allowed.join(", ")
                ),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                r.headers_mut().insert(axum::http::header::ALLOW, v);
            }
            return r;
        }
        routes::Match::NotFound => {
            return error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("no path {} (the paths are in /v1/openapi.json)", uri.path()),
            )
            .into_response()
        }
    };
    let rpc = rpc(matched.route.rpc);
    let request = match request_message(&rpc, &matched, uri.query(), &headers, &body) {
        Ok(m) => m,
        Err((status, body)) => return (status, axum::Json(body)).into_response(),
    };
    call(api, &rpc, request, &headers).await
}

/// The descriptor of `name`, an `Api` method (the route table's test checks every name).
fn rpc(name: &str) -> MethodDescriptor {
    crate::proto::descriptor_pool()
        .get_service_by_name(SERVICE)
        .and_then(|s| s.methods().find(|m| m.name() == name))
        .expect("every route names an Api method")
}

/// The request message from the body, the query string and the path's `{field}` segments.
fn request_message(
    rpc: &MethodDescriptor,
    matched: &routes::Matched,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<DynamicMessage, Refusal> {
    let takes_body = matches!(matched.route.method, "POST" | "PUT");
    let mut fields = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else if !takes_body {
        return Err(invalid(
            "body",
            &format!(
                "{} takes its fields from the path and query string, not a body",
                matched.route.method
            ),
        ));
    } else {
        json_body(headers, body)?
    };
    let input = rpc.input();
    for (name, value) in &matched.params {
        put(&input, &mut fields, name, value, "path")?;
    }
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        put(&input, &mut fields, &name, &value, "query string")?;
    }
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(Value::Object(fields), &mut track);
    DynamicMessage::deserialize_with_options(input, de, &DeserializeOptions::new()).map_err(|e| {
        let path = track.path().to_string();
        let field = if path == "?" || path.is_empty() {
            "body".to_string()
        } else {
            path
        };
        invalid(&field, &e.to_string())
    })
}

/// The JSON object of a POST or PUT body.
fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, Refusal> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if !content_type.starts_with("application/json") {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error_body(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "INVALID_ARGUMENT",
                &format!("content-type: {content_type:?}; send application/json"),
                Some("content-type"),
            ),
        ));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| invalid("body", &format!("not JSON: {e}")))?;
    if depth(&value) > limits::REST_JSON_DEPTH_MAX {
        return Err(invalid(
            "body",
            &format!(
                "nests deeper than {} levels (REST_JSON_DEPTH_MAX)",
                limits::REST_JSON_DEPTH_MAX
            ),
        ));
    }
    match value {
        Value::Object(map) => Ok(map),
        other => Err(invalid(
            "body",
            &format!("a JSON object is needed, not {}", kind_of(&other)),
        )),
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Puts a path or query value at the (dotted) field `name`: a list field gathers repeated
/// values, a bool field takes `true`/`false`, numbers stay strings (proto3's JSON mapping reads
/// them). A value the body also gives differently is refused.
fn put(
    input: &prost_reflect::MessageDescriptor,
    fields: &mut Map<String, Value>,
    name: &str,
    raw: &str,
    from: &str,
) -> Result<(), Refusal> {
    let mut desc = input.clone();
    let mut map = fields;
    let parts: Vec<&str> = name.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let Some(field) = desc
            .get_field_by_name(part)
            .or_else(|| desc.get_field_by_json_name(part))
        else {
            let known: Vec<String> = desc.fields().map(|f| f.name().to_string()).collect();
            return Err(invalid(
                name,
                &format!("no such field in the {from} (fields: {})", known.join(", ")),
            ));
        };
        let key = field.name().to_string();
        if i + 1 < parts.len() {
            let prost_reflect::Kind::Message(inner) = field.kind() else {
                return Err(invalid(name, &format!("{part} has no fields")));
            };
            desc = inner;
            let slot = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(inner_map) = slot else {
                return Err(invalid(name, &format!("{part} must be an object")));
            };
            map = inner_map;
            continue;
        }
        let value = match field.kind() {
            prost_reflect::Kind::Bool => match raw {
                "true" | "1" | "" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => return Err(invalid(name, &format!("{raw:?} is not true or false"))),
            },
            prost_reflect::Kind::Message(_) => {
                return Err(invalid(
                    name,
                    &format!("a message field is given in the body, not the {from}"),
                ))
            }
            _ => Value::String(raw.to_string()),
        };
        if field.is_list() {
            match map.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
                Value::Array(items) => items.push(value),
                _ => return Err(invalid(name, "must be a list")),
            }
        } else if let Some(old) = map.get(&key).filter(|old| !same(old, &value)) {
            return Err(invalid(
                name,
                &format!("is {raw:?} in the {from} but {old} in the body"),
            ));
        } else {
            map.insert(key, value);
        }
    }
    Ok(())
}

/// Whether a body value equals a path or query value (given as a string).
fn same(old: &Value, new: &Value) -> bool {
    match (old, new) {
        (Value::Number(n), Value::String(s)) => n.to_string() == *s,
        _ => old == new,
    }
}

/// Runs the call on the in-process service and turns its reply into JSON.
async fn call(
    api: ApiCall,
    rpc: &MethodDescriptor,
    message: DynamicMessage,
    headers: &HeaderMap,
) -> Response {
    let mut framed = Vec::with_capacity(message.encoded_len() + 5);
    framed.push(0);
    framed.extend_from_slice(
        &u32::try_from(message.encoded_len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    message.encode(&mut framed).expect("a Vec grows");
    let mut request = http::Request::new(http_body_util::Full::new(Bytes::from(framed)));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = format!("/{SERVICE}/{}", rpc.name())
        .parse()
        .expect("a path");
    let h = request.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.insert("te", HeaderValue::from_static("trailers"));
    if let Some(auth) = headers.get(axum::http::header::AUTHORIZATION) {
        h.insert(axum::http::header::AUTHORIZATION, auth.clone());
    }
    let reply = match api.oneshot(request).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    if let Some(status) = tonic::Status::from_header_map(reply.headers()) {
        if status.code() != Code::Ok {
            return status_response(&status);
        }
    }
    let output = rpc.output();
    if rpc.is_server_streaming() {
        return stream_response(reply.into_body(), output);
    }
    let collected = match reply.into_body().collect().await {
        Ok(c) => c,
        Err(status) => return status_response(&status),
    };
    if let Some(status) = collected
        .trailers()
        .and_then(tonic::Status::from_header_map)
    {
        if status.code() != Code::Ok {
            return status_response(&status);
        }
    }
    let bytes = collected.to_bytes();
    let mut frames = Frames::default();
    frames.buf.extend_from_slice(&bytes);
    match frames.next_message() {
        Some(body) => match to_json(&output, &body) {
            Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
            Err(e) => internal(&e),
        },
        None => internal("the reply carried no message"),
    }
}

/// A server-streaming reply as JSON lines, one per message, as they come; an error after the
/// first message ends the stream with a line `{"error": ...}`.
fn stream_response(body: tonic::body::Body, output: prost_reflect::MessageDescriptor) -> Response {
    let lines = futures::stream::unfold(
        (body, Frames::default(), false),
        move |(mut body, mut frames, done)| {
            let output = output.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    if let Some(message) = frames.next_message() {
                        let line = match to_json(&output, &message) {
                            Ok(v) => format!("{v}\n"),
                            Err(e) => format!("{}\n", json!({"error": {"message": e}})),
                        };
                        return Some((Ok::<_, Infallible>(line), (body, frames, false)));
                    }
                    match body.frame().await {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => frames.buf.extend_from_slice(&data),
                            Err(frame) => {
                                let status = frame
                                    .trailers_ref()
                                    .and_then(tonic::Status::from_header_map);
                                let line = status
                                    .filter(|s| s.code() != Code::Ok)
                                    .map(|s| format!("{}\n", status_json(&s)));
                                return line.map(|l| (Ok(l), (body, frames, true)));
                            }
                        },
                        Some(Err(status)) => {
                            let line = format!("{}\n", status_json(&status));
                            return Some((Ok(line), (body, frames, true)));
                        }
                        None => return None,
                    }
                }
            }
        },
    );
    let mut response = axum::body::Body::from_stream(lines).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// gRPC length-prefixed messages, read from a growing buffer.
#[derive(Default)]
struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    /// The next whole message, if the buffer holds one.
    fn next_message(&mut self) -> Option<Vec<u8>> {
        let header: [u8; 5] = self.buf.get(..5)?.try_into().ok()?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if self.buf.len() < 5 + len {
            return None;
        }
        let message = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Some(message)
    }
}

/// A reply message as JSON.
fn to_json(output: &prost_reflect::MessageDescriptor, bytes: &[u8]) -> Result<Value, String> {
    let message = DynamicMessage::decode(output.clone(), bytes)
        .map_err(|e| format!("the reply did not decode: {e}"))?;
    let options = SerializeOptions::new()
        .stringify_64_bit_integers(false)
        .skip_default_fields(false)
        .use_proto_field_name(true);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| format!("the reply did not encode as JSON: {e}"))
}

/// The HTTP status for a gRPC code (Google's mapping, as grpc-gateway and Cloud APIs use).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).expect("499"),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The gRPC code's name as the error body's `status` (`INVALID_ARGUMENT`).
pub(crate) fn code_name(code: Code) -> String {
    format!("{code:?}")
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let sep = (i > 0 && c.is_ascii_uppercase()).then_some('_');
            sep.into_iter()
                .chain(std::iter::once(c.to_ascii_uppercase()))
        })
        .collect()
}

/// The field a message names: our errors start `field: what is wrong`.
fn field_of(message: &str) -> Option<&str> {
    let (head, _) = message.split_once(": ")?;
    let ok = !head.is_empty()
        && head
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.[]-".contains(c));
    ok.then_some(head)
}

fn error_body(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Value {
    json!({"error": {
        "code": status.as_u16(),
        "status": code,
        "message": message,
        "field": field,
    }})
}

fn status_json(status: &tonic::Status) -> Value {
    let http = http_status(status.code());
    error_body(
        http,
        &code_name(status.code()),
        status.message(),
        field_of(status.message()),
    )
}

fn status_response(status: &tonic::Status) -> Response {
    let mut response =
        (http_status(status.code()), axum::Json(status_json(status))).into_response();
    for key in ["raftline-leader", "raftline-not-member"] {
        if let Some(v) = status.metadata().get(key) {
            if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                response.headers_mut().insert(key, v);
            }
        }
    }
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> (StatusCode, axum::Json<Value>) {
    (status, axum::Json(error_body(status, code, message, None)))
}

fn invalid(field: &str, what: &str) -> Refusal {
    let message = crate::error::bounded(format!("{field}: {what}"));
    let status = StatusCode::BAD_REQUEST;
    (
        status,
        error_body(status, "INVALID_ARGUMENT", &message, Some(field)),
    )
}

fn internal(what: &str) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", what).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_fields_read_as_users_expect() {
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(
            field_of("jobs[2].priority: above 10"),
            Some("jobs[2].priority")
        );
        assert_eq!(field_of("no leader is known yet: retry"), None);
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[test]
    fn query_and_path_values_fill_the_message_and_clashes_are_refused() {
        let rpc = rpc("ListJobs");
        let matched = match routes::find(routes::V1, "GET", "/v1/jobs") {
            routes::Match::Found(m) => m,
            _ => panic!("route"),
        };
        let empty = Bytes::new();
        let m = request_message(
            &rpc,
            &matched,
            Some("queue=q&limit=5&stale=true"),
            &HeaderMap::new(),
            &empty,
        )
        .expect("valid");
        assert_eq!(m.get_field_by_name("limit").unwrap().as_u32(), Some(5));
        assert_eq!(m.get_field_by_name("stale").unwrap().as_bool(), Some(true));
        let (code, body) =
            request_message(&rpc, &matched, Some("limit=x"), &HeaderMap::new(), &empty)
                .expect_err("bad number");
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["field"], "limit", "{body}");
        let (_, body) = request_message(&rpc, &matched, Some("nope=1"), &HeaderMap::new(), &empty)
            .expect_err("unknown");
        assert_eq!(body["error"]["field"], "nope", "{body}");

        let rpc = super::rpc("CancelJob");
        let matched = match routes::find(routes::V1, "POST", "/v1/jobs/7/cancel") {
            routes::Match::Found(m) => m,
            _ => panic!("route"),
        };
        let clash = Bytes::from_static(br#"{"id": 8}"#);
        let (_, body) =
            request_message(&rpc, &matched, None, &HeaderMap::new(), &clash).expect_err("clash");
        assert_eq!(body["error"]["field"], "id", "{body}");
        let agree = Bytes::from_static(br#"{"id": 7}"#);
        let m = request_message(&rpc, &matched, None, &HeaderMap::new(), &agree).expect("same id");
        assert_eq!(m.get_field_by_name("id").unwrap().as_u64(), Some(7));
        let deep = Bytes::from(format!("{}{}", "[".repeat(40), "]".repeat(40)));
        let (_, body) =
            request_message(&rpc, &matched, None, &HeaderMap::new(), &deep).expect_err("deep");
        assert_eq!(body["error"]["field"], "body", "{body}");
    }
}

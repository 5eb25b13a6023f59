//! The OpenAPI 3.1 document of the REST API, generated from the code: the paths from
//! [`super::routes::V1`], the schemas and descriptions from the compiled proto descriptors
//! (their comments included). Served at `/v1/openapi.json`, printed by `raftline openapi`, and
//! committed as `docs/openapi.json`, which a test compares with this output.

use std::collections::HashMap;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{json, Map, Value};

use super::routes::{Route, V1};

/// The document, as JSON (keys sorted, so the output is stable).
pub fn document() -> Value {
    let pool = crate::proto::descriptor_pool();
    let file = pool
        .get_file_by_name(crate::proto::API_FILE)
        .expect("api.proto is in the descriptor set");
    let comments = Comments::of(file.file_descriptor_proto());
    let api = pool.get_service_by_name(super::SERVICE).expect("Api");
    let mut paths = Map::new();
    for route in V1 {
        let method = api
            .methods()
            .find(|m| m.name() == route.rpc)
            .expect("every route names an Api method");
        let op = operation(route, &method, &comments);
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[route.method.to_ascii_lowercase()] = op;
    }
    let mut schemas = Map::new();
    for message in file.messages() {
        add_schemas(&message, &comments, &mut schemas);
    }
    schemas.insert("Error".into(), error_schema());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "raftline REST API",
            "version": "v1",
            "description": "Every gRPC call of raftline.v1.Api as JSON over HTTP, on each node's \
                http_addr. Any node serves every call (writes are forwarded to the leader). \
                Field names as in the proto; 64-bit integers are JSON numbers (strings are \
                accepted); bytes fields are base64. Errors carry the gRPC status mapped to an \
                HTTP status and a JSON body naming the field.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token's secret (`raftline token create`), when the \
                        cluster runs with auth on.",
                },
            },
        },
    })
}

/// The document as the committed file holds it: pretty JSON and a final newline.
pub fn text() -> String {
    let mut s = serde_json::to_string_pretty(&document()).expect("JSON");
    s.push('\n');
    s
}

fn operation(
    route: &Route,
    method: &prost_reflect::MethodDescriptor,
    comments: &Comments,
) -> Value {
    let input = method.input();
    let mut parameters = Vec::new();
    let path_fields: Vec<&str> = route
        .path
        .split('/')
        .filter_map(|p| p.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
        .collect();
    for name in &path_fields {
        let field = nested_field(&input, name);
        parameters.push(json!({
            "name": name,
            "in": "path",
            "required": true,
            "schema": field_schema(&field),
        }));
    }
    let takes_body = matches!(route.method, "POST" | "PUT");
    if !takes_body {
        for field in input.fields() {
            if path_fields.contains(&field.name()) || matches!(field.kind(), Kind::Message(_)) {
                continue;
            }
            let mut p = json!({
                "name": field.name(),
                "in": "query",
                "required": false,
                "schema": field_schema(&field),
            });
            if let Some(d) = comments.get(field.path()) {
                p["description"] = d.into();
            }
            parameters.push(p);
        }
    }
    let reply = if method.is_server_streaming() {
        // JSON lines: each line is one message (OpenAPI 3.1 has no item schema; 3.2 will).
        json!({"application/x-ndjson": {"schema": schema_ref(&method.output())}})
    } else {
        json!({"application/json": {"schema": schema_ref(&method.output())}})
    };
    let tag = route.path.split('/').nth(2).unwrap_or("v1");
    let mut op = json!({
        "operationId": operation_id(route),
        "summary": route.summary,
        "tags": [tag],
        "parameters": parameters,
        "responses": {
            "200": {"description": format!("The {} reply.", method.output().name()), "content": reply},
            "default": {
                "description": "An error: the gRPC status mapped to HTTP (400 INVALID_ARGUMENT \
                    and FAILED_PRECONDITION, 401, 403, 404, 409, 429 RESOURCE_EXHAUSTED, 503 \
                    UNAVAILABLE, ...).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    });
    let mut description = format!("gRPC: `raftline.v1.Api/{}`.", method.name());
    if let Some(d) = comments.get(method.path()) {
        description = format!("{d}\n\n{description}");
    }
    op["description"] = description.into();
    if takes_body {
        op["requestBody"] = json!({
            "required": false,
            "content": {"application/json": {"schema": schema_ref(&input)}},
        });
    }
    op
}

/// A unique id per route: the RPC's name, with the path's last literal where two routes share
/// an RPC.
fn operation_id(route: &Route) -> String {
    let shared = V1.iter().filter(|r| r.rpc == route.rpc).count() > 1;
    let first = V1
        .iter()
        .position(|r| r.rpc == route.rpc && r.path == route.path);
    let is_first = first == V1.iter().position(|r| r.rpc == route.rpc);
    if shared && !is_first {
        let last = route
            .path
            .split('/')
            .rfind(|p| !p.starts_with('{'))
            .unwrap_or("alt");
        let by: String = last
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        format!("{}{by}", route.rpc)
    } else {
        route.rpc.to_string()
    }
}

/// The field at a dotted path from `message`.
fn nested_field(message: &MessageDescriptor, name: &str) -> FieldDescriptor {
    let mut desc = message.clone();
    let mut parts = name.split('.').peekable();
    loop {
        let part = parts.next().expect("a field name");
        let field = desc
            .get_field_by_name(part)
            .unwrap_or_else(|| panic!("{} has no field {part}", desc.name()));
        if parts.peek().is_none() {
            return field;
        }
        let Kind::Message(inner) = field.kind() else {
            panic!("{part} is not a message");
        };
        desc = inner;
    }
}

fn schema_ref(message: &MessageDescriptor) -> Value {
    json!({"$ref": format!("#/components/schemas/{}", message.name())})
}

fn add_schemas(message: &MessageDescriptor, comments: &Comments, schemas: &mut Map<String, Value>) {
    if message.is_map_entry() {
        return;
    }
    let mut properties = Map::new();
    for field in message.fields() {
        let mut schema = field_schema(&field);
        if let Some(d) = comments.get(field.path()) {
            schema = json!({"allOf": [schema], "description": d});
        }
        properties.insert(field.name().to_string(), schema);
    }
    let mut schema = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    if let Some(d) = comments.get(message.path()) {
        schema["description"] = d.into();
    }
    schemas.insert(message.name().to_string(), schema);
    for inner in message.child_messages() {
        add_schemas(&inner, comments, schemas);
    }
}

fn field_schema(field: &FieldDescriptor) -> Value {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            unreachable!("a map field's kind is its entry message");
        };
        return json!({
            "type": "object",
            "additionalProperties": kind_schema(&entry.map_entry_value_field().kind()),
        });
    }
    let one = kind_schema(&field.kind());
    if field.is_list() {
        json!({"type": "array", "items": one})
    } else {
        one
    }
}

fn kind_schema(kind: &Kind) -> Value {
    match kind {
        Kind::Double | Kind::Float => json!({"type": "number"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => {
            json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({"type": ["integer", "string"], "format": "int64"})
        }
        Kind::Uint64 | Kind::Fixed64 => json!({"type": ["integer", "string"], "minimum": 0}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::String => json!({"type": "string"}),
        Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Kind::Message(m) => schema_ref(m),
        Kind::Enum(e) => {
            json!({"type": "string", "enum": e.values().map(|v| v.name().to_string()).collect::<Vec<_>>()})
        }
    }
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "Every error reply.",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "integer", "description": "The HTTP status."},
                    "status": {"type": "string", "description": "The gRPC status code's name, e.g. INVALID_ARGUMENT."},
                    "message": {"type": "string", "description": "What is wrong; starts with the field when one is at fault."},
                    "field": {"type": ["string", "null"], "description": "The field at fault (e.g. `jobs[2].priority`), when one is."},
                },
                "required": ["code", "status", "message", "field"],
            },
        },
        "required": ["error"],
    })
}

/// Leading comments of the proto file, by descriptor path.
struct Comments(HashMap<Vec<i32>, String>);

impl Comments {
    fn of(file: &prost_types::FileDescriptorProto) -> Comments {
        let mut map = HashMap::new();
        for location in file.source_code_info.iter().flat_map(|s| s.location.iter()) {
            let text = location.leading_comments();
            if text.trim().is_empty() {
                continue;
            }
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            map.insert(location.path.clone(), lines.join(" "));
        }
        Comments(map)
    }

    fn get(&self, path: &[i32]) -> Option<&str> {
        self.0.get(path).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is what the code generates. After changing a route or the proto:
    /// `cargo run -q -- openapi > docs/openapi.json` (or run this test with RAFTLINE_BLESS=1).
    #[test]
    fn committed_document_matches_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
        let generated = text();
        if std::env::var_os("RAFTLINE_BLESS").is_some() {
            std::fs::write(&path, &generated).expect("write docs/openapi.json");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from the code: run `cargo run -q -- openapi > \
             docs/openapi.json` and commit it"
        );
    }

    #[test]
    fn every_route_has_an_operation_with_a_unique_id() {
        let doc = document();
        let mut ids = std::collections::HashSet::new();
        for route in V1 {
            let op = &doc["paths"][route.path][route.method.to_ascii_lowercase()];
            let id = op["operationId"].as_str().expect("operationId").to_string();
            assert!(ids.insert(id.clone()), "operationId {id} twice");
        }
        assert!(doc["components"]["schemas"]["SubmitRequest"]["properties"]["queue"].is_object());
    }
}

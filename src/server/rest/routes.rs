//! The REST paths: one row per path, naming the gRPC call it is. The gateway, the OpenAPI
//! document and the test that walks every path read this one table; a gRPC call without a
//! row fails `every_api_method_has_a_path`.
//!
//! Shape: nouns under `/v1/`, `{field}` segments fill the request's field of that name (a
//! dotted name fills a nested field), actions on a thing are `POST .../{id}/verb` (like
//! GitHub's and Stripe's APIs). GET and DELETE take the request's other fields from the query
//! string; POST and PUT from a JSON body. A later `/v2/` gets its own table beside this one.

/// One REST path.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method: GET, POST, PUT or DELETE.
    pub method: &'static str,
    /// Path template under the API root, with `{field}` segments.
    pub path: &'static str,
    /// The `Api` call it runs.
    pub rpc: &'static str,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
}

const fn r(
    method: &'static str,
    path: &'static str,
    rpc: &'static str,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        rpc,
        summary,
    }
}

/// Every REST path of version 1.
pub const V1: &[Route] = &[
    r("POST", "/v1/jobs", "Submit", "Submit a job"),
    r(
        "POST",
        "/v1/jobs/batch",
        "SubmitBatch",
        "Submit up to 1,000 jobs at once",
    ),
    r("GET", "/v1/jobs", "ListJobs", "List jobs"),
    r("GET", "/v1/jobs/{id}", "GetJob", "Get a job"),
    r("POST", "/v1/jobs/{id}/cancel", "CancelJob", "Cancel a job"),
    r("POST", "/v1/jobs/{id}/retry", "RetryJob", "Run a job again"),
    r(
        "POST",
        "/v1/jobs/bulk",
        "BulkJobs",
        "Retry or cancel every job a filter keeps",
    ),
    r("GET", "/v1/queues", "ListQueues", "List queues"),
    r("GET", "/v1/queues/{queue}", "GetQueue", "Get a queue"),
    r(
        "POST",
        "/v1/queues/{queue}/pause",
        "PauseQueue",
        "Pause a queue",
    ),
    r(
        "POST",
        "/v1/queues/{queue}/resume",
        "ResumeQueue",
        "Resume a queue",
    ),
    r(
        "PUT",
        "/v1/queues/{queue}/policy",
        "SetQueuePolicy",
        "Set a queue's rate limit, concurrency and breaker",
    ),
    r("POST", "/v1/dead/purge", "PurgeDead", "Remove dead jobs"),
    r(
        "POST",
        "/v1/worker/lease",
        "Lease",
        "Lease ready jobs (long-poll)",
    ),
    r(
        "POST",
        "/v1/worker/heartbeat",
        "Heartbeat",
        "Extend a worker's leases",
    ),
    r("POST", "/v1/worker/complete", "Complete", "End an attempt"),
    r(
        "POST",
        "/v1/worker/complete-and-lease",
        "CompleteAndLease",
        "End attempts and lease the next jobs",
    ),
    r(
        "POST",
        "/v1/worker/checkpoint",
        "Checkpoint",
        "Store a job's progress",
    ),
    r(
        "POST",
        "/v1/worker/release",
        "Release",
        "Hand a leased job back",
    ),
    r(
        "POST",
        "/v1/workflows",
        "SubmitWorkflow",
        "Submit a workflow (a DAG of steps)",
    ),
    r("GET", "/v1/workflows", "ListWorkflows", "List workflows"),
    r("GET", "/v1/workflows/{id}", "GetWorkflow", "Get a workflow"),
    r(
        "POST",
        "/v1/workflows/{id}/control",
        "ControlWorkflow",
        "Cancel, pause, resume, retry or skip",
    ),
    r(
        "GET",
        "/v1/resources",
        "ListResources",
        "List resources and their holders",
    ),
    r(
        "PUT",
        "/v1/resources/{name}",
        "SetResource",
        "Create a resource or set its capacity",
    ),
    r(
        "POST",
        "/v1/locks/{resource}/acquire",
        "AcquireLock",
        "Acquire a lock (a fencing token)",
    ),
    r(
        "POST",
        "/v1/locks/{resource}/renew",
        "RenewLock",
        "Renew a lock",
    ),
    r(
        "POST",
        "/v1/locks/{resource}/release",
        "ReleaseLock",
        "Release a lock",
    ),
    r(
        "POST",
        "/v1/schedules",
        "CreateSchedule",
        "Create a cron schedule",
    ),
    r("GET", "/v1/schedules", "ListSchedules", "List schedules"),
    r(
        "GET",
        "/v1/schedules/{id}",
        "GetSchedule",
        "Get a schedule by id",
    ),
    r(
        "GET",
        "/v1/schedules/by-name/{name}",
        "GetSchedule",
        "Get a schedule by name",
    ),
    r(
        "POST",
        "/v1/schedules/{schedule.id}/control",
        "ControlSchedule",
        "Pause, resume, trigger, delete or backfill",
    ),
    r("POST", "/v1/events", "Emit", "Emit an event"),
    r(
        "POST",
        "/v1/triggers",
        "CreateTrigger",
        "Subscribe a job to an event topic",
    ),
    r("GET", "/v1/triggers", "ListTriggers", "List triggers"),
    r(
        "DELETE",
        "/v1/triggers/{id}",
        "DeleteTrigger",
        "Delete a trigger",
    ),
    r(
        "POST",
        "/v1/timers",
        "CreateTimer",
        "Create a durable timer",
    ),
    r("GET", "/v1/timers", "ListTimers", "List timers"),
    r("DELETE", "/v1/timers/{id}", "CancelTimer", "Cancel a timer"),
    r(
        "GET",
        "/v1/cluster/status",
        "NodeStatus",
        "This node's view of the cluster",
    ),
    r(
        "POST",
        "/v1/cluster/membership",
        "ChangeMembership",
        "Add, remove, promote or demote a node",
    ),
    r("POST", "/v1/tokens", "CreateToken", "Create an API token"),
    r("GET", "/v1/tokens", "ListTokens", "List API tokens"),
    r(
        "DELETE",
        "/v1/tokens/{id}",
        "RevokeToken",
        "Revoke an API token",
    ),
    r(
        "GET",
        "/v1/audit",
        "ListAudit",
        "The last writes made through the API",
    ),
    r(
        "GET",
        "/v1/snapshot",
        "SaveSnapshot",
        "A backup, as JSON lines of snapshot chunks",
    ),
    r("POST", "/v1/webhooks", "CreateWebhook", "Create a webhook"),
    r("GET", "/v1/webhooks", "ListWebhooks", "List webhooks"),
    r(
        "DELETE",
        "/v1/webhooks/{id}",
        "DeleteWebhook",
        "Delete a webhook",
    ),
    r(
        "POST",
        "/v1/webhooks/{id}/test",
        "TestWebhook",
        "Send a webhook.test delivery",
    ),
    r(
        "GET",
        "/v1/webhooks/{id}/deliveries",
        "ListWebhookDeliveries",
        "A webhook's deliveries",
    ),
    r("GET", "/v1/cursors/{name}", "GetCursor", "A cursor's value"),
    r(
        "PUT",
        "/v1/cursors/{name}",
        "PutCursor",
        "Put a cursor's value (empty deletes it)",
    ),
];

/// A matched route and the path's `{field}` values.
pub struct Matched {
    /// The route.
    pub route: Route,
    /// (field name, raw value) for each `{field}` segment.
    pub params: Vec<(&'static str, String)>,
}

/// What a path and method match.
pub enum Match {
    /// A route.
    Found(Matched),
    /// The path exists with other methods (405 with `Allow`).
    WrongMethod(Vec<&'static str>),
    /// No such path.
    NotFound,
}

/// Matches `method` and `path` against `routes`. A literal segment beats a `{field}` one, so
/// `/v1/jobs/batch` is not job "batch".
pub fn find(routes: &[Route], method: &str, path: &str) -> Match {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut best: Option<(usize, Matched)> = None;
    let mut methods = Vec::new();
    for route in routes {
        let Some((literals, params)) = matches(route.path, &segments) else {
            continue;
        };
        if route.method != method {
            methods.push(route.method);
            continue;
        }
        if best.as_ref().is_none_or(|(l, _)| literals > *l) {
            best = Some((
                literals,
                Matched {
                    route: *route,
                    params,
                },
            ));
        }
    }
    match best {
        Some((_, m)) => Match::Found(m),
        None if !methods.is_empty() => Match::WrongMethod(methods),
        None => Match::NotFound,
    }
}

/// The count of literal segments matched and the `{field}` values, if `template` matches.
fn matches(
    template: &'static str,
    segments: &[&str],
) -> Option<(usize, Vec<(&'static str, String)>)> {
    let parts: Vec<&'static str> = template.split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut literals = 0;
    let mut params = Vec::new();
    for (part, seg) in parts.iter().zip(segments) {
        if let Some(field) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if seg.is_empty() {
                return None;
            }
            params.push((field, percent_decode(seg)));
        } else if part == seg {
            literals += 1;
        } else {
            return None;
        }
    }
    Some((literals, params))
}

/// A path segment with `%XX` escapes decoded (a queue named `a b` is `/v1/queues/a%20b`); a
/// segment that does not decode to UTF-8 keeps its raw text (the call's checks then refuse it).
fn percent_decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map_or_else(|_| segment.to_string(), |s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_win_and_methods_are_told() {
        let Match::Found(m) = find(V1, "POST", "/v1/jobs/batch") else {
            panic!("batch");
        };
        assert_eq!(m.route.rpc, "SubmitBatch");
        let Match::Found(m) = find(V1, "GET", "/v1/jobs/42/") else {
            panic!("get");
        };
        assert_eq!((m.route.rpc, m.params[0].1.as_str()), ("GetJob", "42"));
        let Match::Found(m) = find(V1, "GET", "/v1/queues/a%20b%2Fc") else {
            panic!("queue");
        };
        assert_eq!(m.params[0].1, "a b/c");
        let Match::Found(m) = find(V1, "GET", "/v1/queues/a&b=c+d") else {
            panic!("queue");
        };
        assert_eq!(m.params[0].1, "a&b=c+d", "& = + are themselves in a path");
        assert!(matches!(
            find(V1, "DELETE", "/v1/jobs"),
            Match::WrongMethod(_)
        ));
        assert!(matches!(find(V1, "GET", "/v1/nope"), Match::NotFound));
        assert!(matches!(find(V1, "GET", "/v1/jobs/"), Match::Found(_)));
    }

    /// Every RPC of the `Api` service has at least one path; every path names an RPC; no two
    /// rows share a method and path.
    #[test]
    fn every_api_method_has_a_path() {
        let pool = crate::proto::descriptor_pool();
        let api = pool.get_service_by_name("raftline.v1.Api").expect("Api");
        for method in api.methods() {
            assert!(
                V1.iter().any(|r| r.rpc == method.name()),
                "RPC {} has no REST path in server/rest/routes.rs",
                method.name()
            );
        }
        for (i, route) in V1.iter().enumerate() {
            assert!(
                api.methods().any(|m| m.name() == route.rpc),
                "{} {} names no RPC",
                route.method,
                route.path
            );
            assert!(
                !V1[..i]
                    .iter()
                    .any(|o| o.method == route.method && o.path == route.path),
                "{} {} twice",
                route.method,
                route.path
            );
        }
    }
}

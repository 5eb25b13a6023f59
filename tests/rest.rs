//! The REST API on real 3-node clusters: every path of `routes::V1` is called and answers with
//! its gRPC call's result as JSON (a path without a call here fails the walk), bad input gets
//! 400 naming the field and writes nothing, roles and tokens hold as on gRPC, and the served
//! OpenAPI document lists every path.

mod common;

use std::collections::BTreeSet;

use common::{http_call, Cluster, Settings};
use raftline::server::rest::routes::V1;
use serde_json::{json, Value};

/// A REST client of one node that records which route templates it called.
struct Rest {
    addr: String,
    token: String,
    called: BTreeSet<(String, String)>,
}

impl Rest {
    fn new(c: &Cluster, id: u64) -> Rest {
        Rest {
            addr: c.node(id).http.clone(),
            token: c.access.token.clone().expect("admin token"),
            called: BTreeSet::new(),
        }
    }

    /// Calls `template` with its `{field}` segments replaced by `args` in order.
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        args: &[&str],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut path = String::new();
        let mut args = args.iter();
        for (i, part) in template.split('/').enumerate() {
            if i > 0 {
                path.push('/');
            }
            if part.starts_with('{') {
                path.push_str(args.next().expect("an argument per {field}"));
            } else {
                path.push_str(part);
            }
        }
        self.called.insert((
            method.to_string(),
            template.split('?').next().unwrap_or("").to_string(),
        ));
        let body = body.map(|b| b.to_string());
        let (status, _, text) = http_call(
            &self.addr,
            method,
            &path,
            Some(&self.token),
            body.as_deref(),
        )
        .await;
        let value = if text.trim_start().starts_with('{') && !text.contains("}\n{") {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
        } else {
            Value::String(text)
        };
        (status, value)
    }

    /// Calls and expects 200; returns the JSON reply.
    async fn ok(
        &mut self,
        method: &str,
        template: &str,
        args: &[&str],
        body: Option<Value>,
    ) -> Value {
        let (status, value) = self.call(method, template, args, body).await;
        assert_eq!(status, 200, "{method} {template} {args:?}: {value}");
        value
    }
}

fn id_of(v: &Value, field: &str) -> String {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {v}"))
        .to_string()
}

fn shell(queue: &str) -> Value {
    json!({"queue": queue, "shell": {"argv": ["true"]}})
}

#[tokio::test(flavor = "multi_thread")]
async fn every_path_answers_with_its_call() {
    let c = Cluster::start(Settings::default()).await;
    // A follower: writes go through it to the leader, as on gRPC.
    let leader = c.wait_leader(None).await;
    let follower = *c.ids().iter().find(|&&i| i != leader).expect("a follower");
    let mut r = Rest::new(&c, follower);
    jobs_and_queues(&mut r).await;
    bulk(&mut r).await;
    workers(&mut r).await;
    workflows_resources_locks(&mut r).await;
    schedules_events_timers(&mut r).await;
    cluster_tokens_audit(&mut r).await;
    webhooks(&mut r).await;
    cursors(&mut r).await;

    let missing: Vec<String> = V1
        .iter()
        .filter(|route| {
            !r.called
                .contains(&(route.method.to_string(), route.path.to_string()))
        })
        .map(|route| format!("{} {}", route.method, route.path))
        .collect();
    assert!(
        missing.is_empty(),
        "paths this test does not call: {missing:?}"
    );
}

async fn jobs_and_queues(r: &mut Rest) {
    let job = r.ok("POST", "/v1/jobs", &[], Some(shell("rest"))).await;
    let id = id_of(&job, "id");
    let got = r.ok("GET", "/v1/jobs/{id}", &[&id], None).await;
    assert_eq!(got["id"].to_string(), id);
    assert_eq!(got["queue"], "rest");
    let delayed = json!({"queue": "rest", "shell": {"argv": ["true"]}, "delay_ms": 3_600_000, "tags": ["later"]});
    let batch = r
        .ok(
            "POST",
            "/v1/jobs/batch",
            &[],
            Some(json!({"jobs": [delayed, {"queue": "ext", "payload": "aGVsbG8="}]})),
        )
        .await;
    let later = id_of(&batch["jobs"][0], "id");
    let listed = r.ok("GET", "/v1/jobs?queue=ext", &[], None).await;
    let ext = listed["jobs"].as_array().expect("jobs");
    assert_eq!(ext.len(), 1, "{listed}");
    assert_eq!(ext[0]["payload"], "aGVsbG8=", "bytes are base64");
    let cancelled = r.ok("POST", "/v1/jobs/{id}/cancel", &[&later], None).await;
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    let retried = r
        .ok(
            "POST",
            "/v1/jobs/{id}/retry",
            &[&later],
            Some(json!({"priority": 9})),
        )
        .await;
    assert_eq!(retried["id"].to_string(), later);
    let queues = r.ok("GET", "/v1/queues", &[], None).await;
    assert!(queues.to_string().contains("\"ext\""), "{queues}");
    r.ok("GET", "/v1/queues/{queue}", &["ext"], None).await;
    let paused = r
        .ok("POST", "/v1/queues/{queue}/pause", &["ext"], None)
        .await;
    assert_eq!(paused["paused"], true, "{paused}");
    let resumed = r
        .ok("POST", "/v1/queues/{queue}/resume", &["ext"], None)
        .await;
    assert_eq!(resumed["paused"], false, "{resumed}");
    r.ok(
        "PUT",
        "/v1/queues/{queue}/policy",
        &["ext"],
        Some(json!({"concurrency": 5})),
    )
    .await;
    r.ok("POST", "/v1/dead/purge", &[], Some(json!({"queue": "ext"})))
        .await;
}

/// Bulk cancel by a filter: a dry run counts and changes nothing, the real one changes each
/// job once, a second finds nothing to change.
async fn bulk(r: &mut Rest) {
    let held = json!({"queue": "rest", "shell": {"argv": ["true"]}, "delay_ms": 3_600_000, "tags": ["bulk"]});
    let three = json!({"jobs": [held.clone(), held.clone(), held]});
    r.ok("POST", "/v1/jobs/batch", &[], Some(three)).await;
    let filter = json!({"queue": "rest", "tag": "bulk"});
    let ask = |dry: bool| Some(json!({"filter": filter, "action": "cancel", "dry_run": dry}));
    let dry = r.ok("POST", "/v1/jobs/bulk", &[], ask(true)).await;
    assert_eq!(
        (dry["matched"].as_u64(), dry["changed"].as_u64()),
        (Some(3), Some(3)),
        "{dry}"
    );
    let still = r
        .ok(
            "GET",
            "/v1/jobs?queue=rest&tag=bulk&state=scheduled",
            &[],
            None,
        )
        .await;
    assert_eq!(
        still["jobs"].as_array().map(Vec::len),
        Some(3),
        "a dry run changes nothing"
    );
    let done = r.ok("POST", "/v1/jobs/bulk", &[], ask(false)).await;
    assert_eq!(done["changed"].as_u64(), Some(3), "{done}");
    let cancelled = r
        .ok(
            "GET",
            "/v1/jobs?queue=rest&tag=bulk&state=cancelled",
            &[],
            None,
        )
        .await;
    assert_eq!(
        cancelled["jobs"].as_array().map(Vec::len),
        Some(3),
        "{cancelled}"
    );
    let again = r.ok("POST", "/v1/jobs/bulk", &[], ask(false)).await;
    assert_eq!(
        (again["changed"].as_u64(), again["skipped"].as_u64()),
        (Some(0), Some(3)),
        "{again}"
    );
    // Purge: the finished (here cancelled) jobs are removed now, not at their retention.
    let purge = Some(json!({"filter": filter, "action": "purge"}));
    let purged = r.ok("POST", "/v1/jobs/bulk", &[], purge).await;
    assert_eq!(purged["changed"].as_u64(), Some(3), "{purged}");
    let gone = r.ok("GET", "/v1/jobs?queue=rest&tag=bulk", &[], None).await;
    assert_eq!(gone["jobs"].as_array().map(Vec::len), Some(0), "{gone}");
    let (code, bad) = r
        .call(
            "POST",
            "/v1/jobs/bulk",
            &[],
            Some(json!({"filter": filter, "action": "explode"})),
        )
        .await;
    assert_eq!(
        (code, bad["error"]["field"].as_str()),
        (400, Some("action")),
        "{bad}"
    );
    let (code, bad) = r
        .call(
            "POST",
            "/v1/jobs/bulk",
            &[],
            Some(json!({"filter": {"state": "gone"}, "action": "retry"})),
        )
        .await;
    assert_eq!(
        (code, bad["error"]["field"].as_str()),
        (400, Some("filter.state")),
        "{bad}"
    );
}

async fn workers(r: &mut Rest) {
    let more = json!({"jobs": [{"queue": "ext", "payload": ""}, {"queue": "ext", "payload": ""}]});
    r.ok("POST", "/v1/jobs/batch", &[], Some(more)).await;
    let lease =
        json!({"worker_id": "w1", "queues": ["ext"], "max": 3, "ttl_ms": 30_000, "wait_ms": 2_000});
    let leased = r.ok("POST", "/v1/worker/lease", &[], Some(lease)).await;
    let jobs = leased["jobs"].as_array().expect("jobs").clone();
    assert_eq!(jobs.len(), 3, "{leased}");
    let (a, b, c) = (&jobs[0], &jobs[1], &jobs[2]);
    let beat = r
        .ok(
            "POST",
            "/v1/worker/heartbeat",
            &[],
            Some(json!({"worker_id": "w1"})),
        )
        .await;
    assert!(
        beat.to_string().contains(&a["job"]["id"].to_string()),
        "{beat}"
    );
    let held = |j: &Value| json!({"job_id": j["job"]["id"], "token": j["token"]});
    let mut cp = held(a);
    cp["data"] = json!("c3RlcA==");
    r.ok("POST", "/v1/worker/checkpoint", &[], Some(cp)).await;
    r.ok("POST", "/v1/worker/release", &[], Some(held(a))).await;
    let mut done = held(b);
    done["success"] = json!(true);
    let completed = r.ok("POST", "/v1/worker/complete", &[], Some(done)).await;
    assert_eq!(completed["state"], "succeeded", "{completed}");
    let mut last = held(c);
    last["success"] = json!(true);
    let both = json!({"completions": [last], "lease": {"worker_id": "w1", "queues": ["ext"], "max": 1, "ttl_ms": 30_000}});
    let next = r
        .ok("POST", "/v1/worker/complete-and-lease", &[], Some(both))
        .await;
    assert_eq!(
        next["completions"].as_array().map(Vec::len),
        Some(1),
        "{next}"
    );
    assert_eq!(
        next["jobs"][0]["checkpoint"], "c3RlcA==",
        "the released job, with its checkpoint: {next}"
    );
}

async fn workflows_resources_locks(r: &mut Rest) {
    // A payload step: no node runs it, so the workflow is still running when cancelled.
    let step = json!({"name": "a", "job": {"queue": "wf-ext", "payload": ""}});
    let wf = r
        .ok(
            "POST",
            "/v1/workflows",
            &[],
            Some(json!({"name": "w", "steps": [step]})),
        )
        .await;
    let id = id_of(&wf, "id");
    let list = r.ok("GET", "/v1/workflows", &[], None).await;
    assert!(list.to_string().contains(&format!("\"id\":{id}")), "{list}");
    let got = r.ok("GET", "/v1/workflows/{id}", &[&id], None).await;
    assert_eq!(got["steps"][0]["name"], "a", "{got}");
    r.ok(
        "POST",
        "/v1/workflows/{id}/control",
        &[&id],
        Some(json!({"op": "cancel"})),
    )
    .await;
    r.ok(
        "PUT",
        "/v1/resources/{name}",
        &["db"],
        Some(json!({"capacity": 2})),
    )
    .await;
    let res = r.ok("GET", "/v1/resources", &[], None).await;
    assert!(res.to_string().contains("\"db\""), "{res}");
    let grant = r
        .ok(
            "POST",
            "/v1/locks/{resource}/acquire",
            &["db"],
            Some(json!({"owner": "me", "ttl_ms": 10_000})),
        )
        .await;
    let token = grant["token"].clone();
    assert!(token.as_u64().is_some_and(|t| t > 0), "{grant}");
    r.ok(
        "POST",
        "/v1/locks/{resource}/renew",
        &["db"],
        Some(json!({"token": token, "ttl_ms": 10_000})),
    )
    .await;
    r.ok(
        "POST",
        "/v1/locks/{resource}/release",
        &["db"],
        Some(json!({"token": token})),
    )
    .await;
    let (status, stale) = r
        .call(
            "POST",
            "/v1/locks/{resource}/renew",
            &["db"],
            Some(json!({"token": token, "ttl_ms": 10_000})),
        )
        .await;
    assert_eq!(
        status, 400,
        "a released token: FAILED_PRECONDITION is 400: {stale}"
    );
    assert_eq!(stale["error"]["status"], "FAILED_PRECONDITION", "{stale}");
}

async fn schedules_events_timers(r: &mut Rest) {
    let create =
        json!({"name": "nightly", "cron": "0 3 * * *", "tz": "Europe/Paris", "job": shell("rest")});
    let s = r.ok("POST", "/v1/schedules", &[], Some(create)).await;
    let id = id_of(&s, "id");
    assert_eq!(s["tz"], "Europe/Paris", "{s}");
    r.ok("GET", "/v1/schedules", &[], None).await;
    r.ok("GET", "/v1/schedules/{id}", &[&id], None).await;
    let by_name = r
        .ok("GET", "/v1/schedules/by-name/{name}", &["nightly"], None)
        .await;
    assert_eq!(by_name["id"].to_string(), id);
    r.ok(
        "POST",
        "/v1/schedules/{schedule.id}/control",
        &[&id],
        Some(json!({"op": "pause"})),
    )
    .await;
    let t = r
        .ok(
            "POST",
            "/v1/triggers",
            &[],
            Some(json!({"topic": "t", "job": shell("rest")})),
        )
        .await;
    let tid = id_of(&t, "id");
    r.ok("GET", "/v1/triggers", &[], None).await;
    r.ok(
        "POST",
        "/v1/events",
        &[],
        Some(json!({"topic": "t", "dedup_key": "k"})),
    )
    .await;
    r.ok("DELETE", "/v1/triggers/{id}", &[&tid], None).await;
    let timer = r
        .ok(
            "POST",
            "/v1/timers",
            &[],
            Some(json!({"delay_ms": 3_600_000, "topic": "t", "dedup_key": "once"})),
        )
        .await;
    let timer_id = id_of(&timer, "id");
    r.ok("GET", "/v1/timers", &[], None).await;
    r.ok("DELETE", "/v1/timers/{id}", &[&timer_id], None).await;
}

async fn cluster_tokens_audit(r: &mut Rest) {
    let status = r.ok("GET", "/v1/cluster/status", &[], None).await;
    assert_eq!(
        status["members"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );
    r.ok(
        "POST",
        "/v1/cluster/membership",
        &[],
        Some(json!({"action": "progress"})),
    )
    .await;
    let created = r
        .ok(
            "POST",
            "/v1/tokens",
            &[],
            Some(json!({"name": "ci", "role": "viewer"})),
        )
        .await;
    let secret = created["secret"].as_str().expect("secret").to_string();
    let token_id = created["token"]["id"].as_str().expect("id").to_string();
    r.ok("GET", "/v1/tokens", &[], None).await;
    let (code, body) = call_as(
        &r.addr,
        Some(&secret),
        "POST",
        "/v1/jobs",
        Some(shell("rest")),
    )
    .await;
    assert_eq!(
        (code, body["error"]["status"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{body}"
    );
    let (code, _) = call_as(&r.addr, Some(&secret), "GET", "/v1/jobs", None).await;
    assert_eq!(code, 200, "a viewer reads");
    let (code, body) = call_as(&r.addr, None, "GET", "/v1/jobs", None).await;
    assert_eq!(
        (code, body["error"]["status"].as_str()),
        (401, Some("UNAUTHENTICATED")),
        "{body}"
    );
    r.ok("DELETE", "/v1/tokens/{id}", &[&token_id], None).await;
    let audit = r.ok("GET", "/v1/audit", &[], None).await;
    assert!(
        audit["entries"].as_array().is_some_and(|e| !e.is_empty()),
        "{audit}"
    );
    let (code, snapshot) = r.call("GET", "/v1/snapshot", &[], None).await;
    assert_eq!(code, 200);
    let lines: Vec<Value> = snapshot
        .as_str()
        .map(|s| {
            s.lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect()
        })
        .unwrap_or_else(|| vec![snapshot.clone()]);
    assert!(
        !lines.is_empty()
            && lines
                .iter()
                .all(|l| l["index"].as_u64().is_some_and(|i| i > 0)),
        "{snapshot}"
    );
    let (code, _, doc) = http_call(&r.addr, "GET", "/v1/openapi.json", None, None).await;
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_str(&doc).expect("OpenAPI JSON");
    let paths: BTreeSet<&str> = V1.iter().map(|r| r.path).collect();
    assert_eq!(doc["paths"].as_object().map(|p| p.len()), Some(paths.len()));
}

/// Webhooks: create (a bad URL names the field), list, test, deliveries, delete. Delivery
/// itself is `tests/webhooks.rs`.
async fn webhooks(r: &mut Rest) {
    let (code, body) = r
        .call(
            "POST",
            "/v1/webhooks",
            &[],
            Some(json!({"url": "gopher://x/", "topics": ["job.dead"]})),
        )
        .await;
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (400, Some("url")),
        "{body}"
    );
    let created = r
        .ok(
            "POST",
            "/v1/webhooks",
            &[],
            Some(json!({"url": "http://127.0.0.1:9/hook", "topics": ["*"]})),
        )
        .await;
    assert!(
        created["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "{created}"
    );
    let id = created["webhook"]["id"].as_u64().expect("id").to_string();
    let list = r.ok("GET", "/v1/webhooks", &[], None).await;
    assert_eq!(list["webhooks"].as_array().map(Vec::len), Some(1), "{list}");
    let test = r.ok("POST", "/v1/webhooks/{id}/test", &[&id], None).await;
    assert!(test["delivery_id"].as_u64().is_some(), "{test}");
    let d = r
        .ok("GET", "/v1/webhooks/{id}/deliveries", &[&id], None)
        .await;
    assert_eq!(d["deliveries"][0]["topic"], "webhook.test", "{d}");
    r.ok("DELETE", "/v1/webhooks/{id}", &[&id], None).await;
    let (code, _) = r
        .call("GET", "/v1/webhooks/{id}/deliveries", &[&id], None)
        .await;
    assert_eq!(code, 404);
}

/// Cursors: a missing one reads as version 0, a put answers the new version, a stale
/// expected version is FAILED_PRECONDITION (400), a name with a space names the field,
/// and a name with `/` and `:` travels percent-encoded in the path.
async fn cursors(r: &mut Rest) {
    let name = "import:redis:h%2F0:list:k";
    let got = r.ok("GET", "/v1/cursors/{name}", &[name], None).await;
    assert_eq!(got["version"].as_u64().unwrap_or(0), 0, "{got}");
    let put = r
        .ok(
            "PUT",
            "/v1/cursors/{name}",
            &[name],
            Some(json!({"value": "MTIz", "expected_version": 0})),
        )
        .await;
    assert_eq!(put["version"].as_u64(), Some(1), "{put}");
    let got = r.ok("GET", "/v1/cursors/{name}", &[name], None).await;
    assert_eq!(
        (got["value"].as_str(), got["name"].as_str()),
        (Some("MTIz"), Some("import:redis:h/0:list:k")),
        "{got}"
    );
    let (code, body) = r
        .call(
            "PUT",
            "/v1/cursors/{name}",
            &[name],
            Some(json!({"value": "NDU2", "expected_version": 0})),
        )
        .await;
    assert_eq!(
        (code, body["error"]["status"].as_str()),
        (400, Some("FAILED_PRECONDITION")),
        "{body}"
    );
    let (code, body) = r.call("GET", "/v1/cursors/{name}", &["a%20b"], None).await;
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (400, Some("name")),
        "{body}"
    );
}

async fn call_as(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let (code, _, text) = http_call(addr, method, path, token, body.as_deref()).await;
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Bad input gets 400 (or 404, 405, 413) with a JSON body naming the field, and writes
/// nothing: the jobs and the audit log are the same after every refusal.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_naming_the_field_and_writes_nothing() {
    let c = Cluster::start(Settings::default()).await;
    let mut r = Rest::new(&c, c.wait_leader(None).await);
    // A payload job: no node runs it, so its state stays put between the two looks.
    r.ok(
        "POST",
        "/v1/jobs",
        &[],
        Some(json!({"queue": "q", "payload": ""})),
    )
    .await;
    let before = (
        r.ok("GET", "/v1/jobs", &[], None).await,
        r.ok("GET", "/v1/audit", &[], None).await["entries"]
            .as_array()
            .map(Vec::len),
    );
    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        (
            "POST",
            "/v1/jobs",
            Some(json!({"queue": "", "shell": {"argv": ["true"]}})),
            400,
            "queue",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(json!({"queue": "q", "priority": "high"})),
            400,
            "priority",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(json!({"queue": "q", "priority": 99, "payload": ""})),
            400,
            "priority",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(json!({"queue": "q", "payload": "", "nope": 1})),
            400,
            "nope",
        ),
        ("POST", "/v1/jobs", Some(json!([1])), 400, "body"),
        (
            "POST",
            "/v1/jobs",
            Some(json!({"queue": "q", "payload": "!!"})),
            400,
            "payload",
        ),
        (
            "POST",
            "/v1/jobs",
            Some(json!({"queue": "q", "delay_ms": u64::MAX, "payload": ""})),
            400,
            "delay_ms",
        ),
        (
            "POST",
            "/v1/jobs/batch",
            Some(json!({"jobs": [shell("q"), {"queue": "q", "shell": {"argv": []}}]})),
            400,
            "jobs[1].shell.argv",
        ),
        ("GET", "/v1/jobs/abc", None, 400, "id"),
        ("GET", "/v1/jobs?limit=-1", None, 400, "limit"),
        ("GET", "/v1/jobs?stale=maybe", None, 400, "stale"),
        ("GET", "/v1/jobs?colour=red", None, 400, "colour"),
        ("GET", "/v1/jobs", Some(json!({"queue": "q"})), 400, "body"),
        (
            "POST",
            "/v1/jobs/1/cancel",
            Some(json!({"id": 2})),
            400,
            "id",
        ),
        ("GET", "/v1/jobs/999999", None, 404, ""),
        ("DELETE", "/v1/jobs", None, 405, ""),
        ("GET", "/v1/nothing-here", None, 404, ""),
    ];
    for (method, path, body, want, field) in cases {
        let (code, reply) = call_as(&r.addr, Some(&r.token), method, path, body.clone()).await;
        assert_eq!(code, want, "{method} {path} {body:?}: {reply}");
        let message = reply["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("an error body: {reply}"));
        if !field.is_empty() {
            assert!(
                reply["error"]["field"] == field || message.contains(field),
                "{method} {path} {body:?}: names {field}: {reply}"
            );
        }
    }
    let huge = format!(
        "{{\"queue\": \"q\", \"payload\": \"{}\"}}",
        "A".repeat(9 << 20)
    );
    let (code, _, _) = http_call(&r.addr, "POST", "/v1/jobs", Some(&r.token), Some(&huge)).await;
    assert_eq!(code, 413, "a body past REST_BODY_BYTES_MAX");
    let after = (
        r.ok("GET", "/v1/jobs", &[], None).await,
        r.ok("GET", "/v1/audit", &[], None).await["entries"]
            .as_array()
            .map(Vec::len),
    );
    assert_eq!(before, after, "a refusal wrote something");
}

/// On the API port, grpc.health.v1 says SERVING for `raftline.v1.Api` on a ready node and
/// reflection lists the public API (not the peer protocol), both without a token, while the
/// API itself still wants one.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_health_and_reflection_need_no_token() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let c = Cluster::start(Settings::default()).await;
    let leader = c.wait_leader(None).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", c.node(leader).api))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel.clone());
    let status = common::wait_for(
        "the leader to report SERVING",
        std::time::Duration::from_secs(20),
        || {
            let mut health = health.clone();
            async move {
                let request = tonic_health::pb::HealthCheckRequest {
                    service: "raftline.v1.Api".into(),
                };
                let reply = health.check(request).await.ok()?.into_inner();
                (reply.status == ServingStatus::Serving as i32).then_some(reply.status)
            }
        },
    )
    .await;
    assert_eq!(status, ServingStatus::Serving as i32);
    let overall = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("the server's own health");
    assert_eq!(overall.into_inner().status, ServingStatus::Serving as i32);

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let reply = replies
        .message()
        .await
        .expect("a reply")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("not a service list: {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"raftline.v1.Api".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains("RaftPeer")),
        "the peer protocol is not shown: {names:?}"
    );

    let mut api = raftline::proto::pb::api_client::ApiClient::new(channel);
    let refused = api
        .list_queues(raftline::proto::pb::ListQueuesRequest { stale: true })
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}

/// Search by tag, text and creation time, and the cursor: over REST, then through the CLI's
/// `jobs list` and `jobs export --format csv`.
#[tokio::test(flavor = "multi_thread")]
async fn search_filters_by_tag_time_and_text_and_pages_with_a_cursor() {
    let c = Cluster::start(Settings::default()).await;
    let mut r = Rest::new(&c, c.wait_leader(None).await);
    // A paused queue: its shell jobs stay ready, so their states hold still.
    r.ok("POST", "/v1/queues/{queue}/pause", &["s"], None).await;
    let submit = |i: usize| {
        let tags: Vec<&str> = if i % 3 == 0 { vec!["nightly"] } else { vec![] };
        json!({"queue": "s", "shell": {"argv": ["echo", format!("build-{i}")]}, "tags": tags})
    };
    let batch =
        |range: std::ops::Range<usize>| json!({"jobs": range.map(submit).collect::<Vec<_>>()});
    r.ok("POST", "/v1/jobs/batch", &[], Some(batch(0..15)))
        .await;
    let first = r.ok("GET", "/v1/jobs?queue=s&limit=1000", &[], None).await;
    let mid = first["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["created_ms"].as_u64())
        .max()
        .expect("a job")
        + 1;
    common::wait_for(
        "the clock to pass the first batch",
        std::time::Duration::from_secs(5),
        || async { (raftline::raft::wall_clock_ms() > mid).then_some(()) },
    )
    .await;
    r.ok("POST", "/v1/jobs/batch", &[], Some(batch(15..30)))
        .await;

    let count = |v: &Value| v["jobs"].as_array().map_or(0, Vec::len);
    let tagged = r.ok("GET", "/v1/jobs?queue=s&tag=nightly", &[], None).await;
    assert_eq!(count(&tagged), 10, "{tagged}");
    let text = r
        .ok("GET", "/v1/jobs?queue=s&text=BUILD-1", &[], None)
        .await;
    assert_eq!(
        count(&text),
        11,
        "build-1 and build-10..19, case ignored: {text}"
    );
    let early = r
        .ok(
            "GET",
            &format!("/v1/jobs?queue=s&created_before_ms={mid}"),
            &[],
            None,
        )
        .await;
    assert_eq!(count(&early), 15, "{early}");
    let late = r
        .ok(
            "GET",
            &format!("/v1/jobs?queue=s&created_after_ms={mid}"),
            &[],
            None,
        )
        .await;
    assert_eq!(count(&late), 15, "{late}");
    let finished = r
        .ok("GET", "/v1/jobs?queue=s&finished_after_ms=1", &[], None)
        .await;
    assert_eq!(count(&finished), 0, "none finished: {finished}");

    walk_the_cursor(&mut r).await;

    let (code, body) = call_as(
        &r.addr,
        Some(&r.token),
        "GET",
        "/v1/jobs?created_after_ms=5&created_before_ms=4",
        None,
    )
    .await;
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (400, Some("created_before_ms")),
        "{body}"
    );
    let long = "x".repeat(300);
    let (code, body) = call_as(
        &r.addr,
        Some(&r.token),
        "GET",
        &format!("/v1/jobs?text={long}"),
        None,
    )
    .await;
    assert_eq!(
        (code, body["error"]["field"].as_str()),
        (400, Some("text")),
        "{body}"
    );

    search_through_the_cli(&c);
    requeue_every_dead_job_of_a_queue(&c, &mut r).await;
}

/// Pages of 7 over the 30 jobs of queue `s`, following `next_after_id` to its end.
async fn walk_the_cursor(r: &mut Rest) {
    let mut after = 0u64;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let page = r
            .ok(
                "GET",
                &format!("/v1/jobs?queue=s&limit=7&after_id={after}"),
                &[],
                None,
            )
            .await;
        seen.extend(
            page["jobs"]
                .as_array()
                .expect("jobs")
                .iter()
                .filter_map(|j| j["id"].as_u64()),
        );
        after = page["next_after_id"].as_u64().expect("cursor");
        if after == 0 {
            break;
        }
    }
    assert_eq!(after, 0, "the cursor ends");
    assert_eq!(seen.len(), 30, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "id order, no repeats: {seen:?}"
    );
}

/// `jobs export --format csv` and `jobs list` with filters, and a bad time flag.
fn search_through_the_cli(c: &Cluster) {
    let out = c.cli(&[
        "jobs", "export", "--queue", "s", "--tag", "nightly", "--format", "csv",
    ]);
    assert!(out.status.success(), "{}", common::show(&out));
    let csv = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 11, "a header and 10 jobs: {csv}");
    assert!(lines[0].starts_with("id,queue,state"), "{csv}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains(",s,ready,") && l.contains("nightly")),
        "{csv}"
    );
    let out = c.cli(&[
        "jobs", "list", "--queue", "s", "--text", "build-3", "--since", "1h", "--json",
    ]);
    assert!(out.status.success(), "{}", common::show(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).expect("a JSON array");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let out = c.cli(&["jobs", "list", "--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("since"),
        "{}",
        common::show(&out)
    );
}

/// `dlq requeue --all --queue Q`: a dry run counts, the real one requeues each dead job.
async fn requeue_every_dead_job_of_a_queue(c: &Cluster, r: &mut Rest) {
    let failing = json!({"queue": "d", "shell": {"argv": ["false"]}, "max_attempts": 1});
    let jobs = json!({"jobs": [failing.clone(), failing.clone(), failing]});
    r.ok("POST", "/v1/jobs/batch", &[], Some(jobs)).await;
    let dead = |r: &Rest| {
        let (addr, token) = (r.addr.clone(), r.token.clone());
        async move {
            let (_, v) = call_as(
                &addr,
                Some(&token),
                "GET",
                "/v1/jobs?queue=d&state=dead",
                None,
            )
            .await;
            (v["jobs"].as_array().map(Vec::len) == Some(3)).then_some(())
        }
    };
    common::wait_for("3 dead jobs", std::time::Duration::from_secs(30), || {
        dead(r)
    })
    .await;
    let out = c.cli(&[
        "dlq",
        "requeue",
        "--all",
        "--queue",
        "d",
        "--dry-run",
        "--json",
    ]);
    assert!(out.status.success(), "{}", common::show(&out));
    let counted: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        (counted["matched"].as_u64(), counted["changed"].as_u64()),
        (Some(3), Some(3)),
        "{counted}"
    );
    assert!(dead(r).await.is_some(), "a dry run requeues nothing");
    let out = c.cli(&["dlq", "requeue", "--all", "--queue", "d", "--json"]);
    assert!(out.status.success(), "{}", common::show(&out));
    let done: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(done["changed"].as_u64(), Some(3), "{done}");
    let out = c.cli(&["dlq", "requeue", "--queue", "d"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--queue needs --all: {}",
        common::show(&out)
    );
}

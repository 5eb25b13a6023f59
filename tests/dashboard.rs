//! The web dashboard (issue 18) in a real headless Chromium against a real 3-node cluster: each
//! page loads and shows what the REST API says, a job's state change reaches the screen within
//! a second of its commit, a dead job requeued from the page runs again, a queue policy edited
//! and a workflow controlled from the page reach the cluster (and a bad policy does not), a
//! viewer sees no action buttons, and 401/403 are shown.
//! The browser is driven over the DevTools protocol; each page's screenshot is saved to
//! `target/screenshots/`, and with `RAFTLINE_UPDATE_SCREENSHOTS=1` to `docs/screenshots/` for
//! the README. Without a Chromium binary the browser tests are skipped with a printed reason
//! (CI installs Debian's `chromium`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::{http_call, wait_for, Cluster, Settings};
use futures::{SinkExt, StreamExt};
use raftline::machine::limits::QUEUE_CONCURRENCY_MAX;
use raftline::server::dashboard::changes::STREAMS_MAX;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;

/// How long a page may take to show what the API says.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// The bound the issue sets from a commit to the screen.
const COMMIT_TO_SCREEN_MAX_MS: u64 = 1_000;

// ---- the cluster over REST -------------------------------------------------------------

/// A REST client of one node with one token.
struct Rest {
    addr: String,
    token: String,
}

impl Rest {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let (status, _, text) =
            http_call(&self.addr, method, path, Some(&self.token), body.as_deref()).await;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method, path, body).await;
        assert_eq!(status, 200, "{method} {path}: {value}");
        value
    }

    async fn job(&self, id: u64) -> Value {
        self.ok("GET", &format!("/v1/jobs/{id}"), None).await
    }

    async fn submit(&self, queue: &str, argv: &[&str], max_attempts: u32) -> u64 {
        let body = json!({"queue": queue, "max_attempts": max_attempts, "shell": {"argv": argv}});
        let reply = self.ok("POST", "/v1/jobs", Some(body)).await;
        reply["id"].as_u64().expect("an id")
    }

    /// Waits until job `id` is in `state`; returns it.
    async fn wait_state(&self, id: u64, state: &str) -> Value {
        wait_for(
            &format!("job {id} {state}"),
            Duration::from_secs(30),
            || async {
                let job = self.job(id).await;
                (job["state"] == state).then_some(job)
            },
        )
        .await
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

// ---- Chromium over the DevTools protocol -----------------------------------------------

/// The Chromium binary: `RAFTLINE_CHROMIUM`, or the first of the usual names on PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RAFTLINE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium with one page, attached over one DevTools WebSocket.
struct Browser {
    _process: tokio::process::Child,
    _profile: tempfile::TempDir,
    socket: Socket,
    session: String,
    next_id: u64,
}

impl Browser {
    async fn launch(binary: &Path) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut process = tokio::process::Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut lines = tokio::io::BufReader::new(process.stderr.take().expect("stderr")).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("chromium stderr") {
                if let Some(at) = line.find("ws://") {
                    return line[at..].trim().to_string();
                }
            }
            panic!("chromium exited before it said where DevTools listens");
        })
        .await
        .expect("chromium's DevTools address within 30 s");
        // Drained, so a chatty browser never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("DevTools WebSocket");
        let mut browser = Browser {
            _process: process,
            _profile: profile,
            socket,
            session: String::new(),
            next_id: 0,
        };
        let target = browser
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"].as_str().expect("session").to_string();
        browser.call("Page.enable", json!({})).await;
        let viewport =
            json!({"width": 1360, "height": 860, "deviceScaleFactor": 1, "mobile": false});
        browser
            .call("Emulation.setDeviceMetricsOverride", viewport)
            .await;
        browser
    }

    /// One DevTools command on the page's session (the browser's before attaching); its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send to DevTools");
        let reply = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let frame = self.socket.next().await.expect("DevTools open");
                let Message::Text(text) = frame.expect("DevTools frame") else {
                    continue;
                };
                let value: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
                if value["id"] == id {
                    return value;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{method}: no answer in 30 s"));
        assert!(reply["error"].is_null(), "{method}: {}", reply["error"]);
        reply["result"].clone()
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    async fn eval(&mut self, expression: &str) -> Value {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let result = self.call("Runtime.evaluate", params).await;
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy in JavaScript's sense (an exception counts as not
    /// yet: the page may still be loading); returns its value.
    async fn wait(&mut self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        let guarded = format!("(() => {{ try {{ const v = ({expression}); return v ? v : null; }} catch (e) {{ return null; }} }})()");
        loop {
            let value = self.eval(&guarded).await;
            if !matches!(value, Value::Null | Value::Bool(false)) {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `expression` (a JSON-able value of the DOM) equals what `expected` says the
    /// API holds, both read again on each try.
    async fn wait_same<F, Fut>(&mut self, what: &str, expression: &str, mut expected: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Value>,
    {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let want = expected().await;
            let shown = self.eval(expression).await;
            if shown == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the page shows {shown}, the API says {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the element `selector` finds, waiting until there is one (the page re-renders
    /// its view on every change, so it is looked up and clicked in one evaluation).
    async fn click(&mut self, selector: &str) {
        self.click_when("true", selector).await;
    }

    /// Clicks `selector` once `condition` holds in the page, both checked in one evaluation.
    async fn click_when(&mut self, condition: &str, selector: &str) {
        let script = format!(
            "(() => {{ const el = ({condition}) && document.querySelector({selector:?}); \
             if (!el) return false; el.click(); return true; }})()"
        );
        self.wait(&format!("{selector} to click"), &script).await;
    }

    /// Shows the view at `hash` and waits until it has rendered.
    async fn show(&mut self, hash: &str) {
        let view = hash
            .trim_start_matches("#/")
            .split(['/', '?'])
            .next()
            .unwrap_or("");
        let script = format!(
            "(() => {{ const n = Number(document.body.dataset.renders || 0); \
             location.hash = {hash:?}; return n; }})()"
        );
        let before = self.eval(&script).await.as_u64().unwrap_or(0);
        self.wait(
            &format!("{hash} rendered"),
            &format!(
                "document.body.dataset.view === {view:?} && \
                 Number(document.body.dataset.renders) > {before} && \
                 !document.querySelector('#body').textContent.includes('loading…')"
            ),
        )
        .await;
    }

    /// Saves a PNG of the page as `<name>.png` under `target/screenshots/`, and under
    /// `docs/screenshots/` (the README's) when `RAFTLINE_UPDATE_SCREENSHOTS=1`, as golden
    /// files are rewritten: so a test run leaves the work tree as it was.
    async fn screenshot(&mut self, name: &str) {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("png data"))
            .expect("base64 png");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut dirs = vec![root.join("target/screenshots")];
        if std::env::var("RAFTLINE_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            dirs.push(root.join("docs/screenshots"));
        }
        for dir in dirs {
            std::fs::create_dir_all(&dir).expect("screenshots dir");
            std::fs::write(dir.join(format!("{name}.png")), &png).expect("write screenshot");
        }
    }
}

// ---- the DOM, read back ----------------------------------------------------------------

/// `[[data-id, data-state], ...]` of the rows of the table named `table`.
fn rows_expr(table: &str) -> String {
    format!(
        "[...document.querySelectorAll('table[data-table=\"{table}\"] tbody tr[data-id]')]\
         .map(r => [Number(r.dataset.id), r.dataset.state || ''])"
    )
}

/// The same pairs from an API list.
fn rows_of(items: &Value, state_key: &str) -> Value {
    Value::Array(
        items
            .as_array()
            .expect("a list")
            .iter()
            .map(|j| json!([j["id"], j[state_key].as_str().unwrap_or("")]))
            .collect(),
    )
}

// ---- the tests -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_served_and_guarded() {
    // The page and its assets come from the binary without a token; the change stream needs
    // one, starts with the node's applied index, and a node serves at most STREAMS_MAX.
    let c = Cluster::start(Settings::default()).await;
    let addr = c.node(1).http.clone();
    let token = c.access.token.clone().expect("admin token");
    let (status, headers, body) = http_call(&addr, "GET", "/", None, None).await;
    assert_eq!(status, 200);
    assert!(body.contains("/ui/app.js"), "{body}");
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("text/html")));
    for asset in ["/ui/app.js", "/ui/controls.js", "/ui/app.css"] {
        let (status, _, body) = http_call(&addr, "GET", asset, None, None).await;
        assert_eq!(status, 200, "{asset}");
        assert!(body.len() > 1_000, "{asset}: {} bytes", body.len());
    }
    let (status, _, body) = http_call(&addr, "GET", "/ui/changes", None, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("UNAUTHENTICATED"), "{body}");
    let (status, _, _) = http_call(&addr, "GET", "/ui/changes", Some("rl_wrong"), None).await;
    assert_eq!(status, 401);
    // Streams up to the cap open and say where the node is; one more is refused with 503.
    let mut open = Vec::new();
    for _ in 0..STREAMS_MAX {
        let (tcp, head) = open_stream(&addr, &token).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("text/event-stream"), "{head}");
        assert!(head.contains("event: applied"), "{head}");
        open.push(tcp);
    }
    let (status, _, body) = http_call(&addr, "GET", "/ui/changes", Some(&token), None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("STREAMS_MAX"), "{body}");
}

/// Opens a change stream; returns the connection and what it said up to its first event.
async fn open_stream(addr: &str, token: &str) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /ui/changes HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let has_event = |s: &str| {
        s.split_once("data: ")
            .is_some_and(|(_, tail)| tail.contains('\n'))
    };
    while !has_event(&seen) && !seen.starts_with("HTTP/1.1 5") {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("an event within 10 s")
            .expect("read");
        assert!(n > 0, "stream closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    (tcp, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_pages_in_chromium() {
    // Every page against a cluster that ran jobs, a workflow, a schedule and the rest: the DOM
    // shows the API's counts and states; a job's completion reaches the screen within a second
    // of its commit; dead jobs requeued from the page (one, then a queue's all) run again; a
    // queue policy set and a workflow controlled from the page hold in the cluster.
    let Some(binary) = chromium() else {
        println!("SKIPPED dashboard_pages_in_chromium: no chromium binary (apt-get install chromium, or set RAFTLINE_CHROMIUM)");
        return;
    };
    let c = Cluster::start(Settings::default()).await;
    let rest = Rest {
        addr: c.node(1).http.clone(),
        token: c.access.token.clone().expect("admin token"),
    };
    let flag = c.dir.path().join("requeue-ok");
    let fixture = populate(&rest, &flag).await;
    let mut b = Browser::launch(&binary).await;
    let url = format!(
        "http://{}/#token={}&view=/cluster",
        rest.addr,
        rest.token.replace('+', "%2B")
    );
    b.call("Page.navigate", json!({ "url": url })).await;
    b.wait(
        "the cluster view",
        "document.body.dataset.view === 'cluster' && document.body.dataset.renders > 0",
    )
    .await;
    assert_eq!(
        b.eval("location.hash").await,
        "#/cluster",
        "the token is taken out of the URL"
    );
    pages_cluster_and_queues(&mut b, &rest).await;
    pages_jobs(&mut b, &rest, &fixture).await;
    pages_workflow(&mut b, &rest, fixture.workflow).await;
    workflow_control_from_page(&mut b, &rest, &flag).await;
    pages_others(&mut b, &rest).await;
    let ms = live_update(&mut b, &rest).await;
    println!("commit to screen: {ms} ms");
    requeue_from_page(&mut b, &rest, &fixture, &flag).await;
    rates_shown(&mut b).await;
    refusals_shown(&mut b, &rest).await;
}

/// Rates from the node's /metrics, sampled by the page: fsyncs and completions per second on
/// the Cluster page, jobs started and ended per queue on the Queues page.
async fn rates_shown(b: &mut Browser) {
    b.show("#/cluster").await;
    let number = |card: &str| {
        format!("/^[0-9.]+$/.test(document.querySelector('[data-card={card}] .v').textContent)")
    };
    b.wait(
        "rates on the cluster page",
        &format!("{} && {}", number("fsync_rate"), number("complete_rate")),
    )
    .await;
    b.screenshot("cluster").await;
    b.show("#/queues").await;
    b.wait(
        "rates on the queues page",
        "/^[0-9.]+$/.test(document.querySelector('tr[data-queue=build] [data-col=ended_rate]').textContent)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_without_auth_needs_no_sign_in() {
    // With `[auth] enabled = false` the page shows the cluster without asking for a token.
    let Some(binary) = chromium() else {
        println!("SKIPPED dashboard_without_auth_needs_no_sign_in: no chromium binary");
        return;
    };
    let c = Cluster::start(Settings {
        auth_extra: "enabled = false".to_string(),
        ..Settings::default()
    })
    .await;
    let mut b = Browser::launch(&binary).await;
    let url = format!("http://{}/", c.node(1).http);
    b.call("Page.navigate", json!({ "url": url })).await;
    b.wait(
        "the cluster view without a token",
        "document.body.dataset.view === 'cluster' && document.querySelector('#login').hidden \
         && document.querySelectorAll('tr[data-node]').length === 3 \
         && document.body.dataset.live === '1'",
    )
    .await;
}

/// What `populate` made.
struct Fixture {
    dead_one: u64,
    dead_bulk: Vec<u64>,
    workflow: u64,
}

/// Jobs (succeeded and dead), a workflow, a schedule, a resource and a lock, a trigger, a
/// timer and a webhook, all settled.
async fn populate(rest: &Rest, flag: &Path) -> Fixture {
    // First, so the dead jobs below make deliveries (to a port nobody listens on).
    let hook = json!({"url": "http://127.0.0.1:9/hook", "topics": ["job.dead"]});
    rest.ok("POST", "/v1/webhooks", Some(hook)).await;
    let test = format!("test -f {}", flag.display());
    let mut done = Vec::new();
    for word in ["one", "two", "three"] {
        done.push(rest.submit("build", &["echo", word], 3).await);
    }
    let dead_one = rest.submit("flaky", &["sh", "-c", &test], 1).await;
    let mut dead_bulk = Vec::new();
    for _ in 0..2 {
        dead_bulk.push(rest.submit("bulk", &["sh", "-c", &test], 1).await);
    }
    let step = |name: &str, argv: &[&str], deps: &[&str]| {
        json!({"name": name, "job": {"queue": "wf", "shell": {"argv": argv}},
               "depends_on": deps.iter().map(|d| json!({"step": d})).collect::<Vec<_>>()})
    };
    let workflow = json!({"name": "release", "steps": [
        step("fetch", &["sleep", "0.3"], &[]),
        step("build", &["sleep", "0.6"], &["fetch"]),
        step("lint", &["sleep", "0.2"], &["fetch"]),
        step("package", &["sleep", "0.2"], &["build", "lint"]),
    ]});
    let workflow = rest.ok("POST", "/v1/workflows", Some(workflow)).await["id"]
        .as_u64()
        .expect("workflow id");
    let schedule = json!({"name": "nightly", "cron": "0 3 * * *", "tz": "Europe/Berlin",
        "job": {"queue": "build", "shell": {"argv": ["echo", "nightly"]}}});
    rest.ok("POST", "/v1/schedules", Some(schedule)).await;
    rest.ok("PUT", "/v1/resources/gpu", Some(json!({"capacity": 2})))
        .await;
    let lock = json!({"owner": "deployer-1", "ttl_ms": 600_000});
    rest.ok("POST", "/v1/locks/gpu/acquire", Some(lock)).await;
    let trigger = json!({"topic": "deploy.done",
        "job": {"queue": "build", "shell": {"argv": ["echo", "deployed"]}}});
    rest.ok("POST", "/v1/triggers", Some(trigger)).await;
    let timer = json!({"delay_ms": 3_600_000, "topic": "deploy.done", "dedup_key": "hourly"});
    rest.ok("POST", "/v1/timers", Some(timer)).await;
    for id in done {
        rest.wait_state(id, "succeeded").await;
    }
    for id in dead_bulk.iter().chain([&dead_one]) {
        rest.wait_state(*id, "dead").await;
    }
    wait_for("the workflow", Duration::from_secs(30), || async {
        let w = rest
            .ok("GET", &format!("/v1/workflows/{workflow}"), None)
            .await;
        (w["state"] == "succeeded").then_some(())
    })
    .await;
    Fixture {
        dead_one,
        dead_bulk,
        workflow,
    }
}

async fn pages_cluster_and_queues(b: &mut Browser, rest: &Rest) {
    let status = rest.ok("GET", "/v1/cluster/status", None).await;
    let shown = b
        .eval(
            "({leader: document.querySelector('[data-card=leader] .v').textContent, \
              term: document.querySelector('[data-card=term] .v').textContent, \
              rows: document.querySelectorAll('table[data-table=Members] tbody tr[data-node]').length})",
        )
        .await;
    assert_eq!(shown["leader"], status["leader"].to_string(), "{shown}");
    assert_eq!(shown["term"], status["term"].to_string(), "{shown}");
    assert_eq!(shown["rows"], 3, "{shown}");
    b.wait(
        "every member's replication lag (from the leader's progress)",
        "[...document.querySelectorAll('tr[data-node] [data-col=lag]')]\
         .filter(td => /^[0-9]+$/.test(td.textContent)).length === 3",
    )
    .await;

    b.show("#/queues").await;
    let cells = "[...document.querySelectorAll('table[data-table=Queues] tbody tr[data-queue]')]\
        .map(r => [r.dataset.queue, ...['scheduled','ready','leased','succeeded','dead','cancelled']\
        .map(k => Number(r.querySelector(`[data-col=${k}]`).textContent))])";
    b.wait_same("queue counts", cells, || async {
        let queues = rest.ok("GET", "/v1/queues", None).await;
        let rows = queues["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .map(|q| {
                json!([
                    q["queue"],
                    q["scheduled"],
                    q["ready"],
                    q["leased"],
                    q["succeeded"],
                    q["dead"],
                    q["cancelled"]
                ])
            });
        Value::Array(rows.collect())
    })
    .await;
    queue_pause_and_export(b, rest).await;
    queue_policy_from_page(b, rest).await;
    b.screenshot("queues").await;
}

/// Pause and resume a queue from the page; the Queues table exported as CSV and JSON (the
/// page's downloads are caught where it makes them, at `URL.createObjectURL`).
async fn queue_pause_and_export(b: &mut Browser, rest: &Rest) {
    for (action, paused) in [("pause", true), ("resume", false)] {
        b.click(&format!(
            "tr[data-queue=build] button[data-action={action}]"
        ))
        .await;
        wait_for(&format!("build {action}d"), PAGE_TIMEOUT, || async {
            let q = rest.ok("GET", "/v1/queues/build", None).await;
            (q["paused"] == paused).then_some(())
        })
        .await;
        b.wait(
            &format!("build {action}d on screen"),
            &format!(
                "document.querySelector('tr[data-queue=build]').dataset.paused === '{paused}'"
            ),
        )
        .await;
    }
    b.eval(
        "(() => { window.exported = []; const make = URL.createObjectURL; \
         URL.createObjectURL = (blob) => { blob.text().then(t => window.exported.push(t)); \
         return make(blob); }; return true; })()",
    )
    .await;
    let queues = rest.ok("GET", "/v1/queues", None).await;
    let names: Vec<Value> = queues["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| q["queue"].clone())
        .collect();
    let export = |format: &str| format!("button[data-action=export][data-format={format}]");
    b.click(&export("csv")).await;
    let csv = b.wait("the CSV export", "window.exported[0]").await;
    let lines: Vec<&str> = csv.as_str().expect("csv").lines().collect();
    assert_eq!(lines.len(), names.len() + 1, "{csv}");
    assert!(
        lines[0].starts_with("Queue,Paused,Scheduled,Ready"),
        "{csv}"
    );
    b.click(&export("json")).await;
    let json = b.wait("the JSON export", "window.exported[1]").await;
    let rows: Value = serde_json::from_str(json.as_str().expect("json")).expect("JSON export");
    let exported: Vec<Value> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["Queue"].clone())
        .collect();
    assert_eq!(exported, names);
}

async fn pages_jobs(b: &mut Browser, rest: &Rest, fixture: &Fixture) {
    b.show("#/jobs?queue=build").await;
    b.wait_same("jobs of build", &rows_expr("Jobs"), || async {
        rows_of(
            &rest.ok("GET", "/v1/jobs?queue=build", None).await["jobs"],
            "state",
        )
    })
    .await;
    b.screenshot("jobs").await;
    b.eval(
        "(() => { const f = document.querySelector('#job-filters'); \
         f.querySelector('[name=state]').value = 'dead'; f.querySelector('[name=queue]').value = ''; \
         f.requestSubmit(); return true; })()",
    )
    .await;
    b.wait(
        "the filter in the URL",
        "location.hash === '#/jobs?state=dead' && document.body.dataset.view === 'jobs'",
    )
    .await;
    b.wait_same("dead jobs by the form", &rows_expr("Jobs"), || async {
        rows_of(
            &rest.ok("GET", "/v1/jobs?state=dead", None).await["jobs"],
            "state",
        )
    })
    .await;

    let id = fixture.dead_one;
    b.show(&format!("#/job/{id}")).await;
    let job = rest.job(id).await;
    let attempts = b
        .eval(
            "[...document.querySelectorAll('table[data-table=Attempts] tbody tr[data-attempt]')]\
             .map(r => [r.dataset.result, r.querySelector('[data-col=exit_code]').textContent, \
                        r.querySelector('[data-col=node]').textContent])",
        )
        .await;
    let want: Vec<Value> = job["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| {
            json!([
                a["result"],
                a["exit_code"].to_string(),
                a["node"].to_string()
            ])
        })
        .collect();
    assert_eq!(attempts, Value::Array(want));
    let state = b
        .eval("document.querySelector('dl[data-job]').dataset.state")
        .await;
    assert_eq!(state, "dead");
    assert!(
        b.eval("document.querySelectorAll('.timeline li').length")
            .await
            .as_u64()
            .unwrap_or(0)
            >= 3
    );
    b.screenshot("job").await;

    paging(b, rest).await;

    b.show("#/dead").await;
    b.wait_same("dead letters", &rows_expr("Dead jobs"), || async {
        rows_of(
            &rest.ok("GET", "/v1/jobs?state=dead", None).await["jobs"],
            "state",
        )
    })
    .await;
    b.screenshot("dead").await;
}

/// 60 jobs no worker takes (payloads) in pages of 50: Next shows the last 10, Previous the
/// first 50 again, as the API's cursor says.
async fn paging(b: &mut Browser, rest: &Rest) {
    let jobs: Vec<Value> = (0..60)
        .map(|_| json!({"queue": "page", "payload": ""}))
        .collect();
    rest.ok("POST", "/v1/jobs/batch", Some(json!({ "jobs": jobs })))
        .await;
    let first = rest.ok("GET", "/v1/jobs?queue=page&limit=50", None).await;
    let second = rest
        .ok(
            "GET",
            &format!(
                "/v1/jobs?queue=page&limit=50&after_id={}",
                first["next_after_id"]
            ),
            None,
        )
        .await;
    b.show("#/jobs?queue=page").await;
    b.wait_same("the first page", &rows_expr("Jobs"), || async {
        rows_of(&first["jobs"], "state")
    })
    .await;
    b.click("button[data-action=page-next]:not([disabled])")
        .await;
    b.wait_same("the second page", &rows_expr("Jobs"), || async {
        rows_of(&second["jobs"], "state")
    })
    .await;
    assert_eq!(second["jobs"].as_array().map(Vec::len), Some(10));
    b.click("button[data-action=page-prev]:not([disabled])")
        .await;
    b.wait_same("the first page again", &rows_expr("Jobs"), || async {
        rows_of(&first["jobs"], "state")
    })
    .await;
}

async fn pages_workflow(b: &mut Browser, rest: &Rest, id: u64) {
    b.show("#/workflows").await;
    b.wait_same("workflows", &rows_expr("Workflows"), || async {
        rows_of(
            &rest.ok("GET", "/v1/workflows", None).await["workflows"],
            "state",
        )
    })
    .await;
    b.screenshot("workflows").await;

    b.show(&format!("#/workflow/{id}")).await;
    let w = rest.ok("GET", &format!("/v1/workflows/{id}"), None).await;
    let steps = b
        .eval(
            "[...document.querySelectorAll('table[data-table=Steps] tbody tr[data-step]')]\
             .map(r => [r.dataset.step, r.dataset.state])",
        )
        .await;
    let want: Vec<Value> = w["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| json!([s["name"], s["state"]]))
        .collect();
    assert_eq!(steps, Value::Array(want));
    let bars = b
        .eval("document.querySelectorAll('.gantt .bar').length")
        .await;
    assert_eq!(bars, 4, "a Gantt bar per step");
    let critical = b
        .eval("[...document.querySelectorAll('.gantt .bar.critical')].length")
        .await;
    assert_eq!(
        critical,
        w["critical_path"].as_array().expect("path").len(),
        "critical path outlined"
    );
    b.screenshot("workflow").await;
}

async fn pages_others(b: &mut Browser, rest: &Rest) {
    b.show("#/schedules").await;
    let name = b
        .eval("document.querySelector('table[data-table=Schedules] tbody tr[data-name]').dataset.name")
        .await;
    assert_eq!(name, "nightly");
    let before = rest.ok("GET", "/v1/schedules", None).await["schedules"][0]["runs_started"]
        .as_u64()
        .expect("runs");
    b.click("button[data-action=trigger]").await;
    wait_for("a run from the page's trigger", PAGE_TIMEOUT, || async {
        let s = rest.ok("GET", "/v1/schedules", None).await;
        (s["schedules"][0]["runs_started"].as_u64() > Some(before)).then_some(())
    })
    .await;
    b.wait(
        "the triggered run on screen",
        &format!(
            "document.querySelector('[data-col=runs_started]').textContent === '{}'",
            before + 1
        ),
    )
    .await;
    b.screenshot("schedules").await;
    b.show("#/schedule/1").await;
    let history = "document.querySelectorAll('table[data-table=History] tbody tr').length";
    b.wait_same("schedule history", history, || async {
        let s = rest.ok("GET", "/v1/schedules/1", None).await;
        json!(s["history"].as_array().expect("history").len())
    })
    .await;

    b.show("#/resources").await;
    let shown = b
        .eval(
            "[document.querySelector('tr[data-name=gpu] [data-col=capacity]').textContent, \
              document.querySelector('table[data-table=Locks] tr[data-owner]').dataset.owner]",
        )
        .await;
    assert_eq!(shown, json!(["2", "deployer-1"]));
    b.screenshot("resources").await;

    b.show("#/events").await;
    let counts = b
        .eval(
            "[document.querySelectorAll('table[data-table=Triggers] tr[data-id]').length, \
              document.querySelectorAll('table[data-table=Timers] tr[data-id]').length]",
        )
        .await;
    assert_eq!(counts, json!([1, 1]));
    b.screenshot("events").await;

    b.show("#/webhooks").await;
    let url = b
        .eval("document.querySelector('table[data-table=Webhooks] tr[data-id] [data-col=url]').textContent")
        .await;
    assert_eq!(url, "http://127.0.0.1:9/hook");
    b.screenshot("webhooks").await;
    b.show("#/webhook/1").await;
    b.wait_same("deliveries", &rows_expr("Deliveries"), || async {
        let d = rest.ok("GET", "/v1/webhooks/1/deliveries", None).await;
        rows_of(&d["deliveries"], "state")
    })
    .await;
    let shown = b
        .eval("document.querySelectorAll('table[data-table=Deliveries] tr[data-id]').length")
        .await;
    assert!(
        shown.as_u64() >= Some(3),
        "a delivery per dead job: {shown}"
    );
}

/// A `sleep` job's completion on screen: milliseconds from its commit (the `finished_ms` the
/// leader stamped on it, which is before the commit) to the page showing it, watched by a
/// MutationObserver in the page. Also prints the gap from the test's API poll seeing it.
async fn live_update(b: &mut Browser, rest: &Rest) -> u64 {
    b.show("#/jobs?queue=live").await;
    let id = rest.submit("live", &["sleep", "2"], 1).await;
    b.wait(
        "the live job on screen, unfinished",
        &format!(
            "['ready', 'leased'].includes(document.querySelector('tr[data-id=\"{id}\"]')?.dataset.state)"
        ),
    )
    .await;
    b.eval(&format!(
        "(() => {{ window.seenDone = 0; const done = () => document.querySelector(\
         'tr[data-id=\"{id}\"][data-state=succeeded]'); new MutationObserver(() => {{ \
         if (!window.seenDone && done()) window.seenDone = Date.now(); }}).observe(document.body, \
         {{subtree: true, childList: true, attributes: true}}); return true; }})()"
    ))
    .await;
    let job = rest.wait_state(id, "succeeded").await;
    let api_seen = now_ms();
    let screen = b
        .wait("the finished job on screen", "window.seenDone")
        .await
        .as_u64()
        .expect("a time");
    let finished = job["finished_ms"].as_u64().expect("finished_ms");
    let commit_to_screen = screen.saturating_sub(finished);
    println!(
        "job {id}: finished_ms {finished}, on screen {screen} ({commit_to_screen} ms later; \
         {} ms after the API poll saw it)",
        screen as i64 - api_seen as i64
    );
    assert!(
        commit_to_screen < COMMIT_TO_SCREEN_MAX_MS,
        "{commit_to_screen} ms from commit to screen"
    );
    commit_to_screen
}

async fn requeue_from_page(b: &mut Browser, rest: &Rest, fixture: &Fixture, flag: &Path) {
    std::fs::write(flag, "").expect("flag file");
    let id = fixture.dead_one;
    b.show("#/dead?queue=flaky").await;
    b.wait(
        "the dead job listed",
        &format!("!!document.querySelector('tr[data-id=\"{id}\"]')"),
    )
    .await;
    b.click(&format!("button[data-action=retry][data-id=\"{id}\"]"))
        .await;
    let job = rest.wait_state(id, "succeeded").await;
    assert_eq!(job["attempts_total"], 2, "{job}");
    b.wait(
        "the requeued job gone from the dead letters",
        &format!("!document.querySelector('tr[data-id=\"{id}\"]')"),
    )
    .await;

    b.show("#/dead?queue=bulk").await;
    let button = "button[data-action=requeue-all][data-queue=bulk]";
    b.click(button).await;
    let armed = b
        .eval(&format!("document.querySelector({button:?}).textContent"))
        .await;
    assert!(
        armed.as_str().unwrap_or("").contains("Click again"),
        "{armed}"
    );
    b.click(button).await;
    for id in &fixture.dead_bulk {
        let job = rest.wait_state(*id, "succeeded").await;
        assert_eq!(job["attempts_total"], 2, "{job}");
    }
    b.wait(
        "no dead jobs left in bulk",
        "document.querySelectorAll('table[data-table=\"Dead jobs\"] tr[data-id]').length === 0",
    )
    .await;
}

/// A viewer token sees the queues and their policies but no action button; it gets a 403 on
/// screen where it may not read (webhooks); a wrong token gets 401 and the sign-in form.
async fn refusals_shown(b: &mut Browser, rest: &Rest) {
    let viewer = rest
        .ok(
            "POST",
            "/v1/tokens",
            Some(json!({"name": "dash-viewer", "role": "viewer"})),
        )
        .await["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let url = format!("http://{}/#token={viewer}&view=/queues", rest.addr);
    b.call("Page.navigate", json!({ "url": url })).await;
    // Rendered for the viewer: its token taken, its role probed, the rows drawn after that.
    b.wait(
        "the queues for the viewer",
        &format!(
            "sessionStorage.getItem('raftline.token') === '{viewer}' && \
             document.body.dataset.operate === '0' && document.body.dataset.view === 'queues' && \
             document.querySelector('tr[data-queue=limited]')"
        ),
    )
    .await;
    let seen = b
        .eval(
            "({policy: document.querySelector('tr[data-queue=limited] [data-col=policy]').textContent, \
              concurrency: document.querySelector('tr[data-queue=limited]').dataset.concurrency, \
              buttons: document.querySelectorAll('#body button[data-action]:not([data-action=export])').length})",
        )
        .await;
    assert_eq!(seen["buttons"], 0, "no action buttons for a viewer: {seen}");
    assert_eq!(seen["concurrency"], "2", "{seen}");
    assert!(
        seen["policy"]
            .as_str()
            .is_some_and(|p| p.contains("concurrency 2") && p.contains("breaker >50% of 20")),
        "{seen}"
    );
    // ListWebhooks is for operators: the view's read is refused.
    b.eval("location.hash = '#/webhooks'").await;
    b.wait(
        "403 on screen",
        "document.querySelector('#error').dataset.status === '403' && !document.querySelector('#error').hidden",
    )
    .await;
    b.screenshot("refused").await;
    let url = format!("http://{}/#token=rl_wrong&view=/cluster", rest.addr);
    b.call("Page.navigate", json!({ "url": url })).await;
    b.wait(
        "401 and the sign-in form",
        "document.querySelector('#error').dataset.status === '401' && !document.querySelector('#login').hidden",
    )
    .await;
}

/// The six numbers of a queue's policy, as the API says them.
fn policy_of(q: &Value) -> Value {
    json!([
        q["rate_count"],
        q["rate_per_ms"],
        q["concurrency"],
        q["breaker_threshold_pct"],
        q["breaker_window"],
        q["breaker_cooldown_ms"]
    ])
}

/// Sets fields of the policy dialog's form.
async fn fill(b: &mut Browser, fields: &[(&str, &str)]) {
    let sets: String = fields
        .iter()
        .map(|(name, value)| format!("f.elements[{name:?}].value = {value:?}; "))
        .collect();
    b.eval(&format!(
        "(() => {{ const f = document.querySelector('#policy-form'); {sets}return true; }})()"
    ))
    .await;
}

/// A queue's rate limit, concurrency and breaker set from the Queues page: the dialog opens
/// with what the cluster holds and follows it live while open; a save reaches the cluster and
/// the row; a value the page can tell is wrong is refused without a call, and one only the
/// server knows is out of range (over `QUEUE_CONCURRENCY_MAX`) shows the server's
/// INVALID_ARGUMENT naming the field and changes nothing; 0 turns a part off.
async fn queue_policy_from_page(b: &mut Browser, rest: &Rest) {
    // A queue of one job no worker takes (a payload), so it is listed.
    rest.ok(
        "POST",
        "/v1/jobs",
        Some(json!({"queue": "limited", "payload": ""})),
    )
    .await;
    b.show("#/queues").await;
    let open = "document.querySelector('#policy-dialog').open";
    let now = "document.querySelector('#policy-dialog').dataset.now";
    let edit = "tr[data-queue=limited] button[data-action=policy]";
    let row = "document.querySelector('tr[data-queue=limited]')";
    let held = || async {
        let q = rest.ok("GET", "/v1/queues/limited", None).await;
        policy_of(&q)
    };
    b.click(edit).await;
    b.wait("the policy dialog", open).await;
    let shown: Value =
        serde_json::from_str(b.eval(now).await.as_str().expect("now")).expect("json");
    assert_eq!(shown, held().await, "the dialog shows the cluster's");
    assert_eq!(shown, json!([0, 0, 0, 0, 0, 0]), "no policy yet");

    fill(
        b,
        &[
            ("rate_count", "5"),
            ("rate_per_s", "60"),
            ("concurrency", "3"),
            ("breaker_threshold_pct", "50"),
            ("breaker_window", "20"),
            ("breaker_cooldown_s", "45"),
        ],
    )
    .await;
    b.click("#policy-save").await;
    wait_for("the policy in the cluster", PAGE_TIMEOUT, || async {
        let q = rest.ok("GET", "/v1/queues/limited", None).await;
        (policy_of(&q) == json!([5, 60_000, 3, 50, 20, 45_000]) && q["breaker_state"] == "closed")
            .then_some(())
    })
    .await;
    b.wait(
        "the new policy on the row, the dialog closed",
        &format!(
            "!{open} && {row}.dataset.rate === '5/60000' && {row}.dataset.concurrency === '3' \
             && {row}.dataset.breaker === '50/20/45000' \
             && {row}.querySelector('[data-col=breaker]').textContent.startsWith('closed')"
        ),
    )
    .await;

    // Open again; another operator's change (over REST) reaches the open dialog and the row.
    b.click(edit).await;
    b.wait("the policy dialog again", open).await;
    let other = json!({"rate_count": 5, "rate_per_ms": 60_000, "concurrency": 2,
        "breaker_threshold_pct": 50, "breaker_window": 20, "breaker_cooldown_ms": 45_000});
    rest.ok("PUT", "/v1/queues/limited/policy", Some(other))
        .await;
    let want = json!([5, 60_000, 2, 50, 20, 45_000]);
    b.wait(
        "the other change in the open dialog",
        &format!("{now} === '{want}' && {row}.dataset.concurrency === '2'"),
    )
    .await;

    policy_refused(b).await;
    assert_eq!(held().await, want, "a refused policy changes nothing");
    assert_eq!(b.eval(&format!("{row}.dataset.concurrency")).await, "2");

    // 0 leases turns the rate limit off and keeps the rest.
    fill(b, &[("concurrency", "2"), ("rate_count", "0")]).await;
    b.click("#policy-save").await;
    let want = json!([0, 0, 2, 50, 20, 45_000]);
    wait_for("the rate limit off", PAGE_TIMEOUT, || async {
        (held().await == want).then_some(())
    })
    .await;
    b.wait(
        "the rate limit off on the row",
        &format!("!{open} && {row}.dataset.rate === '0/0' && {row}.dataset.concurrency === '2'"),
    )
    .await;
    // Cancel closes the dialog and sends nothing.
    b.click(edit).await;
    b.wait("the policy dialog, last time", open).await;
    b.click("#policy-cancel").await;
    b.wait("the dialog closed", &format!("!{open}")).await;
    assert_eq!(b.eval("window.puts").await, 2);
}

/// In the open policy dialog: a value the page can tell is wrong is refused without a call;
/// one only the server knows is out of range (over `QUEUE_CONCURRENCY_MAX`) is sent and the
/// server's INVALID_ARGUMENT, naming the field, is shown; the dialog stays open. Counts the
/// page's PUTs in `window.puts` from here on.
async fn policy_refused(b: &mut Browser) {
    let open = "document.querySelector('#policy-dialog').open";
    // The page's own check: no call is made (PUTs counted where the page makes them).
    b.eval(
        "(() => { window.puts = 0; const f = window.fetch; window.fetch = (u, i) => { \
         if (i && i.method === 'PUT') window.puts++; return f(u, i); }; return true; })()",
    )
    .await;
    let error = "document.querySelector('#policy-error')";
    fill(b, &[("concurrency", "-1")]).await;
    b.click("#policy-save").await;
    let text = b
        .wait(
            "the page's refusal",
            &format!("!{error}.hidden && {error}.dataset.source === 'page' && {error}.textContent"),
        )
        .await;
    assert!(
        text.as_str().is_some_and(|t| t.starts_with("concurrency:")),
        "{text}"
    );
    assert_eq!(b.eval("window.puts").await, 0, "nothing sent: {text}");

    // The server's check: its INVALID_ARGUMENT, naming the field, in the dialog.
    let over = (QUEUE_CONCURRENCY_MAX + 1).to_string();
    fill(b, &[("concurrency", &over)]).await;
    b.click("#policy-save").await;
    let text = b
        .wait(
            "the server's refusal",
            &format!(
                "!{error}.hidden && {error}.dataset.source === 'server' && \
                 {error}.dataset.status === '400' && {error}.dataset.field === 'concurrency' && \
                 {error}.textContent"
            ),
        )
        .await;
    let text = text.as_str().unwrap_or("").to_string();
    assert!(
        text.contains("INVALID_ARGUMENT") && text.contains("concurrency") && text.contains(&over),
        "{text}"
    );
    assert_eq!(b.eval("window.puts").await, 1);
    assert_eq!(b.eval(open).await, true, "the dialog stays open: {text}");
    b.screenshot("policy").await;
}

/// The steps of the workflow on screen: `[[name, state], ...]`.
const STEPS_EXPR: &str =
    "[...document.querySelectorAll('table[data-table=Steps] tbody tr[data-step]')]\
    .map(r => [r.dataset.step, r.dataset.state])";

/// The same pairs from the API.
async fn steps_of(rest: &Rest, id: u64) -> Value {
    let w = rest.ok("GET", &format!("/v1/workflows/{id}"), None).await;
    let steps = w["steps"].as_array().expect("steps").iter();
    Value::Array(steps.map(|s| json!([s["name"], s["state"]])).collect())
}

/// A running workflow controlled from its page: pause and resume (the API and the page agree
/// each time); cancel takes two clicks (the first changes nothing) and ends every step; a
/// failed step's Retry runs it again, to success, and the workflow with it.
async fn workflow_control_from_page(b: &mut Browser, rest: &Rest, flag: &Path) {
    let held = json!({"name": "held", "steps": [
        {"name": "hold", "job": {"queue": "wf", "shell": {"argv": ["sleep", "60"]}}},
        {"name": "after", "job": {"queue": "wf", "shell": {"argv": ["true"]}},
         "depends_on": [{"step": "hold"}]},
    ]});
    let id = rest.ok("POST", "/v1/workflows", Some(held)).await["id"]
        .as_u64()
        .expect("workflow id");
    b.show(&format!("#/workflow/{id}")).await;
    b.wait(
        "the hold step running",
        "document.querySelector('tr[data-step=hold]').dataset.state === 'running'",
    )
    .await;
    let controls = format!("p[data-workflow=\"{id}\"]");
    let path = format!("/v1/workflows/{id}");
    for (op, paused) in [("pause", true), ("resume", false)] {
        b.click(&format!("{controls} button[data-op={op}]")).await;
        wait_for(&format!("workflow {op}d"), PAGE_TIMEOUT, || async {
            let w = rest.ok("GET", &path, None).await;
            (w["paused"] == paused && w["state"] == "running").then_some(())
        })
        .await;
        b.wait(
            &format!("workflow {op}d on screen"),
            &format!("document.querySelector({controls:?}).dataset.paused === '{paused}'"),
        )
        .await;
    }
    let cancel = format!("{controls} button[data-op=cancel]");
    b.click(&cancel).await;
    let armed = b
        .eval(&format!("document.querySelector({cancel:?}).textContent"))
        .await;
    assert!(
        armed.as_str().unwrap_or("").starts_with("Click again"),
        "{armed}"
    );
    b.screenshot("workflow-control").await;
    let w = rest.ok("GET", &path, None).await;
    assert_eq!(w["state"], "running", "one click cancels nothing");
    b.click(&cancel).await;
    wait_for("workflow cancelled", PAGE_TIMEOUT, || async {
        let w = rest.ok("GET", &path, None).await;
        (w["state"] == "cancelled").then_some(())
    })
    .await;
    b.wait_same("steps after the cancel", STEPS_EXPR, || steps_of(rest, id))
        .await;
    assert_eq!(
        steps_of(rest, id).await,
        json!([["hold", "cancelled"], ["after", "cancelled"]])
    );
    b.wait(
        "cancelled on screen, no buttons left",
        &format!(
            "document.querySelector({controls:?}).dataset.state === 'cancelled' && \
             document.querySelectorAll('#body button[data-op]').length === 0"
        ),
    )
    .await;

    // A step that fails (the flag file is not there yet) fails the workflow; Retry after the
    // flag exists runs it again and the rest of the workflow with it.
    let _ = std::fs::remove_file(flag);
    let test = format!("test -f {}", flag.display());
    let checked = json!({"name": "checked", "steps": [
        {"name": "check", "job": {"queue": "wf", "max_attempts": 1,
                                  "shell": {"argv": ["sh", "-c", test]}}},
        {"name": "ship", "job": {"queue": "wf", "shell": {"argv": ["true"]}},
         "depends_on": [{"step": "check"}]},
    ]});
    let id = rest.ok("POST", "/v1/workflows", Some(checked)).await["id"]
        .as_u64()
        .expect("workflow id");
    let path = format!("/v1/workflows/{id}");
    wait_for("workflow failed", Duration::from_secs(30), || async {
        let w = rest.ok("GET", &path, None).await;
        (w["state"] == "failed").then_some(())
    })
    .await;
    b.show(&format!("#/workflow/{id}")).await;
    std::fs::write(flag, "").expect("flag file");
    b.click("tr[data-step=check] button[data-op=retry]").await;
    wait_for(
        "workflow succeeded after the retry",
        Duration::from_secs(30),
        || async {
            let w = rest.ok("GET", &path, None).await;
            (w["state"] == "succeeded").then_some(())
        },
    )
    .await;
    let controls = format!("p[data-workflow=\"{id}\"]");
    b.wait(
        "succeeded on screen",
        &format!("document.querySelector({controls:?}).dataset.state === 'succeeded'"),
    )
    .await;
    b.wait_same("steps after the retry", STEPS_EXPR, || steps_of(rest, id))
        .await;
    let w = rest.ok("GET", &path, None).await;
    assert_eq!(w["steps"][0]["runs"], 2, "check ran twice: {w}");
}

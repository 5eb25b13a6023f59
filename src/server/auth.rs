//! Who may call what on the public API: the one table of methods and roles ([`METHODS`]), and
//! the gate that checks every call against it before the handler runs.
//!
//! The gate is a tower layer in front of the `Api` service: it reads the method from the path
//! and the secret from `authorization: Bearer <secret>`, finds the token by the secret's hash
//! in this node's applied state, and refuses with UNAUTHENTICATED (no token, unknown, expired)
//! or PERMISSION_DENIED (role) before a byte of the request is decoded, so a refusal writes
//! nothing. Queue limits need the request, so handlers check them with [`Caller`].
//!
//! Revocation takes effect on a node when it applies the revoke (a follower a few ms behind
//! still accepts the token for those ms).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tonic::Status;

use crate::machine::auth::{Role, Token};
use crate::machine::Command;
use crate::raft::Replica;

use Role::{Admin, Operator, Submitter, Viewer, Worker};

const READ: &[Role] = &[Admin, Operator, Submitter, Viewer];
const SUBMIT: &[Role] = &[Admin, Operator, Submitter];
const OPERATE: &[Role] = &[Admin, Operator];
const WORK: &[Role] = &[Admin, Worker];
const LOCK: &[Role] = &[Admin, Operator, Worker];
const ANY: &[Role] = &[Admin, Operator, Submitter, Worker, Viewer];
const ADMIN: &[Role] = &[Admin];

/// Every method of the `Api` service and the roles that may call it. A method missing here is
/// refused to everyone (and fails the test that walks the service descriptor).
pub const METHODS: &[(&str, &[Role])] = &[
    ("Submit", SUBMIT),
    ("SubmitBatch", SUBMIT),
    ("GetJob", READ),
    ("ListJobs", READ),
    ("CancelJob", OPERATE),
    ("RetryJob", OPERATE),
    ("BulkJobs", OPERATE),
    ("PauseQueue", OPERATE),
    ("ResumeQueue", OPERATE),
    ("GetQueue", READ),
    ("ListQueues", READ),
    ("PurgeDead", OPERATE),
    ("Lease", WORK),
    ("Heartbeat", WORK),
    ("Complete", WORK),
    ("CompleteAndLease", WORK),
    ("Checkpoint", WORK),
    ("Release", WORK),
    ("SubmitWorkflow", SUBMIT),
    ("GetWorkflow", READ),
    ("ListWorkflows", READ),
    ("ControlWorkflow", OPERATE),
    ("SetResource", OPERATE),
    ("ListResources", READ),
    ("AcquireLock", LOCK),
    ("RenewLock", LOCK),
    ("ReleaseLock", LOCK),
    ("SetQueuePolicy", OPERATE),
    ("CreateSchedule", OPERATE),
    ("GetSchedule", READ),
    ("ListSchedules", READ),
    ("ControlSchedule", OPERATE),
    ("Emit", SUBMIT),
    ("CreateTrigger", OPERATE),
    ("ListTriggers", READ),
    ("DeleteTrigger", OPERATE),
    ("CreateTimer", SUBMIT),
    ("ListTimers", READ),
    ("CancelTimer", OPERATE),
    ("NodeStatus", ANY),
    ("CreateToken", ADMIN),
    ("ListTokens", ADMIN),
    ("RevokeToken", ADMIN),
    ("ListAudit", ADMIN),
    ("ChangeMembership", ADMIN),
    ("SaveSnapshot", ADMIN),
    // The leader POSTs wherever a webhook's URL says, signed with its secret: admin only. A
    // URL may itself hold a credential (chat webhooks do), so reading them is for operators.
    ("CreateWebhook", ADMIN),
    ("DeleteWebhook", ADMIN),
    ("ListWebhooks", OPERATE),
    ("TestWebhook", OPERATE),
    ("ListWebhookDeliveries", OPERATE),
    // An importer keeps its position in a cursor as it submits: whoever may submit may put,
    // except a token limited to some queues (a cursor names none; the handler refuses).
    ("GetCursor", READ),
    ("PutCursor", SUBMIT),
];

tokio::task_local! {
    /// The caller of the call being served, set by the gate around the whole call so the
    /// write it makes can be attributed (`server/api/mod.rs`, `attributed`).
    pub static CALLER: Caller;
}

/// The roles that may call `method` (the last path segment), if it is in the table.
pub fn allowed(method: &str) -> Option<&'static [Role]> {
    METHODS.iter().find(|(m, _)| *m == method).map(|(_, r)| *r)
}

/// Who is calling, as the handlers see it: the token, or `None` when auth is off.
#[derive(Debug, Clone, Default)]
pub struct Caller(pub Option<Arc<Token>>);

impl Caller {
    /// Whether the token is limited to some queues.
    pub fn is_scoped(&self) -> bool {
        self.0.as_ref().is_some_and(|t| t.is_scoped())
    }

    /// Refuses a call on `queue` the token is not limited to, naming `field`.
    pub fn check_queue(&self, field: &str, queue: &str) -> Result<(), Status> {
        match &self.0 {
            Some(t) if !t.allows_queue(queue) => {
                Err(Status::permission_denied(crate::error::bounded(format!(
                    "{field}: token {} is limited to queues {}; {queue:?} is not one",
                    t.id,
                    t.queues.join(", ")
                ))))
            }
            _ => Ok(()),
        }
    }

    /// Refuses a token limited to some queues a call that names no queue (every queue).
    pub fn check_all_queues(&self, field: &str) -> Result<(), Status> {
        match &self.0 {
            Some(t) if t.is_scoped() => Err(Status::permission_denied(format!(
                "{field}: token {} is limited to queues {}; name one",
                t.id,
                t.queues.join(", ")
            ))),
            _ => Ok(()),
        }
    }
}

/// Per-token token bucket: (tokens left, last refill).
type Buckets = HashMap<String, (f64, Instant)>;

/// The checks every call goes through; shared by the connections of one node.
pub struct Gate {
    replica: Arc<Replica>,
    enabled: bool,
    /// Hash of this node's own bootstrap secret: accepted as admin before its `BootstrapToken`
    /// commits (unless revoked), so the first call after start doesn't race it.
    local_bootstrap: Option<String>,
    /// Calls per second and bucket size per token; 0 = unlimited.
    rate: (u32, u32),
    buckets: Mutex<Buckets>,
    /// Tokens used since the last report: id → wall-clock ms.
    used: Mutex<HashMap<String, u64>>,
}

impl Gate {
    /// A gate over this node's state; with `enabled` false every call passes as admin.
    pub fn new(
        replica: Arc<Replica>,
        enabled: bool,
        local_bootstrap: Option<String>,
        rate: (u32, u32),
    ) -> Arc<Gate> {
        Arc::new(Gate {
            replica,
            enabled,
            local_bootstrap,
            rate,
            buckets: Mutex::new(HashMap::new()),
            used: Mutex::new(HashMap::new()),
        })
    }

    /// Checks one call: method from `path`, secret from `headers`.
    pub fn check(&self, path: &str, headers: &http::HeaderMap) -> Result<Caller, Status> {
        let method = path.rsplit('/').next().unwrap_or("");
        let Some(roles) = allowed(method) else {
            let message = crate::error::bounded(format!("no method {path:?}"));
            return Err(Status::unimplemented(message));
        };
        if !self.replica.has_membership() {
            // A node waiting to be added holds no state and no tokens: it says so to every
            // call but its own status, which `cluster status` shows to anyone.
            if method == "NodeStatus" {
                return Ok(Caller(None));
            }
            return Err(crate::error::not_member_status(self.replica.id()));
        }
        if !self.enabled {
            return Ok(Caller(None));
        }
        let secret = bearer(headers)?;
        let hash = crate::access::hash(secret);
        let token = self
            .replica
            .read(|m| {
                let auth = m.auth();
                auth.by_hash(&hash).cloned().or_else(|| {
                    let own = self.local_bootstrap.as_deref() == Some(hash.as_str());
                    (own && !auth.is_revoked_bootstrap(&hash)).then(|| self.own_bootstrap(&hash))
                })
            })
            .ok_or_else(|| {
                Status::unauthenticated("the token is not valid (unknown or revoked)")
            })?;
        let now = wall_ms();
        if token.expires_ms.is_some_and(|e| e <= now) {
            return Err(Status::unauthenticated(format!(
                "token {} expired",
                token.id
            )));
        }
        if !roles.contains(&token.role) {
            return Err(Status::permission_denied(format!(
                "{method}: token {} has role {}; this call needs one of {}",
                token.id,
                token.role.name(),
                roles
                    .iter()
                    .map(|r| r.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        self.take(&token.id)?;
        self.used
            .lock()
            .expect("gate lock")
            .insert(token.id.clone(), now);
        Ok(Caller(Some(Arc::new(token))))
    }

    fn own_bootstrap(&self, hash: &str) -> Token {
        Token {
            id: crate::machine::auth::bootstrap_id(self.replica.id()),
            name: "bootstrap token (not yet replicated)".into(),
            role: Admin,
            queues: Vec::new(),
            hash: hash.to_string(),
            created_ms: 0,
            expires_ms: None,
            last_used_ms: None,
        }
    }

    /// Takes one call from the token's bucket.
    fn take(&self, id: &str) -> Result<(), Status> {
        let (rate, burst) = self.rate;
        if rate == 0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().expect("gate lock");
        let now = Instant::now();
        if buckets.len() > crate::machine::limits::TOKENS_MAX {
            buckets.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(60));
        }
        let (left, at) = buckets
            .entry(id.to_string())
            .or_insert((f64::from(burst), now));
        *left =
            (*left + now.duration_since(*at).as_secs_f64() * f64::from(rate)).min(f64::from(burst));
        *at = now;
        if *left < 1.0 {
            crate::metrics::EVENTS
                .api_rate_limited
                .get_or_create(&crate::metrics::label("token", id))
                .inc();
            return Err(Status::resource_exhausted(format!(
                "token {id} is over its rate limit of {rate} calls per second"
            )));
        }
        *left -= 1.0;
        Ok(())
    }

    /// Reports which tokens were used (`TouchTokens`) once a minute, until `stopped`.
    pub async fn report_use(self: Arc<Self>, stopped: impl std::future::Future<Output = ()>) {
        let report = async {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let used: Vec<(String, u64)> = {
                    let mut map = self.used.lock().expect("gate lock");
                    map.drain().collect()
                };
                if !used.is_empty() {
                    if let Err(e) = self.replica.propose(Command::TouchTokens(used)).await {
                        tracing::debug!("token use report not committed: {e}");
                    }
                }
            }
        };
        tokio::select! {
            () = report => {}
            () = stopped => {}
        }
    }
}

fn bearer(headers: &http::HeaderMap) -> Result<&str, Status> {
    let value = headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
        Status::unauthenticated(
            "no token: send `authorization: Bearer <secret>` (CLI: --token, RAFTLINE_TOKEN or \
             --token-file)",
        )
    })?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Status::unauthenticated("the authorization header is not `Bearer <secret>`"))
}

/// Wall-clock milliseconds since the epoch (token expiry is checked against the node's clock).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The layer that puts a [`Gate`] in front of a service.
#[derive(Clone)]
pub struct AuthLayer(pub Arc<Gate>);

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authed<S>;

    fn layer(&self, inner: S) -> Authed<S> {
        Authed {
            inner,
            gate: self.0.clone(),
        }
    }
}

/// A service behind the gate.
#[derive(Clone)]
pub struct Authed<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Authed<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Authed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let started = std::time::Instant::now();
        let rpc = req.uri().path().rsplit('/').next().unwrap_or("");
        let rpc: &'static str = METHODS
            .iter()
            .find(|(m, _)| *m == rpc)
            .map_or("other", |(m, _)| m);
        let answered = move |response: &http::Response<tonic::body::Body>| {
            // An error is a trailers-only reply: its code is in the headers.
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or(tonic::Code::Ok, tonic::Code::from_i32);
            crate::metrics::EVENTS.api_call(rpc, &format!("{code:?}"), started.elapsed());
        };
        match self.gate.check(req.uri().path(), req.headers()) {
            Ok(caller) => {
                req.extensions_mut().insert(caller.clone());
                let call = CALLER.scope(caller, self.inner.call(req));
                Box::pin(async move {
                    let response = call.await?;
                    answered(&response);
                    Ok(response)
                })
            }
            Err(status) => {
                let response = status.into_http();
                answered(&response);
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Every RPC of the `Api` service, as the compiled descriptor lists them, has an entry in
    /// [`METHODS`], and every entry names an RPC: a new RPC without one fails here.
    #[test]
    fn every_api_method_is_in_the_role_table() {
        let bytes = include_bytes!(concat!(env!("OUT_DIR"), "/raftline_descriptor.bin"));
        let set = prost_types::FileDescriptorSet::decode(&bytes[..]).expect("descriptor set");
        let api = set
            .file
            .iter()
            .flat_map(|f| f.service.iter())
            .find(|s| s.name() == "Api")
            .expect("service Api");
        let rpcs: Vec<&str> = api.method.iter().map(|m| m.name()).collect();
        for rpc in &rpcs {
            assert!(
                allowed(rpc).is_some(),
                "RPC {rpc} has no entry in server/auth.rs METHODS: say which roles may call it"
            );
        }
        for (method, roles) in METHODS {
            assert!(rpcs.contains(method), "METHODS names {method}, not an RPC");
            assert!(
                roles.contains(&Role::Admin),
                "{method}: admin may do everything"
            );
        }
        assert_eq!(rpcs.len(), METHODS.len(), "one entry per RPC");
    }
}

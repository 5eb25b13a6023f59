//! Who gets in: on real 3-node clusters with auth and mutual TLS on, every API method with no
//! token, a bad token, an expired one and each role gives the status the role table promises
//! and refusals write nothing; a queue-limited token stays in its queues; a process without a
//! cluster certificate can't get a vote counted or an entry appended on the peer port; shell
//! jobs run with least privilege.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, Settings};
use raftline::machine::auth::Role;
use raftline::proto::pb;
use raftline::proto::pb::api_client::ApiClient;
use raftline::server::auth::{allowed, METHODS};
use tonic::transport::Channel;
use tonic::Code;

/// A TLS channel to `addr` trusting `ca`, presenting `identity` when given.
async fn tls_channel(
    addr: &str,
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> Channel {
    let config = raftline::tls::client_config(ca, identity).expect("client config");
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect_with_connector_lazy(raftline::tls::Connector::new(
            move || Arc::clone(&config),
            None,
        ))
}

/// Calls `method` with an empty request and `token` (none when `None`); returns the status
/// code (`Ok` for a reply).
async fn call(channel: &Channel, token: Option<&str>, method: &str) -> Code {
    let bearer: Option<tonic::metadata::MetadataValue<_>> =
        token.map(|t| format!("Bearer {t}").parse().expect("header"));
    let mut api =
        ApiClient::with_interceptor(channel.clone(), move |mut req: tonic::Request<()>| {
            if let Some(b) = &bearer {
                req.metadata_mut().insert("authorization", b.clone());
            }
            Ok(req)
        });
    macro_rules! dispatch {
        ($($name:literal => $call:ident($req:ty)),+ $(,)?) => {
            match method {
                $($name => api.$call(<$req>::default()).await.map(|_| ()),)+
                other => panic!("no call for {other}: add it to this table"),
            }
        };
    }
    let result = dispatch!(
        "Submit" => submit(pb::SubmitRequest),
        "SubmitBatch" => submit_batch(pb::SubmitBatchRequest),
        "GetJob" => get_job(pb::GetJobRequest),
        "ListJobs" => list_jobs(pb::ListJobsRequest),
        "CancelJob" => cancel_job(pb::JobRef),
        "RetryJob" => retry_job(pb::RetryJobRequest),
        "BulkJobs" => bulk_jobs(pb::BulkJobsRequest),
        "PauseQueue" => pause_queue(pb::QueueRef),
        "ResumeQueue" => resume_queue(pb::QueueRef),
        "GetQueue" => get_queue(pb::QueueRef),
        "ListQueues" => list_queues(pb::ListQueuesRequest),
        "PurgeDead" => purge_dead(pb::PurgeDeadRequest),
        "Lease" => lease(pb::LeaseRequest),
        "Heartbeat" => heartbeat(pb::HeartbeatRequest),
        "Complete" => complete(pb::CompleteRequest),
        "CompleteAndLease" => complete_and_lease(pb::CompleteAndLeaseRequest),
        "Checkpoint" => checkpoint(pb::CheckpointRequest),
        "Release" => release(pb::ReleaseRequest),
        "SubmitWorkflow" => submit_workflow(pb::SubmitWorkflowRequest),
        "GetWorkflow" => get_workflow(pb::GetWorkflowRequest),
        "ListWorkflows" => list_workflows(pb::ListWorkflowsRequest),
        "ControlWorkflow" => control_workflow(pb::ControlWorkflowRequest),
        "SetResource" => set_resource(pb::SetResourceRequest),
        "ListResources" => list_resources(pb::ListResourcesRequest),
        "AcquireLock" => acquire_lock(pb::AcquireLockRequest),
        "RenewLock" => renew_lock(pb::RenewLockRequest),
        "ReleaseLock" => release_lock(pb::ReleaseLockRequest),
        "SetQueuePolicy" => set_queue_policy(pb::SetQueuePolicyRequest),
        "CreateSchedule" => create_schedule(pb::CreateScheduleRequest),
        "GetSchedule" => get_schedule(pb::ScheduleRef),
        "ListSchedules" => list_schedules(pb::ListSchedulesRequest),
        "ControlSchedule" => control_schedule(pb::ControlScheduleRequest),
        "Emit" => emit(pb::EmitRequest),
        "CreateTrigger" => create_trigger(pb::CreateTriggerRequest),
        "ListTriggers" => list_triggers(pb::ListTriggersRequest),
        "DeleteTrigger" => delete_trigger(pb::TriggerRef),
        "CreateTimer" => create_timer(pb::CreateTimerRequest),
        "ListTimers" => list_timers(pb::ListTimersRequest),
        "CancelTimer" => cancel_timer(pb::TimerRef),
        "NodeStatus" => node_status(pb::NodeStatusRequest),
        "CreateToken" => create_token(pb::CreateTokenRequest),
        "ListTokens" => list_tokens(pb::ListTokensRequest),
        "RevokeToken" => revoke_token(pb::RevokeTokenRequest),
        "ListAudit" => list_audit(pb::ListAuditRequest),
        "ChangeMembership" => change_membership(pb::ChangeMembershipRequest),
        "SaveSnapshot" => save_snapshot(pb::SaveSnapshotRequest),
        "CreateWebhook" => create_webhook(pb::CreateWebhookRequest),
        "ListWebhooks" => list_webhooks(pb::ListWebhooksRequest),
        "DeleteWebhook" => delete_webhook(pb::WebhookRef),
        "TestWebhook" => test_webhook(pb::WebhookRef),
        "ListWebhookDeliveries" => list_webhook_deliveries(pb::ListWebhookDeliveriesRequest),
        "GetCursor" => get_cursor(pb::GetCursorRequest),
        "PutCursor" => put_cursor(pb::PutCursorRequest),
    );
    match result {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// A new token's secret.
async fn token(c: &Cluster, role: &str, queues: &[&str], ttl_ms: u64) -> String {
    c.client()
        .create_token(pb::CreateTokenRequest {
            name: format!("test-{role}"),
            role: role.into(),
            queues: queues.iter().map(|q| q.to_string()).collect(),
            ttl_ms,
        })
        .await
        .expect("create token")
        .secret
}

/// Every job and queue, as the admin reads them: what a refusal must leave unchanged.
async fn footprint(c: &Cluster) -> (usize, usize) {
    let client = c.client();
    let jobs = client
        .list_jobs(pb::ListJobsRequest {
            limit: 1_000,
            ..Default::default()
        })
        .await
        .expect("list jobs")
        .len();
    let queues = client.queues(false).await.expect("list queues").len();
    (jobs, queues)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_method_checks_token_and_role() {
    let c = Cluster::start(Settings {
        tls: true,
        ..Settings::default()
    })
    .await;
    let client = c.client();
    client
        .submit(common::shell_job("build", &["true"]))
        .await
        .expect("admin submits");
    let ca = c.access.ca_file.clone().expect("tls cluster");
    let channel = tls_channel(&c.node(1).api, &ca, None).await;
    let mut roles = Vec::new();
    for role in &Role::ALL {
        let secret = match role {
            Role::Admin => c.access.token.clone().expect("admin token"),
            other => token(&c, other.name(), &[], 0).await,
        };
        roles.push((*role, secret));
    }
    let expired = token(&c, "admin", &[], 1).await;
    let before = footprint(&c).await;

    for (method, _) in METHODS {
        for (who, token) in [
            ("no token", None),
            ("a bad token", Some("rl_not-a-token")),
            ("an expired token", Some(expired.as_str())),
        ] {
            let code = call(&channel, token, method).await;
            assert_eq!(code, Code::Unauthenticated, "{method} with {who}");
        }
        for (role, secret) in &roles {
            let code = call(&channel, Some(secret), method).await;
            let may = allowed(method).expect("in the table").contains(role);
            if may {
                assert!(
                    !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                    "{method} as {}: {code:?}",
                    role.name()
                );
            } else {
                assert_eq!(code, Code::PermissionDenied, "{method} as {}", role.name());
            }
        }
    }
    assert_eq!(footprint(&c).await, before, "refusals changed the state");
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_limited_token_stays_in_its_queues() {
    let c = Cluster::start(Settings::default()).await;
    let admin = c.client();
    let other = admin
        .submit(common::shell_job("deploy", &["true"]))
        .await
        .expect("submit");
    let secret = token(&c, "operator", &["build-*"], 0).await;
    let scoped = raftline::client::Client::with_access(
        &[c.node(1).api.clone()],
        &raftline::client::Access {
            token: Some(secret),
            ca_file: None,
        },
    )
    .expect("client");
    let own = scoped
        .submit(common::shell_job("build-web", &["true"]))
        .await
        .expect("a limited token submits to its queues");
    let before = footprint(&c).await;
    let refusals = [
        (
            "submit",
            scoped
                .submit(common::shell_job("deploy", &["true"]))
                .await
                .err(),
        ),
        ("get other", scoped.job(other, false).await.err()),
        ("cancel other", scoped.cancel(other).await.err()),
        ("pause other", scoped.pause("deploy", true).await.err()),
        (
            "list every queue",
            scoped.list_jobs(pb::ListJobsRequest::default()).await.err(),
        ),
        (
            "move a cursor",
            scoped
                .put_cursor("import:redis:h:6379/0:stream:s", b"9-9".to_vec(), None)
                .await
                .err(),
        ),
    ];
    for (what, err) in refusals {
        let err = err.unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(
            matches!(err, raftline::error::Error::PermissionDenied(_)),
            "{what}: {err}"
        );
    }
    assert_eq!(footprint(&c).await, before, "refusals changed the state");
    scoped
        .job(own, false)
        .await
        .expect("reads its own queue's job");
}

/// A stranger on the peer port: plaintext, TLS without a certificate, and a certificate from
/// another CA each fail to deliver a high-term vote or heartbeat; the cluster's own
/// certificate gets an answer, so the refusals are the certificate's doing.
#[tokio::test(flavor = "multi_thread")]
async fn peer_port_refuses_strangers() {
    use openraft::raft::{AppendEntriesRequest, VoteRequest};
    use openraft::{CommittedLeaderId, LogId, Vote};
    use raftline::machine::codec;
    use raftline::proto::pb::raft_peer_client::RaftPeerClient;

    let c = Cluster::start(Settings {
        tls: true,
        ..Settings::default()
    })
    .await;
    let leader = c.wait_leader(None).await;
    let term = c.status(leader).await.expect("status").term;
    let ca = c.access.ca_file.clone().expect("tls cluster");
    let foreign = tempfile::tempdir().expect("dir");
    raftline::tls::init_certs(
        foreign.path(),
        &[(99, vec![std::net::Ipv4Addr::LOCALHOST.into()])],
    )
    .expect("foreign certs");
    let (f_cert, f_key) = (
        foreign.path().join("node-99.pem"),
        foreign.path().join("node-99-key.pem"),
    );
    let certs = c.dir.path().join("certs");
    let (own_cert, own_key) = (certs.join("node-1.pem"), certs.join("node-1-key.pem"));

    let forged_term = term + 1_000;
    let vote = codec::encode(&VoteRequest::<u64> {
        vote: Vote::new(forged_term, 99),
        last_log_id: Some(LogId::new(CommittedLeaderId::new(forged_term, 99), 1 << 40)),
    })
    .expect("encode");
    let append = codec::encode(&AppendEntriesRequest::<raftline::raft::TypeConfig> {
        vote: Vote::new_committed(forged_term, 99),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    })
    .expect("encode");

    for target in c.ids() {
        let addr = c.node(target).raft.clone();
        let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        let strangers = [
            ("plaintext", plain),
            (
                "TLS without a certificate",
                tls_channel(&addr, &ca, None).await,
            ),
            (
                "a certificate of another CA",
                tls_channel(&addr, &ca, Some((&f_cert, &f_key))).await,
            ),
        ];
        for (who, channel) in strangers {
            let mut peer = RaftPeerClient::new(channel);
            let v = peer.vote(pb::PeerBytes { data: vote.clone() }).await;
            assert!(v.is_err(), "{who}: vote to node {target} answered");
            let a = peer
                .append_entries(pb::PeerBytes {
                    data: append.clone(),
                })
                .await;
            assert!(a.is_err(), "{who}: append to node {target} answered");
        }
        // Control: the cluster's own certificate is heard (a low-term vote, refused by Raft).
        let mut member =
            RaftPeerClient::new(tls_channel(&addr, &ca, Some((&own_cert, &own_key))).await);
        let low = codec::encode(&VoteRequest::<u64> {
            vote: Vote::new(0, 1),
            last_log_id: None,
        })
        .expect("encode");
        member
            .vote(pb::PeerBytes { data: low })
            .await
            .unwrap_or_else(|e| panic!("member vote to node {target}: {e}"));
    }
    for id in c.ids() {
        let s = c.status(id).await.expect("status");
        assert!(s.term < forged_term, "node {id} took term {}", s.term);
        assert_eq!(s.term, term, "node {id} changed term");
        assert_eq!(s.leader, Some(leader), "node {id} changed leader");
    }
}

#[test]
fn exposed_address_needs_auth_and_tls() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("cluster.toml");
    let mut text = String::from("[cluster]\nname = \"t\"\ndata_dir = \"data\"\n");
    for id in 1..=3 {
        text.push_str(&format!(
            "\n[[node]]\nid = {id}\nraft_addr = \"0.0.0.0:{}\"\napi_addr = \"127.0.0.1:{}\"\n\
             http_addr = \"127.0.0.1:{}\"\n",
            common::free_port(),
            common::free_port(),
            common::free_port()
        ));
    }
    std::fs::write(&config, &text).expect("write");
    let err = raftline::config::Config::load(&config).expect_err("exposed without TLS");
    let message = err.to_string();
    assert!(message.contains("0.0.0.0"), "{message}");
    assert!(message.contains("insecure"), "{message}");
    std::fs::write(
        &config,
        text.replace("[cluster]\n", "[cluster]\ninsecure = true\n"),
    )
    .expect("write");
    raftline::config::Config::load(&config).expect("insecure = true accepts it");
}

/// A flood of idle connections on the API and HTTP ports: the one past the limit is closed at
/// once, the node keeps its place in the cluster, and it answers again when the flood ends.
#[tokio::test(flavor = "multi_thread")]
async fn idle_connection_flood_is_capped() {
    use raftline::machine::limits;
    use tokio::io::AsyncReadExt;

    let mut c = Cluster::start(Settings::default()).await;
    let mut flood = Vec::new();
    for (addr, max) in [
        (c.node(1).api.clone(), limits::API_CONNECTIONS_MAX),
        (c.node(1).http.clone(), limits::HTTP_CONNECTIONS_MAX),
    ] {
        for _ in 0..max {
            flood.push(
                tokio::net::TcpStream::connect(&addr)
                    .await
                    .expect("connect"),
            );
        }
        let mut extra = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let mut byte = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "{addr}: connection {} past the limit was kept: {read:?}",
            max + 1
        );
    }
    // The node still takes part: a write through another node commits with it in the group.
    let id = c
        .client_of(&[2])
        .submit(common::shell_job("flood", &["true"]))
        .await
        .expect("submit during the flood");
    assert!(c.try_exit(1).is_none(), "node 1 exited");
    drop(flood);
    let client = c.client_of(&[1]);
    common::wait_for("node 1 answers again", Duration::from_secs(30), || async {
        client.job(id, false).await.ok()
    })
    .await;
}

/// Jobs with the largest payloads page by bytes: a listing never overflows the message limit
/// and following the cursor reads every job once.
#[tokio::test(flavor = "multi_thread")]
async fn large_jobs_list_in_pages_by_bytes() {
    use raftline::machine::limits;

    let c = Cluster::start(Settings::default()).await;
    let client = c.client();
    let payload = vec![b'x'; limits::PAYLOAD_BYTES_MAX];
    let mut ids = Vec::new();
    for _ in 0..20 {
        let req = pb::SubmitRequest {
            queue: "big".into(),
            kind: Some(pb::submit_request::Kind::Payload(payload.clone())),
            ..Default::default()
        };
        match client.submit(req).await {
            Ok(id) => ids.push(id),
            Err(e) => {
                for id in c.ids() {
                    eprintln!("--- node {id}\n{}", c.log(id));
                }
                panic!("submit: {e}");
            }
        }
    }
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .list_jobs(pb::ListJobsRequest {
                queue: "big".into(),
                after_id: after,
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("a page of large jobs");
        let Some(last) = page.last() else { break };
        assert!(page.len() < 20, "one page held {} large jobs", page.len());
        after = last.id;
        seen.extend(page.iter().map(|j| j.id));
    }
    assert_eq!(seen, ids);
}

/// The job `id` once it has finished.
async fn finished(c: &Cluster, id: u64) -> pb::Job {
    let client = c.client();
    common::wait_for(
        &format!("job {id} to finish"),
        Duration::from_secs(30),
        || async {
            let job = client.job(id, false).await.ok()?;
            ["succeeded", "dead", "cancelled"]
                .contains(&job.state.as_str())
                .then_some(job)
        },
    )
    .await
}

/// Submits `argv` to `queue` and returns the finished job.
async fn run_job(c: &Cluster, queue: &str, argv: &[&str]) -> pb::Job {
    let mut req = common::shell_job(queue, argv);
    req.max_attempts = 1;
    let id = c.client().submit(req).await.expect("submit");
    finished(c, id).await
}

/// Shell jobs run with least privilege: with nothing configured, a node running as root runs
/// them as `nobody`, and only a rule naming root runs them as root; they see only the passed
/// variables; the configured limits are set; a queue with an executables list can start only
/// those programs, anything else dying at once as a permanent failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_with_least_privilege() {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut jobs = String::from(
        "[jobs]\ncpu_seconds = 7\nopen_files = 100\nenv_pass = [\"PATH\", \"RL_TEST_PASSED\"]\n\
         [[jobs.queue]]\nqueues = \"locked-*\"\nexecutables = [\"echo\"]\n",
    );
    if root {
        jobs.push_str("[[jobs.queue]]\nqueues = \"admin\"\nrun_as = \"root\"\n");
    }
    let c = Cluster::start(Settings {
        jobs: Some(jobs),
        node_env: vec![
            ("RL_TEST_PASSED".into(), "yes".into()),
            ("RL_TEST_SECRET".into(), "hush".into()),
        ],
        ..Settings::default()
    })
    .await;
    let script = "id -u; echo \"p=$RL_TEST_PASSED s=$RL_TEST_SECRET\"; ulimit -n; ulimit -t";
    let job = run_job(&c, "open", &["sh", "-c", script]).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    // SAFETY: as above.
    let uid = if root {
        65534
    } else {
        unsafe { libc::geteuid() }
    };
    assert_eq!(
        job.attempts[0].output_tail,
        format!("{uid}\np=yes s=\n100\n7\n"),
        "{job:?}"
    );

    let job = run_job(&c, "locked-a", &["sh", "-c", "echo escaped"]).await;
    assert_eq!(job.state, "dead", "{job:?}");
    assert_eq!(job.attempts.len(), 1, "{job:?}");
    assert_eq!(job.attempts[0].error_class, "permanent", "{job:?}");
    assert!(
        job.attempts[0].error.contains("executables"),
        "{:?}",
        job.attempts[0].error
    );
    let job = run_job(&c, "locked-b", &["echo", "allowed"]).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    assert_eq!(job.attempts[0].output_tail, "allowed\n");

    if root {
        let job = run_job(&c, "admin", &["id", "-u"]).await;
        assert_eq!(job.attempts[0].output_tail, "0\n", "{job:?}");
    } else {
        eprintln!("not root: the switch to nobody and the root rule are not exercised");
    }
}

/// A node that can't run jobs as the configured user refuses to start, naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_run_as_user_is_refused_at_start() {
    let c = Cluster::new(Settings {
        jobs: Some("[jobs]\nrun_as = \"no-such-user-here\"\n".into()),
        ..Settings::default()
    });
    let out = std::process::Command::new(common::BIN)
        .args(["node", "--config"])
        .arg(&c.config)
        .args(["--id", "1"])
        .output()
        .expect("run node");
    assert_eq!(out.status.code(), Some(2), "{}", common::show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("jobs.run_as: no user \"no-such-user-here\""),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Writes node `id`'s certificate again, signed by the cluster CA of `certs` but valid only in
/// 2020.
fn write_expired_cert(certs: &std::path::Path, id: u64) {
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(certs.join("ca-key.pem")).unwrap())
            .expect("ca key");
    // The same subject and key as the CA `certs init` made: what a chain is checked by.
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "raftline cluster CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".into(), format!("node-{id}")]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::IpAddress(
        std::net::Ipv4Addr::LOCALHOST.into(),
    ));
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.signed_by(&key, &ca, &ca_key).expect("sign");
    std::fs::write(certs.join(format!("node-{id}.pem")), cert.pem()).unwrap();
    std::fs::write(
        certs.join(format!("node-{id}-key.pem")),
        key.serialize_pem(),
    )
    .unwrap();
}

/// Certificate trouble is one clear line and the right exit code, and writes nothing: a client
/// trusting another CA, a CA file that isn't there, a node whose certificate expired or whose
/// certificate file is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_problems_are_one_clear_line() {
    let mut c = Cluster::start(Settings {
        tls: true,
        ..Settings::default()
    })
    .await;
    let before = footprint(&c).await;
    let other = tempfile::tempdir().expect("temp dir");
    raftline::tls::init_certs(other.path(), &[]).expect("another CA");
    let foreign = other.path().join("ca.pem");
    let foreign = foreign.to_str().unwrap();
    let one_line = |out: &std::process::Output, code: i32, needles: &[&str]| {
        assert_eq!(out.status.code(), Some(code), "{}", common::show(out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A node logs its start-up before the error; the CLI prints the error alone.
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{stderr} should say {needle:?}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    let submit = ["submit", "--queue", "q", "--", "true"];
    let out = c.cli(&[&["--ca-file", foreign][..], &submit].concat());
    one_line(&out, 1, &["invalid peer certificate", "--ca-file"]);
    let out = c.cli(&[&["--ca-file", "no-such-ca.pem"][..], &submit].concat());
    one_line(&out, 2, &["ca_file", "no-such-ca.pem"]);
    assert_eq!(footprint(&c).await, before, "a refused call wrote");

    // Node 3 restarted with an expired certificate, then with none: it refuses to start.
    let certs = c.dir.path().join("certs");
    c.stop(3).await;
    write_expired_cert(&certs, 3);
    let node = |c: &Cluster| {
        std::process::Command::new(common::BIN)
            .args(["node", "--config"])
            .arg(&c.config)
            .args(["--id", "3"])
            .output()
            .expect("run node")
    };
    one_line(&node(&c), 2, &["node-3.pem", "expired"]);
    std::fs::remove_file(certs.join("node-3.pem")).unwrap();
    one_line(&node(&c), 2, &["cert_file", "node-3.pem", "cannot read"]);
}

/// A connection that sends nothing is closed after `connection_idle_ms` on every port, while
/// a client in a long-poll lease longer than that keeps its connection (it answers the node's
/// keepalive pings).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    use tokio::io::AsyncReadExt;
    let c = Cluster::start(Settings {
        // A human duration, as the config allows.
        cluster_extra: "connection_idle_ms = \"1500ms\"\n".into(),
        ..Settings::default()
    })
    .await;
    let n = c.node(1);
    for addr in [&n.http, &n.api, &n.raft] {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let started = std::time::Instant::now();
        let mut buf = [0u8; 1024];
        let closed = tokio::time::timeout(Duration::from_secs(15), async {
            while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
        assert!(
            closed.is_ok(),
            "{addr}: an idle connection is still open after 15 s"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(1_000),
            "{addr}: closed after {:?}, before the idle timeout",
            started.elapsed()
        );
    }
    let reply = c
        .client()
        .lease(pb::LeaseRequest {
            worker_id: "patient".into(),
            queues: vec!["empty".into()],
            wait_ms: 4_000,
            ..Default::default()
        })
        .await
        .expect("a long-poll lease outlives the idle timeout");
    assert!(reply.jobs.is_empty());
}

/// At most `LEASE_WAITERS_MAX` long-poll leases wait on one node; one more is refused with
/// RESOURCE_EXHAUSTED instead of parking another stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_leases_per_node_are_capped() {
    let c = Cluster::start(Settings::default()).await;
    let max = raftline::machine::limits::LEASE_WAITERS_MAX;
    let request = |wait_ms| pb::LeaseRequest {
        worker_id: "parked".into(),
        queues: vec!["empty".into()],
        wait_ms,
        ..Default::default()
    };
    // Two connections: each carries at most STREAMS_PER_CONNECTION_MAX streams.
    let clients = [Arc::new(c.client_of(&[1])), Arc::new(c.client_of(&[1]))];
    let mut parked = tokio::task::JoinSet::new();
    // One more than the cap, each parked for the longest wait a lease may ask (60 s): the
    // cap parks `max` of them and refuses exactly one, whichever comes last. (A separate
    // probe raced the parked calls under load: its own short lease took a slot, so a parked
    // call was the one refused and the probe never was.)
    let ended = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    for i in 0..=max {
        let client = clients[i % 2].clone();
        let req = request(60_000);
        let ended = ended.clone();
        parked.spawn(async move {
            let what = match client.lease(req).await {
                Ok(r) => format!("returned {} jobs", r.jobs.len()),
                Err(raftline::error::Error::ResourceExhausted(m)) => format!("refused: {m}"),
                Err(e) => format!("failed: {e}"),
            };
            ended.lock().unwrap().push(what);
        });
    }
    let first = common::wait_for(
        "one of the parked leases to be refused",
        Duration::from_secs(50),
        || async { ended.lock().unwrap().first().cloned() },
    )
    .await;
    assert!(
        first.starts_with("refused: ") && first.contains("LEASE_WAITERS_MAX"),
        "{first}"
    );
    let ended_now = ended.lock().unwrap().clone();
    assert_eq!(
        ended_now.len(),
        1,
        "only the one past the cap ends: {ended_now:?}"
    );
    parked.abort_all();
}

/// Writes made through the API are attributed to their token: a job shows who submitted it,
/// `audit list` shows the last writes newest first with their tokens (and one token's alone),
/// and only an admin may read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_attributed_to_their_token() {
    let c = Cluster::start(Settings::default()).await;
    let reply = c
        .client()
        .create_token(pb::CreateTokenRequest {
            name: "ci-bot".into(),
            role: "submitter".into(),
            queues: Vec::new(),
            ttl_ms: 0,
        })
        .await
        .expect("create token");
    let (id, secret) = (reply.token.expect("token").id, reply.secret);
    // Every node knows the token once it applied its creation.
    c.wait_same_digest().await;
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let out = c.cli(&[
            "--token", &secret, "submit", "--queue", "audited", "--", "true",
        ]);
        assert!(out.status.success(), "{}", common::show(&out));
        jobs.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let out = c.cli(&["queue", "pause", "audited"]);
    assert!(out.status.success(), "{}", common::show(&out));

    let out = c.cli(&["job", "get", &jobs[0]]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&format!("submitted by: ci-bot (token {id})")),
        "{shown}"
    );
    let out = c.cli(&["job", "get", &jobs[1], "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["submitted_by"]["token_id"], id.as_str(), "{v}");

    let entries = |args: &[&str]| -> Vec<serde_json::Value> {
        let out = c.cli(&[&["audit", "list", "--json"][..], args].concat());
        assert!(out.status.success(), "{}", common::show(&out));
        serde_json::from_slice(&out.stdout).expect("one JSON array")
    };
    let all = entries(&[]);
    let actions: Vec<&str> = all.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions[..4],
        ["PauseQueue", "Submit", "Submit", "CreateToken"],
        "{all:?}"
    );
    assert!(all
        .windows(2)
        .all(|w| w[0]["seq"].as_u64() > w[1]["seq"].as_u64()));
    let mine = entries(&["--by", &id]);
    let targets: Vec<&str> = mine.iter().map(|e| e["target"].as_str().unwrap()).collect();
    assert_eq!(
        targets,
        [
            format!("job {} in queue audited", jobs[1]),
            format!("job {} in queue audited", jobs[0])
        ],
        "{mine:?}"
    );
    assert!(mine.iter().all(|e| e["token_name"] == "ci-bot"));

    let out = c.cli(&["--token", &secret, "audit", "list"]);
    assert_eq!(out.status.code(), Some(3), "{}", common::show(&out));
}

/// `[auth] rate_per_sec` and `burst` limit each token: past its bucket a token gets
/// RESOURCE_EXHAUSTED naming the limit, while another token is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_has_its_own_rate_limit() {
    let c = Cluster::start(Settings {
        auth_extra: "rate_per_sec = 5\nburst = 5\n".into(),
        ..Settings::default()
    })
    .await;
    // The start-up polls (`wait_leader`) spend the admin token's own bucket, so its calls
    // here wait for the bucket to refill; that refusal is the behaviour under test too.
    let admin = c.client_of(&[1]);
    let mut secrets = Vec::new();
    for name in ["viewer", "other"] {
        let secret = common::wait_for("the admin token's bucket", Duration::from_secs(10), || {
            let admin = &admin;
            async move {
                let request = pb::CreateTokenRequest {
                    name: format!("test-{name}"),
                    role: "viewer".into(),
                    ..Default::default()
                };
                match admin.create_token(request).await {
                    Ok(t) => Some(t.secret),
                    Err(raftline::error::Error::ResourceExhausted(_)) => None,
                    Err(e) => panic!("create token: {e:?}"),
                }
            }
        })
        .await;
        secrets.push(secret);
    }
    let on_node_1 = |secret: &str| {
        raftline::client::Client::with_access(
            &[c.node(1).api.clone()],
            &raftline::client::Access {
                token: Some(secret.to_string()),
                ca_file: c.access.ca_file.clone(),
            },
        )
        .expect("client")
    };
    let as_viewer = on_node_1(&secrets[0]);
    let mut refused = None;
    for _ in 0..30 {
        if let Err(e) = as_viewer.queues(true).await {
            refused = Some(e);
            break;
        }
    }
    match refused {
        Some(raftline::error::Error::ResourceExhausted(m)) => {
            assert!(m.contains("rate limit of 5"), "{m}")
        }
        other => panic!("30 calls in a row past a burst of 5: {other:?}"),
    }
    // A token that has not called yet has its whole burst, whatever the first one spent.
    on_node_1(&secrets[1])
        .queues(true)
        .await
        .expect("another token is served");
}

/// `raftline worker` whose token can't lease stops at once with the reason and exit code 3,
/// instead of retrying forever in silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_with_a_token_that_cannot_lease_stops() {
    let c = Cluster::start(Settings::default()).await;
    let viewer = token(&c, "viewer", &[], 0).await;
    c.wait_same_digest().await;
    let addrs: Vec<String> = c.ids().iter().map(|id| c.node(*id).api.clone()).collect();
    for (secret, needle) in [
        ("rl_not_a_token", "not valid"),
        (viewer.as_str(), "role viewer"),
    ] {
        let mut worker = std::process::Command::new(common::BIN)
            .args(["--addr", &addrs.join(","), "--token", secret])
            .args(["worker", "--queue", "w", "--", "cat"])
            .current_dir(c.dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start worker");
        let status = common::wait_for("the worker to stop", Duration::from_secs(20), || {
            let status = worker.try_wait().expect("worker status");
            async move { status }
        })
        .await;
        let out = worker.wait_with_output().expect("worker output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(status.code(), Some(3), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

/// With `[tls]` the HTTP port speaks HTTPS with the node's certificate: `/health` and
/// `/metrics` answer a client that trusts the cluster's CA, and a plaintext request gets
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_port_serves_tls() {
    let c = Cluster::start(Settings {
        tls: true,
        ..Settings::default()
    })
    .await;
    let http = &c.node(1).http;
    let ca = c.access.ca_file.clone().expect("ca");
    let health = raftline::tls::http_get(http, "/health", Some(&ca))
        .await
        .expect("health over TLS");
    assert!(health.contains("\"term\""), "{health}");
    let metrics = raftline::tls::http_get(http, "/metrics", Some(&ca))
        .await
        .expect("metrics over TLS");
    assert!(metrics.contains("raftline_raft_term"), "{metrics}");
    let plain = raftline::tls::http_get(http, "/health", None).await;
    assert!(plain.is_err(), "plaintext answered: {plain:?}");
}

/// SIGHUP reloads a node's TLS files without a restart: an expired certificate is refused with
/// the reason in the log and the node keeps serving with its old one; a good one is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_certificates_and_keeps_the_old_on_a_bad_file() {
    let c = Cluster::start(Settings {
        tls: true,
        ..Settings::default()
    })
    .await;
    let certs = c.dir.path().join("certs");
    let good = std::fs::read(certs.join("node-1.pem")).unwrap();
    let good_key = std::fs::read(certs.join("node-1-key.pem")).unwrap();
    write_expired_cert(&certs, 1);
    c.signal(1, libc::SIGHUP);
    common::wait_for(
        "the refused reload in the log",
        Duration::from_secs(20),
        || async {
            let log = c.log(1);
            (log.contains("TLS reload failed") && log.contains("expired")).then_some(())
        },
    )
    .await;
    c.client_of(&[1])
        .node_status(0)
        .await
        .expect("node 1 still serves TLS with its old certificate");
    std::fs::write(certs.join("node-1.pem"), good).unwrap();
    std::fs::write(certs.join("node-1-key.pem"), good_key).unwrap();
    c.signal(1, libc::SIGHUP);
    common::wait_for("the reload in the log", Duration::from_secs(20), || async {
        c.log(1).contains("TLS certificates reloaded").then_some(())
    })
    .await;
    c.client_of(&[1])
        .node_status(0)
        .await
        .expect("node 1 serves after the reload");
}

/// Large messages in flight on a node's peer port share one budget: two senders that claim
/// 200 MiB each and then stall hold 400 of its 512 MiB, a third claim waits and gets
/// RESOURCE_EXHAUSTED instead of more memory, and the cluster keeps replicating meanwhile
/// (small messages never wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_peer_messages_share_a_budget() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let c = Cluster::start(Settings::default()).await;
    let raft = c.node(1).raft.clone();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{raft}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("peer port");
    let claim = |mib: u32| {
        let mut header = vec![0u8];
        header.extend_from_slice(&(mib << 20).to_be_bytes());
        let frames = futures::stream::once(async move {
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes::Bytes::from(header)))
        })
        .chain(futures::stream::pending());
        http::Request::post("/raftline.v1.RaftPeer/AppendEntries")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::Body::new(http_body_util::StreamBody::new(
                frames,
            )))
            .expect("request")
    };
    use futures::StreamExt;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let (channel, req) = (channel.clone(), claim(200));
        calls.spawn(async move {
            let reply = channel.oneshot(req).await.map_err(|e| e.to_string())?;
            let (head, body) = reply.into_parts();
            let trailers = body
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .trailers()
                .cloned()
                .unwrap_or_default();
            tonic::Status::from_header_map(&head.headers)
                .or_else(|| tonic::Status::from_header_map(&trailers))
                .ok_or_else(|| "no grpc-status".to_string())
        });
    }
    // While the budget is taken, the cluster still commits.
    c.client()
        .submit(common::shell_job("q", &["true"]))
        .await
        .expect("a submit while large messages stall");
    let refused = tokio::time::timeout(Duration::from_secs(30), calls.join_next())
        .await
        .expect("a claim past the budget is answered")
        .expect("a call")
        .expect("join")
        .expect("a status");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("PEER_INFLIGHT_BYTES_MAX"),
        "{refused:?}"
    );
    calls.abort_all();
}

//! Backup and restore on real node processes: `snapshot save` taken while clients keep
//! submitting, restored with `snapshot restore` into the empty data dirs of a new 3-node
//! cluster; every job acknowledged before the save began is there with its state. Damaged,
//! truncated, foreign and newer-format files are refused and seed nothing; so is a restore
//! over data dirs in use.

mod common;

use std::time::Duration;

use common::{run_cli, shell_job, show, wait_for, Cluster, Load, Settings};

/// A queue no node runs: its jobs stay ready.
const HELD: &str = "held";

fn settings() -> Settings {
    Settings {
        node_extra: "queues = [\"m\"]".into(),
        ..Settings::default()
    }
}

/// Restore `file` into `c`'s data dirs; the CLI's output.
fn restore(c: &Cluster, file: &std::path::Path) -> std::process::Output {
    run_cli(
        c.dir.path(),
        &[
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--config",
            c.config.to_str().unwrap(),
        ],
    )
}

fn refused(c: &Cluster, file: &std::path::Path, reason: &str) {
    let out = restore(c, file);
    let text = show(&out);
    assert!(
        !out.status.success(),
        "{} was restored: {text}",
        file.display()
    );
    assert!(text.contains(reason), "expected {reason:?} in {text}");
    assert!(
        !c.node_dir(1).exists(),
        "a refused restore left {}",
        c.node_dir(1).display()
    );
}

/// Damaged, truncated, foreign and newer-format files are refused and seed nothing.
fn refusals(b: &Cluster, file: &std::path::Path) {
    let bytes = std::fs::read(file).unwrap();
    let damaged = b.dir.path().join("damaged.snap");
    let mut d = bytes.clone();
    let at = d.len() - 100;
    d[at] ^= 1;
    std::fs::write(&damaged, &d).unwrap();
    refused(b, &damaged, "damaged");
    let short = b.dir.path().join("short.snap");
    std::fs::write(&short, &bytes[..bytes.len() - 10]).unwrap();
    refused(b, &short, "truncated");
    refused(b, &b.config, "not a raftline backup");
    let newer = b.dir.path().join("newer.snap");
    let mut d = bytes;
    d[8] = 2; // the format version
    std::fs::write(&newer, &d).unwrap();
    refused(b, &newer, "backup format 2");
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_under_load_restores_every_acked_job_with_its_state() {
    let a = Cluster::start(settings()).await;
    let client = a.client();
    let mut before = Vec::new();
    for i in 0..10 {
        before.push(
            client
                .submit(shell_job("m", &["true", &i.to_string()]))
                .await
                .unwrap(),
        );
    }
    for i in 0..10 {
        before.push(
            client
                .submit(shell_job(HELD, &["true", &i.to_string()]))
                .await
                .unwrap(),
        );
    }
    client
        .cancel(*before.last().unwrap())
        .await
        .expect("cancel");
    for id in &before[..10] {
        wait_for("a job to succeed", Duration::from_secs(30), || async {
            (client.job(*id, false).await.ok()?.state == "succeeded").then_some(())
        })
        .await;
    }

    // Clients keep submitting while the backup is taken.
    let load = Load::start(&a, 4, HELD);
    let addrs: Vec<String> = a.nodes.iter().map(|n| n.api.clone()).collect();
    wait_for("load", Duration::from_secs(20), || async {
        (load.acked().len() > 50).then_some(())
    })
    .await;
    let file = a.dir.path().join("backup.snap");
    let mut acked_before_save = before.clone();
    acked_before_save.extend(load.acked());
    let save = {
        let (dir, addr, file) = (a.dir.path().to_path_buf(), addrs.join(","), file.clone());
        tokio::task::spawn_blocking(move || {
            run_cli(
                &dir,
                &["--addr", &addr, "snapshot", "save", file.to_str().unwrap()],
            )
        })
    };
    let out = save.await.unwrap();
    assert!(out.status.success(), "snapshot save: {}", show(&out));
    load.stop().await;
    eprintln!(
        "backup: {} jobs acknowledged before the save, {}",
        acked_before_save.len(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    let audit = a.cli(&["audit", "list", "--limit", "1000"]);
    assert!(
        show(&audit).contains("SaveSnapshot"),
        "the backup is not in the audit: {}",
        show(&audit)
    );
    let mut states = Vec::new();
    for id in &acked_before_save {
        states.push((*id, client.job(*id, false).await.expect("job").state));
    }

    // Refusals first, each into a fresh config whose data dirs must stay absent.
    let b = Cluster::new(settings());
    refusals(&b, &file);

    // The restore, into a new cluster.
    let out = restore(&b, &file);
    assert!(out.status.success(), "restore: {}", show(&out));
    let again = restore(&b, &file);
    assert!(
        !again.status.success() && show(&again).contains("is not empty"),
        "a restore over data dirs in use: {}",
        show(&again)
    );
    drop(a);
    let mut b = b;
    for id in b.ids() {
        b.spawn(id);
    }
    b.wait_leader(None).await;
    let restored = b.client();
    for (id, state) in &states {
        let job = restored.job(*id, false).await;
        let job = job.unwrap_or_else(|e| panic!("job {id} acknowledged before the save: {e}"));
        assert_eq!(&job.state, state, "job {id}'s state after the restore");
    }
    let next = restored
        .submit(shell_job("m", &["true"]))
        .await
        .expect("submit");
    assert!(
        next > *acked_before_save.iter().max().unwrap(),
        "new ids go on from the backup's"
    );
    eprintln!("restore: {} jobs with their states", states.len());
}

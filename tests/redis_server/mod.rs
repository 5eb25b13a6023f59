//! A `redis-server` child for the import tests (`import_redis.rs`, `import_redis_crash.rs`,
//! `import_bullmq.rs`).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::common::{free_port, wait_for};

/// A `redis-server` child on a free port, without persistence, in a temp dir.
pub struct Redis {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    /// Starts one, or `None` (after saying why) when the binary is missing.
    pub async fn start() -> Option<Redis> {
        let binary = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(binary) = binary else {
            eprintln!("SKIPPED: no redis-server binary (apt-get install redis-server)");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let redis = Redis {
            child,
            port,
            _dir: dir,
        };
        let url = redis.url();
        wait_for("redis-server to answer", Duration::from_secs(10), || {
            let url = url.clone();
            async move { raftline::import::redis::connect(&url).await.ok() }
        })
        .await;
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Runs one command, panicking on an error reply.
    pub async fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut con = raftline::import::redis::connect(&self.url())
            .await
            .expect("connect");
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut con).await.expect("redis command")
    }
}

impl Redis {
    /// A connection for many commands (pipelines).
    pub async fn con(&self) -> redis::aio::MultiplexedConnection {
        raftline::import::redis::connect(&self.url())
            .await
            .expect("connect")
    }

    /// `verb KEY item` for every item (LPUSH, RPUSH), pipelined 1,000 at a time.
    pub async fn push_all(&self, verb: &str, key: &str, items: &[String]) {
        let mut con = self.con().await;
        for chunk in items.chunks(1000) {
            let mut pipe = redis::pipe();
            for item in chunk {
                pipe.cmd(verb).arg(key).arg(item).ignore();
            }
            pipe.query_async::<()>(&mut con).await.expect("push");
        }
    }

    /// `XADD KEY * n item` for every item, pipelined 1,000 at a time.
    pub async fn xadd_all(&self, key: &str, items: &[String]) {
        let mut con = self.con().await;
        for chunk in items.chunks(1000) {
            let mut pipe = redis::pipe();
            for item in chunk {
                pipe.cmd("XADD")
                    .arg(key)
                    .arg("*")
                    .arg("n")
                    .arg(item)
                    .ignore();
            }
            pipe.query_async::<()>(&mut con).await.expect("xadd");
        }
    }
}

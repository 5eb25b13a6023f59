//! `raftline snapshot save FILE` and `raftline snapshot restore FILE --config cluster.toml`
//! (backups; the format is in `raft/backup.rs`).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::raft::backup::{self, BackupHeader};

/// `raftline snapshot ...`
#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Save a consistent snapshot of the cluster's state (every write acknowledged before the
    /// command began) to FILE.
    Save {
        /// The backup file to write (replaced atomically when complete).
        file: PathBuf,
        /// Print JSON: the file, cluster, index, term and bytes saved.
        #[arg(long)]
        json: bool,
    },
    /// Seed the (empty) data dirs of every node of a config from a backup: a new cluster with
    /// the backup's state. Then start the nodes.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The new cluster's config.
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
        /// Print JSON: the file, index, term, bytes and the data dirs seeded.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `raftline snapshot ...`.
pub async fn run(addr: &[String], command: SnapshotCmd) -> Result<()> {
    match command {
        SnapshotCmd::Save { file, json } => save(addr, &file, json).await,
        SnapshotCmd::Restore { file, config, json } => {
            let config = Config::load(&config)?;
            let r = backup::restore(&config, &file).await?;
            if json {
                let dirs: Vec<String> = r.dirs.iter().map(|d| d.display().to_string()).collect();
                let v = serde_json::json!({
                    "file": file.display().to_string(),
                    "cluster": r.header.cluster,
                    "index": r.header.index,
                    "term": r.header.term,
                    "bytes": r.header.snapshot_bytes,
                    "into_cluster": config.name,
                    "dirs": dirs,
                });
                println!("{v}");
                return Ok(());
            }
            println!(
                "restored index {} (term {}) of cluster {:?} into {} data dirs of cluster {:?}; \
                 start the nodes (raftline up, or raftline node --id N on each machine)",
                r.header.index,
                r.header.term,
                r.header.cluster,
                r.dirs.len(),
                config.name
            );
            Ok(())
        }
    }
}

async fn save(addr: &[String], file: &Path, json: bool) -> Result<()> {
    let client = super::connect::client(addr)?;
    let mut stream = client.save_snapshot().await?;
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let io = |e: std::io::Error| Error::Config(format!("{}: {e}", tmp.display()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    let mut header: Option<BackupHeader> = None;
    let mut done = 0u64;
    let progress = Progress::bytes("received", 0, json);
    while let Some(chunk) = stream.message().await.map_err(Error::from)? {
        if header.is_none() {
            let h = BackupHeader {
                cluster: chunk.cluster.clone(),
                index: chunk.index,
                term: chunk.term,
                snapshot_bytes: chunk.total_bytes,
            };
            out.write_all(&h.encode()).map_err(io)?;
            progress.set_total(h.snapshot_bytes);
            progress.note(&format!(
                "snapshot of cluster {:?} at index {} (term {}), {} bytes",
                h.cluster, h.index, h.term, h.snapshot_bytes
            ));
            header = Some(h);
        }
        done += chunk.data.len() as u64;
        if done > progress.total() {
            break;
        }
        out.write_all(&chunk.data).map_err(io)?;
        progress.show(done);
    }
    progress.finish();
    let Some(header) = header else {
        return Err(Error::unavailable("the node sent no snapshot"));
    };
    if done != header.snapshot_bytes {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::unavailable(format!(
            "the stream ended after {done} of {} bytes; nothing saved",
            header.snapshot_bytes
        )));
    }
    let out = out.into_inner().map_err(|e| io(e.into_error()))?;
    out.sync_all().map_err(io)?;
    drop(out);
    std::fs::rename(&tmp, file).map_err(io)?;
    let parent = file.parent().filter(|p| !p.as_os_str().is_empty());
    crate::raft::durable::sync_dir(parent.unwrap_or(Path::new("."))).map_err(io)?;
    if json {
        let v = serde_json::json!({
            "file": file.display().to_string(),
            "cluster": header.cluster,
            "index": header.index,
            "term": header.term,
            "bytes": header.snapshot_bytes,
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "saved {}: cluster {:?}, index {}, term {}",
        file.display(),
        header.cluster,
        header.index,
        header.term
    );
    Ok(())
}

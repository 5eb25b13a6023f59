//! `raftline-lossyfs`: mount a filesystem that drops unsynced writes on command, and send it
//! commands. See the library docs for what is modelled.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use raftline_lossyfs::{control, mount, DIRTY_BYTES_MAX_DEFAULT};

/// A FUSE passthrough filesystem that loses unsynced writes on command (like a power loss).
#[derive(Debug, Parser)]
#[command(name = "raftline-lossyfs")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mount (stays in the foreground until `unmount`, SIGINT or SIGTERM).
    Mount {
        /// The backing directory: what was synced lives here.
        #[arg(long)]
        backing: PathBuf,
        /// Where to mount (an empty directory).
        #[arg(long)]
        mountpoint: PathBuf,
        /// The control socket to create (outside the mount).
        #[arg(long)]
        control: PathBuf,
        /// Bound on unsynced data held in memory; writes past it fail with ENOSPC.
        #[arg(long, default_value_t = DIRTY_BYTES_MAX_DEFAULT)]
        dirty_bytes_max: u64,
        /// Let users other than the mounting one in.
        #[arg(long)]
        allow_other: bool,
    },
    /// Drop every unsynced write and volatile directory entry; returns when done.
    Crash {
        /// The mount's control socket.
        #[arg(long)]
        control: PathBuf,
    },
    /// Print dirty bytes and volatile entries.
    Status {
        /// The mount's control socket.
        #[arg(long)]
        control: PathBuf,
    },
    /// Unmount and stop the mount's process; returns when unmounted.
    Unmount {
        /// The mount's control socket.
        #[arg(long)]
        control: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Args::parse().command {
        Command::Mount {
            backing,
            mountpoint,
            control,
            dirty_bytes_max,
            allow_other,
        } => mount::run(&mount::Options {
            backing,
            mountpoint,
            control,
            dirty_bytes_max,
            allow_other,
        })
        .map(|()| String::new()),
        Command::Crash { control } => control::request(&control, "crash"),
        Command::Status { control } => control::request(&control, "status"),
        Command::Unmount { control } => control::request(&control, "unmount"),
    };
    match result {
        Ok(line) => {
            if !line.is_empty() {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("raftline-lossyfs: {e}");
            ExitCode::FAILURE
        }
    }
}

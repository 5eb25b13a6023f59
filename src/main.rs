//! The `raftline` binary: parses the command line and runs it (see `cli/`).

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: faster on the many small allocations of the
/// apply path and the cold tier, and it hands freed memory back to the OS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long blocking tasks still running at exit get to finish.
const RUNTIME_STOP_MS: u64 = 2_000;

fn main() -> ExitCode {
    let cli = raftline::cli::Cli::parse();
    let node = matches!(
        cli.command,
        raftline::cli::Cmd::Node { .. } | raftline::cli::Cmd::Up { .. }
    );
    if !node {
        // Like any Unix tool, end quietly when the reader of our output goes away
        // (`raftline jobs list | head`) instead of panicking on a broken pipe. Nodes keep
        // Rust's default (ignore SIGPIPE): a closed log pipe must not kill a node.
        // SAFETY: setting a signal disposition at start-up, before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let default_filter = if node { "info,openraft=warn" } else { "warn" };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    {
        // Inside the runtime: span export (feature `otlp`) makes its gRPC channel on it.
        let _inside = runtime.enter();
        raftline::logging::init(default_filter, cli.log_format);
    }
    runtime.spawn(raftline::logging::report_suppressed());
    let outcome = runtime.block_on(raftline::cli::run(cli));
    #[cfg(feature = "otlp")]
    raftline::otlp::shutdown();
    // Dropping the runtime would wait for every blocking task, and one stuck in a sync on a
    // failing disk would keep the process up forever: give them a bound.
    runtime.shutdown_timeout(std::time::Duration::from_millis(RUNTIME_STOP_MS));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", raftline::cli::color::error_line(&e));
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

//! raftline's partition and fault test harness (a Jepsen in Rust, on one machine).
//!
//! A test starts real `raftline node` processes, runs workloads of clients against them while
//! a nemesis injects faults (partitions, kill -9, SIGSTOP pauses) on a seeded schedule, records
//! every operation as a history (JSONL), and runs pure checkers over the history.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod report;
pub mod runner;
pub mod workload;

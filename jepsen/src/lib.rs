//! raftline's partition and fault test harness (a Jepsen in Rust, on one machine).
//!
//! A test starts real `raftline node` processes ([`cluster`]), each on its own loopback
//! address so [`net`] can cut links with nftables, runs client processes ([`workload`]) that
//! record every operation into a [`history`] while a [`nemesis`] injects faults on a schedule
//! drawn from a seed, heals, drains, reads every job back, and runs the pure [`checker`]s.
//! [`runner`] ties one run together and [`report`] prints it. For the `lose-unsynced`
//! nemesis each node's data dir is a `raftline-lossyfs` mount (the `lossyfs/` crate), so a
//! crash can also drop what the node had not synced, as a power loss does.
//!
//! CAVEATS (not implemented): the `lock` and `cron` workloads (their checkers exist and are
//! tested on hand-written histories); lossy, delayed or reset links; clock skew
//! (libfaketime); membership-change nemeses; 5-node topologies are supported but not in the
//! CI matrix; without root and nftables, partitions go through userspace proxies (no lossy
//! links then); nodes run on loopback addresses rather than network namespaces; reads are
//! checked by real-time order of monotone job
//! stages, not by a full linearizability (WGL) search.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod proxy;
pub mod report;
pub mod runner;
pub mod workload;

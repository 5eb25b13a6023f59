//! Membership at runtime: add a learner, promote it to voter once caught up, demote, remove,
//! and transfer leadership, all carried out by the leader (a follower forwards the change over
//! the peer `Manage` call).
//!
//! Changes of voters go through openraft's joint consensus (`change_membership` returns once
//! the final configuration is committed). Each call changes one node, so a majority can never
//! be removed at once; a change while another is still in its joint phase is refused.
//!
//! Leadership transfer: openraft 0.9 has no transfer call, and a follower refuses votes while
//! its leader's lease (`election_timeout_max` since the last append) runs. So the leader
//! (1) holds new writes (they wait and then go to the new leader), (2) waits until the target
//! has every entry, (3) asks every other voter to hold its elections for a bounded time (each
//! node ends the hold by itself, so a leader that dies mid-transfer cannot leave the cluster
//! unable to elect), (4) stops its heartbeats, and (5) asks the target to campaign once the
//! lease has run out. The target wins: it has the whole log, and no one else campaigns.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use super::{peer_request, PeerNode, Replica};
use crate::error::{Error, Result};
use crate::machine::codec;
use crate::machine::limits;
use crate::proto::pb;

/// One membership change; `id` and `to` are node ids.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Add a node as a learner (it receives the log, does not vote).
    Add { id: u64, node: PeerNode },
    /// Make a caught-up learner a voter.
    Promote { id: u64 },
    /// Make a voter a learner.
    Demote { id: u64 },
    /// Remove a node (voter or learner) from the cluster.
    Remove { id: u64 },
    /// Make `to` the leader.
    TransferLeader { to: u64 },
}

/// What one node asks another over `Manage`.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Manage {
    /// A change forwarded to the leader.
    Change(Change),
    /// Don't start elections for `ms` (0 ends a hold now).
    HoldElections { ms: u64 },
    /// Campaign after `ms`: the transfer's target.
    ElectAfter { ms: u64 },
}

/// The answer to a [`Manage`] call.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum ManageReply {
    Done,
    /// The receiver is not the leader; nothing was changed.
    NotLeader,
    /// Refused: the change is not safe or not possible now (FAILED_PRECONDITION).
    Refused(String),
    /// Tried, outcome unknown or failed (UNAVAILABLE).
    Failed(String),
}

/// A member as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Node id.
    pub id: u64,
    /// Addresses.
    pub node: PeerNode,
    /// Voter (else learner).
    pub voter: bool,
    /// Last log index known replicated to it (the leader's own: its last log index).
    pub matched: Option<u64>,
}

/// The leader's view of the membership and replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Leader id.
    pub leader: u64,
    /// The leader's last log index.
    pub last_log_index: u64,
    /// Every member.
    pub members: Vec<MemberView>,
}

fn refused(message: impl Into<String>) -> Error {
    Error::FailedPrecondition(message.into())
}

impl Replica {
    /// Carries out `change` on the leader (forwarding it when this node is not the leader) and
    /// returns the membership after it.
    pub async fn change_membership(&self, change: Change) -> Result<Progress> {
        let deadline = Instant::now() + self.membership_timeout();
        loop {
            let leader = self.leader(deadline).await?;
            let reply = if leader == self.id {
                self.change_bounded(&change).await
            } else {
                self.forward_manage(leader, &Manage::Change(change.clone()), deadline)
                    .await?
            };
            match reply {
                ManageReply::Done => return self.progress().await,
                ManageReply::Refused(m) => return Err(refused(m)),
                ManageReply::Failed(m) => {
                    return Err(Error::Unavailable {
                        message: m,
                        leader: Some(leader),
                    })
                }
                ManageReply::NotLeader if Instant::now() < deadline => self.backoff(deadline).await,
                ManageReply::NotLeader => {
                    return Err(Error::unavailable(
                        "no reachable leader; nothing was changed",
                    ))
                }
            }
        }
    }

    /// The leader's view of the membership and every member's replication, asked of the
    /// leader (forwarded when this node is not it).
    pub async fn progress(&self) -> Result<Progress> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let leader = self.leader(deadline).await?;
            if leader == self.id {
                if let Some(p) = self.local_progress() {
                    return Ok(p);
                }
            } else {
                let mut client = self.peer(leader)?;
                if let Some(p) = self.remote_progress(&mut client, deadline).await? {
                    return Ok(p);
                }
            }
            if Instant::now() >= deadline {
                return Err(self.timed_out("membership read"));
            }
            self.backoff(deadline).await;
        }
    }

    /// How long a membership change may take: a learner catching up by snapshot may need
    /// several request timeouts.
    fn membership_timeout(&self) -> Duration {
        self.request_timeout * limits::MEMBERSHIP_TIMEOUTS
    }

    /// Entries each other member lags behind this leader's log (its matched index against the
    /// last log index; the whole log when nothing is matched yet); empty on a follower.
    pub fn replication_lag(&self) -> Vec<(u64, u64)> {
        let Some(p) = self.local_progress() else {
            return Vec::new();
        };
        p.members
            .iter()
            .filter(|m| m.id != self.id)
            .map(|m| {
                (
                    m.id,
                    p.last_log_index.saturating_sub(m.matched.unwrap_or(0)),
                )
            })
            .collect()
    }

    /// Bytes on disk of this node's Raft log (its WAL segments) and of its snapshot file.
    pub fn disk_bytes(&self) -> (u64, u64) {
        let wal = std::fs::read_dir(self.dir.join("wal"))
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        let snapshot =
            std::fs::metadata(self.dir.join(super::snapshot_file::FILE)).map_or(0, |m| m.len());
        (wal, snapshot)
    }

    /// This node's view when it is the leader.
    fn local_progress(&self) -> Option<Progress> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.id) {
            return None;
        }
        let last = m.last_log_index.unwrap_or(0);
        let replication = m.replication.unwrap_or_default();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| MemberView {
                id: *id,
                node: node.clone(),
                voter: voters.contains(id),
                matched: if *id == self.id {
                    Some(last)
                } else {
                    replication.get(id).copied().flatten().map(|l| l.index)
                },
            })
            .collect();
        Some(Progress {
            leader: self.id,
            last_log_index: last,
            members,
        })
    }

    async fn remote_progress(
        &self,
        client: &mut pb::raft_peer_client::RaftPeerClient<tonic::transport::Channel>,
        deadline: Instant,
    ) -> Result<Option<Progress>> {
        let data = codec::encode(&Ask::Progress(ProgressAsk))?;
        let wait = deadline.saturating_duration_since(Instant::now());
        let call = client.manage(peer_request(pb::PeerBytes { data }));
        match tokio::time::timeout(wait, call).await {
            Ok(Ok(reply)) => {
                let reply: Option<WireProgress> = codec::decode(&reply.into_inner().data)?;
                Ok(reply.map(WireProgress::into_progress))
            }
            Ok(Err(status)) => {
                tracing::debug!("membership read: {}", status.message());
                Ok(None)
            }
            Err(_) => Err(self.timed_out("membership read")),
        }
    }

    async fn forward_manage(
        &self,
        leader: u64,
        ask: &Manage,
        deadline: Instant,
    ) -> Result<ManageReply> {
        let mut client = self.peer(leader)?;
        let data = codec::encode(&Ask::Manage(ask.clone()))?;
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, client.manage(peer_request(pb::PeerBytes { data }))).await
        {
            Err(_) => Ok(ManageReply::Failed(format!(
                "leader {leader} did not answer within {} ms; the change may still happen",
                wait.as_millis()
            ))),
            Ok(Err(status)) if crate::error::not_sent(&status) => Ok(ManageReply::NotLeader),
            Ok(Err(status)) => Ok(ManageReply::Failed(format!(
                "forwarding to leader {leader} failed, outcome unknown: {}",
                status.message()
            ))),
            Ok(Ok(reply)) => codec::decode(&reply.into_inner().data)
                .map_err(|e| Error::Internal(format!("leader {leader} answered: {e}"))),
        }
    }

    /// Peer handler: a `Manage` call.
    pub async fn handle_manage(&self, data: &[u8]) -> Result<Vec<u8>> {
        match codec::decode::<Ask>(data)? {
            Ask::Progress(ProgressAsk) => Ok(codec::encode(
                &self.local_progress().map(WireProgress::from),
            )?),
            Ask::Manage(Manage::Change(change)) => {
                let reply = if self.is_leader() {
                    self.change_bounded(&change).await
                } else {
                    ManageReply::NotLeader
                };
                Ok(codec::encode(&reply)?)
            }
            Ask::Manage(Manage::HoldElections { ms }) => {
                self.hold_elections(ms);
                Ok(codec::encode(&ManageReply::Done)?)
            }
            Ask::Manage(Manage::ElectAfter { ms }) => {
                let raft = self.raft.clone();
                let ms = ms.min(limits::TRANSFER_HOLD_MS_MAX);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let _ = raft.trigger().elect().await;
                });
                Ok(codec::encode(&ManageReply::Done)?)
            }
        }
    }

    /// Stops this node's elections for `ms` (bounded), then starts them again by itself; a
    /// newer hold replaces an older one, and 0 ends a hold.
    fn hold_elections(&self, ms: u64) {
        let ms = ms.min(limits::TRANSFER_HOLD_MS_MAX);
        let generation = self
            .election_hold
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        if ms == 0 {
            self.raft.runtime_config().elect(true);
            return;
        }
        self.raft.runtime_config().elect(false);
        let raft = self.raft.clone();
        let hold = self.election_hold.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if hold.load(std::sync::atomic::Ordering::Acquire) == generation {
                raft.runtime_config().elect(true);
            }
        });
    }

    /// [`Self::change_local`] within the membership timeout: a change that cannot reach a
    /// majority of the old and the new voters does not commit, and the caller hears so.
    async fn change_bounded(&self, change: &Change) -> ManageReply {
        let limit = self.membership_timeout();
        match tokio::time::timeout(limit, self.change_local(change)).await {
            Ok(reply) => reply,
            Err(_) => ManageReply::Failed(format!(
                "the change did not commit within {} ms (is a majority of the old and the new \
                 voters reachable?); it may still commit",
                limit.as_millis()
            )),
        }
    }

    /// Carries out `change` on this node, the leader.
    async fn change_local(&self, change: &Change) -> ManageReply {
        let Some(view) = self.local_progress() else {
            return ManageReply::NotLeader;
        };
        if let Err(why) = check(change, &view) {
            return ManageReply::Refused(why);
        }
        let voters: BTreeSet<u64> = view
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.id)
            .collect();
        let result = match change.clone() {
            Change::Add { id, node } => {
                if view.members.iter().any(|m| m.id == id) {
                    return ManageReply::Done; // the same node again: already there
                }
                self.raft.add_learner(id, node, false).await.map(|_| ())
            }
            Change::Promote { id } => {
                if voters.contains(&id) {
                    return ManageReply::Done;
                }
                let ids = BTreeSet::from([id]);
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(ids), false)
                    .await
                    .map(|_| ())
            }
            Change::Demote { id } => {
                if !voters.contains(&id) {
                    return ManageReply::Done;
                }
                let ids = BTreeSet::from([id]);
                self.raft
                    .change_membership(ChangeMembers::RemoveVoters(ids), true)
                    .await
                    .map(|_| ())
            }
            Change::Remove { id } => {
                let ids = BTreeSet::from([id]);
                let change = if voters.contains(&id) {
                    ChangeMembers::RemoveVoters(ids)
                } else {
                    ChangeMembers::RemoveNodes(ids)
                };
                self.raft.change_membership(change, false).await.map(|_| ())
            }
            Change::TransferLeader { to } => return self.transfer_leader(to, &view).await,
        };
        match result {
            Ok(()) => {
                tracing::info!(?change, "membership changed");
                ManageReply::Done
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                ManageReply::NotLeader
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                ManageReply::Refused(match e {
                    ChangeMembershipError::InProgress(_) => {
                        "another membership change is still in progress; try again when it \
                         has committed"
                            .to_string()
                    }
                    other => other.to_string(),
                })
            }
            Err(e) => ManageReply::Failed(format!("membership change: {e}")),
        }
    }

    /// Hands leadership to `to`, see the module comment.
    async fn transfer_leader(&self, to: u64, view: &Progress) -> ManageReply {
        if to == self.id {
            return ManageReply::Done;
        }
        let deadline = Instant::now() + self.membership_timeout();
        let _held = WriteHold::new(self);
        // Every entry the target lacks must reach it first, or it can't win the election.
        loop {
            let Some(now) = self.local_progress() else {
                return ManageReply::NotLeader;
            };
            let matched = now
                .members
                .iter()
                .find(|m| m.id == to)
                .and_then(|m| m.matched);
            if matched == Some(now.last_log_index) {
                break;
            }
            if Instant::now() >= deadline {
                return ManageReply::Failed(format!(
                    "node {to} did not catch up with the leader's log; leadership stays"
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let lease = self.election_timeout_max;
        let hold = (lease * limits::TRANSFER_HOLD_LEASES).min(limits::TRANSFER_HOLD_MS_MAX);
        let others: Vec<u64> = view
            .members
            .iter()
            .filter(|m| m.voter && m.id != to && m.id != self.id)
            .map(|m| m.id)
            .collect();
        for id in &others {
            let _ = self
                .forward_manage(id.to_owned(), &Manage::HoldElections { ms: hold }, deadline)
                .await;
        }
        self.hold_elections(hold);
        self.raft.runtime_config().heartbeat(false);
        let asked = self
            .forward_manage(to, &Manage::ElectAfter { ms: lease + 20 }, deadline)
            .await;
        let mut metrics = self.raft.metrics();
        let until = Instant::now() + Duration::from_millis(hold);
        let moved = loop {
            if metrics.borrow_and_update().current_leader == Some(to) {
                break true;
            }
            let wait = until.saturating_duration_since(Instant::now());
            if wait.is_zero() || asked.is_err() {
                break false;
            }
            if tokio::time::timeout(wait, metrics.changed()).await.is_err() {
                break false;
            }
        };
        self.raft.runtime_config().heartbeat(true);
        self.hold_elections(0);
        for id in &others {
            let _ = self
                .forward_manage(id.to_owned(), &Manage::HoldElections { ms: 0 }, deadline)
                .await;
        }
        if moved {
            tracing::info!(to, "leadership transferred");
            ManageReply::Done
        } else {
            ManageReply::Failed(format!(
                "node {to} did not take over within {hold} ms; elections resumed, and the \
                 leader may be this node or another"
            ))
        }
    }
}

/// Holds new writes on this node while it hands over leadership; they wait (or go to the
/// new leader) instead of refreshing the followers' lease.
struct WriteHold<'a>(&'a Replica);

impl<'a> WriteHold<'a> {
    fn new(replica: &'a Replica) -> Self {
        replica
            .hold_writes
            .store(true, std::sync::atomic::Ordering::Release);
        WriteHold(replica)
    }
}

impl Drop for WriteHold<'_> {
    fn drop(&mut self) {
        self.0
            .hold_writes
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Refuses changes that are unsafe or make no sense, with the reason.
fn check(change: &Change, view: &Progress) -> std::result::Result<(), String> {
    let member = |id: u64| view.members.iter().find(|m| m.id == id);
    let voters = view.members.iter().filter(|m| m.voter).count();
    match change {
        Change::Add { id, node } => {
            if let Some(m) = member(*id) {
                if m.node != *node {
                    return Err(format!(
                        "node {id} is already a member with {}; remove it first to change its \
                         addresses",
                        m.node
                    ));
                }
                return Ok(());
            }
            for m in &view.members {
                for (mine, theirs, what) in [
                    (&node.raft_addr, &m.node.raft_addr, "raft_addr"),
                    (&node.api_addr, &m.node.api_addr, "api_addr"),
                    (&node.raft_addr, &m.node.api_addr, "raft_addr"),
                    (&node.api_addr, &m.node.raft_addr, "api_addr"),
                ] {
                    if mine == theirs {
                        return Err(format!("{what} {mine} is already used by node {}", m.id));
                    }
                }
            }
            if view.members.len() >= limits::MEMBERS_MAX {
                return Err(format!(
                    "the cluster has {} members, the limit (MEMBERS_MAX)",
                    limits::MEMBERS_MAX
                ));
            }
            Ok(())
        }
        Change::Promote { id } => {
            let m =
                member(*id).ok_or_else(|| format!("node {id} is not a member; add it first"))?;
            if m.voter {
                return Ok(());
            }
            let behind = view.last_log_index.saturating_sub(m.matched.unwrap_or(0));
            if m.matched.is_none() || behind > limits::PROMOTE_LAG_MAX {
                return Err(format!(
                    "node {id} is {behind} entries behind the leader (at most {} to become a \
                     voter); wait for it to catch up",
                    limits::PROMOTE_LAG_MAX
                ));
            }
            Ok(())
        }
        Change::Demote { id } | Change::Remove { id } => {
            let m = member(*id).ok_or_else(|| format!("node {id} is not a member"))?;
            if m.voter && voters <= 1 {
                return Err(format!(
                    "node {id} is the last voter; a cluster needs one to exist"
                ));
            }
            Ok(())
        }
        Change::TransferLeader { to } => match member(*to) {
            Some(m) if m.voter => Ok(()),
            Some(_) => Err(format!(
                "node {to} is a learner; promote it before making it the leader"
            )),
            None => Err(format!("node {to} is not a member")),
        },
    }
}

/// What a `Manage` call carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Ask {
    Manage(Manage),
    Progress(ProgressAsk),
}

/// Asks the leader for its [`Progress`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct ProgressAsk;

/// [`Progress`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WireProgress {
    leader: u64,
    last_log_index: u64,
    members: Vec<(u64, PeerNode, bool, Option<u64>)>,
}

impl From<Progress> for WireProgress {
    fn from(p: Progress) -> Self {
        WireProgress {
            leader: p.leader,
            last_log_index: p.last_log_index,
            members: p
                .members
                .into_iter()
                .map(|m| (m.id, m.node, m.voter, m.matched))
                .collect(),
        }
    }
}

impl WireProgress {
    fn into_progress(self) -> Progress {
        Progress {
            leader: self.leader,
            last_log_index: self.last_log_index,
            members: self
                .members
                .into_iter()
                .map(|(id, node, voter, matched)| MemberView {
                    id,
                    node,
                    voter,
                    matched,
                })
                .collect(),
        }
    }
}

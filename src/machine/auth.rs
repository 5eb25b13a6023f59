//! API tokens: who may call what. The replicated state keeps each token's SHA-256 hash, never
//! its secret, with its role, the queue patterns it is limited to, and its lifetime.
//!
//! A token is created by an admin (`CreateToken`, the secret made and shown once by the node
//! that served the call) or is a node's bootstrap token (`BootstrapToken`: each node makes one
//! on its first start, in a file only its owner can read, like Nomad's bootstrap token). A
//! revoked bootstrap token stays revoked: the node that made it can't bring it back.
//!
//! Invariants: `by_hash` maps exactly the hashes of `tokens` to their ids; at most
//! `TOKENS_MAX` tokens.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::{exhausted, invalid, precondition, Ctx, Response};
use super::limits;

/// What a token may do. The table of which role may call which RPC is in `server/auth.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Everything, tokens included.
    Admin,
    /// Queues, dead letters, schedules, resources, workflow control, cancel and retry.
    Operator,
    /// Submit jobs, workflows and events; read jobs.
    Submitter,
    /// Lease, heartbeat, complete, checkpoint, release.
    Worker,
    /// Read only.
    Viewer,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Operator,
        Role::Submitter,
        Role::Worker,
        Role::Viewer,
    ];

    /// The role's name as the CLI and API spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Submitter => "submitter",
            Role::Worker => "worker",
            Role::Viewer => "viewer",
        }
    }

    /// Parses a role name.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// One token, as replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Public id (16 hex digits), what `token list` and `token revoke` name.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Queue name patterns (`*` matches any run of characters) it is limited to; empty means
    /// every queue.
    pub queues: Vec<String>,
    /// SHA-256 of the secret, lowercase hex.
    pub hash: String,
    /// State-machine time of its creation.
    pub created_ms: u64,
    /// When it stops working (state-machine time), if ever.
    pub expires_ms: Option<u64>,
    /// Last time a node reported it used, at minute granularity.
    pub last_used_ms: Option<u64>,
}

impl Token {
    /// Whether this token may act on `queue`.
    pub fn allows_queue(&self, queue: &str) -> bool {
        self.queues.is_empty() || self.queues.iter().any(|p| pattern_matches(p, queue))
    }

    /// Whether the token is limited to some queues.
    pub fn is_scoped(&self) -> bool {
        !self.queues.is_empty()
    }
}

/// Checks a queue pattern: a queue name in which `*` may stand for any run of characters
/// (token queue limits, `[[jobs.queue]]` rules).
pub fn validate_pattern(field: &str, pattern: &str) -> Result<(), super::Rejection> {
    if pattern.is_empty() || pattern.len() > limits::QUEUE_NAME_BYTES_MAX {
        return Err(super::Rejection::invalid(
            field,
            format!("must be 1 to {} bytes", limits::QUEUE_NAME_BYTES_MAX),
        ));
    }
    if let Some(c) = pattern
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*')))
    {
        return Err(super::Rejection::invalid(
            field,
            format!("has the character {c:?}; allowed are A-Z a-z 0-9 _ . - and *"),
        ));
    }
    Ok(())
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = parts.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The id of node `node_id`'s bootstrap token.
pub fn bootstrap_id(node_id: u64) -> String {
    format!("bootstrap-{node_id}")
}

/// The tokens subsystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    tokens: BTreeMap<String, Token>,
    by_hash: BTreeMap<String, String>,
    /// Hashes of revoked bootstrap tokens: never accepted again.
    revoked_bootstrap: BTreeSet<String>,
}

impl Auth {
    /// The token whose secret hashes to `hash`, if any (expired ones included).
    pub fn by_hash(&self, hash: &str) -> Option<&Token> {
        self.by_hash.get(hash).and_then(|id| self.tokens.get(id))
    }

    /// Whether `hash` is that of a revoked bootstrap token.
    pub fn is_revoked_bootstrap(&self, hash: &str) -> bool {
        self.revoked_bootstrap.contains(hash)
    }

    /// Every token, by id.
    pub fn tokens(&self) -> impl Iterator<Item = &Token> + '_ {
        self.tokens.values()
    }

    /// Adds a token made by an admin.
    pub(super) fn create(&mut self, ctx: Ctx, token: &Token) -> Response {
        if self.tokens.contains_key(&token.id) || self.by_hash.contains_key(&token.hash) {
            return precondition(format!("token {} exists", token.id));
        }
        if token.id.starts_with("bootstrap-") {
            return invalid("id", "bootstrap-* ids are kept for node bootstrap tokens");
        }
        self.insert(ctx, token.clone())
    }

    /// Records node `node_id`'s bootstrap token (an admin token), replacing an earlier hash of
    /// the same node. A hash already recorded by any node's bootstrap token (a bootstrap file
    /// shared by every node) is accepted as it is; a revoked one is refused for good. Whoever
    /// can write a node's data dir can make it a new bootstrap token, as with Nomad.
    pub(super) fn bootstrap(&mut self, ctx: Ctx, node_id: u64, hash: &str) -> Response {
        let id = bootstrap_id(node_id);
        if self.revoked_bootstrap.contains(hash) {
            return precondition("this bootstrap token was revoked");
        }
        if let Some(owner) = self.by_hash.get(hash) {
            return if owner.starts_with("bootstrap-") {
                Response::Ok
            } else {
                precondition("that hash belongs to another token")
            };
        }
        self.remove(&id);
        self.insert(
            ctx,
            Token {
                id: id.clone(),
                name: format!("bootstrap token of node {node_id}"),
                role: Role::Admin,
                queues: Vec::new(),
                hash: hash.to_string(),
                created_ms: ctx.now_ms,
                expires_ms: None,
                last_used_ms: None,
            },
        )
    }

    fn insert(&mut self, ctx: Ctx, mut token: Token) -> Response {
        if self.tokens.len() >= limits::TOKENS_MAX {
            return exhausted(format!(
                "{} tokens exist, the limit (TOKENS_MAX)",
                limits::TOKENS_MAX
            ));
        }
        token.created_ms = ctx.now_ms;
        self.by_hash.insert(token.hash.clone(), token.id.clone());
        self.tokens.insert(token.id.clone(), token);
        Response::Ok
    }

    fn remove(&mut self, id: &str) -> Option<Token> {
        let token = self.tokens.remove(id)?;
        self.by_hash.remove(&token.hash);
        Some(token)
    }

    /// Revokes a token: it stops working on every node once they apply this.
    pub(super) fn revoke(&mut self, id: &str) -> Response {
        let Some(token) = self.remove(id) else {
            return Response::Rejected(super::Rejection::Missing {
                what: format!("token {id}"),
            });
        };
        if id.starts_with("bootstrap-") && self.revoked_bootstrap.len() < limits::TOKENS_MAX {
            self.revoked_bootstrap.insert(token.hash);
        }
        Response::Ok
    }

    /// Records when tokens were last used (reported by nodes, coalesced per minute).
    pub(super) fn touch(&mut self, used: &[(String, u64)]) -> Response {
        for (id, at) in used.iter().take(limits::TOKENS_MAX) {
            if let Some(token) = self.tokens.get_mut(id) {
                token.last_used_ms = Some(token.last_used_ms.unwrap_or(0).max(*at));
            }
        }
        Response::Ok
    }

    /// Checks the subsystem's invariants (module doc); panics naming the first that fails.
    pub fn check_invariants(&self) {
        assert!(self.tokens.len() <= limits::TOKENS_MAX, "too many tokens");
        assert_eq!(
            self.tokens.len(),
            self.by_hash.len(),
            "token hash index size"
        );
        for (hash, id) in &self.by_hash {
            let token = self.tokens.get(id).expect("hash index names a token");
            assert_eq!(&token.hash, hash, "hash index of token {id}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str, hash: &str) -> Token {
        Token {
            id: id.into(),
            name: "t".into(),
            role: Role::Viewer,
            queues: vec!["build-*".into()],
            hash: hash.into(),
            created_ms: 0,
            expires_ms: None,
            last_used_ms: None,
        }
    }

    #[test]
    fn patterns_match_like_globs() {
        assert!(pattern_matches("build-*", "build-1"));
        assert!(pattern_matches("build-*", "build-"));
        assert!(!pattern_matches("build-*", "deploy"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("a*b*c", "axxbyyc"));
        assert!(!pattern_matches("a*b*c", "axxbyy"));
        assert!(pattern_matches("exact", "exact"));
        assert!(!pattern_matches("exact", "exactly"));
        assert!(!pattern_matches("*-x", "-"));
        assert!(pattern_matches("ab*ab", "ab"[..].repeat(2).as_str()));
        assert!(!pattern_matches("ab*ab", "ab"));
    }

    #[test]
    fn tokens_are_found_by_hash_and_revoked() {
        let mut auth = Auth::default();
        let ctx = Ctx::at(5);
        assert_eq!(auth.create(ctx, &token("a", "h1")), Response::Ok);
        assert!(matches!(
            auth.create(ctx, &token("b", "h1")),
            Response::Rejected(_)
        ));
        assert_eq!(auth.by_hash("h1").map(|t| t.created_ms), Some(5));
        assert!(auth.by_hash("h1").unwrap().allows_queue("build-7"));
        assert!(!auth.by_hash("h1").unwrap().allows_queue("deploy"));
        assert_eq!(auth.revoke("a"), Response::Ok);
        assert!(auth.by_hash("h1").is_none());
        auth.check_invariants();
    }

    #[test]
    fn a_revoked_bootstrap_token_stays_revoked() {
        let mut auth = Auth::default();
        let ctx = Ctx::at(1);
        assert_eq!(auth.bootstrap(ctx, 1, "h"), Response::Ok);
        assert_eq!(auth.bootstrap(ctx, 1, "h"), Response::Ok);
        assert_eq!(auth.bootstrap(ctx, 2, "h"), Response::Ok, "a shared file");
        assert_eq!(auth.bootstrap(ctx, 1, "h2"), Response::Ok);
        assert!(auth.by_hash("h").is_none());
        assert_eq!(auth.by_hash("h2").map(|t| t.role), Some(Role::Admin));
        assert_eq!(auth.revoke("bootstrap-1"), Response::Ok);
        assert!(auth.is_revoked_bootstrap("h2"));
        assert!(matches!(
            auth.bootstrap(ctx, 1, "h2"),
            Response::Rejected(_)
        ));
        assert!(matches!(
            auth.bootstrap(ctx, 3, "h2"),
            Response::Rejected(_)
        ));
        assert!(auth.by_hash("h2").is_none());
        auth.check_invariants();
    }
}

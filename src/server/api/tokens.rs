//! API tokens: create (the secret is made here and shown once), list, revoke. Admin only
//! (`server/auth.rs`).

use tonic::Status;

use super::ApiService;
use crate::error::Error;
use crate::machine::auth::{Role, Token};
use crate::machine::{limits, Command, Response as Applied};
use crate::proto::pb;

fn invalid(field: &str, message: impl Into<String>) -> Status {
    Error::InvalidArgument {
        field: field.into(),
        message: message.into(),
    }
    .into()
}

/// Checks a queue pattern (`machine::auth::validate_pattern`).
pub(crate) fn check_pattern(field: &str, pattern: &str) -> Result<(), Status> {
    crate::machine::auth::validate_pattern(field, pattern).map_err(|r| Error::from(r).into())
}

fn info(t: &Token) -> pb::TokenInfo {
    pb::TokenInfo {
        id: t.id.clone(),
        name: t.name.clone(),
        role: t.role.name().into(),
        queues: t.queues.clone(),
        created_ms: t.created_ms,
        expires_ms: t.expires_ms.unwrap_or(0),
        last_used_ms: t.last_used_ms.unwrap_or(0),
    }
}

/// Checks a create request at the edge and builds the token and its secret.
fn token_from(req: pb::CreateTokenRequest) -> Result<(Token, String), Status> {
    if req.name.is_empty()
        || req.name.len() > limits::TOKEN_NAME_BYTES_MAX
        || req.name.chars().any(char::is_control)
    {
        return Err(invalid(
            "name",
            format!(
                "must be 1 to {} bytes of printable text",
                limits::TOKEN_NAME_BYTES_MAX
            ),
        ));
    }
    let role = Role::parse(&req.role).ok_or_else(|| {
        invalid(
            "role",
            format!(
                "is {:?}; roles are admin, operator, submitter, worker, viewer",
                req.role
            ),
        )
    })?;
    if req.queues.len() > limits::TOKEN_QUEUES_MAX {
        return Err(invalid(
            "queues",
            format!(
                "has {} patterns, the limit is {}",
                req.queues.len(),
                limits::TOKEN_QUEUES_MAX
            ),
        ));
    }
    for (i, p) in req.queues.iter().enumerate() {
        check_pattern(&format!("queues[{i}]"), p)?;
    }
    if req.ttl_ms > limits::TOKEN_TTL_MS_MAX {
        return Err(invalid(
            "ttl_ms",
            format!(
                "is {}, the limit is {} (10 years)",
                req.ttl_ms,
                limits::TOKEN_TTL_MS_MAX
            ),
        ));
    }
    let secret = crate::access::new_secret()?;
    let token = Token {
        id: crate::access::new_id()?,
        name: req.name,
        role,
        queues: req.queues,
        hash: crate::access::hash(&secret),
        created_ms: 0,
        expires_ms: (req.ttl_ms > 0).then(|| crate::server::auth::wall_ms() + req.ttl_ms),
        last_used_ms: None,
    };
    Ok((token, secret))
}

pub(super) async fn create_token(
    api: &ApiService,
    req: pb::CreateTokenRequest,
) -> Result<pb::CreateTokenResponse, Status> {
    let (token, secret) = token_from(req)?;
    let id = token.id.clone();
    propose_expect!(api, Command::CreateToken(token), Applied::Ok => ());
    api.replica.read_barrier().await?;
    let token = api
        .replica
        .read(|m| m.auth().tokens().find(|t| t.id == id).map(info))
        .ok_or_else(|| Error::Internal(format!("token {id} vanished")))?;
    Ok(pb::CreateTokenResponse {
        token: Some(token),
        secret,
    })
}

pub(super) async fn list_tokens(
    api: &ApiService,
    _req: pb::ListTokensRequest,
) -> Result<pb::ListTokensResponse, Status> {
    api.read_barrier(false).await?;
    let tokens = api.replica.read(|m| m.auth().tokens().map(info).collect());
    Ok(pb::ListTokensResponse { tokens })
}

pub(super) async fn revoke_token(
    api: &ApiService,
    req: pb::RevokeTokenRequest,
) -> Result<pb::RevokeTokenResponse, Status> {
    if req.id.is_empty() || req.id.len() > 64 {
        return Err(invalid("id", "must be 1 to 64 bytes"));
    }
    propose_expect!(api, Command::RevokeToken { id: req.id }, Applied::Ok => ());
    Ok(pb::RevokeTokenResponse {})
}

pub(super) async fn list_audit(
    api: &ApiService,
    req: pb::ListAuditRequest,
) -> Result<pb::ListAuditResponse, Status> {
    let limit = crate::proto::from_wire::list_limit(req.limit)?;
    if req.token_id.len() > limits::TOKEN_ID_BYTES_MAX {
        return Err(invalid(
            "token_id",
            format!("is over {} bytes", limits::TOKEN_ID_BYTES_MAX),
        ));
    }
    api.read_barrier(false).await?;
    let entries = api.replica.read(|m| {
        m.audit()
            .records()
            .rev()
            .filter(|r| req.before_seq == 0 || r.seq < req.before_seq)
            .filter(|r| req.token_id.is_empty() || r.by.token_id == req.token_id)
            .take(limit)
            .map(|r| pb::AuditEntry {
                seq: r.seq,
                at_ms: r.at_ms,
                token_id: r.by.token_id.clone(),
                token_name: r.by.name.clone(),
                action: r.action.clone(),
                target: r.target.clone(),
            })
            .collect()
    });
    Ok(pb::ListAuditResponse { entries })
}

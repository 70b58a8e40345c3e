//! The tamper-evident audit trail: every step of every request, every link
//! change, appended as a hash-chained row in the same transaction as the
//! change it records.
//!
//! Row `n` stores `hash(n) = H(json([seq, at, actor, action, request_id,
//! detail, hash(n-1)]))`, and a single head row remembers the newest
//! `(seq, hash)`. Changing a row breaks its hash; deleting a row leaves a
//! gap in `seq`; deleting the newest rows leaves the head pointing past the
//! end. `jitbot audit verify` checks all three and names the first bad row.
//!
//! `H` is plain SHA-256 for rows written before an `audit.key` was
//! configured, and HMAC-SHA256 with that key after (each row's `scheme`
//! says which): whoever owns the database but not the key can recompute
//! SHA-256, not the HMAC. Keyed, the head also carries a MAC of its
//! `(seq, hash)`, so moving it back over deleted rows is detected; and a
//! job posts signed [`Checkpoint`]s of the head to the Slack audit channel,
//! outside the database, so that even a truncated table with a reset head
//! is caught by `jitbot audit verify --checkpoint`. An unkeyed row after a
//! keyed one is refused as a downgrade. What this does not catch (rows
//! newer than the last checkpoint, dropped together with a head restored
//! from an older copy) is spelled out in the README.

use std::fmt;
use std::io::Write;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::domain::{AuditKey, AuditTag, RequestId, SlackUser, Timestamp};
use crate::store::{AuditHead, AuditRow, Db, StoreError, Tx};

mod event;
pub use event::{CallError, CallOutput, Event};

/// The hash that precedes row 1.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `scheme` of rows hashed with plain SHA-256 (no key configured).
pub const SCHEME_SHA256: &str = "sha256";
/// `scheme` of rows tagged with HMAC-SHA256 and the audit key.
pub const SCHEME_HMAC: &str = "hmac-sha256";

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A person in Slack.
    Slack(SlackUser),
    /// An administrator on the command line (the OS user name, if known).
    Cli(String),
    /// jitbot itself (jobs, expiry).
    System,
    /// The identity provider, through SCIM provisioning.
    Scim,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Slack(u) => write!(f, "slack:{u}"),
            Actor::Cli(name) => write!(f, "cli:{name}"),
            Actor::System => f.write_str("system"),
            Actor::Scim => f.write_str("scim"),
        }
    }
}

/// What happened. The stored names are a stable contract for auditors'
/// queries: add variants, never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// An identity link was created or replaced.
    LinkAdded,
    /// An identity link was removed.
    LinkRemoved,
    /// A link's groups were re-read with its refresh token.
    LinkRefreshed,
    /// The IdP removed the person from groups (SCIM).
    LinkGroupsRemoved,
    /// SCIM reactivated an identity it had deactivated or deleted: it may link again.
    LinkReactivated,
    /// A request was made.
    RequestCreated,
    /// One approver approved (not yet enough approvals).
    ApprovalRecorded,
    /// The request got its approvals; grant and revocation are scheduled.
    RequestApproved,
    /// An approver denied the request.
    RequestDenied,
    /// The requester withdrew it.
    RequestCancelled,
    /// The provider applied the grant.
    GrantApplied,
    /// The provider was told an extension moved the expiry.
    GrantExtended,
    /// The provider could not be told about an extension.
    GrantExtendFailed,
    /// A grant attempt failed and will be retried.
    GrantAttemptFailed,
    /// The grant failed for good.
    GrantFailed,
    /// A grant job found nothing to do (request revoked or expired meanwhile).
    GrantSkipped,
    /// Someone ended access before its expiry.
    RevokeRequested,
    /// The provider removed the access.
    RevokeApplied,
    /// A revocation attempt failed; it is retried.
    RevokeAttemptFailed,
    /// A one-shot action ran successfully (its output is in the detail).
    ActionCompleted,
    /// A one-shot action failed; it is not run again.
    ActionFailed,
    /// Access still existed a minute after its expiry.
    RevokeOverdue,
    /// An administrator asked for a failing revocation to be tried again now.
    RevokeRetryRequested,
    /// The reconciler found the target differing from the database.
    ReconcileDrift,
    /// The reconciler removed access that should have been gone.
    ReconcileRevoked,
    /// A one-time credentials link was sent to the requester.
    CredentialsLinkIssued,
    /// The requester set a fresh password through the credentials page.
    CredentialsPasswordSet,
    /// The role's auto-approval rule granted the request without approvers.
    RequestAutoApproved,
    /// The requester approved their own request (break-glass); flagged for review.
    RequestBreakGlass,
    /// Someone reviewed a break-glass request afterwards (`jitbot review done`).
    RequestReviewed,
    /// Nobody decided before the role's approval timeout.
    RequestTimedOut,
    /// An approved extension moved the request's expiry.
    AccessExtended,
    /// Someone pulled the kill switch: all access revoked, pending requests cancelled.
    RevokeAll,
    /// A grant call is about to be made (written before the call, so a
    /// crash during it leaves a trace).
    GrantAttempted,
    /// A grant call was made and never answered (jitbot died), and the
    /// request expired before it could be tried again: the access may exist.
    GrantInterrupted,
    /// An administrator released the kill switch: approvals grant again.
    KillSwitchReleased,
    /// jitbot started with an `audit.key` and found the head without a MAC
    /// (the first start with the key, or someone without the key reset the
    /// head): from this row on the trail is keyed and the head sealed.
    AuditKeyed,
    /// jitbot found the head moved without the key (its MAC wrong, or
    /// removed from a keyed trail) when appending: newest rows were
    /// deleted or the head reset. `jitbot audit verify` reports it for good.
    AuditHeadMismatch,
}

impl AuditAction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LinkAdded => "link.added",
            Self::LinkRemoved => "link.removed",
            Self::LinkRefreshed => "link.refreshed",
            Self::LinkGroupsRemoved => "link.groups_removed",
            Self::LinkReactivated => "link.reactivated",
            Self::RequestCreated => "request.created",
            Self::ApprovalRecorded => "request.approval_recorded",
            Self::RequestApproved => "request.approved",
            Self::RequestDenied => "request.denied",
            Self::RequestCancelled => "request.cancelled",
            Self::GrantApplied => "grant.applied",
            Self::GrantExtended => "grant.extended",
            Self::GrantExtendFailed => "grant.extend_failed",
            Self::GrantAttemptFailed => "grant.attempt_failed",
            Self::GrantFailed => "grant.failed",
            Self::GrantSkipped => "grant.skipped",
            Self::RevokeRequested => "revoke.requested",
            Self::RevokeApplied => "revoke.applied",
            Self::RevokeAttemptFailed => "revoke.attempt_failed",
            Self::ActionCompleted => "action.completed",
            Self::ActionFailed => "action.failed",
            Self::RevokeOverdue => "revoke.overdue",
            Self::RevokeRetryRequested => "revoke.retry_requested",
            Self::ReconcileDrift => "reconcile.drift",
            Self::ReconcileRevoked => "reconcile.revoked",
            Self::CredentialsLinkIssued => "credentials.link_issued",
            Self::CredentialsPasswordSet => "credentials.password_set",
            Self::RequestAutoApproved => "request.auto_approved",
            Self::RequestBreakGlass => "request.break_glass",
            Self::RequestReviewed => "request.reviewed",
            Self::RequestTimedOut => "request.timed_out",
            Self::AccessExtended => "access.extended",
            Self::RevokeAll => "kill_switch.revoke_all",
            Self::KillSwitchReleased => "kill_switch.released",
            Self::GrantAttempted => "grant.attempted",
            Self::GrantInterrupted => "grant.interrupted",
            Self::AuditKeyed => "audit.keyed",
            Self::AuditHeadMismatch => "audit.head_mismatch",
        }
    }
}

/// The bytes a row's hash covers: its fields and the previous row's hash.
fn canonical(
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    request_id: Option<i64>,
    detail: &str,
    prev: &str,
) -> String {
    json!([seq, at, actor, action, request_id, detail, prev]).to_string()
}

/// The bytes the head's MAC covers.
fn head_message(seq: i64, hash: &str) -> String {
    json!([seq, hash]).to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Appends one event inside `tx`. Call it as the transaction's last write:
/// it locks the chain head until commit, and taking that lock last keeps
/// lock order the same in every transaction (no deadlocks on PostgreSQL).
///
/// With an audit key (carried by `tx`, see [`crate::store::Db`]) the row is
/// tagged with HMAC-SHA256 and the head sealed with a MAC; without one the
/// row is plain SHA-256 as before, and the head's MAC is cleared (a verify
/// with the key then reports the unkeyed row as a downgrade).
///
/// With a key, the head's MAC is checked first. A head moved without the
/// key (newest rows deleted and the head set back, or its MAC removed
/// while the trail is keyed) would otherwise be sealed again by this very
/// append, hiding the deletion; instead an `audit.head_mismatch` row is
/// written before the event, keyed, and `jitbot audit verify` reports it
/// for good.
pub async fn append(
    tx: &mut Tx,
    now: Timestamp,
    actor: &Actor,
    request: Option<RequestId>,
    event: Event<'_>,
) -> Result<i64, StoreError> {
    let head = tx.lock_audit_head().await?;
    let head = match head_problem(tx, &head).await? {
        None => head,
        Some(problem) => {
            tracing::error!(
                head_seq = head.seq - 1,
                problem,
                "the audit head was moved without audit.key; recording it in the trail"
            );
            let event = Event::AuditHeadMismatch { head_seq: head.seq - 1, problem };
            write_row(tx, head, now, &Actor::System, None, event).await?;
            tx.lock_audit_head().await?
        }
    };
    write_row(tx, head, now, actor, request, event).await
}

/// What is wrong with the head just locked (`head.seq` already names the
/// new row), if a key is configured and it was moved without it.
async fn head_problem(tx: &mut Tx, head: &AuditHead) -> Result<Option<&'static str>, StoreError> {
    let Some(key) = tx.audit_key() else { return Ok(None) };
    let last = head.seq - 1;
    match &head.mac {
        Some(mac) => {
            let valid = key.verify(AuditTag::Head, head_message(last, &head.hash).as_bytes(), mac);
            Ok((!valid).then_some("mac_invalid"))
        }
        // No MAC: fine on an empty trail and when the newest row is
        // unkeyed (the first append after audit.key was set); not when the
        // newest row is keyed, since keyed appends always seal the head.
        None if last == 0 => Ok(None),
        None => {
            let keyed = tx.audit_row_scheme(last).await?.is_some_and(|s| s == SCHEME_HMAC);
            Ok(keyed.then_some("mac_missing"))
        }
    }
}

/// Writes the row at the locked `head`.
async fn write_row(
    tx: &mut Tx,
    head: AuditHead,
    now: Timestamp,
    actor: &Actor,
    request: Option<RequestId>,
    event: Event<'_>,
) -> Result<i64, StoreError> {
    let action = event.action();
    let actor = actor.to_string();
    let detail = event.detail().to_string();
    let request_id = request.map(RequestId::get);
    let bytes = canonical(head.seq, now.millis(), &actor, action.as_str(), request_id, &detail, &head.hash);
    let (hash, scheme, head_mac) = match tx.audit_key() {
        Some(key) => {
            let hash = key.tag(AuditTag::Row, bytes.as_bytes());
            let mac = key.tag(AuditTag::Head, head_message(head.seq, &hash).as_bytes());
            (hash, SCHEME_HMAC, Some(mac))
        }
        None => (sha256_hex(bytes.as_bytes()), SCHEME_SHA256, None),
    };
    let row = AuditRow {
        seq: head.seq,
        at: now.millis(),
        actor,
        action: action.as_str().to_owned(),
        request_id,
        detail,
        prev_hash: head.hash,
        hash,
        scheme: scheme.to_owned(),
    };
    tx.insert_audit_row(&row, head_mac.as_deref()).await?;
    Ok(row.seq)
}

/// A signed statement "row `seq` of the trail had hash `head` at `at`",
/// posted outside the database (the Slack audit channel) by a job, as one
/// line:
///
/// `jitbot audit checkpoint seq=1234 head=<hex> at=<rfc3339> mac=<hex>`
///
/// The MAC (HMAC-SHA256 with the audit key, for checkpoints only) covers
/// `seq=... head=... at=...` exactly as written. Whoever owns the database
/// cannot forge one, nor unsay one already posted: `jitbot audit verify
/// --checkpoint` then proves that the trail still reaches row `seq` with
/// that hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The row anchored.
    pub seq: i64,
    /// Its hash (the head's hash when the checkpoint was made).
    pub head: String,
    /// When, RFC 3339, as written in the line.
    pub at: String,
    mac: String,
}

/// Why a checkpoint line cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a checkpoint line ({0}); expected `{prefix} seq=N head=HEX at=TIME mac=HEX`", prefix = Checkpoint::PREFIX)]
pub struct CheckpointParseError(String);

impl Checkpoint {
    /// How a checkpoint line starts.
    pub const PREFIX: &'static str = "jitbot audit checkpoint";

    /// Signs the head `(seq, hash)` at `now` with `key`.
    pub fn sign(key: &AuditKey, seq: i64, hash: &str, now: Timestamp) -> Self {
        let at = now.to_string();
        let mac = key.tag(AuditTag::Checkpoint, Self::signed_part(seq, hash, &at).as_bytes());
        Self { seq, head: hash.to_owned(), at, mac }
    }

    fn signed_part(seq: i64, head: &str, at: &str) -> String {
        format!("seq={seq} head={head} at={at}")
    }

    /// The line to post.
    pub fn line(&self) -> String {
        format!("{} {} mac={}", Self::PREFIX, Self::signed_part(self.seq, &self.head, &self.at), self.mac)
    }

    /// Whether `key` made this checkpoint (and nobody edited it since).
    pub fn is_signed_by(&self, key: &AuditKey) -> bool {
        key.verify(AuditTag::Checkpoint, Self::signed_part(self.seq, &self.head, &self.at).as_bytes(), &self.mac)
    }

    /// Reads one line as pasted from the channel: text before the prefix
    /// (a name, a time) and code quotes around it are ignored.
    pub fn parse(text: &str) -> Result<Self, CheckpointParseError> {
        let err = |m: &str| CheckpointParseError(m.to_owned());
        let start = text.find(Self::PREFIX).ok_or_else(|| err("the line does not contain it"))?;
        let rest = text[start + Self::PREFIX.len()..].trim().trim_end_matches(['`', '"', '\'']);
        let (mut seq, mut head, mut at, mut mac) = (None, None, None, None);
        for token in rest.split_whitespace() {
            let (name, value) = token.split_once('=').ok_or_else(|| err(&format!("{token:?} is not NAME=VALUE")))?;
            let slot = match name {
                "seq" => &mut seq,
                "head" => &mut head,
                "at" => &mut at,
                "mac" => &mut mac,
                _ => return Err(err(&format!("unknown field {name:?}"))),
            };
            if slot.replace(value.to_owned()).is_some() {
                return Err(err(&format!("{name} appears twice")));
            }
        }
        let hex64 = |v: &str| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit());
        let seq: i64 =
            seq.and_then(|s| s.parse().ok()).filter(|s| *s > 0).ok_or_else(|| err("seq must be a row number"))?;
        let head = head.filter(|h| hex64(h)).ok_or_else(|| err("head must be 64 hex digits"))?;
        let mac = mac.filter(|m| hex64(m)).ok_or_else(|| err("mac must be 64 hex digits"))?;
        let at = at.ok_or_else(|| err("at is missing"))?;
        Timestamp::parse_rfc3339(&at).map_err(|e| err(&format!("at: {e}")))?;
        Ok(Self { seq, head: head.to_ascii_lowercase(), at, mac })
    }

    /// Every checkpoint line in `text` (a file pasted from the channel;
    /// other lines are ignored). A line that names the prefix but does not
    /// parse is an error naming its line number: a checkpoint silently
    /// skipped would be a check silently skipped.
    pub fn parse_all(text: &str) -> Result<Vec<Self>, String> {
        text.lines()
            .enumerate()
            .filter(|(_, l)| l.contains(Self::PREFIX))
            .map(|(i, l)| Self::parse(l).map_err(|e| format!("line {}: {e}", i + 1)))
            .collect()
    }
}

/// Why verification failed: the first problem found, naming the row.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A row's contents no longer match its hash.
    #[error("audit row {seq} was altered: its contents do not match its hash")]
    Altered { seq: i64 },
    /// A row does not link to its predecessor.
    #[error("audit row {seq} does not follow row {prev}: the chain is broken there")]
    Unlinked { seq: i64, prev: i64 },
    /// Rows are missing in the middle.
    #[error("audit row {missing} is missing (the chain jumps from row {prev} to row {next})")]
    Missing { missing: i64, prev: i64, next: i64 },
    /// Rows are missing at the end.
    #[error("audit rows {first}..={last} are missing (the head records {last} rows, the table ends at {prev})")]
    MissingTail { first: i64, last: i64, prev: i64 },
    /// The head does not match the last row.
    #[error("the audit head does not match row {seq}")]
    HeadMismatch { seq: i64 },
    /// A keyed row, and no key to check it with.
    #[error("audit row {seq} is keyed (HMAC-SHA256): set audit.key to verify the trail")]
    KeyRequired { seq: i64 },
    /// An unkeyed row after a keyed one.
    #[error(
        "audit row {seq} is not keyed although the trail is keyed from row {keyed_from}: \
         rows from {seq} on were rewritten without the key (or appended by a jitbot running without audit.key)"
    )]
    Downgrade { seq: i64, keyed_from: i64 },
    /// The head's MAC does not match its `(seq, hash)`.
    #[error(
        "the audit head (row {seq}) does not carry a valid MAC: it was moved or rewritten without the key \
         (or audit.key is not the key the trail was written with)"
    )]
    HeadForged { seq: i64 },
    /// jitbot recorded, when appending, that the head had been moved.
    #[error(
        "audit row {seq} records that jitbot found the head moved without the key at row {head_seq}: \
         rows after {head_seq} were deleted, or the head reset, before row {seq} was written"
    )]
    HeadWasMoved { seq: i64, head_seq: i64 },
    /// A key is configured and the head of a non-empty trail has no MAC.
    #[error(
        "the audit head (row {seq}) carries no MAC although audit.key is set: it was reset without the key \
         (or no jitbot has started with audit.key yet: starting one seals it)"
    )]
    HeadUnsealed { seq: i64 },
    /// A checkpoint was given but no key to check it with.
    #[error("checking a checkpoint needs audit.key (the key it was signed with)")]
    CheckpointNeedsKey,
    /// A checkpoint's MAC is wrong.
    #[error("the checkpoint for row {seq} is not signed with this audit.key: it was edited, or made with another key")]
    CheckpointForged { seq: i64 },
    /// The row a checkpoint anchors has another hash now.
    #[error("audit row {seq} does not match the checkpoint of {at}: the trail was rewritten up to row {seq}")]
    CheckpointMismatch { seq: i64, at: String },
    /// The row a checkpoint anchors is gone.
    #[error(
        "audit row {seq}, anchored by the checkpoint of {at}, is missing: the trail ends at row {last} \
         (rows were deleted or truncated, or the database was restored from an older copy)"
    )]
    CheckpointRowMissing { seq: i64, at: String, last: i64 },
    /// The database could not be read.
    #[error("cannot read the audit log: {0}")]
    Store(#[from] StoreError),
}

/// What a successful verification covered, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Rows verified (the whole chain).
    pub rows: i64,
    /// Of these, rows tagged with the audit key.
    pub keyed: i64,
    /// The first keyed row, if any.
    pub keyed_from: Option<i64>,
    /// Whether the head's MAC was checked (a key is configured and the head is sealed).
    pub head_checked: bool,
    /// Whether `audit.key` is configured.
    pub key_configured: bool,
    /// The checkpoints the trail was checked against: `(seq, at)`.
    pub checkpoints: Vec<(i64, String)>,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} events verified", self.rows)?;
        match self.keyed_from {
            Some(1) => write!(f, "; all {} keyed (HMAC-SHA256)", self.keyed)?,
            Some(first) => write!(
                f,
                "; {} keyed (HMAC-SHA256, rows {first}..={}), {} unkeyed SHA-256 from before audit.key was set",
                self.keyed,
                self.rows,
                self.rows - self.keyed
            )?,
            None => write!(f, "; none keyed (plain SHA-256: whoever owns the database could rewrite them)")?,
        }
        if self.head_checked {
            f.write_str("; head MAC valid")?;
        }
        if !self.key_configured {
            f.write_str("; no audit.key configured")?;
        } else if self.keyed == 0 && self.rows > 0 {
            f.write_str("; audit.key is configured but no row is keyed yet")?;
        }
        match self.checkpoints.iter().max_by_key(|(seq, _)| *seq) {
            Some((seq, at)) => {
                write!(f, "; {} checkpoint(s) match, the newest anchors row {seq} ({at})", self.checkpoints.len())
            }
            None => f.write_str("; no checkpoint given (only a checkpoint proves that no newest rows were cut off)"),
        }
    }
}

/// Walks the whole chain; returns the number of rows verified. See
/// [`verify_against`] for checkpoints and the full report.
pub async fn verify(db: &Db) -> Result<i64, VerifyError> {
    verify_against(db, &[]).await.map(|r| r.rows)
}

/// Walks the whole chain with the key of `db` (if any), checks the head and
/// its MAC, and checks that the trail still holds every row that
/// `checkpoints` anchor, with the anchored hash. The first problem found is
/// the error; it names the row.
pub async fn verify_against(db: &Db, checkpoints: &[Checkpoint]) -> Result<VerifyReport, VerifyError> {
    let key = db.audit_key();
    if !checkpoints.is_empty() {
        let Some(key) = key else { return Err(VerifyError::CheckpointNeedsKey) };
        if let Some(bad) = checkpoints.iter().find(|c| !c.is_signed_by(key)) {
            return Err(VerifyError::CheckpointForged { seq: bad.seq });
        }
    }
    // A year of hourly checkpoints against millions of rows: look them up by row.
    let mut anchored: std::collections::HashMap<i64, Vec<&Checkpoint>> = std::collections::HashMap::new();
    for c in checkpoints {
        anchored.entry(c.seq).or_default().push(c);
    }
    let mut prev_seq = 0;
    let mut prev_hash = GENESIS_HASH.to_owned();
    let (mut keyed, mut keyed_from) = (0, None);
    loop {
        let rows = db.audit_rows_after(prev_seq, 1000).await?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            if r.seq != prev_seq + 1 {
                return Err(VerifyError::Missing { missing: prev_seq + 1, prev: prev_seq, next: r.seq });
            }
            let bytes = canonical(r.seq, r.at, &r.actor, &r.action, r.request_id, &r.detail, &r.prev_hash);
            let intact = match r.scheme.as_str() {
                SCHEME_HMAC => {
                    let Some(key) = key else { return Err(VerifyError::KeyRequired { seq: r.seq }) };
                    keyed += 1;
                    keyed_from.get_or_insert(r.seq);
                    key.verify(AuditTag::Row, bytes.as_bytes(), &r.hash)
                }
                SCHEME_SHA256 => {
                    if let Some(keyed_from) = keyed_from {
                        return Err(VerifyError::Downgrade { seq: r.seq, keyed_from });
                    }
                    sha256_hex(bytes.as_bytes()) == r.hash
                }
                _ => false,
            };
            if !intact {
                return Err(VerifyError::Altered { seq: r.seq });
            }
            if r.action == AuditAction::AuditHeadMismatch.as_str() {
                let head_seq = serde_json::from_str::<Value>(&r.detail)
                    .ok()
                    .and_then(|d| d.get("head_seq").and_then(Value::as_i64))
                    .unwrap_or(r.seq - 1);
                return Err(VerifyError::HeadWasMoved { seq: r.seq, head_seq });
            }
            if r.prev_hash != prev_hash {
                return Err(VerifyError::Unlinked { seq: r.seq, prev: prev_seq });
            }
            if let Some(c) = anchored.get(&r.seq).and_then(|cs| cs.iter().find(|c| c.head != r.hash)) {
                return Err(VerifyError::CheckpointMismatch { seq: r.seq, at: c.at.clone() });
            }
            prev_seq = r.seq;
            prev_hash = r.hash;
        }
    }
    let head = db.audit_head().await?;
    if head.seq > prev_seq {
        return Err(VerifyError::MissingTail { first: prev_seq + 1, last: head.seq, prev: prev_seq });
    }
    if head.seq != prev_seq || head.hash != prev_hash {
        return Err(VerifyError::HeadMismatch { seq: prev_seq });
    }
    let head_checked = check_head_mac(&head, key)?;
    if let Some(c) = checkpoints.iter().filter(|c| c.seq > prev_seq).max_by_key(|c| c.seq) {
        return Err(VerifyError::CheckpointRowMissing { seq: c.seq, at: c.at.clone(), last: prev_seq });
    }
    Ok(VerifyReport {
        rows: prev_seq,
        keyed,
        keyed_from,
        head_checked,
        key_configured: key.is_some(),
        checkpoints: checkpoints.iter().map(|c| (c.seq, c.at.clone())).collect(),
    })
}

/// Checks the head's MAC; returns whether there was one to check.
fn check_head_mac(head: &AuditHead, key: Option<&AuditKey>) -> Result<bool, VerifyError> {
    match (&head.mac, key) {
        (Some(mac), Some(key)) => {
            if key.verify(AuditTag::Head, head_message(head.seq, &head.hash).as_bytes(), mac) {
                Ok(true)
            } else {
                Err(VerifyError::HeadForged { seq: head.seq })
            }
        }
        (None, Some(_)) if head.seq > 0 => Err(VerifyError::HeadUnsealed { seq: head.seq }),
        _ => Ok(false),
    }
}

/// Whether the head's MAC holds with the key of `db`: `None` without a key
/// or without a MAC to check, for the start-up check.
pub async fn head_seal_valid(db: &Db) -> Result<Option<bool>, StoreError> {
    let Some(key) = db.audit_key() else { return Ok(None) };
    let head = db.audit_head().await?;
    Ok(head.mac.map(|mac| key.verify(AuditTag::Head, head_message(head.seq, &head.hash).as_bytes(), &mac)))
}

/// A checkpoint of the current head, signed with the key of `db`; `None`
/// without a key or while the trail is empty.
pub async fn checkpoint(db: &Db, now: Timestamp) -> Result<Option<Checkpoint>, StoreError> {
    let Some(key) = db.audit_key() else { return Ok(None) };
    let head = db.audit_head().await?;
    Ok((head.seq > 0).then(|| Checkpoint::sign(key, head.seq, &head.hash, now)))
}

/// Writes rows with `seq > after` as JSON lines; returns how many.
pub async fn export(db: &Db, after: i64, out: &mut dyn Write) -> anyhow::Result<u64> {
    let mut last = after;
    let mut n = 0;
    loop {
        let rows = db.audit_rows_after(last, 1000).await?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            let detail: Value = serde_json::from_str(&r.detail).unwrap_or(Value::String(r.detail.clone()));
            let line = json!({
                "seq": r.seq,
                "at": Timestamp::from_millis(r.at).to_string(),
                "at_ms": r.at,
                "actor": r.actor,
                "action": r.action,
                "request_id": r.request_id,
                "detail": detail,
                "prev_hash": r.prev_hash,
                "hash": r.hash,
                "scheme": r.scheme,
            });
            writeln!(out, "{line}")?;
            last = r.seq;
            n += 1;
        }
    }
    out.flush()?;
    Ok(n)
}

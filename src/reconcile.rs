//! `jitbot reconcile`: compares what jitbot's database says is granted with
//! what each provider that can read its target reports, and reports (and
//! with `fix`, repairs) the difference.
//!
//! - An **active** request whose access is absent in the target is reported
//!   (someone removed it by hand, or the target was restored from a backup).
//!   jitbot does not re-grant on its own: the request may be revoked or
//!   requested anew.
//! - A **revoked** request whose access is present again is drift in the
//!   dangerous direction. It is only counted when jitbot itself removed that
//!   access (not when it was kept for another request or existed before
//!   jitbot), and nobody holds it now. With `fix`, it is revoked again under
//!   the same lease rules as a normal revocation.
//! - A revocation still unfinished a minute after its expiry is reported as
//!   overdue (the scheduler alerts on those too; see
//!   [`crate::jobs::REVOKE_OVERDUE_AFTER`]).
//!
//! Every difference found is appended to the audit trail.

use std::time::Duration;

use crate::audit::Actor;
use crate::domain::{AccessRequest, RequestState, Timestamp};
use crate::jobs::REVOKE_OVERDUE_AFTER;
use crate::providers::{Presence, Providers};
use crate::service::{ReconcileFinding, Service, ServiceError};

/// How far back revoked requests are checked, and whether to repair.
#[derive(Debug, Clone, Copy)]
pub struct ReconcileOptions {
    /// Revoke again what should be gone (otherwise only report).
    pub fix: bool,
    /// Revoked requests that ended within this window are checked.
    pub since: Duration,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Active in jitbot, absent in the target.
    Missing,
    /// Revoked in jitbot, present in the target; `fixed` when removed again.
    Lingering {
        /// Whether `fix` removed it.
        fixed: bool,
        /// What the provider said when fixing (or why it could not).
        detail: String,
    },
    /// The revocation is not done a minute after expiry.
    Overdue,
    /// The provider could not be asked.
    Unreadable {
        /// The provider's error.
        error: String,
    },
}

/// A difference about one request.
#[derive(Debug, Clone)]
pub struct Difference {
    /// The request.
    pub request: AccessRequest,
    /// What differs.
    pub finding: Finding,
}

impl Difference {
    /// One line for an operator.
    pub fn describe(&self) -> String {
        let r = &self.request;
        let head = format!("request {} `{}` of {} (provider {})", r.id, r.role, r.requester_email, r.provider);
        match &self.finding {
            Finding::Missing => format!("{head}: active in jitbot but ABSENT in the target"),
            Finding::Lingering { fixed: true, detail } => {
                format!("{head}: revoked in jitbot but still PRESENT in the target; revoked again ({detail})")
            }
            Finding::Lingering { fixed: false, detail } => {
                format!("{head}: revoked in jitbot but still PRESENT in the target ({detail})")
            }
            Finding::Overdue => format!(
                "{head}: revocation OVERDUE: access expired at {} and the request is still {}{}",
                r.expires_at.map(|t| t.to_string()).unwrap_or_default(),
                r.state,
                r.state_detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
            ),
            Finding::Unreadable { error } => format!("{head}: cannot read the target: {error}"),
        }
    }

    /// Whether this difference still stands.
    pub fn unresolved(&self) -> bool {
        !matches!(self.finding, Finding::Lingering { fixed: true, .. })
    }
}

/// What a run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Requests compared with their target.
    pub checked: usize,
    /// Requests on providers that cannot report state (webhook, command).
    pub blind: usize,
    /// The differences.
    pub differences: Vec<Difference>,
}

impl Report {
    /// Whether nothing is left to look at.
    pub fn is_clean(&self) -> bool {
        self.differences.iter().all(|d| !d.unresolved())
    }
}

/// Compares and (with `opts.fix`) repairs; see the module docs.
pub async fn reconcile(
    service: &Service,
    providers: &Providers,
    actor: &Actor,
    now: Timestamp,
    opts: ReconcileOptions,
) -> Result<Report, ServiceError> {
    let mut report = Report::default();
    for request in service.requests_in_states(&RequestState::MAY_HOLD_ACCESS).await? {
        if request.expires_at.is_some_and(|t| t.plus(REVOKE_OVERDUE_AFTER) < now) {
            report.differences.push(Difference { request: request.clone(), finding: Finding::Overdue });
            continue;
        }
        if request.state != RequestState::Active {
            continue;
        }
        match observe(service, providers, &request).await {
            Observed::Blind => report.blind += 1,
            Observed::Error(error) => {
                report.checked += 1;
                report.differences.push(Difference { request, finding: Finding::Unreadable { error } });
            }
            Observed::Seen(Presence::Absent) => {
                report.checked += 1;
                report.differences.push(Difference { request, finding: Finding::Missing });
            }
            Observed::Seen(_) => report.checked += 1,
        }
    }
    let horizon = now.minus(opts.since);
    for request in service.requests_in_states(&[RequestState::Revoked]).await? {
        if request.ended_at.is_none_or(|t| t < horizon) {
            continue;
        }
        match observe_revoked(service, providers, &request).await? {
            Observed::Blind => report.blind += 1,
            Observed::Error(error) => {
                report.checked += 1;
                report.differences.push(Difference { request, finding: Finding::Unreadable { error } });
            }
            Observed::Seen(Presence::Present) => {
                report.checked += 1;
                let finding = if opts.fix {
                    revoke_again(service, providers, &request, now).await?
                } else {
                    Finding::Lingering { fixed: false, detail: "run with --fix to revoke it again".to_owned() }
                };
                report.differences.push(Difference { request, finding });
            }
            Observed::Seen(_) => report.checked += 1,
        }
    }
    let findings: Vec<ReconcileFinding> = report
        .differences
        .iter()
        .map(|d| ReconcileFinding {
            request: d.request.id,
            revoked_again: matches!(d.finding, Finding::Lingering { fixed: true, .. }),
            description: d.describe(),
        })
        .collect();
    service.record_reconcile_findings(&findings, actor, now).await?;
    Ok(report)
}

enum Observed {
    Blind,
    Error(String),
    Seen(Presence),
}

async fn observe(service: &Service, providers: &Providers, request: &AccessRequest) -> Observed {
    let Some(provider) = providers.get(&request.provider) else {
        return Observed::Error(format!("provider {} is not configured", request.provider));
    };
    let target = match service.grant_target(request).await {
        Ok(Some(t)) if !t.is_one_shot() => t,
        Ok(_) => return Observed::Blind,
        Err(e) => return Observed::Error(e.message),
    };
    match provider.inspect(&target).await {
        Ok(Presence::Unknown) => Observed::Blind,
        Ok(p) => Observed::Seen(p),
        Err(e) => Observed::Error(e.message),
    }
}

/// Like [`observe`], but only where jitbot itself removed the access and
/// nobody holds it now; anything else is not drift.
async fn observe_revoked(
    service: &Service,
    providers: &Providers,
    request: &AccessRequest,
) -> Result<Observed, ServiceError> {
    let (Some(provider), Ok(Some(target))) = (providers.get(&request.provider), service.grant_target(request).await)
    else {
        return Ok(Observed::Blind);
    };
    // `releasing` counts as removed: an earlier `--fix` could not finish the removal.
    if let Some(key) = provider.access_key(&target)
        && !service.removed_by_jitbot_and_unheld(request.id, &key).await?
    {
        return Ok(Observed::Seen(Presence::Absent));
    }
    Ok(observe(service, providers, request).await)
}

async fn revoke_again(
    service: &Service,
    providers: &Providers,
    request: &AccessRequest,
    now: Timestamp,
) -> Result<Finding, ServiceError> {
    let not_fixed = |detail: String| Ok(Finding::Lingering { fixed: false, detail });
    let (Some(provider), Ok(Some(target))) = (providers.get(&request.provider), service.grant_target(request).await)
    else {
        return not_fixed("the provider or the grant spec is gone".to_owned());
    };
    let leased = provider.access_key(&target).is_some();
    if leased && !service.reopen_release(request.id, &request.provider, now).await? {
        return not_fixed("another request holds this access now; left in place".to_owned());
    }
    match provider.revoke(&target, now).await {
        Ok(r) => {
            if leased {
                service.finish_release(request.id, now).await?;
            }
            Ok(Finding::Lingering { fixed: true, detail: r.notes.join("; ") })
        }
        // The lease stays `releasing`: new grants of this access wait until
        // a later run (or an operator) finishes the removal.
        Err(e) => not_fixed(format!("revoking again failed: {}", e.message)),
    }
}

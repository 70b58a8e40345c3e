//! Where an identity link ends, access ends with it: removing a link
//! (`/jit unlink`, `jitbot link remove`, a refresh the IdP refuses) revokes
//! the live grants and cancels the pending requests it vouched for; SCIM
//! deprovisioning finds people by the identity stored on their requests, so
//! it still ends their access when the link is already gone; and an
//! identity SCIM deactivated or deleted cannot link again until SCIM
//! reactivates it. Hand-made links may not borrow the email of another
//! person's link.

use std::collections::{BTreeMap, BTreeSet};

use super::{Refusal, Service, ServiceError, ServiceResult, schedule_dm};
use crate::audit::{self, Actor, Event};
use crate::domain::{AccessRequest, Identity, RequestId, RequestState, SlackUser, Timestamp};
use crate::store::{DeprovisionedKey, LinkRow};

/// A SCIM user as deprovisioning sees it: the IdP identity it stands for.
#[derive(Debug, Clone)]
pub struct ScimPerson {
    /// The SCIM resource id (what reactivation clears).
    pub scim_id: String,
    /// `externalId`: the IdP subject (`sub`), if the IdP sends it.
    pub subject: Option<String>,
    /// `userName` and `emails`: compared case-insensitively.
    pub emails: Vec<String>,
}

impl ScimPerson {
    fn keys(&self) -> Vec<DeprovisionedKey> {
        let mut keys: BTreeSet<DeprovisionedKey> = BTreeSet::new();
        if let Some(s) = self.subject.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            keys.insert(DeprovisionedKey::Subject(s.to_owned()));
        }
        for e in self.emails.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            keys.insert(DeprovisionedKey::Email(e.to_lowercase()));
        }
        keys.into_iter().collect()
    }
}

/// What `/jit unlink` did or would do.
#[derive(Debug, Clone)]
pub enum UnlinkOutcome {
    /// The person has no link.
    NoLink,
    /// Nothing happened yet: unlinking would end this access, so the person
    /// confirms first (`/jit unlink confirm`).
    WouldEnd(Vec<AccessRequest>),
    /// The link is gone, and with it this access (requests as they are now:
    /// `revoking` or `cancelled`).
    Unlinked(Vec<AccessRequest>),
}

/// Whether a request still holds or waits for access that ending its link ends.
fn is_live(r: &AccessRequest) -> bool {
    matches!(r.state, RequestState::Pending | RequestState::Granting | RequestState::Active | RequestState::GrantFailed)
}

impl Service {
    /// What removing `user`'s link would end (pending requests, live
    /// grants); `None` when there is no link.
    pub async fn access_ending_with_link(&self, user: &SlackUser) -> ServiceResult<Option<Vec<AccessRequest>>> {
        if self.db.link(user).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.db.open_requests_of(user).await?.into_iter().filter(is_live).collect()))
    }

    /// `/jit unlink`: without `confirm`, a person with live access is told
    /// what would end and nothing changes; with it (or with nothing live)
    /// the link is removed and that access ends.
    pub async fn unlink_self(&self, user: &SlackUser, confirm: bool, now: Timestamp) -> ServiceResult<UnlinkOutcome> {
        if !confirm {
            match self.access_ending_with_link(user).await? {
                None => return Ok(UnlinkOutcome::NoLink),
                Some(live) if !live.is_empty() => return Ok(UnlinkOutcome::WouldEnd(live)),
                Some(_) => {}
            }
        }
        Ok(match self.remove_link(user, &Actor::Slack(user.clone()), now).await? {
            None => UnlinkOutcome::NoLink,
            Some(ended) => UnlinkOutcome::Unlinked(ended),
        })
    }

    /// Removes `user`'s identity link (`/jit unlink`, `jitbot link remove`)
    /// and ends the access it vouched for: live grants are revoked at once,
    /// pending requests cancelled, all audited. Access must not outlive the
    /// identity that justified it. `None` if there was no link; otherwise
    /// the requests ended, as they are now.
    pub async fn remove_link(
        &self,
        user: &SlackUser,
        actor: &Actor,
        now: Timestamp,
    ) -> ServiceResult<Option<Vec<AccessRequest>>> {
        self.end_link(user, None, actor, "the identity link was removed", now).await
    }

    /// The refresher's "the IdP refused this link's sign-in": the link ends,
    /// and with it its access, unless the link changed since `version` was
    /// read (a new sign-in during the round trip is not undone). `None`
    /// when nothing was removed.
    pub async fn end_refused_link(
        &self,
        user: &SlackUser,
        version: i64,
        why: &str,
        now: Timestamp,
    ) -> ServiceResult<Option<Vec<AccessRequest>>> {
        self.end_link(user, Some(version), &Actor::System, why, now).await
    }

    async fn end_link(
        &self,
        user: &SlackUser,
        version: Option<i64>,
        actor: &Actor,
        why: &str,
        now: Timestamp,
    ) -> ServiceResult<Option<Vec<AccessRequest>>> {
        let ids: Vec<RequestId> = self.db.open_requests_of(user).await?.into_iter().map(|r| r.id).collect();
        let mut tx = self.db.begin().await?;
        let removed = match version {
            Some(v) => tx.delete_link_at(user, v).await?,
            None => tx.delete_link(user).await?,
        };
        if !removed {
            tx.rollback().await?;
            return Ok(None);
        }
        let events = self.end_requests(&mut tx, &ids, why, now).await?;
        let ended: Vec<RequestId> = events.iter().map(|(id, _)| *id).collect();
        // The person is told unless they did it themselves (they see the answer).
        if actor != &Actor::Slack(user.clone()) {
            let what = if ended.is_empty() { String::new() } else { " and your access with it".to_owned() };
            let text = format!(
                "Your jitbot link ended{what}: {why}. Run /jit link to sign in again before you request or approve access."
            );
            schedule_dm(&mut tx, user, &text, now).await?;
        }
        for (id, event) in events {
            audit::append(&mut tx, now, actor, Some(id), event).await?;
        }
        let event = Event::LinkRemoved { slack: user, reason: why, ended: &ended };
        audit::append(&mut tx, now, actor, None, event).await?;
        tx.commit().await?;
        self.wake.notify_one();
        let mut out = Vec::new();
        for id in ended {
            out.extend(self.db.request(id).await?);
        }
        Ok(Some(out))
    }

    /// SCIM deactivated or deleted `person`: every open request made by
    /// that identity (found by the subject and emails stored on requests,
    /// so a person whose link is already gone is found too) is cancelled or
    /// revoked at once, their links removed, each Slack account told, and
    /// the identity may not link again until SCIM reactivates it. Returns
    /// the requests touched.
    pub async fn deprovision(&self, person: &ScimPerson, reason: &str, now: Timestamp) -> ServiceResult<usize> {
        let keys = person.keys();
        let mut links: BTreeMap<(String, String), LinkRow> = BTreeMap::new();
        let mut ids: BTreeSet<RequestId> = BTreeSet::new();
        for key in &keys {
            let (subject, email) = match key {
                DeprovisionedKey::Subject(s) => (Some(s.as_str()), None),
                DeprovisionedKey::Email(e) => (None, Some(e.as_str())),
            };
            for link in self.db.links_matching(subject, email).await? {
                links.insert((link.team_id.clone(), link.user_id.clone()), link);
            }
            ids.extend(self.db.open_requests_by_identity(subject, email).await?.into_iter().map(|r| r.id));
        }
        let mut people: Vec<SlackUser> = Vec::new();
        for link in links.values() {
            let user = SlackUser::parse(&link.team_id, &link.user_id).map_err(crate::store::StoreError::Corrupt)?;
            ids.extend(self.db.open_requests_of(&user).await?.into_iter().map(|r| r.id));
            people.push(user);
        }
        let ids: Vec<RequestId> = ids.into_iter().collect();
        let mut tx = self.db.begin().await?;
        let events = self.end_requests(&mut tx, &ids, reason, now).await?;
        for (id, _) in &events {
            if let Some(r) = tx.request(*id).await?
                && !people.contains(&r.requester)
            {
                people.push(r.requester);
            }
        }
        let mut unlinked = Vec::new();
        for user in &people {
            if tx.delete_link(user).await? {
                unlinked.push(user.clone());
            }
        }
        for key in &keys {
            tx.mark_deprovisioned(key, &person.scim_id, reason, now).await?;
        }
        for user in &people {
            schedule_dm(&mut tx, user, &format!("Your jitbot access was ended: {reason}."), now).await?;
        }
        let touched = events.len();
        for (id, event) in events {
            audit::append(&mut tx, now, &Actor::Scim, Some(id), event).await?;
        }
        for user in &unlinked {
            audit::append(&mut tx, now, &Actor::Scim, None, Event::LinkRemovedByScim { slack: user, reason }).await?;
        }
        tx.commit().await?;
        self.wake.notify_one();
        Ok(touched)
    }

    /// SCIM says `person` is active (created active, or set `active: true`
    /// again): a deprovisioned identity may link again. `true` if it was
    /// deprovisioned.
    pub async fn scim_reactivated(&self, person: &ScimPerson, now: Timestamp) -> ServiceResult<bool> {
        let keys = person.keys();
        let mut tx = self.db.begin().await?;
        let mut cleared = 0;
        for key in &keys {
            cleared += tx.clear_deprovisioned(&person.scim_id, key).await?;
        }
        if cleared == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let event = Event::LinkReactivated {
            scim_id: &person.scim_id,
            subject: person.subject.as_deref(),
            emails: &person.emails,
        };
        audit::append(&mut tx, now, &Actor::Scim, None, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Refuses to link an identity that SCIM deactivated or deleted (until
    /// SCIM reactivates it): a relink must not bring back what the identity
    /// provider took away.
    pub(super) async fn check_may_link(&self, identity: &Identity) -> ServiceResult<()> {
        match self.db.deprovisioned(&identity.subject, &identity.email).await? {
            Some(reason) => Err(ServiceError::NotAllowed(Refusal::Deprovisioned {
                email: identity.email.clone(),
                how: reason.to_string(),
            })),
            None => Ok(()),
        }
    }

    /// A hand-made link may not take an email that another Slack user's
    /// link holds for another IdP identity: that would be two people with
    /// one email, or one person counted twice. (A second Slack account of
    /// the same IdP identity is fine.)
    pub(super) async fn check_email_free(&self, identity: &Identity) -> ServiceResult<()> {
        let taken = self.db.links_matching(None, Some(&identity.email)).await?.into_iter().find(|l| {
            (l.team_id.as_str(), l.user_id.as_str()) != (identity.slack.team_id(), identity.slack.user_id())
                && (l.issuer != identity.issuer || l.subject != identity.subject)
        });
        match taken {
            Some(l) => Err(ServiceError::NotAllowed(Refusal::EmailTaken {
                email: identity.email.clone(),
                team_id: l.team_id,
                user_id: l.user_id,
                subject: l.subject,
                issuer: l.issuer,
            })),
            None => Ok(()),
        }
    }
}

/// A link as the IdP refresher reads it before its round trip to the IdP:
/// everything the refresh decides is decided against this read, and its
/// result is dropped if the link changed meanwhile.
#[derive(Clone)]
pub struct LinkForRefresh {
    /// The link's version when read.
    pub version: i64,
    /// The IdP subject the link holds.
    pub subject: String,
    /// The stored (encrypted) refresh token, if any.
    pub refresh_token: Option<String>,
    row: LinkRow,
}

// Written by hand so that the refresh token never reaches a log line.
impl std::fmt::Debug for LinkForRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkForRefresh")
            .field("version", &self.version)
            .field("subject", &self.subject)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// What a refresh at the IdP confirmed about a link.
#[derive(Clone, Copy)]
pub struct LinkRefresh<'a> {
    /// The groups.
    pub groups: &'a BTreeSet<String>,
    /// The kept claims.
    pub claims: &'a BTreeMap<String, String>,
    /// When the person last authenticated, if the IdP said.
    pub auth_time: Option<Timestamp>,
    /// The rotated refresh token, already encrypted, if the IdP issued one.
    pub sealed_refresh_token: Option<&'a str>,
    /// The IdP sent no groups claim at all.
    pub groups_claim_missing: bool,
}

impl Service {
    /// `user`'s link as the refresher needs it; `None` without a link.
    pub async fn link_for_refresh(&self, user: &SlackUser) -> ServiceResult<Option<LinkForRefresh>> {
        Ok(self.db.link(user).await?.map(|row| LinkForRefresh {
            version: row.version,
            subject: row.subject.clone(),
            refresh_token: row.refresh_token.clone(),
            row,
        }))
    }

    /// Records what a refresh confirmed (groups, kept claims, a rotated
    /// refresh token), audited, in one transaction, only if the link is
    /// still as `link` was read. If it changed meanwhile (relinked, groups
    /// removed over SCIM), the groups read are older than what was
    /// committed: only a rotated refresh token is kept, and only while the
    /// link still holds the one it replaces. `false` then.
    pub async fn record_link_refresh(
        &self,
        user: &SlackUser,
        link: &LinkForRefresh,
        fresh: &LinkRefresh<'_>,
        now: Timestamp,
    ) -> ServiceResult<bool> {
        let corrupt = |e: serde_json::Error| crate::store::StoreError::Corrupt(e.to_string());
        let groups_json = serde_json::to_string(fresh.groups).map_err(corrupt)?;
        let claims_json = serde_json::to_string(fresh.claims).map_err(corrupt)?;
        let before = link.row.groups()?;
        let mut tx = self.db.begin().await?;
        let confirmation = crate::store::LinkConfirmation {
            groups_json: &groups_json,
            claims_json: &claims_json,
            auth_time: fresh.auth_time.map(Timestamp::millis),
            refresh_token: fresh.sealed_refresh_token,
        };
        if !tx.confirm_link(user, link.version, &confirmation, now).await? {
            if let (Some(rotated), Some(sealed)) = (fresh.sealed_refresh_token, link.refresh_token.as_deref()) {
                tx.rotate_refresh_token(user, sealed, rotated).await?;
            }
            tx.commit().await?;
            return Ok(false);
        }
        tx.set_groups_claim_missing(user, fresh.groups_claim_missing).await?;
        let event = Event::LinkRefreshed { slack: user, groups_before: &before, groups: fresh.groups };
        audit::append(&mut tx, now, &Actor::System, None, event).await?;
        tx.commit().await?;
        Ok(true)
    }
}

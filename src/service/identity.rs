//! Who is asking: linked identities, their freshness for each purpose,
//! and the links made by hand or through the identity provider.

#[allow(unused_imports)]
use super::*;

impl Service {
    /// The identity behind `user`, if it is fresh enough for `purpose`.
    /// Without `[idp]`, links are made by hand and never go stale.
    pub(super) async fn identity(
        &self,
        user: &SlackUser,
        purpose: Purpose,
        step_up: Option<Duration>,
        now: Timestamp,
    ) -> ServiceResult<Identity> {
        let link = self.db.link(user).await?.ok_or(ServiceError::NotLinked)?;
        if let Some(idp) = &self.config.idp {
            let max_age = match purpose {
                Purpose::Request => idp.link_max_age,
                Purpose::Decide | Purpose::AutoApprove => idp.groups_max_age.min(idp.link_max_age),
            };
            // A step-up role needs a recent authentication at the IdP, which
            // only a new sign-in (with max_age) can give.
            let step_up_missing = step_up.filter(|s| link.auth_time().is_none_or(|t| t.plus(*s) < now));
            if link.confirmed_at().plus(max_age) < now {
                if link.refresh_token.is_some() && step_up_missing.is_none() {
                    self.schedule_refresh(user, now).await?;
                    return Err(ServiceError::GroupsRefreshing);
                }
                return Err(ServiceError::SignInRequired {
                    reason: format!(
                        "your sign-in with {} is more than {} old; sign in again to continue",
                        idp.display_name,
                        humantime::format_duration(max_age)
                    ),
                    max_age: step_up_missing,
                });
            }
            if let Some(step_up) = step_up_missing {
                return Err(ServiceError::SignInRequired {
                    reason: format!(
                        "this role needs you to have signed in with {} within the last {}; sign in again to continue",
                        idp.display_name,
                        humantime::format_duration(step_up)
                    ),
                    max_age: Some(step_up),
                });
            }
        }
        Ok(link.identity()?)
    }

    /// Schedules one group refresh for `user`, unless one is already queued or running.
    pub(super) async fn schedule_refresh(&self, user: &SlackUser, now: Timestamp) -> ServiceResult<()> {
        let payload = crate::job_kinds::PersonPayload::json(user, None);
        let mut tx = self.db.begin().await?;
        if !tx.person_job_pending(JobKind::RefreshLink.name(), &payload).await? {
            insert_job(&mut tx, JobKind::RefreshLink, None, &payload, now, now).await?;
        }
        self.commit_and_wake(tx).await?;
        Ok(())
    }

    /// Issues a single-use sign-in link token for `user` (stored hashed),
    /// valid for [`LINK_TOKEN_TTL`]. `max_age` asks the IdP for a fresh
    /// authentication (step-up).
    pub async fn start_link(
        &self,
        user: &SlackUser,
        max_age: Option<Duration>,
        now: Timestamp,
    ) -> ServiceResult<String> {
        // Housekeeping rides along with the writes it cleans up after.
        if let Err(e) = self.db.purge_expired_sign_ins(now).await {
            tracing::debug!(error = %e, "could not purge expired sign-ins");
        }
        let token = crate::domain::random_token();
        let max_age_ms = max_age.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.db
            .insert_link_token(&crate::domain::hash_token(&token), user, max_age_ms, now, now.plus(LINK_TOKEN_TTL))
            .await?;
        Ok(token)
    }

    /// Stores the link a verified OIDC sign-in established, consuming its
    /// link token; DMs the person the result.
    pub async fn link_from_oidc(
        &self,
        token_hash: &str,
        identity: &Identity,
        auth_time: Option<Timestamp>,
        sealed_refresh_token: Option<&str>,
        groups_claim_missing: bool,
        now: Timestamp,
    ) -> ServiceResult<()> {
        self.check_may_link(identity).await?;
        let mut tx = self.db.begin().await?;
        if !tx.consume_link_token(token_hash, now).await? {
            tx.rollback().await?;
            return Err(ServiceError::NotAllowed(Refusal::SignInLinkUsed));
        }
        tx.upsert_link_with(identity, "oidc", auth_time, sealed_refresh_token, now).await?;
        tx.set_groups_claim_missing(&identity.slack, groups_claim_missing).await?;
        let groups = identity.groups.iter().cloned().collect::<Vec<_>>().join(", ");
        let groups = match (groups_claim_missing, &self.config.idp) {
            (true, Some(idp)) => crate::domain::policy::missing_groups_note(&idp.groups_claim),
            _ if groups.is_empty() => "none".to_owned(),
            _ => groups,
        };
        let text = format!("Linked as {} — groups: {}.", identity.email, groups);
        schedule_dm(&mut tx, &identity.slack, &text, now).await?;
        let event = Event::LinkSignedIn { identity, groups_claim_missing, auth_time };
        audit::append(&mut tx, now, &Actor::Slack(identity.slack.clone()), None, event).await?;
        self.commit_and_wake(tx).await?;
        Ok(())
    }

    /// Creates or replaces an identity link by hand (`jitbot link add`).
    /// Refused for an identity SCIM deprovisioned, and for an email that
    /// another person's link holds.
    pub async fn add_link(&self, identity: &Identity, actor: &Actor, now: Timestamp) -> ServiceResult<()> {
        self.check_may_link(identity).await?;
        self.check_email_free(identity).await?;
        let mut tx = self.db.begin().await?;
        tx.upsert_link(identity, "admin", now).await?;
        audit::append(&mut tx, now, actor, None, Event::LinkAddedByAdmin { identity }).await?;
        tx.commit().await?;
        Ok(())
    }
}

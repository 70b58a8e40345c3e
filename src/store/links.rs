//! Identity links: a Slack user tied to an IdP identity.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::{Identity, SlackUser, Timestamp};

use super::{Db, StoreError, StoreResult, Tx, on_conn};

/// A stored identity link.
#[derive(Clone, sqlx::FromRow)]
pub struct LinkRow {
    /// Slack workspace.
    pub team_id: String,
    /// Slack user.
    pub user_id: String,
    /// IdP issuer.
    pub issuer: String,
    /// IdP subject.
    pub subject: String,
    /// Verified email.
    pub email: String,
    /// Groups as a JSON array.
    pub groups_json: String,
    /// `admin` (created with `jitbot link add`) or `oidc`.
    pub source: String,
    /// When the person last authenticated at the IdP, if known.
    pub auth_time: Option<i64>,
    /// When the groups were last confirmed.
    pub confirmed_at: i64,
    /// When the link was first made.
    pub created_at: i64,
    /// The IdP refresh token, encrypted (see `crate::idp::TokenCipher`).
    pub refresh_token: Option<String>,
    /// The claims login templates need, as a JSON object of strings.
    pub claims_json: String,
    /// Bumped on every write: a background refresh only stores its result
    /// if the link is still the version it read before asking the IdP.
    pub version: i64,
    /// 1 when the IdP sent no groups claim at the last sign-in or refresh
    /// (a missing scope or mapping), 0 otherwise; see
    /// [`LinkRow::missing_groups_claim`].
    pub groups_claim_missing: i32,
}

// Written by hand: the refresh token is encrypted, but a log line is no
// place for it either.
impl std::fmt::Debug for LinkRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkRow")
            .field("team_id", &self.team_id)
            .field("user_id", &self.user_id)
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("email", &self.email)
            .field("groups_json", &self.groups_json)
            .field("source", &self.source)
            .field("auth_time", &self.auth_time)
            .field("confirmed_at", &self.confirmed_at)
            .field("created_at", &self.created_at)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[REDACTED]"))
            .field("claims_json", &self.claims_json)
            .field("groups_claim_missing", &self.groups_claim_missing)
            .field("version", &self.version)
            .finish()
    }
}

impl LinkRow {
    /// Whether the IdP sent no groups claim at all last time: the empty
    /// groups then say nothing about the person, and they are told so.
    pub fn missing_groups_claim(&self) -> bool {
        self.groups_claim_missing != 0
    }

    /// The groups, parsed.
    pub fn groups(&self) -> StoreResult<BTreeSet<String>> {
        serde_json::from_str(&self.groups_json)
            .map_err(|e| StoreError::Corrupt(format!("groups of link {}/{}: {e}", self.team_id, self.user_id)))
    }

    /// The kept IdP claims, parsed.
    pub fn claims(&self) -> StoreResult<BTreeMap<String, String>> {
        serde_json::from_str(&self.claims_json)
            .map_err(|e| StoreError::Corrupt(format!("claims of link {}/{}: {e}", self.team_id, self.user_id)))
    }

    /// The identity this link vouches for.
    pub fn identity(&self) -> StoreResult<Identity> {
        Ok(Identity {
            slack: SlackUser::parse(&self.team_id, &self.user_id).map_err(StoreError::Corrupt)?,
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
            email: self.email.clone(),
            groups: self.groups()?,
            claims: self.claims()?,
        })
    }

    /// When the groups were last confirmed.
    pub fn confirmed_at(&self) -> Timestamp {
        Timestamp::from_millis(self.confirmed_at)
    }

    /// When the person last authenticated at the IdP, if known.
    pub fn auth_time(&self) -> Option<Timestamp> {
        self.auth_time.map(Timestamp::from_millis)
    }
}

impl Tx {
    /// Creates or replaces the link of `identity.slack`.
    pub async fn upsert_link(&mut self, identity: &Identity, source: &str, now: Timestamp) -> StoreResult<()> {
        self.upsert_link_with(identity, source, None, None, now).await
    }

    /// Creates or replaces a link with its IdP `auth_time` and encrypted
    /// refresh token (OIDC sign-in).
    pub async fn upsert_link_with(
        &mut self,
        identity: &Identity,
        source: &str,
        auth_time: Option<Timestamp>,
        refresh_token: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()> {
        let groups = serde_json::to_string(&identity.groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let claims = serde_json::to_string(&identity.claims).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        on_conn!(tx self, |c| {
            sqlx::query(
                "INSERT INTO identity_links
                   (team_id, user_id, issuer, subject, email, groups_json, source, auth_time, confirmed_at, created_at,
                    refresh_token, claims_json)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $9, $8, $8, $10, $11)
                 ON CONFLICT (team_id, user_id) DO UPDATE SET
                   issuer = excluded.issuer, subject = excluded.subject, email = excluded.email,
                   groups_json = excluded.groups_json, source = excluded.source, auth_time = excluded.auth_time,
                   confirmed_at = excluded.confirmed_at, refresh_token = excluded.refresh_token,
                   claims_json = excluded.claims_json, groups_claim_missing = 0, version = identity_links.version + 1",
            )
            .bind(identity.slack.team_id())
            .bind(identity.slack.user_id())
            .bind(&identity.issuer)
            .bind(&identity.subject)
            .bind(&identity.email)
            .bind(&groups)
            .bind(source)
            .bind(now.millis())
            .bind(auth_time.map(Timestamp::millis))
            .bind(refresh_token)
            .bind(&claims)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Records whether the IdP sent a groups claim for this link's sign-in.
    pub async fn set_groups_claim_missing(&mut self, user: &SlackUser, missing: bool) -> StoreResult<()> {
        on_conn!(tx self, |c| {
            sqlx::query("UPDATE identity_links SET groups_claim_missing = $3 WHERE team_id = $1 AND user_id = $2")
                .bind(user.team_id())
                .bind(user.user_id())
                .bind(i32::from(missing))
                .execute(c)
                .await?;
        });
        Ok(())
    }

    /// Replaces a link's groups without touching when they were confirmed
    /// (SCIM removals only ever shrink the confirmed set).
    pub async fn set_link_groups(&mut self, user: &SlackUser, groups: &BTreeSet<String>) -> StoreResult<()> {
        let groups = serde_json::to_string(groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        on_conn!(tx self, |c| {
            sqlx::query(
                "UPDATE identity_links SET groups_json = $3, version = version + 1 WHERE team_id = $1 AND user_id = $2",
            )
                .bind(user.team_id())
                .bind(user.user_id())
                .bind(&groups)
                .execute(c)
                .await?;
        });
        Ok(())
    }

    /// Removes a link; returns whether one existed.
    pub async fn delete_link(&mut self, user: &SlackUser) -> StoreResult<bool> {
        let done = on_conn!(tx self, |c| {
            sqlx::query("DELETE FROM identity_links WHERE team_id = $1 AND user_id = $2")
                .bind(user.team_id())
                .bind(user.user_id())
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Removes a link only if it is still at `version` (as read before a
    /// round trip to the IdP); returns whether it was removed.
    pub async fn delete_link_at(&mut self, user: &SlackUser, version: i64) -> StoreResult<bool> {
        let done = on_conn!(tx self, |c| {
            sqlx::query("DELETE FROM identity_links WHERE team_id = $1 AND user_id = $2 AND version = $3")
                .bind(user.team_id())
                .bind(user.user_id())
                .bind(version)
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Reads a link inside the transaction.
    pub async fn link(&mut self, user: &SlackUser) -> StoreResult<Option<LinkRow>> {
        Ok(on_conn!(tx self, |c| {
            sqlx::query_as::<_, LinkRow>("SELECT * FROM identity_links WHERE team_id = $1 AND user_id = $2")
                .bind(user.team_id())
                .bind(user.user_id())
                .fetch_optional(c)
                .await?
        }))
    }
}

impl Db {
    /// Reads the link of a Slack user.
    pub async fn link(&self, user: &SlackUser) -> StoreResult<Option<LinkRow>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, LinkRow>("SELECT * FROM identity_links WHERE team_id = $1 AND user_id = $2")
                .bind(user.team_id())
                .bind(user.user_id())
                .fetch_optional(c)
                .await?
        }))
    }

    /// The links of one IdP identity (one person may link several Slack
    /// accounts), ordered by workspace and user.
    pub async fn links_of_identity(&self, issuer: &str, subject: &str) -> StoreResult<Vec<LinkRow>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, LinkRow>(
                "SELECT * FROM identity_links WHERE issuer = $1 AND subject = $2 ORDER BY team_id, user_id",
            )
            .bind(issuer)
            .bind(subject)
            .fetch_all(c)
            .await?
        }))
    }

    /// Every link, ordered by workspace and user.
    pub async fn links(&self) -> StoreResult<Vec<LinkRow>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, LinkRow>("SELECT * FROM identity_links ORDER BY team_id, user_id")
                .fetch_all(c)
                .await?
        }))
    }
}

#[cfg(test)]
mod debug_tests {
    use super::LinkRow;

    #[test]
    fn debug_of_a_link_hides_the_refresh_token() {
        let row = LinkRow {
            team_id: "T1".into(),
            user_id: "U1".into(),
            issuer: "https://idp.example".into(),
            subject: "alice".into(),
            email: "alice@example.com".into(),
            groups_json: "[]".into(),
            source: "oidc".into(),
            auth_time: None,
            confirmed_at: 0,
            created_at: 0,
            refresh_token: Some("sealed-refresh-0123456789".into()),
            claims_json: "{}".into(),
            groups_claim_missing: 0,
            version: 1,
        };
        let shown = format!("{row:?}");
        assert!(!shown.contains("sealed-refresh-0123456789"), "{shown}");
        assert!(shown.contains("[REDACTED]"), "{shown}");
    }
}

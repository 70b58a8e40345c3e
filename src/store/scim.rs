//! SCIM resources (Users and Groups) as the identity provider pushed them.

use crate::domain::Timestamp;

use super::{Db, StoreError, StoreResult, on_conn};

/// A stored SCIM resource.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScimRow {
    /// Our id (a random UUID-like string).
    pub id: String,
    /// `User` or `Group`.
    pub kind: String,
    /// The resource as JSON.
    pub body: String,
    /// Bumped on every write (the ETag version).
    pub version: i64,
    /// Created, epoch ms.
    pub created_at: i64,
    /// Last modified, epoch ms.
    pub updated_at: i64,
}

/// What a write stores.
#[derive(Debug, Clone)]
pub struct ScimWrite<'a> {
    /// Resource id.
    pub id: &'a str,
    /// `User` or `Group`.
    pub kind: &'a str,
    /// The unique name (lower-cased `userName`, or `displayName`).
    pub name_key: &'a str,
    /// `externalId`, if any.
    pub external_id: Option<&'a str>,
    /// The JSON body.
    pub body: &'a str,
}

impl Db {
    /// Inserts a resource; `Err(Conflict)` when the name is taken.
    pub async fn scim_insert(&self, w: &ScimWrite<'_>, now: Timestamp) -> StoreResult<()> {
        on_conn!(write self, |c| {
            sqlx::query(
                "INSERT INTO scim_resources (id, kind, name_key, external_id, body, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
            )
            .bind(w.id)
            .bind(w.kind)
            .bind(w.name_key)
            .bind(w.external_id)
            .bind(w.body)
            .bind(now.millis())
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Replaces a resource's body; `false` when it does not exist.
    pub async fn scim_update(&self, w: &ScimWrite<'_>, now: Timestamp) -> StoreResult<bool> {
        let n = on_conn!(write self, |c| {
            sqlx::query(
                "UPDATE scim_resources SET name_key = $3, external_id = $4, body = $5, version = version + 1,
                   updated_at = $6 WHERE id = $1 AND kind = $2",
            )
            .bind(w.id)
            .bind(w.kind)
            .bind(w.name_key)
            .bind(w.external_id)
            .bind(w.body)
            .bind(now.millis())
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Reads one resource.
    pub async fn scim_get(&self, kind: &str, id: &str) -> StoreResult<Option<ScimRow>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, ScimRow>(
                "SELECT id, kind, body, version, created_at, updated_at FROM scim_resources WHERE kind = $1 AND id = $2",
            )
            .bind(kind)
            .bind(id)
            .fetch_optional(c)
            .await?
        }))
    }

    /// Every resource of a kind, oldest first (filtering happens in Rust:
    /// the IdP's directory sizes make this cheap, and one parser serves
    /// every filter).
    pub async fn scim_all(&self, kind: &str) -> StoreResult<Vec<ScimRow>> {
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, ScimRow>(
                "SELECT id, kind, body, version, created_at, updated_at FROM scim_resources
                 WHERE kind = $1 ORDER BY created_at, id",
            )
            .bind(kind)
            .fetch_all(c)
            .await?
        }))
    }

    /// The resources of a kind whose unique name (lower-cased `userName`,
    /// or `displayName`) is `name_key`, or else whose `externalId` is
    /// `external_id`: the candidates of an `eq` filter, read through the
    /// `(kind, name_key)` or `(kind, external_id)` index.
    pub async fn scim_by_key(
        &self,
        kind: &str,
        name_key: Option<&str>,
        external_id: Option<&str>,
    ) -> StoreResult<Vec<ScimRow>> {
        let (sql, value) = match (name_key, external_id) {
            (Some(key), _) => (
                "SELECT id, kind, body, version, created_at, updated_at FROM scim_resources
                 WHERE kind = $1 AND name_key = $2 ORDER BY created_at, id",
                key,
            ),
            (None, Some(ext)) => (
                "SELECT id, kind, body, version, created_at, updated_at FROM scim_resources
                 WHERE kind = $1 AND external_id = $2 ORDER BY created_at, id",
                ext,
            ),
            (None, None) => return Ok(Vec::new()),
        };
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, ScimRow>(sql).bind(kind).bind(value).fetch_all(c).await?
        }))
    }

    /// Deletes a resource; `false` when it did not exist.
    pub async fn scim_delete(&self, kind: &str, id: &str) -> StoreResult<bool> {
        let n = on_conn!(write self, |c| {
            sqlx::query("DELETE FROM scim_resources WHERE kind = $1 AND id = $2")
                .bind(kind)
                .bind(id)
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Why the identity with IdP subject `subject` or email `email` may not
    /// link: the reason SCIM deactivated or deleted it, if it did and has
    /// not reactivated it since.
    pub async fn deprovisioned(&self, subject: &str, email: &str) -> StoreResult<Option<String>> {
        let email = email.to_lowercase();
        Ok(on_conn!(db self, |c| {
            sqlx::query_scalar::<_, String>(
                "SELECT reason FROM scim_deprovisioned
                 WHERE (kind = 'subject' AND value = $1) OR (kind = 'email' AND value = $2) LIMIT 1",
            )
            .bind(subject)
            .bind(&email)
            .fetch_optional(c)
            .await?
        }))
    }

    /// Links whose IdP subject is `subject` or whose email is `email`
    /// (case-insensitive): the people a SCIM user stands for.
    pub async fn links_matching(&self, subject: Option<&str>, email: Option<&str>) -> StoreResult<Vec<super::LinkRow>> {
        let email = email.map(str::to_lowercase);
        Ok(on_conn!(db self, |c| {
            sqlx::query_as::<_, super::LinkRow>(
                "SELECT * FROM identity_links WHERE ($1 IS NOT NULL AND subject = $1) OR ($2 IS NOT NULL AND lower(email) = $2)",
            )
            .bind(subject)
            .bind(email.as_deref())
            .fetch_all(c)
            .await
            .map_err(StoreError::from)?
        }))
    }
}

/// What marks an identity SCIM deprovisioned: its subject, or an email
/// (lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeprovisionedKey {
    /// An IdP subject (SCIM `externalId`).
    Subject(String),
    /// An email (SCIM `userName` or `emails`), lower-cased.
    Email(String),
}

impl DeprovisionedKey {
    fn parts(&self) -> (&'static str, &str) {
        match self {
            Self::Subject(s) => ("subject", s),
            Self::Email(e) => ("email", e),
        }
    }
}

impl super::Tx {
    /// Remembers that SCIM resource `scim_id` (standing for `key`) was
    /// deactivated or deleted, so the identity cannot link again.
    pub async fn mark_deprovisioned(
        &mut self,
        key: &DeprovisionedKey,
        scim_id: &str,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let (kind, value) = key.parts();
        on_conn!(tx self, |c| {
            sqlx::query(
                "INSERT INTO scim_deprovisioned (kind, value, scim_id, reason, at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (kind, value) DO UPDATE SET scim_id = excluded.scim_id, reason = excluded.reason,
                   at = excluded.at",
            )
            .bind(kind)
            .bind(value)
            .bind(scim_id)
            .bind(reason)
            .bind(now.millis())
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Forgets the deprovisioning of SCIM resource `scim_id` and of `key`
    /// (SCIM reactivated the user); returns how many marks went.
    pub async fn clear_deprovisioned(&mut self, scim_id: &str, key: &DeprovisionedKey) -> StoreResult<u64> {
        let (kind, value) = key.parts();
        Ok(on_conn!(tx self, |c| {
            sqlx::query("DELETE FROM scim_deprovisioned WHERE scim_id = $1 OR (kind = $2 AND value = $3)")
                .bind(scim_id)
                .bind(kind)
                .bind(value)
                .execute(c)
                .await?
                .rows_affected()
        }))
    }
}

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
        on_conn!(db self, |c| {
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
        let n = on_conn!(db self, |c| {
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

    /// Deletes a resource; `false` when it did not exist.
    pub async fn scim_delete(&self, kind: &str, id: &str) -> StoreResult<bool> {
        let n = on_conn!(db self, |c| {
            sqlx::query("DELETE FROM scim_resources WHERE kind = $1 AND id = $2")
                .bind(kind)
                .bind(id)
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
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

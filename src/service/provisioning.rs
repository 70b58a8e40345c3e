//! SCIM provisioning's reads and writes: the resources (Users and Groups)
//! as the identity provider pushed them, and the Slack users a SCIM user
//! stands for. The effects of a change (deprovisioning, reactivation, group
//! removal) are the use cases in [`super::identity_links`]; the SCIM
//! transport (`crate::scim`) parses, patches and renders.

use super::{ScimPerson, Service, ServiceResult};
use crate::domain::{SlackUser, Timestamp};
use crate::store::{ScimRow, ScimWrite, StoreError};

/// A stored SCIM resource.
#[derive(Debug, Clone)]
pub struct ScimResource {
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

impl From<ScimRow> for ScimResource {
    fn from(r: ScimRow) -> Self {
        let ScimRow { id, kind, body, version, created_at, updated_at } = r;
        Self { id, kind, body, version, created_at, updated_at }
    }
}

/// What a SCIM write stores.
#[derive(Debug, Clone, Copy)]
pub struct ScimResourceWrite<'a> {
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

impl<'a> ScimResourceWrite<'a> {
    fn row(self) -> ScimWrite<'a> {
        let Self { id, kind, name_key, external_id, body } = self;
        ScimWrite { id, kind, name_key, external_id, body }
    }
}

/// Which resources of a kind a list reads.
#[derive(Debug, Clone, Copy)]
pub enum ScimLookup<'a> {
    /// All of them, oldest first.
    All,
    /// Those whose unique name is this (an indexed `eq` filter).
    NameKey(&'a str),
    /// Those whose `externalId` is this (an indexed `eq` filter).
    ExternalId(&'a str),
}

/// What a SCIM write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimWriteOutcome {
    /// Stored.
    Written,
    /// No such resource (replace only).
    NotFound,
    /// Another resource of the kind has this unique name.
    Conflict,
}

impl Service {
    /// The resources of `kind` a list reads, oldest first.
    pub async fn scim_resources(&self, kind: &str, lookup: ScimLookup<'_>) -> ServiceResult<Vec<ScimResource>> {
        let rows = match lookup {
            ScimLookup::NameKey(key) => self.db.scim_by_key(kind, Some(key), None).await?,
            ScimLookup::ExternalId(ext) => self.db.scim_by_key(kind, None, Some(ext)).await?,
            ScimLookup::All => self.db.scim_all(kind).await?,
        };
        Ok(rows.into_iter().map(ScimResource::from).collect())
    }

    /// One resource.
    pub async fn scim_resource(&self, kind: &str, id: &str) -> ServiceResult<Option<ScimResource>> {
        Ok(self.db.scim_get(kind, id).await?.map(ScimResource::from))
    }

    /// Stores a new resource, unless its unique name is taken.
    pub async fn scim_create(&self, w: ScimResourceWrite<'_>, now: Timestamp) -> ServiceResult<ScimWriteOutcome> {
        match self.db.scim_insert(&w.row(), now).await {
            Ok(()) => Ok(ScimWriteOutcome::Written),
            Err(StoreError::Conflict) => Ok(ScimWriteOutcome::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a resource's body, unless it is gone or its new unique name
    /// is another's.
    pub async fn scim_replace(&self, w: ScimResourceWrite<'_>, now: Timestamp) -> ServiceResult<ScimWriteOutcome> {
        match self.db.scim_update(&w.row(), now).await {
            Ok(true) => Ok(ScimWriteOutcome::Written),
            Ok(false) => Ok(ScimWriteOutcome::NotFound),
            Err(StoreError::Conflict) => Ok(ScimWriteOutcome::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a resource; `false` when it did not exist.
    pub async fn scim_delete(&self, kind: &str, id: &str) -> ServiceResult<bool> {
        Ok(self.db.scim_delete(kind, id).await?)
    }

    /// The Slack users whose links a SCIM user stands for (by subject, then
    /// by each email), each once.
    pub async fn linked_users_of(&self, person: &ScimPerson) -> ServiceResult<Vec<SlackUser>> {
        let mut out = Vec::new();
        let mut candidates = self.db.links_matching(person.subject.as_deref(), None).await?;
        for e in &person.emails {
            candidates.extend(self.db.links_matching(None, Some(e)).await?);
        }
        for link in candidates {
            if let Ok(u) = SlackUser::parse(&link.team_id, &link.user_id)
                && !out.contains(&u)
            {
                out.push(u);
            }
        }
        Ok(out)
    }
}

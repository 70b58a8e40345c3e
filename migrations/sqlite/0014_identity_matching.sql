-- Identity matching that does not depend on a link still existing, and the
-- state SCIM deprovisioning leaves behind.

-- Bumped on every write to a link, so a background refresh can tell whether
-- the link changed (relinked, groups removed over SCIM) during its round
-- trip to the identity provider, and then drop its result.
ALTER TABLE identity_links ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX identity_links_by_subject ON identity_links (subject);
CREATE INDEX identity_links_by_email ON identity_links (lower(email));

-- SCIM deprovisioning finds live access by the identity stored on each
-- request, even after the person's link is gone.
CREATE INDEX access_requests_by_subject ON access_requests (requester_subject);
CREATE INDEX access_requests_by_email ON access_requests (lower(requester_email));

-- "One person counts once" and "nobody approves their own request" compare
-- emails too (case-insensitively), so approvals keep the approver's email.
ALTER TABLE approvals ADD COLUMN approver_email TEXT;

-- Identities the identity provider deactivated or deleted over SCIM: they
-- cannot link again (OIDC or `jitbot link add`) until SCIM reactivates
-- them. `kind` is `subject` or `email` (lower-cased).
CREATE TABLE scim_deprovisioned (
    kind    TEXT   NOT NULL,
    value   TEXT   NOT NULL,
    scim_id TEXT   NOT NULL,
    reason  TEXT   NOT NULL,
    at      BIGINT NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX scim_deprovisioned_by_scim_id ON scim_deprovisioned (scim_id);

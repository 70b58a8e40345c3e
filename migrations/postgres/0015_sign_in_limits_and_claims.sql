-- Each link token may have a few logins in flight; counting them reads
-- this index. (Plain sign-ins keep their state in a sealed cookie and
-- store nothing here.)
CREATE INDEX oidc_logins_by_token ON oidc_logins (token_hash);

-- 1 when the IdP sent no groups claim at the link's last sign-in or
-- refresh (a missing scope or claim mapping), so the person is told why
-- they have no groups instead of seeing an empty list.
ALTER TABLE identity_links ADD COLUMN groups_claim_missing INTEGER NOT NULL DEFAULT 0;

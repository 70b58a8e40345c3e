-- Each link token may have a few logins in flight; counting them reads
-- this index. (Plain sign-ins keep their state in a sealed cookie and
-- store nothing here.)
CREATE INDEX oidc_logins_by_token ON oidc_logins (token_hash);

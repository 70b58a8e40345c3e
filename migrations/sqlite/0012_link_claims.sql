-- Claims that login templates read (`{claims.NAME}`), kept at each sign-in.
ALTER TABLE identity_links ADD COLUMN claims_json TEXT NOT NULL DEFAULT '{}';

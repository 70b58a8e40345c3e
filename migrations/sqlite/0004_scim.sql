-- SCIM 2.0 resources pushed by the identity provider. Each resource is kept
-- as the JSON the IdP sent (so it reads back as written); the columns beside
-- it are what jitbot looks resources up by.
CREATE TABLE scim_resources (
    id          TEXT   PRIMARY KEY,
    kind        TEXT   NOT NULL,
    name_key    TEXT   NOT NULL,
    external_id TEXT,
    body        TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (kind, name_key)
);
CREATE INDEX scim_resources_by_external_id ON scim_resources (kind, external_id);

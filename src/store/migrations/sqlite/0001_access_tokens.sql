-- Access tokens of users and robots: only a SHA-256 of each secret is kept.
CREATE TABLE access_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    robot INTEGER NOT NULL,
    scopes TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    UNIQUE (owner, name)
);
-- `regauth logout USER`: refresh tokens of USER issued before this time are refused.
CREATE TABLE logouts (
    owner TEXT PRIMARY KEY NOT NULL,
    revoked_before BIGINT NOT NULL
);
-- Moves on every change replicas must see (create, revoke, logout); they poll it.
CREATE TABLE revision (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO revision (id, value) VALUES (1, 0);

//! The SQL: one connection pool of either dialect, the embedded migrations, and each query
//! written once (`$N` placeholders work in both).

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, Row, SqlitePool};

use super::StoreError;

/// The schema version this binary knows (the last embedded migration).
pub const SCHEMA_VERSION: i64 = 1;

/// How long a query waits for a connection before the store counts as down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

fn migrations(postgres: bool) -> Vec<Migration> {
    let (description, sql) = if postgres {
        (
            "access tokens",
            include_str!("migrations/postgres/0001_access_tokens.sql"),
        )
    } else {
        (
            "access tokens",
            include_str!("migrations/sqlite/0001_access_tokens.sql"),
        )
    };
    vec![Migration::new(
        1,
        Cow::Borrowed(description),
        MigrationType::Simple,
        Cow::Borrowed(sql),
        false,
    )]
}

/// Where the store is, from `store.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `sqlite:PATH`.
    Sqlite(std::path::PathBuf),
    /// `postgres://...` (kept whole; shown without its password).
    Postgres(String),
}

impl Location {
    /// Parses `store.url`.
    pub fn parse(url: &str) -> Result<Location, String> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(
                    "sqlite: needs a file path, e.g. sqlite:/var/lib/regauth/regauth.db".into(),
                );
            }
            return Ok(Location::Sqlite(path.into()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            PgConnectOptions::from_str(url).map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
            return Ok(Location::Postgres(url.to_owned()));
        }
        Err("must start with sqlite: or postgres://".into())
    }

    /// The location for messages: a PostgreSQL URL without user or password.
    pub fn display(&self) -> String {
        match self {
            Location::Sqlite(path) => format!("sqlite:{}", path.display()),
            Location::Postgres(url) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                let host = host.split('?').next().unwrap_or(host);
                format!("postgres://{host}")
            }
        }
    }

    /// True when this is a SQLite file that does not exist yet.
    pub fn is_absent(&self) -> bool {
        matches!(self, Location::Sqlite(path) if !path.exists())
    }
}

/// A pool of either dialect.
#[derive(Debug, Clone)]
pub enum Db {
    /// SQLite (one file).
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

/// One stored token, as listed (never the secret; its hash only for the snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// Public id.
    pub id: String,
    /// Name, unique per owner.
    pub name: String,
    /// User or robot.
    pub owner: String,
    /// A robot account's token.
    pub robot: bool,
    /// Scopes, as written.
    pub scopes: Vec<String>,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` never expires.
    pub expires_at: Option<i64>,
    /// Unix seconds, recorded in batches.
    pub last_used_at: Option<i64>,
}

fn db_error(location: &str, e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("{location}: {e}"))
}

impl Db {
    /// Connects; a SQLite file is created only with `create`. Checks that the database is
    /// one this binary can use (not corrupt, schema not newer).
    pub async fn connect(location: &Location, create: bool) -> Result<Db, StoreError> {
        let shown = location.display();
        let db = match location {
            Location::Sqlite(path) => {
                if create && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Unavailable(format!(
                            "{shown}: cannot create {}: {e}",
                            dir.display()
                        ))
                    })?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(create)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(ACQUIRE_TIMEOUT);
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(|e| corrupt_or_down(&shown, e))?;
                Db::Sqlite(pool)
            }
            Location::Postgres(url) => {
                let options = PgConnectOptions::from_str(url)
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(|e| db_error(&shown, e))?;
                Db::Postgres(pool)
            }
        };
        Ok(db)
    }

    /// The newest migration applied, or 0 for an empty database. A database that is not
    /// one (a corrupt SQLite file) is refused here.
    pub async fn applied_version(&self, shown: &str) -> Result<i64, StoreError> {
        let exists: bool = match self {
            Db::Sqlite(pool) => sqlx::query(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            )
            .fetch_one(pool)
            .await
            .map_err(|e| corrupt_or_down(shown, e))?
            .try_get::<i64, _>(0)
            .map_err(|e| corrupt_or_down(shown, e))?
                > 0,
            Db::Postgres(pool) => sqlx::query("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(pool)
                .await
                .map_err(|e| db_error(shown, e))?
                .try_get::<bool, _>(0)
                .map_err(|e| db_error(shown, e))?,
        };
        if !exists {
            return Ok(0);
        }
        let version: Option<i64> = on_db!(self, pool => sqlx::query(
            "SELECT MAX(version) FROM _sqlx_migrations WHERE success"
        )
        .fetch_one(pool)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| corrupt_or_down(shown, e))?);
        Ok(version.unwrap_or(0))
    }

    /// Refuses a schema newer than this binary knows; applies the missing migrations.
    pub async fn migrate(&self, shown: &str) -> Result<Vec<i64>, StoreError> {
        let before = self.applied_version(shown).await?;
        if before > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                location: shown.to_owned(),
                found: before,
            });
        }
        let migrator = Migrator {
            migrations: Cow::Owned(migrations(matches!(self, Db::Postgres(_)))),
            ..Migrator::DEFAULT
        };
        on_db!(self, pool => migrator.run(pool).await)
            .map_err(|e| StoreError::Migration(format!("{shown}: {e}")))?;
        Ok(((before + 1)..=SCHEMA_VERSION).collect())
    }

    /// The change counter replicas poll.
    pub async fn revision(&self) -> Result<i64, sqlx::Error> {
        on_db!(self, pool => sqlx::query("SELECT value FROM revision WHERE id = 1")
            .fetch_one(pool)
            .await?
            .try_get(0))
    }

    /// Every stored token, oldest first (optionally one owner's).
    pub async fn tokens(&self, owner: Option<&str>) -> Result<Vec<TokenRow>, sqlx::Error> {
        let sql = "SELECT id, name, owner, robot, scopes, secret_sha256, created_at, expires_at, \
                   last_used_at FROM access_tokens WHERE ($1 IS NULL OR owner = $1) \
                   ORDER BY created_at, name";
        on_db!(self, pool => {
            let rows = sqlx::query(sql).bind(owner).fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    let scopes: String = row.try_get("scopes")?;
                    Ok(TokenRow {
                        id: row.try_get("id")?,
                        name: row.try_get("name")?,
                        owner: row.try_get("owner")?,
                        robot: row.try_get("robot")?,
                        scopes: scopes.split('\n').filter(|s| !s.is_empty()).map(String::from).collect(),
                        secret_sha256: row.try_get("secret_sha256")?,
                        created_at: row.try_get("created_at")?,
                        expires_at: row.try_get("expires_at")?,
                        last_used_at: row.try_get("last_used_at")?,
                    })
                })
                .collect()
        })
    }

    /// Every `regauth logout`: owner and the time before which its refresh tokens are void.
    pub async fn logouts(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        on_db!(self, pool => {
            let rows = sqlx::query("SELECT owner, revoked_before FROM logouts")
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect()
        })
    }

    /// Stores a new token; `Ok(false)` when the owner already has a token of that name.
    pub async fn insert(&self, row: &TokenRow) -> Result<bool, sqlx::Error> {
        let insert = "INSERT INTO access_tokens (id, name, owner, robot, scopes, secret_sha256, \
                      created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                      ON CONFLICT DO NOTHING";
        on_db!(self, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(insert)
                .bind(&row.id)
                .bind(&row.name)
                .bind(&row.owner)
                .bind(row.robot)
                .bind(row.scopes.join("\n"))
                .bind(&row.secret_sha256)
                .bind(row.created_at)
                .bind(row.expires_at)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query("UPDATE revision SET value = value + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Deletes the tokens whose id is `key`, or whose name is `key` (of `owner` when given);
    /// returns them.
    pub async fn delete(
        &self,
        key: &str,
        owner: Option<&str>,
    ) -> Result<Vec<TokenRow>, sqlx::Error> {
        let matching: Vec<TokenRow> = self
            .tokens(owner)
            .await?
            .into_iter()
            .filter(|t| t.id == key || t.name == key)
            .collect();
        // An id wins over names; several tokens of one name (different owners) are ambiguous.
        let chosen: Vec<TokenRow> = match matching.iter().find(|t| t.id == key) {
            Some(one) => vec![one.clone()],
            None => matching,
        };
        if chosen.len() != 1 {
            return Ok(chosen);
        }
        on_db!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM access_tokens WHERE id = $1")
                .bind(&chosen[0].id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE revision SET value = value + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(chosen)
    }

    /// Records `regauth logout owner` at `at` (unix seconds).
    pub async fn logout(&self, owner: &str, at: i64) -> Result<(), sqlx::Error> {
        let upsert = "INSERT INTO logouts (owner, revoked_before) VALUES ($1, $2) \
                      ON CONFLICT (owner) DO UPDATE SET revoked_before = excluded.revoked_before";
        on_db!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(upsert).bind(owner).bind(at).execute(&mut *tx).await?;
            sqlx::query("UPDATE revision SET value = value + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Writes a batch of last-use times (id, unix seconds) in one transaction; these do not
    /// move the revision.
    pub async fn touch(&self, used: &[(String, i64)]) -> Result<(), sqlx::Error> {
        if used.is_empty() {
            return Ok(());
        }
        on_db!(self, pool => {
            let mut tx = pool.begin().await?;
            for (id, at) in used {
                sqlx::query("UPDATE access_tokens SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)")
                    .bind(id)
                    .bind(*at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}

/// A SQLite file that is not a database is corrupt, not down: start is refused.
fn corrupt_or_down(shown: &str, e: sqlx::Error) -> StoreError {
    let text = e.to_string();
    if text.contains("not a database") || text.contains("malformed") || text.contains("corrupt") {
        StoreError::Corrupt(format!("{shown}: {text}"))
    } else {
        db_error(shown, e)
    }
}

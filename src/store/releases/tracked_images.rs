//! Probe status of each distinct tracked image reference. The registry watcher is the
//! only writer of this table; one row serves every workspace tracking the reference.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::super::{QueryContext, Store, StoreError};
use crate::clock::{from_millis, to_millis};
use crate::domain::Digest;

/// The watcher's view of one tracked image reference (served by the status API).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TrackedImage {
    /// Normalised `registry/repository:tag`.
    pub image: String,
    /// What the tag resolved to at the last successful probe.
    pub latest_digest: Option<Digest>,
    pub last_probe_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// Why the last probe failed; cleared by the next success.
    pub last_error: Option<String>,
    /// When the watcher will probe it next (`None`: as soon as it runs).
    pub next_probe_at: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub version: i64,
}

const COLUMNS: &str = "image, latest_digest, last_probe_at, last_success_at, last_error, \
    next_probe_at, consecutive_failures, version";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: "tracked image",
        message: e.to_string(),
    }
}

fn from_row(row: &AnyRow) -> Result<TrackedImage, StoreError> {
    let ms = |c: &str| {
        row.try_get::<Option<i64>, _>(c)
            .map(|v| v.map(from_millis))
            .map_err(corrupt)
    };
    Ok(TrackedImage {
        image: row.try_get("image").map_err(corrupt)?,
        latest_digest: row
            .try_get::<Option<String>, _>("latest_digest")
            .map_err(corrupt)?
            .map(|d| Digest::parse(&d))
            .transpose()
            .map_err(corrupt)?,
        last_probe_at: ms("last_probe_at")?,
        last_success_at: ms("last_success_at")?,
        last_error: row.try_get("last_error").map_err(corrupt)?,
        next_probe_at: ms("next_probe_at")?,
        consecutive_failures: u32::try_from(
            row.try_get::<i64, _>("consecutive_failures")
                .map_err(corrupt)?,
        )
        .unwrap_or(u32::MAX),
        version: row.try_get("version").map_err(corrupt)?,
    })
}

impl Store {
    /// Distinct image references of live workspaces, as stored (normalised), sorted.
    pub async fn workspace_images(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT DISTINCT image FROM workspaces WHERE deleted_at IS NULL ORDER BY image",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("list workspace images")
    }

    /// Makes `tracked_images` hold exactly `images`: new references get a row due at
    /// once, references no workspace tracks any more are dropped. Each change commits on
    /// its own (the watcher is level-triggered: a partial sync is finished next pass).
    /// Returns the references dropped.
    pub async fn sync_tracked_images(&self, images: &[String]) -> Result<Vec<String>, StoreError> {
        let existing: Vec<String> = sqlx::query_scalar("SELECT image FROM tracked_images")
            .fetch_all(&self.pool)
            .await
            .ctx("list tracked images")?;
        let gone: Vec<String> = existing
            .iter()
            .filter(|e| !images.contains(e))
            .cloned()
            .collect();
        for gone in &gone {
            sqlx::query("DELETE FROM tracked_images WHERE image = $1")
                .bind(gone)
                .execute(&self.pool)
                .await
                .ctx("drop tracked image")?;
        }
        for new in images.iter().filter(|i| !existing.contains(i)) {
            sqlx::query("INSERT INTO tracked_images (image) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind(new)
                .execute(&self.pool)
                .await
                .ctx("add tracked image")?;
        }
        Ok(gone)
    }

    /// Every tracked image reference with its probe status, by reference.
    pub async fn tracked_images(&self) -> Result<Vec<TrackedImage>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM tracked_images ORDER BY image");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .ctx("list tracked images")?;
        rows.iter().map(from_row).collect()
    }

    pub async fn tracked_image(&self, image: &str) -> Result<TrackedImage, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM tracked_images WHERE image = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(image)
            .fetch_optional(&self.pool)
            .await
            .ctx("get tracked image")?
            .ok_or_else(|| StoreError::NotFound {
                what: "tracked image",
                key: image.to_owned(),
            })?;
        from_row(&row)
    }

    /// Records a failed probe: keeps the latest digest, stores the error, counts the
    /// failure and sets when to try again.
    pub async fn record_probe_failure(
        &self,
        image: &str,
        error: &str,
        next_probe_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tracked_images SET last_probe_at = $1, last_error = $2, next_probe_at = $3, \
             consecutive_failures = consecutive_failures + 1, version = version + 1 \
             WHERE image = $4",
        )
        .bind(to_millis(now))
        .bind(error)
        .bind(to_millis(next_probe_at))
        .bind(image)
        .execute(&self.pool)
        .await
        .ctx("record probe failure")?;
        Ok(())
    }
}

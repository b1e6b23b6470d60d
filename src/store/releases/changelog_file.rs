//! The `releases` columns of the changelog file read from inside a release's image:
//! `changelog_file` (JSON), `changelog_file_read_at`, `changelog_file_attempts`. Written
//! only by the changelog reader (`src/watcher/changelog_file.rs`), which runs beside the
//! watcher on the leader. It never changes a release's status or `version`: the file is
//! an annotation, not rollout state, so the controller's version checks never race it.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::corrupt;
use crate::clock::to_millis;
use crate::domain::{ChangelogFile, Digest};
use crate::store::{QueryContext, Store, StoreError};

/// Failed reads of one release after which it is given up (its label changelog stays).
pub const CHANGELOG_FILE_ATTEMPTS: i64 = 3;

/// A release whose image has not been read yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangelogFileDue {
    pub id: i64,
    /// The tracked reference (`registry/repository:tag`).
    pub image: String,
    pub digest: Digest,
}

impl Store {
    /// Up to `limit` releases not read yet and not given up that may still be rolled out
    /// (`queued`, `approved`, `rolling_out`), oldest first.
    pub async fn changelog_files_due(
        &self,
        limit: i64,
    ) -> Result<Vec<ChangelogFileDue>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, image, digest FROM releases WHERE changelog_file_read_at IS NULL \
             AND changelog_file_attempts < $1 \
             AND status IN ('queued', 'approved', 'rolling_out') ORDER BY id LIMIT $2",
        )
        .bind(CHANGELOG_FILE_ATTEMPTS)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("list releases whose changelog file is due")?;
        rows.iter()
            .map(|row| {
                Ok(ChangelogFileDue {
                    id: row.try_get("id").map_err(corrupt)?,
                    image: row.try_get("image").map_err(corrupt)?,
                    digest: Digest::parse(&row.try_get::<String, _>("digest").map_err(corrupt)?)
                        .map_err(corrupt)?,
                })
            })
            .collect()
    }

    /// Records the read of release `id`: the file, or `None` when the image holds none.
    pub async fn record_changelog_file(
        &self,
        id: i64,
        file: Option<&ChangelogFile>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let json =
            file.map(serde_json::to_string)
                .transpose()
                .map_err(|e| StoreError::Corrupt {
                    what: "changelog file",
                    message: e.to_string(),
                })?;
        sqlx::query(
            "UPDATE releases SET changelog_file = $1, changelog_file_read_at = $2 WHERE id = $3",
        )
        .bind(json)
        .bind(to_millis(now))
        .bind(id)
        .execute(&self.pool)
        .await
        .ctx("record changelog file")?;
        Ok(())
    }

    /// Counts a failed read of release `id`; returns the failures so far. After
    /// [`CHANGELOG_FILE_ATTEMPTS`] it is no longer due.
    pub async fn record_changelog_file_failure(&self, id: i64) -> Result<i64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar(
            "UPDATE releases SET changelog_file_attempts = changelog_file_attempts + 1 \
             WHERE id = $1 RETURNING changelog_file_attempts",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .ctx("count a failed changelog file read")?;
        Ok(n.unwrap_or(CHANGELOG_FILE_ATTEMPTS))
    }
}

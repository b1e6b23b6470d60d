//! Releases: new digests of tracked images found by the registry watcher. The watcher
//! inserts them `queued` (with `tracked_images`, [`tracked_images`]); the rollout
//! controller moves them on from there (through `Store::apply_rollout_changes`), and
//! operators reject them ([`admin`]). Written by those three.

mod admin;
mod changelog_file;
mod tracked_images;

pub use admin::RejectOutcome;
pub use changelog_file::{CHANGELOG_FILE_ATTEMPTS, ChangelogFileDue};
pub use tracked_images::TrackedImage;

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::events::append_event_in;
use super::{NewEvent, QueryContext, Store, StoreError};
use crate::clock::{from_millis, to_millis};
use crate::domain::{ChangelogFile, Digest, ReleaseStatus};

/// A release as stored.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Release {
    pub id: i64,
    /// The tracked reference (`registry/repository:tag`) whose tag moved.
    pub image: String,
    pub digest: Digest,
    pub detected_at: DateTime<Utc>,
    pub changelog: Option<String>,
    /// The changelog file read from inside the image (`[images] changelog_file`), once
    /// read and if the image holds one.
    pub changelog_file: Option<ChangelogFile>,
    pub status: ReleaseStatus,
    pub status_reason: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// A successful probe about to be recorded.
#[derive(Clone, Debug)]
pub struct ProbeSuccess<'a> {
    pub image: &'a str,
    pub digest: &'a Digest,
    /// Stored with the release if the digest turns out to be new.
    pub changelog: Option<&'a str>,
    pub next_probe_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// What recording a probe changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeRecord {
    /// The release created, when the digest was new.
    pub release_id: Option<i64>,
    /// Older `queued` releases of the same image that the new one replaced.
    pub superseded: Vec<i64>,
}

/// Whether `digest` would be a new release of `image`.
///
/// Not new: a digest already recorded as a release of the image, the digest the last
/// probe saw, or a digest a live workspace tracking the image runs, wants or is pinned
/// to. The very first digest seen for an image that no workspace runs yet is the
/// baseline the workspaces will be created from, not a release.
async fn is_new_in(
    conn: &mut AnyConnection,
    image: &str,
    digest: &Digest,
) -> Result<bool, StoreError> {
    let known: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM releases WHERE image = $1 AND digest = $2) \
         + (SELECT COUNT(*) FROM tracked_images WHERE image = $1 AND latest_digest = $2) \
         + (SELECT COUNT(*) FROM workspaces WHERE image = $1 AND deleted_at IS NULL \
            AND (actual_digest = $2 OR desired_digest = $2 OR pinned_digest = $2))",
    )
    .bind(image)
    .bind(digest.as_str())
    .fetch_one(&mut *conn)
    .await
    .ctx("check digest novelty")?;
    if known > 0 {
        return Ok(false);
    }
    let has_history: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM tracked_images WHERE image = $1 \
                 AND latest_digest IS NOT NULL) \
         + (SELECT COUNT(*) FROM workspaces WHERE image = $1 AND deleted_at IS NULL \
            AND actual_digest IS NOT NULL)",
    )
    .bind(image)
    .fetch_one(&mut *conn)
    .await
    .ctx("check image history")?;
    Ok(has_history > 0)
}

/// Marks `superseded` every `queued` release of `image` detected no later than
/// `newest_id` that no rollout started, with an audit event each; returns their ids.
async fn supersede_older_in(
    conn: &mut AnyConnection,
    image: &str,
    newest_id: i64,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, StoreError> {
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE releases SET status = 'superseded', status_reason = $1, updated_at = $2, \
         version = version + 1 WHERE image = $3 AND status = 'queued' AND id <> $4 \
         AND detected_at <= (SELECT detected_at FROM releases WHERE id = $4) \
         AND NOT EXISTS (SELECT 1 FROM rollouts WHERE rollouts.release_id = releases.id) \
         RETURNING id",
    )
    .bind(format!("superseded by release {newest_id}"))
    .bind(to_millis(now))
    .bind(image)
    .bind(newest_id)
    .fetch_all(&mut *conn)
    .await
    .ctx("supersede releases")?;
    ids.sort_unstable();
    for old in &ids {
        let event = NewEvent {
            actor: "system".to_owned(),
            subject: format!("release:{old}"),
            action: "release.superseded".to_owned(),
            detail: serde_json::json!({ "image": image, "by": newest_id }),
            rollout_id: None,
            workspace: None,
        };
        append_event_in(conn, &event, now).await?;
    }
    Ok(ids)
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: "release",
        message: e.to_string(),
    }
}

const COLUMNS: &str = "id, image, digest, detected_at, changelog, changelog_file, status, \
     status_reason, updated_at, version";

fn from_row(row: &AnyRow) -> Result<Release, StoreError> {
    Ok(Release {
        id: row.try_get("id").map_err(corrupt)?,
        image: row.try_get("image").map_err(corrupt)?,
        digest: Digest::parse(&row.try_get::<String, _>("digest").map_err(corrupt)?)
            .map_err(corrupt)?,
        detected_at: from_millis(row.try_get("detected_at").map_err(corrupt)?),
        changelog: row.try_get("changelog").map_err(corrupt)?,
        changelog_file: row
            .try_get::<Option<String>, _>("changelog_file")
            .map_err(corrupt)?
            .map(|j| serde_json::from_str(&j))
            .transpose()
            .map_err(corrupt)?,
        status: ReleaseStatus::parse(&row.try_get::<String, _>("status").map_err(corrupt)?)
            .map_err(corrupt)?,
        status_reason: row.try_get("status_reason").map_err(corrupt)?,
        updated_at: from_millis(row.try_get("updated_at").map_err(corrupt)?),
        version: row.try_get("version").map_err(corrupt)?,
    })
}

impl Store {
    /// Whether `digest` would be a new release of `image` (see the rule on recording).
    /// Lets the watcher fetch a changelog only for digests that need one.
    pub async fn is_new_digest(&self, image: &str, digest: &Digest) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await.ctx("acquire connection")?;
        is_new_in(&mut conn, image, digest).await
    }

    /// Records a successful probe in one transaction: the image's status, and — when the
    /// digest is new — a `queued` release, the superseding of older `queued` releases of
    /// the image that no rollout started, and an audit event for each.
    pub async fn record_probe_success(
        &self,
        p: &ProbeSuccess<'_>,
    ) -> Result<ProbeRecord, StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin record probe")?;
        // Write first: a transaction that reads and then writes cannot wait for
        // SQLite's lock (it fails at once with "database is locked"); one that starts
        // with a write waits up to the busy timeout like any other writer.
        sqlx::query("UPDATE tracked_images SET version = version + 1 WHERE image = $1")
            .bind(p.image)
            .execute(&mut *tx)
            .await
            .ctx("lock tracked image")?;
        let now = to_millis(p.now);
        let mut record = ProbeRecord::default();
        if is_new_in(&mut tx, p.image, p.digest).await? {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO releases (image, digest, detected_at, changelog, status, updated_at) \
                 VALUES ($1, $2, $3, $4, 'queued', $3) RETURNING id",
            )
            .bind(p.image)
            .bind(p.digest.as_str())
            .bind(now)
            .bind(p.changelog)
            .fetch_one(&mut *tx)
            .await
            .ctx("insert release")?;
            record.superseded = supersede_older_in(&mut tx, p.image, id, p.now).await?;
            let event = NewEvent {
                actor: "system".to_owned(),
                subject: format!("release:{id}"),
                action: "release.detected".to_owned(),
                detail: serde_json::json!({
                    "image": p.image,
                    "digest": p.digest.as_str(),
                    "supersedes": record.superseded,
                    "has_changelog": p.changelog.is_some(),
                }),
                rollout_id: None,
                workspace: None,
            };
            append_event_in(&mut tx, &event, p.now).await?;
            record.release_id = Some(id);
        }
        sqlx::query(
            "UPDATE tracked_images SET latest_digest = $1, last_probe_at = $2, \
             last_success_at = $2, last_error = NULL, next_probe_at = $3, \
             consecutive_failures = 0 WHERE image = $4",
        )
        .bind(p.digest.as_str())
        .bind(now)
        .bind(to_millis(p.next_probe_at))
        .bind(p.image)
        .execute(&mut *tx)
        .await
        .ctx("record probe success")?;
        tx.commit().await.ctx("commit record probe")?;
        Ok(record)
    }

    /// Releases of one tracked image, oldest first.
    pub async fn releases_of_image(&self, image: &str) -> Result<Vec<Release>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM releases WHERE image = $1 ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(image)
            .fetch_all(&self.pool)
            .await
            .ctx("list releases of image")?;
        rows.iter().map(from_row).collect()
    }

    /// Queued releases, oldest first per image.
    pub async fn queued_releases(&self) -> Result<Vec<Release>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM releases WHERE status = 'queued' \
             ORDER BY image, detected_at, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .ctx("list queued releases")?;
        rows.iter().map(from_row).collect()
    }

    /// The newest release of `image` that is neither blocked nor rejected.
    pub async fn newest_usable_release(&self, image: &str) -> Result<Option<Release>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM releases WHERE image = $1 \
             AND status NOT IN ('blocked', 'rejected') ORDER BY detected_at DESC, id DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(image)
            .fetch_optional(&self.pool)
            .await
            .ctx("newest usable release")?;
        row.as_ref().map(from_row).transpose()
    }

    /// Supersedes the queued releases of `image` older than `newest_id` (see
    /// [`Store::record_probe_success`], which does the same as it records a release).
    pub async fn supersede_older_queued(
        &self,
        image: &str,
        newest_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin")?;
        let ids = supersede_older_in(&mut tx, image, newest_id, now).await?;
        tx.commit().await.ctx("commit")?;
        Ok(ids)
    }

    pub async fn release(&self, id: i64) -> Result<Release, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM releases WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .ctx("get release")?
            .ok_or_else(|| StoreError::NotFound {
                what: "release",
                key: id.to_string(),
            })?;
        from_row(&row)
    }
}

//! Snapshot rows. A snapshot is `writing` until its file is complete, renamed into place
//! and checksummed; only `complete` rows are ever restored from.
//!
//! Besides the rows, this module reads the facts retention and the API need to decide
//! whether a snapshot is *protected* ([`SnapshotFacts`]; the rule itself is
//! `snapshot::retention::protection`), and writes the operator's release and deletion,
//! each with its audit event in one transaction.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::events::append_event_in;
use super::{NewEvent, QueryContext, Store, StoreError};
use crate::clock::{from_millis, to_millis};
use crate::domain::{Digest, SnapshotId, UpdatePhase};

#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotRow {
    pub id: SnapshotId,
    pub workspace_id: i64,
    pub update_id: Option<i64>,
    pub volume: String,
    pub path: String,
    pub size_bytes: i64,
    pub sha256: Option<String>,
    pub state: String,
    pub created_at: DateTime<Utc>,
    /// Where the volume was mounted when the snapshot was taken (`None`: older rows).
    pub mount_path: Option<String>,
    /// How the tree was read: `host` or `archive` (see [`crate::snapshot`]).
    pub method: Option<String>,
    /// sha256 of the tree's manifest, checked after every restore.
    pub manifest_sha256: Option<String>,
    /// Entries (files, directories, links) in the tree.
    pub entries: Option<i64>,
    /// An operator lifted this snapshot's protection from retention.
    pub released_at: Option<DateTime<Utc>>,
}

/// The columns as stored.
#[derive(sqlx::FromRow)]
struct Raw {
    id: String,
    workspace_id: i64,
    update_id: Option<i64>,
    volume: String,
    path: String,
    size_bytes: i64,
    sha256: Option<String>,
    state: String,
    created_at: i64,
    mount_path: Option<String>,
    method: Option<String>,
    manifest_sha256: Option<String>,
    entries: Option<i64>,
    released_at: Option<i64>,
}

/// A row plus the facts retention and the API decide on.
#[derive(sqlx::FromRow)]
struct RawFacts {
    #[sqlx(flatten)]
    row: Raw,
    needed: bool,
    workspace_quarantined: bool,
    last_finished: Option<String>,
    newest_of_volume: bool,
}

/// A row, its facts, and what an operator is shown about it.
#[derive(sqlx::FromRow)]
struct RawInfo {
    #[sqlx(flatten)]
    facts: RawFacts,
    workspace: String,
    released_by: Option<String>,
    update_kind: Option<String>,
    update_phase: Option<String>,
    update_from: Option<String>,
    update_to: Option<String>,
}

const COLS: &str = "id, workspace_id, update_id, volume, path, size_bytes, sha256, state, \
                    created_at, mount_path, method, manifest_sha256, entries, released_at";

/// [`COLS`] of the snapshot aliased `s`.
const S_COLS: &str = "s.id AS id, s.workspace_id AS workspace_id, s.update_id AS update_id, \
    s.volume AS volume, s.path AS path, s.size_bytes AS size_bytes, s.sha256 AS sha256, \
    s.state AS state, s.created_at AS created_at, s.mount_path AS mount_path, \
    s.method AS method, s.manifest_sha256 AS manifest_sha256, s.entries AS entries, \
    s.released_at AS released_at";

/// The facts of snapshot `s`, in SQL:
/// - `needed`: the journal row that took it is unfinished, or a rollback with
///   `restore_data` that has not been done yet (`rollout_targets.restore_done_at IS NULL`)
///   names its update (open restore/recover rows are added in Rust: their list is JSON);
/// - `workspace_quarantined`: its workspace is quarantined;
/// - `last_finished`: the phase of the workspace's newest *finished* journal row;
/// - `newest_of_volume`: no newer complete snapshot of the same workspace and volume.
const FACTS: &str = "((s.update_id IS NOT NULL AND EXISTS (SELECT 1 FROM workspace_updates o \
    WHERE o.id = s.update_id AND o.phase NOT IN \
    ('succeeded', 'rolled_back', 'failed', 'quarantined'))) \
    OR s.update_id IN (SELECT t.restore_snapshot_of_update_id FROM rollout_targets t \
    WHERE t.restore_snapshot_of_update_id IS NOT NULL AND t.restore_done_at IS NULL)) AS needed, \
    EXISTS (SELECT 1 FROM workspaces w WHERE w.id = s.workspace_id \
    AND w.state = 'quarantined') AS workspace_quarantined, \
    (SELECT f.phase FROM workspace_updates f WHERE f.workspace_id = s.workspace_id \
    AND f.phase IN ('succeeded', 'rolled_back', 'failed', 'quarantined') \
    ORDER BY f.id DESC LIMIT 1) AS last_finished, \
    NOT EXISTS (SELECT 1 FROM snapshots n WHERE n.workspace_id = s.workspace_id \
    AND n.volume = s.volume AND n.state = 'complete' AND (n.created_at > s.created_at \
    OR (n.created_at = s.created_at AND n.id > s.id))) AS newest_of_volume";

/// What an operator is shown besides the row and its facts (see [`SnapshotInfo`]).
const INFO: &str = "(SELECT w.name FROM workspaces w WHERE w.id = s.workspace_id) AS workspace, \
    s.released_by AS released_by, u.kind AS update_kind, u.phase AS update_phase, \
    u.from_digest AS update_from, u.to_digest AS update_to";

/// What protection and retention know about a snapshot beyond its own row, read in one
/// statement with it ([`Store::live_snapshots`], [`Store::snapshot_info`]). The rule that
/// turns these facts into a decision is pure: `snapshot::retention::protection`, reached
/// from outside the snapshot module as [`SnapshotFacts::protection`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotFacts {
    /// An unfinished journal row took it or is to restore it, or a pending rollback with
    /// `restore_data` names its update: retention must not touch it.
    pub needed: bool,
    /// Its workspace is quarantined (every complete snapshot of it is kept).
    pub workspace_quarantined: bool,
    /// The terminal phase of the workspace's newest finished journal row (`None`: no
    /// attempt has finished yet). Unfinished rows do not count: while one runs, what the
    /// last finished attempt left behind stays protected.
    pub last_finished: Option<UpdatePhase>,
    /// No newer complete snapshot of the same workspace and volume exists.
    pub newest_of_volume: bool,
}

/// Why retention keeps a snapshot until an operator releases it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtectedReason {
    /// Its workspace is quarantined: every complete snapshot of it may be what an
    /// operator recovers from.
    WorkspaceQuarantined,
    /// The newest complete snapshot of its volume, and the workspace's last finished
    /// update did not succeed (the phase it ended in): the last good copy.
    LastUpdateUnsuccessful(UpdatePhase),
}

impl std::fmt::Display for ProtectedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::WorkspaceQuarantined => f.write_str("workspace quarantined"),
            Self::LastUpdateUnsuccessful(UpdatePhase::RolledBack) => {
                f.write_str("newest copy of its volume; the last update was rolled back")
            }
            Self::LastUpdateUnsuccessful(UpdatePhase::Quarantined) => {
                f.write_str("newest copy of its volume; the last update ended quarantined")
            }
            Self::LastUpdateUnsuccessful(_) => {
                f.write_str("newest copy of its volume; the last update failed")
            }
        }
    }
}

/// What [`Store::release_snapshot`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// Released now (and audited).
    Now,
    /// It was released before; nothing was written.
    Already,
    /// It is deleted; nothing was written.
    Deleted,
}

/// The journal row a snapshot belongs to, as shown with it.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotUpdate {
    pub id: i64,
    /// `update`, `restore` or `recover`.
    pub kind: String,
    pub phase: String,
    pub from_digest: Option<Digest>,
    pub to_digest: Option<Digest>,
}

/// A snapshot with everything `snapshot show` prints.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotInfo {
    pub row: SnapshotRow,
    pub facts: SnapshotFacts,
    /// Its workspace's name (a deleted workspace's row is named `NAME~deleted-ID`).
    pub workspace: String,
    /// The operator (token name) who lifted its protection.
    pub released_by: Option<String>,
    pub update: Option<SnapshotUpdate>,
}

fn corrupt(what: &'static str) -> impl Fn(crate::domain::ParseError) -> StoreError {
    move |e| StoreError::Corrupt {
        what,
        message: e.to_string(),
    }
}

fn to_facts(
    r: RawFacts,
    open_restores: &HashSet<String>,
) -> Result<(SnapshotRow, SnapshotFacts), StoreError> {
    let needed = r.needed || open_restores.contains(&r.row.id);
    let facts = SnapshotFacts {
        needed,
        workspace_quarantined: r.workspace_quarantined,
        last_finished: r
            .last_finished
            .as_deref()
            .map(UpdatePhase::parse)
            .transpose()
            .map_err(corrupt("workspace update"))?,
        newest_of_volume: r.newest_of_volume,
    };
    Ok((to_row(r.row)?, facts))
}

fn to_info(r: RawInfo, open_restores: &HashSet<String>) -> Result<SnapshotInfo, StoreError> {
    let update_id = r.facts.row.update_id;
    let digest = |d: Option<String>| {
        d.map(|d| Digest::parse(&d))
            .transpose()
            .map_err(corrupt("workspace update"))
    };
    let update = match (update_id, r.update_kind, r.update_phase) {
        (Some(id), Some(kind), Some(phase)) => Some(SnapshotUpdate {
            id,
            kind,
            phase,
            from_digest: digest(r.update_from)?,
            to_digest: digest(r.update_to)?,
        }),
        _ => None,
    };
    let (row, facts) = to_facts(r.facts, open_restores)?;
    Ok(SnapshotInfo {
        row,
        facts,
        workspace: r.workspace,
        released_by: r.released_by,
        update,
    })
}

fn to_row(r: Raw) -> Result<SnapshotRow, StoreError> {
    Ok(SnapshotRow {
        id: SnapshotId::parse(&r.id).map_err(|e| StoreError::Corrupt {
            what: "snapshot",
            message: e.to_string(),
        })?,
        workspace_id: r.workspace_id,
        update_id: r.update_id,
        volume: r.volume,
        path: r.path,
        size_bytes: r.size_bytes,
        sha256: r.sha256,
        state: r.state,
        created_at: from_millis(r.created_at),
        mount_path: r.mount_path,
        method: r.method,
        manifest_sha256: r.manifest_sha256,
        entries: r.entries,
        released_at: r.released_at.map(from_millis),
    })
}

/// What a finished snapshot holds, recorded when it is marked complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotDone {
    pub size: u64,
    pub sha256: String,
    /// The tree's manifest digest and entry count, when the method computed them.
    pub manifest_sha256: Option<String>,
    pub entries: Option<u64>,
    pub method: &'static str,
}

impl Store {
    #[allow(clippy::too_many_arguments)] // reason: each is one column of the new row
    pub async fn insert_snapshot(
        &self,
        id: &SnapshotId,
        workspace_id: i64,
        update_id: Option<i64>,
        volume: &str,
        mount_path: &str,
        path: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO snapshots (id, workspace_id, update_id, volume, mount_path, path, state, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, 'writing', $7)",
        )
        .bind(id.as_str())
        .bind(workspace_id)
        .bind(update_id)
        .bind(volume)
        .bind(mount_path)
        .bind(path)
        .bind(to_millis(now))
        .execute(&self.pool)
        .await
        .ctx("insert snapshot")?;
        Ok(())
    }

    pub async fn complete_snapshot(
        &self,
        id: &SnapshotId,
        done: &SnapshotDone,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE snapshots SET state = 'complete', size_bytes = $1, sha256 = $2, \
             manifest_sha256 = $3, entries = $4, method = $5, version = version + 1 \
             WHERE id = $6 AND state = 'writing'",
        )
        .bind(i64::try_from(done.size).unwrap_or(i64::MAX))
        .bind(&done.sha256)
        .bind(&done.manifest_sha256)
        .bind(done.entries.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
        .bind(done.method)
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .ctx("complete snapshot")?;
        Ok(())
    }

    /// Sets `failed` or `deleted`.
    pub async fn set_snapshot_state(&self, id: &SnapshotId, state: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE snapshots SET state = $1, version = version + 1 WHERE id = $2")
            .bind(state)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .ctx("set snapshot state")?;
        Ok(())
    }

    pub async fn snapshot(&self, id: &SnapshotId) -> Result<SnapshotRow, StoreError> {
        let sql = format!("SELECT {COLS} FROM snapshots WHERE id = $1");
        let raw: Option<Raw> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .ctx("get snapshot")?;
        to_row(raw.ok_or_else(|| StoreError::NotFound {
            what: "snapshot",
            key: id.to_string(),
        })?)
    }

    /// Snapshots of one update attempt.
    pub async fn snapshots_of_update(
        &self,
        update_id: i64,
    ) -> Result<Vec<SnapshotRow>, StoreError> {
        let sql = format!("SELECT {COLS} FROM snapshots WHERE update_id = $1 ORDER BY created_at");
        let raw: Vec<Raw> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(update_id)
            .fetch_all(&self.pool)
            .await
            .ctx("list snapshots of update")?;
        raw.into_iter().map(to_row).collect()
    }

    /// Every snapshot not yet deleted, newest first per (workspace, volume), with its
    /// [`SnapshotFacts`]: whether unfinished work needs it and what protection decides on.
    /// Retention (`snapshot::retention_victims`) takes exactly this list.
    pub async fn live_snapshots(&self) -> Result<Vec<(SnapshotRow, SnapshotFacts)>, StoreError> {
        // One read transaction: the JSON lists and the rows are read from the same state.
        let mut conn = self.pool.begin().await.ctx("begin list live snapshots")?;
        let open = open_restore_ids(&mut conn).await?;
        let sql = format!(
            "SELECT {S_COLS}, {FACTS} FROM snapshots s WHERE s.state <> 'deleted' \
             ORDER BY s.workspace_id, s.volume, s.created_at DESC, s.id DESC"
        );
        let raw: Vec<RawFacts> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await
            .ctx("list live snapshots")?;
        raw.into_iter().map(|r| to_facts(r, &open)).collect()
    }

    /// One snapshot (in any state, `deleted` included) with its facts and context.
    pub async fn snapshot_info(&self, id: &SnapshotId) -> Result<SnapshotInfo, StoreError> {
        let mut conn = self.pool.begin().await.ctx("begin get snapshot info")?;
        info_in(&mut conn, id).await
    }

    /// Snapshots not yet deleted, of one workspace (by id) or of all, by workspace, volume
    /// and newest first.
    pub async fn snapshot_infos(
        &self,
        workspace_id: Option<i64>,
    ) -> Result<Vec<SnapshotInfo>, StoreError> {
        let mut conn = self.pool.begin().await.ctx("begin list snapshot infos")?;
        let open = open_restore_ids(&mut conn).await?;
        let sql = format!(
            "SELECT {S_COLS}, {FACTS}, {INFO} FROM snapshots s \
             LEFT JOIN workspace_updates u ON u.id = s.update_id \
             WHERE s.state <> 'deleted' AND ($1 IS NULL OR s.workspace_id = $1) \
             ORDER BY s.workspace_id, s.volume, s.created_at DESC, s.id DESC"
        );
        let raw: Vec<RawInfo> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id)
            .fetch_all(&mut *conn)
            .await
            .ctx("list snapshot infos")?;
        raw.into_iter().map(|r| to_info(r, &open)).collect()
    }

    /// Lifts a snapshot's protection from retention (`released_at`/`released_by`) and
    /// audits it (`snapshot_released`), in one transaction. Releasing twice writes nothing
    /// the second time; a deleted snapshot has nothing left to release.
    pub async fn release_snapshot(
        &self,
        id: &SnapshotId,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Released, StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin release snapshot")?;
        let workspace: Option<String> = sqlx::query_scalar(
            "UPDATE snapshots SET released_at = $1, released_by = $2, version = version + 1 \
             WHERE id = $3 AND state <> 'deleted' AND released_at IS NULL \
             RETURNING (SELECT w.name FROM workspaces w WHERE w.id = snapshots.workspace_id)",
        )
        .bind(to_millis(now))
        .bind(actor)
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .ctx("release snapshot")?;
        let Some(workspace) = workspace else {
            drop(tx);
            let row = self.snapshot(id).await?;
            return Ok(if row.state == "deleted" {
                Released::Deleted
            } else {
                Released::Already
            });
        };
        let ev = snapshot_event(
            actor,
            id,
            &workspace,
            "snapshot_released",
            serde_json::json!({}),
        );
        append_event_in(&mut tx, &ev, now).await?;
        tx.commit().await.ctx("commit release snapshot")?;
        Ok(Released::Now)
    }

    /// Marks a snapshot `deleted` and audits it (`snapshot_deleted`), in one transaction,
    /// unless `refuse` — called with the snapshot as read *inside* the transaction, after
    /// the write lock is taken — returns a reason; then nothing is written and the reason
    /// is returned as `Ok(Err(reason))`. `Ok(Ok(false))`: it was deleted already.
    /// The caller removes the file once this has committed.
    pub async fn delete_snapshot_audited<E>(
        &self,
        id: &SnapshotId,
        actor: &str,
        now: DateTime<Utc>,
        refuse: impl FnOnce(&SnapshotInfo) -> Option<E>,
    ) -> Result<Result<bool, E>, StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin delete snapshot")?;
        // The first statement writes, so SQLite takes the write lock at once and the facts
        // read below cannot change before the commit.
        let touched = sqlx::query("UPDATE snapshots SET version = version + 1 WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .ctx("lock snapshot")?;
        if touched.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "snapshot",
                key: id.to_string(),
            });
        }
        let info = info_in(&mut tx, id).await?;
        if info.row.state == "deleted" {
            return Ok(Ok(false));
        }
        if let Some(reason) = refuse(&info) {
            return Ok(Err(reason));
        }
        sqlx::query("UPDATE snapshots SET state = 'deleted' WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .ctx("delete snapshot")?;
        let detail = serde_json::json!({
            "volume": info.row.volume,
            "path": info.row.path,
            "state_before": info.row.state,
            "update_id": info.row.update_id,
        });
        let ev = snapshot_event(actor, id, &info.workspace, "snapshot_deleted", detail);
        append_event_in(&mut tx, &ev, now).await?;
        tx.commit().await.ctx("commit delete snapshot")?;
        Ok(Ok(true))
    }
}

/// Ids that an unfinished `restore` or `recover` journal row is to restore (the list is
/// JSON, so it is read here rather than matched in SQL).
async fn open_restore_ids(
    conn: &mut sqlx::SqliteConnection,
) -> Result<HashSet<String>, StoreError> {
    let lists: Vec<String> = sqlx::query_scalar(
        "SELECT restore_snapshot_ids FROM workspace_updates \
         WHERE restore_snapshot_ids IS NOT NULL \
         AND phase NOT IN ('succeeded', 'rolled_back', 'failed', 'quarantined')",
    )
    .fetch_all(&mut *conn)
    .await
    .ctx("list snapshots open restores need")?;
    let mut ids = HashSet::new();
    for json in lists {
        let list: Vec<String> = serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
            what: "workspace update",
            message: format!("restore_snapshot_ids: {e}"),
        })?;
        ids.extend(list);
    }
    Ok(ids)
}

/// [`Store::snapshot_info`] on a caller's connection or transaction.
async fn info_in(
    conn: &mut sqlx::SqliteConnection,
    id: &SnapshotId,
) -> Result<SnapshotInfo, StoreError> {
    let open = open_restore_ids(&mut *conn).await?;
    let sql = format!(
        "SELECT {S_COLS}, {FACTS}, {INFO} FROM snapshots s \
         LEFT JOIN workspace_updates u ON u.id = s.update_id WHERE s.id = $1"
    );
    let raw: Option<RawInfo> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .ctx("get snapshot info")?;
    to_info(
        raw.ok_or_else(|| StoreError::NotFound {
            what: "snapshot",
            key: id.to_string(),
        })?,
        &open,
    )
}

fn snapshot_event(
    actor: &str,
    id: &SnapshotId,
    workspace: &str,
    action: &str,
    detail: serde_json::Value,
) -> NewEvent {
    NewEvent {
        actor: actor.to_owned(),
        subject: format!("snapshot:{id}"),
        action: action.to_owned(),
        detail,
        rollout_id: None,
        workspace: Some(workspace.to_owned()),
    }
}

impl Store {
    /// The newest complete snapshot of `volume` of a workspace, if any.
    pub async fn newest_complete_snapshot(
        &self,
        workspace_id: i64,
        volume: &str,
    ) -> Result<Option<SnapshotRow>, StoreError> {
        let sql = format!(
            "SELECT {COLS} FROM snapshots WHERE workspace_id = $1 AND volume = $2 \
             AND state = 'complete' ORDER BY created_at DESC, id DESC LIMIT 1"
        );
        let raw: Option<Raw> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id)
            .bind(volume)
            .fetch_optional(&self.pool)
            .await
            .ctx("newest complete snapshot")?;
        raw.map(to_row).transpose()
    }
}

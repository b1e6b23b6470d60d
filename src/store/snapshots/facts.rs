//! Table `snapshots`, read with what the `workspaces`, `workspace_updates` and
//! `rollout_targets` tables say about each row: the facts retention (the snapshot
//! module's sweep, on the reconciler's behalf) and the API decide protection on, and what
//! `snapshot show` prints. Read only: the rows are written by `snapshots/mod.rs`.

use std::collections::HashSet;

use super::{Raw, SnapshotRow, to_row};
use crate::domain::{Digest, HostName, SnapshotId, UpdateKind, UpdatePhase};
use crate::store::{QueryContext, SqlBool, Store, StoreError};

/// A row plus the facts retention and the API decide on.
#[derive(sqlx::FromRow)]
struct RawFacts {
    #[sqlx(flatten)]
    row: Raw,
    #[sqlx(try_from = "SqlBool")]
    needed: bool,
    #[sqlx(try_from = "SqlBool")]
    workspace_quarantined: bool,
    last_finished: Option<String>,
    #[sqlx(try_from = "SqlBool")]
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

/// The journal row a snapshot belongs to, as shown with it.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotUpdate {
    pub id: i64,
    pub kind: UpdateKind,
    pub phase: UpdatePhase,
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
            kind: UpdateKind::parse(&kind).map_err(corrupt("workspace update"))?,
            phase: UpdatePhase::parse(&phase).map_err(corrupt("workspace update"))?,
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

impl Store {
    /// Every snapshot not yet deleted, newest first per (workspace, volume), with its
    /// [`SnapshotFacts`]: whether unfinished work needs it and what protection decides on.
    /// Retention (`snapshot::retention_victims`) takes exactly this list.
    pub async fn live_snapshots(
        &self,
        host: &HostName,
    ) -> Result<Vec<(SnapshotRow, SnapshotFacts)>, StoreError> {
        // One read transaction: the JSON lists and the rows are read from the same state.
        let mut conn = self.pool.begin().await.ctx("begin list live snapshots")?;
        let open = open_restore_ids(&mut conn).await?;
        let sql = format!(
            "SELECT {S_COLS}, {FACTS} FROM snapshots s WHERE s.state <> 'deleted' AND s.host = $1 \
             ORDER BY s.workspace_id, s.volume, s.created_at DESC, s.id DESC"
        );
        let raw: Vec<RawFacts> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(host.as_str())
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
}

/// Ids that an unfinished `restore` or `recover` journal row is to restore (the list is
/// JSON, so it is read here rather than matched in SQL).
async fn open_restore_ids(conn: &mut sqlx::AnyConnection) -> Result<HashSet<String>, StoreError> {
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
pub(super) async fn info_in(
    conn: &mut sqlx::AnyConnection,
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

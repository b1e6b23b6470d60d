//! Table `hosts`: the fleet's Docker hosts. Written by the API (`add`, and the schedule:
//! cordon, drain, uncordon — each audited in the same transaction), by `sluice run` for
//! its own built-in host, and by each host's agent (its heartbeat). The controller and
//! the views read it; whether a host is up is derived from `heartbeat_at` by the pure
//! [`crate::domain::host_state`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::events::append_event_in;
use super::{NewEvent, QueryContext, Store, StoreError};
use crate::clock::{from_millis, to_millis};
use crate::domain::{HostName, HostSchedule};

/// One host as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct HostRow {
    pub name: HostName,
    pub labels: BTreeMap<String, String>,
    /// How many workspaces the agent says the host can run (`None`: not limited).
    pub capacity: Option<i64>,
    pub schedule: HostSchedule,
    /// Whether an agent token is registered (the built-in host of `sluice run` has none).
    pub has_token: bool,
    pub agent_instance: Option<String>,
    pub agent_version: Option<String>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// What an agent reports at each heartbeat.
#[derive(Clone, Debug)]
pub struct Heartbeat<'a> {
    pub host: &'a HostName,
    pub instance: &'a str,
    pub version: &'a str,
    pub capacity: Option<i64>,
}

const COLUMNS: &str = "name, labels, capacity, schedule, token_sha256, agent_instance, \
                       agent_version, heartbeat_at, created_at";

fn corrupt(what: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        message: e.to_string(),
    }
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<HostRow, StoreError> {
    let name: String = r.try_get("name").ctx("read host")?;
    let labels: String = r.try_get("labels").ctx("read host")?;
    let schedule: String = r.try_get("schedule").ctx("read host")?;
    let token: Option<String> = r.try_get("token_sha256").ctx("read host")?;
    Ok(HostRow {
        name: HostName::parse(&name).map_err(|e| corrupt("host name", e))?,
        labels: serde_json::from_str(&labels).map_err(|e| corrupt("host labels", e))?,
        capacity: r.try_get("capacity").ctx("read host")?,
        schedule: HostSchedule::parse(&schedule).map_err(|e| corrupt("host schedule", e))?,
        has_token: token.is_some(),
        agent_instance: r.try_get("agent_instance").ctx("read host")?,
        agent_version: r.try_get("agent_version").ctx("read host")?,
        heartbeat_at: r
            .try_get::<Option<i64>, _>("heartbeat_at")
            .ctx("read host")?
            .map(from_millis),
        created_at: from_millis(r.try_get("created_at").ctx("read host")?),
    })
}

fn host_event(actor: &str, host: &HostName, action: &str, detail: serde_json::Value) -> NewEvent {
    NewEvent {
        actor: actor.to_owned(),
        subject: format!("host:{host}"),
        action: action.to_owned(),
        detail,
        rollout_id: None,
        workspace: None,
    }
}

impl Store {
    /// Every registered host, by name.
    pub async fn hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM hosts ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .ctx("list hosts")?;
        rows.iter().map(from_row).collect()
    }

    /// One host, or [`StoreError::NotFound`].
    pub async fn host(&self, name: &HostName) -> Result<HostRow, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM hosts WHERE name = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .ctx("get host")?
            .ok_or_else(|| StoreError::NotFound {
                what: "host",
                key: name.to_string(),
            })?;
        from_row(&row)
    }

    /// The sha256 (hex) of the host's agent token, if it has one.
    pub async fn host_token_sha256(&self, name: &HostName) -> Result<Option<String>, StoreError> {
        let v: Option<Option<String>> =
            sqlx::query_scalar("SELECT token_sha256 FROM hosts WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(&self.pool)
                .await
                .ctx("get host token")?;
        v.ok_or_else(|| StoreError::NotFound {
            what: "host",
            key: name.to_string(),
        })
    }

    /// Registers a host for an agent with the token's sha256, audited; a taken name is
    /// [`StoreError::AlreadyExists`].
    pub async fn add_host(
        &self,
        name: &HostName,
        labels: &BTreeMap<String, String>,
        token_sha256: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<HostRow, StoreError> {
        let labels_json = serde_json::to_string(labels).map_err(|e| corrupt("host labels", e))?;
        let mut tx = self.pool.begin().await.ctx("begin")?;
        let inserted = sqlx::query(
            "INSERT INTO hosts (name, labels, token_sha256, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.as_str())
        .bind(&labels_json)
        .bind(token_sha256)
        .bind(to_millis(now))
        .execute(&mut *tx)
        .await
        .ctx("add host")?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::AlreadyExists {
                what: "host",
                key: name.to_string(),
            });
        }
        let ev = host_event(
            actor,
            name,
            "host.added",
            serde_json::json!({ "labels": labels }),
        );
        append_event_in(&mut tx, &ev, now).await?;
        tx.commit().await.ctx("commit")?;
        self.host(name).await
    }

    /// Registers the built-in host of `sluice run` (no token) if it is not there yet.
    pub async fn ensure_builtin_host(
        &self,
        name: &HostName,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO hosts (name, created_at, updated_at) VALUES ($1, $2, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.as_str())
        .bind(to_millis(now))
        .execute(&self.pool)
        .await
        .ctx("register the built-in host")?;
        Ok(())
    }

    /// Records an agent's heartbeat. The host must exist ([`StoreError::NotFound`]).
    pub async fn heartbeat(
        &self,
        hb: &Heartbeat<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let n = sqlx::query(
            "UPDATE hosts SET agent_instance = $1, agent_version = $2, capacity = $3, \
             heartbeat_at = $4, updated_at = $4, version = version + 1 WHERE name = $5",
        )
        .bind(hb.instance)
        .bind(hb.version)
        .bind(hb.capacity)
        .bind(to_millis(now))
        .bind(hb.host.as_str())
        .execute(&self.pool)
        .await
        .ctx("record heartbeat")?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "host",
                key: hb.host.to_string(),
            });
        }
        Ok(())
    }

    /// Sets a host's schedule (cordon, drain, uncordon) and audits it with `actor`, in one
    /// transaction. Returns the schedule before.
    pub async fn set_host_schedule(
        &self,
        name: &HostName,
        schedule: HostSchedule,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<HostSchedule, StoreError> {
        let before = self.host(name).await?.schedule;
        let mut tx = self.pool.begin().await.ctx("begin")?;
        sqlx::query(
            "UPDATE hosts SET schedule = $1, updated_at = $2, version = version + 1 WHERE name = $3",
        )
        .bind(schedule.as_str())
        .bind(to_millis(now))
        .bind(name.as_str())
        .execute(&mut *tx)
        .await
        .ctx("set host schedule")?;
        let action = match schedule {
            HostSchedule::Active => "host.uncordoned",
            HostSchedule::Cordoned => "host.cordoned",
            HostSchedule::Draining => "host.drained",
        };
        let ev = host_event(
            actor,
            name,
            action,
            serde_json::json!({ "before": before.as_str(), "after": schedule.as_str() }),
        );
        append_event_in(&mut tx, &ev, now).await?;
        tx.commit().await.ctx("commit")?;
        Ok(before)
    }

    /// Hosts that live workspaces are placed on but that are not registered, with how
    /// many workspaces each: no agent converges those workspaces.
    pub async fn unregistered_placements(&self) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT host, COUNT(*) FROM workspaces WHERE deleted_at IS NULL \
             AND host NOT IN (SELECT name FROM hosts) GROUP BY host ORDER BY host",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("find workspaces on unregistered hosts")
    }

    /// Live workspaces per host, and how many of them are in an open update.
    pub async fn host_workspace_counts(&self) -> Result<BTreeMap<String, (i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT w.host AS host, COUNT(*) AS total, \
             SUM(CASE WHEN EXISTS (SELECT 1 FROM workspace_updates u WHERE u.workspace_id = w.id \
                 AND u.phase NOT IN ('succeeded', 'rolled_back', 'failed', 'quarantined')) \
                 THEN 1 ELSE 0 END) AS updating \
             FROM workspaces w WHERE w.deleted_at IS NULL GROUP BY w.host",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("count workspaces per host")?;
        let mut out = BTreeMap::new();
        for r in rows {
            let host: String = r.try_get("host").ctx("read host count")?;
            let total: i64 = r.try_get("total").ctx("read host count")?;
            let updating: i64 = r.try_get("updating").ctx("read host count")?;
            out.insert(host, (total, updating));
        }
        Ok(out)
    }
}

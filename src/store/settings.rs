//! Table `settings`, key `fleet_mode`: the fleet-wide switch, written by the API (operator,
//! audited in the same transaction) and read by the controller and the reconciler. Key
//! `fleet_id`: which fleet the database belongs to, written once by startup on the first
//! start (never changed afterwards; `sluice migrate --to` copies it). (The notifier's
//! cursor shares the table; its reads and writes live with the feed in `events`.)

use chrono::{DateTime, Utc};

use super::events::append_event_in;
use super::{NewEvent, QueryContext, Store, StoreError};
use crate::clock::to_millis;
use crate::domain::FleetMode;

impl Store {
    /// The fleet this database belongs to; `None` on an empty database (no schema yet)
    /// and on one no sluice with fleet identity has started on. Reads only.
    pub async fn stored_fleet(&self) -> Result<Option<String>, StoreError> {
        if self.newest_applied().await?.is_none() {
            return Ok(None);
        }
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'fleet_id'")
            .fetch_optional(&self.pool)
            .await
            .ctx("read the fleet id")
    }

    /// Stores `fleet` as the database's fleet unless it already has one, and returns the
    /// one stored (two instances starting at once on an empty database agree on the first).
    pub async fn claim_fleet(&self, fleet: &str, now: DateTime<Utc>) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES ('fleet_id', $1, $2) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(fleet)
        .bind(to_millis(now))
        .execute(&self.pool)
        .await
        .ctx("store the fleet id")?;
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'fleet_id'")
            .fetch_one(&self.pool)
            .await
            .ctx("read the fleet id")
    }

    pub async fn fleet_mode(&self) -> Result<FleetMode, StoreError> {
        let v: String = sqlx::query_scalar("SELECT value FROM settings WHERE key = 'fleet_mode'")
            .fetch_one(&self.pool)
            .await
            .ctx("get fleet mode")?;
        FleetMode::parse(&v).map_err(|e| StoreError::Corrupt {
            what: "fleet mode",
            message: e.to_string(),
        })
    }

    /// Sets the fleet mode and audits it with `actor`, in one transaction.
    pub async fn set_fleet_mode(
        &self,
        mode: FleetMode,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<FleetMode, StoreError> {
        // Read outside the transaction: a transaction that reads before it writes cannot
        // upgrade its SQLite lock while another writer commits ("database is locked").
        let before: String =
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'fleet_mode'")
                .fetch_one(&self.pool)
                .await
                .ctx("get fleet mode")?;
        let mut tx = self.pool.begin().await.ctx("begin")?;
        sqlx::query("UPDATE settings SET value = $1, updated_at = $2, version = version + 1 WHERE key = 'fleet_mode'")
            .bind(mode.as_str())
            .bind(to_millis(now))
            .execute(&mut *tx)
            .await
            .ctx("set fleet mode")?;
        let ev = NewEvent {
            actor: actor.to_owned(),
            subject: "fleet".to_owned(),
            action: "fleet.mode_changed".to_owned(),
            detail: serde_json::json!({ "before": before, "after": mode.as_str() }),
            rollout_id: None,
            workspace: None,
        };
        append_event_in(&mut tx, &ev, now).await?;
        tx.commit().await.ctx("commit")?;
        Ok(mode)
    }
}

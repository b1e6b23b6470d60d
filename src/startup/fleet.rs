//! Fleet identity: which fleet a database belongs to, so that an instance configured for
//! one fleet never starts on another fleet's database (two fleets pointed at one
//! PostgreSQL by a copied config, or a config edited to the wrong URL).
//!
//! The database stores its fleet id (`settings`, key `fleet_id`) on its first start:
//! `[database] fleet` when the config names one, else a generated `fleet-<16 hex>`. From
//! then on, a config that names a fleet must name that one, or startup stops before
//! anything is written; a config that names none takes the database's.

use rand::Rng;

use super::StartupError;
use crate::clock::{Clock, SystemClock};
use crate::store::{Store, redact_url};

/// Refuses a database whose stored fleet differs from the configured one, and returns
/// the stored one. Reads only: runs before the migrations, so a refused database is left
/// exactly as it was.
pub(super) async fn check(
    store: &Store,
    configured: Option<&str>,
    url: &str,
) -> Result<Option<String>, StartupError> {
    let stored = store.stored_fleet().await?;
    refuse_other(stored.as_deref(), configured, url)?;
    Ok(stored)
}

/// Stores the fleet id on a database that has none yet (its first start, or its first
/// with a sluice that knows fleets) and returns the one stored.
pub(super) async fn settle(
    store: &Store,
    configured: Option<&str>,
    url: &str,
) -> Result<String, StartupError> {
    let wanted = configured.map_or_else(generated, str::to_owned);
    let stored = store.claim_fleet(&wanted, SystemClock.now()).await?;
    // Another instance may have stored a different id first (both starting on an empty
    // database): the same refusal as at `check`.
    refuse_other(Some(&stored), configured, url)?;
    Ok(stored)
}

fn refuse_other(
    stored: Option<&str>,
    configured: Option<&str>,
    url: &str,
) -> Result<(), StartupError> {
    match (stored, configured) {
        (Some(stored), Some(configured)) if stored != configured => Err(StartupError::OtherFleet {
            url: redact_url(url),
            stored: stored.to_owned(),
            configured: configured.to_owned(),
        }),
        _ => Ok(()),
    }
}

fn generated() -> String {
    format!("fleet-{:016x}", rand::rng().random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configured_fleet_that_differs_is_refused() {
        let url = "postgres://u:pw@db/sluice";
        assert!(refuse_other(None, Some("blue"), url).is_ok());
        assert!(refuse_other(Some("blue"), None, url).is_ok());
        assert!(refuse_other(Some("blue"), Some("blue"), url).is_ok());
        let e = refuse_other(Some("blue"), Some("green"), url)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`blue`") && e.contains("`green`") && !e.contains("pw"),
            "{e}"
        );
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(generated(), generated());
        assert!(generated().starts_with("fleet-"));
    }
}

//! Named fault points for the crash matrix (`tests/it/crash_matrix.rs`): before and after
//! every call that changes something in Docker, inside the snapshot and restore streams,
//! and between emptying a volume and refilling it.
//!
//! They exist only with the `fault-injection` cargo feature, which the test build turns
//! on (the crate is its own dev-dependency with that feature). In every other build the
//! functions below are empty and inlined: `cargo build --release` carries no fault point
//! (a test checks the release binary for their names).
//!
//! With the feature, the environment says what a point does:
//! - `SLUICE_FAULT_TRACE=1`: log `fault point` with its name each time one is reached;
//! - `SLUICE_FAULT_AT=NAME`: the first time `NAME` is reached, log `fault point paused`
//!   and stop there until the process is killed, or until a graceful stop begins
//!   ([`release`]), when the step goes on to its end as any running step does.
//!
//! A point's name is `PHASE/LABEL`: the saga phase that reached it (set by the driver
//! with [`in_phase`]) and what is about to happen or just happened, e.g.
//! `recreating/create.before`, `restoring/unpack.mid`.

use std::future::Future;

/// Runs `step` with `phase` as the phase its fault points are named after.
pub async fn in_phase<F: Future>(phase: &'static str, step: F) -> F::Output {
    #[cfg(feature = "fault-injection")]
    {
        imp::PHASE.scope(phase, step).await
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = phase;
        step.await
    }
}

/// The phase of the running step, to hand to blocking code ([`point_blocking`]).
pub fn phase() -> Option<&'static str> {
    #[cfg(feature = "fault-injection")]
    {
        imp::PHASE.try_with(|p| *p).ok()
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        None
    }
}

/// A fault point in async code.
#[inline]
pub async fn point(label: &'static str) {
    #[cfg(feature = "fault-injection")]
    {
        imp::reached(phase(), label).await;
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = label;
    }
}

/// A fault point in blocking code (a `spawn_blocking` task), named after `phase`.
#[inline]
pub fn point_blocking(phase: Option<&'static str>, label: &'static str) {
    #[cfg(feature = "fault-injection")]
    {
        imp::reached_blocking(phase, label);
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = (phase, label);
    }
}

/// A graceful stop began: a paused point lets its step go on.
pub fn release() {
    #[cfg(feature = "fault-injection")]
    imp::RELEASED.store(true, std::sync::atomic::Ordering::SeqCst);
}

#[cfg(feature = "fault-injection")]
mod imp {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    tokio::task_local! {
        pub(super) static PHASE: &'static str;
    }

    pub(super) static RELEASED: AtomicBool = AtomicBool::new(false);
    static PAUSED_ONCE: AtomicBool = AtomicBool::new(false);

    struct Plan {
        trace: bool,
        at: Option<String>,
    }

    fn plan() -> &'static Plan {
        static PLAN: OnceLock<Plan> = OnceLock::new();
        PLAN.get_or_init(|| Plan {
            trace: std::env::var("SLUICE_FAULT_TRACE").is_ok_and(|v| v == "1"),
            at: std::env::var("SLUICE_FAULT_AT")
                .ok()
                .filter(|v| !v.is_empty()),
        })
    }

    /// Whether to pause here (logs as it goes).
    fn arrive(phase: Option<&'static str>, label: &'static str) -> bool {
        let p = plan();
        if !p.trace && p.at.is_none() {
            return false;
        }
        let name = format!("{}/{label}", phase.unwrap_or("none"));
        if p.trace {
            tracing::info!(point = %name, "fault point");
        }
        if p.at.as_deref() == Some(name.as_str()) && !PAUSED_ONCE.swap(true, Ordering::SeqCst) {
            tracing::warn!(point = %name, "fault point paused");
            return true;
        }
        false
    }

    pub(super) async fn reached(phase: Option<&'static str>, label: &'static str) {
        if arrive(phase, label) {
            while !RELEASED.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    pub(super) fn reached_blocking(phase: Option<&'static str>, label: &'static str) {
        if arrive(phase, label) {
            while !RELEASED.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The production build has no fault point: the feature is not a default one, and
    /// nothing but the test build's dev-dependency on this crate turns it on (so
    /// `cargo build --release` and `cargo install` never see it).
    #[test]
    fn only_the_test_build_turns_fault_points_on() {
        let manifest: toml::Table =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
                .expect("Cargo.toml")
                .parse()
                .expect("toml");
        let features = manifest["features"].as_table().expect("[features]");
        let default = features
            .get("default")
            .and_then(|d| d.as_array())
            .cloned()
            .unwrap_or_default();
        assert!(
            !default
                .iter()
                .any(|f| f.as_str() == Some("fault-injection")),
            "fault-injection must never be a default feature"
        );
        for (name, dep) in manifest["dependencies"].as_table().expect("[dependencies]") {
            let on = dep
                .get("features")
                .and_then(|f| f.as_array())
                .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("fault-injection")));
            assert!(!on, "dependency {name} turns fault-injection on");
        }
        let dev = &manifest["dev-dependencies"]["sluice"];
        assert!(
            dev["features"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("fault-injection"))),
            "the test build turns fault points on"
        );
    }

    /// The test build itself has them (otherwise the crash matrix would test nothing):
    /// a step's points are named after its phase.
    #[tokio::test]
    async fn the_test_build_names_points_after_the_running_phase() {
        assert_eq!(
            super::in_phase("restoring", async { super::phase() }).await,
            Some("restoring")
        );
        assert_eq!(super::phase(), None, "outside a step");
    }
}

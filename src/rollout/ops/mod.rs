//! The operator operations behind the API and CLI: apply ([`apply`]), promote, pause,
//! resume, abort ([`lifecycle`]), rollback ([`rollback`]) and "update now"
//! ([`update_now`]). Each reads the rows it needs, lets a pure function of
//! `rollout::decide::operator` decide, and commits the decision with
//! [`RolloutDeps::commit`] (one store transaction with a version check and its audit
//! events); a lost race is retried from a fresh read a few times.
//!
//! This module knows no HTTP: the API maps [`OpError`] to statuses and codes.

mod apply;
pub use apply::ApplyPreview;
mod lifecycle;
mod rollback;
mod update_now;

use super::decide::DecideError;
use super::deps::RolloutDeps;
use super::hosts::HostStates;
use super::record::Rollout;
use crate::config::HostsSettings;
use crate::domain::ApplyTier;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    Invalid(String),
    #[error("{what} `{key}` not found")]
    NotFound { what: &'static str, key: String },
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, key } => OpError::NotFound { what, key },
            other => OpError::Store(other),
        }
    }
}

impl From<DecideError> for OpError {
    fn from(e: DecideError) -> Self {
        match e {
            DecideError::Conflict(m) => OpError::Conflict(m),
            DecideError::Invalid(m) => OpError::Invalid(m),
        }
    }
}

impl OpError {
    /// A lost race on a version: worth another read.
    fn is_race(&self) -> bool {
        matches!(
            self,
            OpError::Store(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. })
        )
    }
}

/// Parses an API tier value; anything else is invalid input naming the choices.
pub fn parse_tier(input: &str) -> Result<ApplyTier, OpError> {
    ApplyTier::parse(input).map_err(|e| OpError::Invalid(e.to_string()))
}

/// What an operation returns.
#[derive(Clone, Debug)]
pub struct OpOutcome {
    pub rollout: Rollout,
    /// Nothing changed: the tier was already applied.
    pub no_op: bool,
    /// Something the operator must read (e.g. data loss on rollback with restore).
    pub warning: Option<String>,
}

/// The operator operations over shared [`RolloutDeps`].
#[derive(Clone)]
pub struct Ops {
    deps: RolloutDeps,
    /// `[hosts]`: when a host counts as down, for the views' host states.
    hosts: HostsSettings,
}

const RETRIES: usize = 3;

macro_rules! retrying {
    ($e:expr) => {{
        let mut attempt = 0;
        loop {
            match $e {
                Err(err) if err.is_race() && attempt + 1 < super::RETRIES => attempt += 1,
                other => break other,
            }
        }
    }};
}
pub(crate) use retrying;

impl Ops {
    pub fn new(deps: RolloutDeps) -> Self {
        Self {
            deps,
            hosts: HostsSettings::default(),
        }
    }

    /// Judges hosts with `[hosts]` (default: its defaults).
    #[must_use]
    pub fn with_hosts(mut self, hosts: HostsSettings) -> Self {
        self.hosts = hosts;
        self
    }

    /// Where every registered host stands now (for the rollout views).
    pub async fn host_states(&self) -> Result<HostStates, OpError> {
        let rows = self.deps.store.hosts().await?;
        Ok(HostStates::from_rows(
            &rows,
            self.deps.clock.now(),
            self.hosts.down_after(),
        ))
    }

    pub fn deps(&self) -> &RolloutDeps {
        &self.deps
    }

    pub async fn rollout(&self, id: i64) -> Result<Rollout, OpError> {
        Ok(Rollout::from_row(self.deps.store.rollout_row(id).await?)?)
    }

    async fn outcome(
        &self,
        id: i64,
        no_op: bool,
        warning: Option<String>,
    ) -> Result<OpOutcome, OpError> {
        Ok(OpOutcome {
            rollout: self.rollout(id).await?,
            no_op,
            warning,
        })
    }

    fn woke(&self) {
        self.deps.wakers.controller.notify_one();
        self.deps.wakers.reconciler.notify_one();
    }
}

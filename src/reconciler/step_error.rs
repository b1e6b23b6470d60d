//! How a saga step fails: worth another try (the engine did not answer, timed out or was
//! busy) or not. The driver retries transient failures of rollback steps, and waits out
//! an engine that does not answer at all, before a failure counts (see `saga.rs`).

use crate::runtime::RuntimeError;
use crate::snapshot::SnapshotError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Docker did not answer, timed out or said it was busy: trying again may work.
    #[error("{0}")]
    Transient(String),
    /// Trying again would fail the same way (a refusal, a failed health gate, a
    /// damaged snapshot).
    #[error("{0}")]
    Permanent(String),
    /// `reverting` has no previous digest to return to.
    #[error("no previous digest to roll back to")]
    NothingToRevert,
}

impl StepError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }

    /// The same failure, its message prefixed with `what` (`pull: …`).
    pub fn context(self, what: &str) -> Self {
        match self {
            Self::Transient(m) => Self::Transient(format!("{what}: {m}")),
            Self::Permanent(m) => Self::Permanent(format!("{what}: {m}")),
            Self::NothingToRevert => Self::NothingToRevert,
        }
    }
}

impl From<RuntimeError> for StepError {
    fn from(e: RuntimeError) -> Self {
        if e.is_transient() {
            Self::Transient(e.to_string())
        } else {
            Self::Permanent(e.to_string())
        }
    }
}

impl From<SnapshotError> for StepError {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::Runtime(r) => r.into(),
            other => Self::Permanent(other.to_string()),
        }
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        Self::Permanent(e.to_string())
    }
}

impl From<String> for StepError {
    fn from(e: String) -> Self {
        Self::Permanent(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_that_does_not_answer_is_transient_a_refusal_is_not() {
        let down = RuntimeError::Unavailable {
            op: "stop",
            target: "sluice-acme".into(),
        };
        assert!(StepError::from(down).is_transient());
        let refused = RuntimeError::Refused {
            op: "remove",
            target: "v".into(),
            message: "in use".into(),
        };
        assert!(!StepError::from(refused).is_transient());
        let busy = RuntimeError::Docker {
            op: "start",
            target: "c".into(),
            source: bollard::errors::Error::DockerResponseServerError {
                status_code: 503,
                message: "busy".into(),
            },
        };
        assert!(StepError::from(busy).is_transient());
        let missing = RuntimeError::Docker {
            op: "pull",
            target: "i".into(),
            source: bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                message: "no such image".into(),
            },
        };
        let e = StepError::from(missing).context("pull");
        assert!(!e.is_transient());
        assert!(e.to_string().starts_with("pull: "), "{e}");
        let snap = SnapshotError::Runtime(RuntimeError::Unavailable {
            op: "archive",
            target: "c".into(),
        });
        assert!(StepError::from(snap).is_transient());
    }
}

//! Before a workspace's spec names a volume: who owns it? Docker's labels say which
//! workspace id a volume was created for; the store says what that id is (live,
//! deleted, unknown). The rule is [`claim_volume`]; this gathers its inputs and turns a
//! refusal into a 409 naming the field. The store makes the second check — no other
//! live workspace's spec names the volume — inside the transaction that writes.

use super::AppState;
use super::error::ApiError;
use crate::domain::spec::VolumeMount;
use crate::reconciler::container::{
    Claim, ClaimRefused, LabelledOwner, claim_volume, volume_owner,
};
use crate::runtime::{ContainerRuntime as _, DockerRuntime};
use crate::store::{AdoptedVolume, StoreError};

/// Checks the spec entries `entries` (index in `volumes`, entry) for workspace
/// `claimant` (`None` while it is being created, `workspace` its name) and returns the
/// volumes it adopts. Refusals: 409 `volume_in_use` (another workspace's volume, live
/// or deleted without `adopt`) or `volume_exists` (an unowned volume without `adopt`);
/// 503 when Docker cannot say.
pub async fn check(
    state: &AppState,
    workspace: &str,
    claimant: Option<i64>,
    entries: &[(usize, &VolumeMount)],
) -> Result<Vec<AdoptedVolume>, ApiError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let docker = state.docker.get().ok_or_else(|| {
        ApiError::unavailable(
            "docker_unavailable",
            "docker is not reachable, so the owners of the spec's volumes cannot be checked; \
             nothing was changed",
        )
    })?;
    let rt = DockerRuntime::new(docker.as_ref().clone());
    let mut adopted = Vec::new();
    for &(i, v) in entries {
        let labels = rt.volume_inspect(&v.name).await.map_err(|e| {
            ApiError::unavailable(
                "docker_error",
                format!("volumes[{i}].name: cannot inspect volume `{}`: {e}", v.name),
            )
        })?;
        let owner = match labels.as_ref().and_then(volume_owner) {
            Some(id) if Some(id) != claimant => Some(labelled_owner(state, id).await?),
            _ => None,
        };
        match claim_volume(labels.as_ref(), claimant, owner.as_ref(), v.adopt) {
            Ok(Claim::Adopt { previous_owner }) => adopted.push(AdoptedVolume {
                volume: v.name.clone(),
                previous_owner,
            }),
            Ok(Claim::Create | Claim::Own) => {}
            Err(refused) => {
                tracing::info!(workspace, volume = %v.name, reason = %refused, "volume claim refused");
                return Err(refusal(i, &v.name, &refused));
            }
        }
    }
    Ok(adopted)
}

async fn labelled_owner(state: &AppState, id: i64) -> Result<LabelledOwner, ApiError> {
    Ok(match state.store.workspace_identity(id).await? {
        Some(w) if w.deleted => LabelledOwner::Deleted(w.name),
        Some(w) => LabelledOwner::Live(w.name),
        None => LabelledOwner::Unknown,
    })
}

fn refusal(i: usize, volume: &str, refused: &ClaimRefused) -> ApiError {
    let code = match refused {
        ClaimRefused::InUse { .. } | ClaimRefused::LeftByDeleted { .. } => "volume_in_use",
        ClaimRefused::Unowned => "volume_exists",
    };
    ApiError::conflict(
        code,
        format!("volumes[{i}].name: volume `{volume}` {refused}"),
    )
}

/// The store's refusal (another live workspace's spec names the volume) as a 409 naming
/// the entry of `volumes` it is about; other store errors map as usual.
pub fn store_refusal(e: StoreError, volumes: &[VolumeMount]) -> ApiError {
    match &e {
        StoreError::VolumeInUse { volume, owner } => {
            let i = volumes.iter().position(|v| &v.name == volume).unwrap_or(0);
            tracing::info!(volume = %volume, owner = %owner, "volume claim refused: named by another workspace");
            ApiError::conflict(
                "volume_in_use",
                format!("volumes[{i}].name: volume `{volume}` is used by workspace `{owner}`"),
            )
        }
        _ => e.into(),
    }
}

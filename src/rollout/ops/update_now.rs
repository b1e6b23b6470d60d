//! `POST /workspaces/{name}/update`: one workspace, now, outside any rollout. The one
//! operator write that is not a rollout decision: it checks the workspace's version
//! (`Store::set_desired_now`), not a rollout's.

use super::{OpError, Ops, RETRIES};
use crate::domain::{Digest, WorkspaceName};
use crate::store::{NewEvent, StoreError};

impl Ops {
    /// Sets `name`'s desired digest to `digest` or to the newest release of its image
    /// that is neither blocked nor rejected.
    pub async fn update_workspace_now(
        &self,
        name: &WorkspaceName,
        digest: Option<&Digest>,
        actor: &str,
    ) -> Result<Digest, OpError> {
        let store = &self.deps.store;
        let mut attempt = 0;
        loop {
            let ws = store.workspace(name).await?;
            let image = ws.image.to_string();
            let target = match digest {
                Some(d) => d.clone(),
                None => store
                    .newest_usable_release(&image)
                    .await?
                    .map(|r| r.digest)
                    .ok_or_else(|| {
                        OpError::Conflict(format!(
                            "no usable release of image `{image}` to update `{name}` to"
                        ))
                    })?,
            };
            if let Some(p) = ws.pinned_digest.as_ref().filter(|p| **p != target) {
                return Err(OpError::Conflict(format!(
                    "workspace `{name}` is pinned to {p}; unpin it first"
                )));
            }
            let ev = NewEvent {
                actor: actor.to_owned(),
                subject: format!("workspace:{name}"),
                action: "workspace.update_now".to_owned(),
                detail: serde_json::json!({ "from": ws.desired_digest, "to": target }),
                rollout_id: None,
                workspace: Some(name.to_string()),
            };
            match store
                .set_desired_now(ws.id, ws.version, &target, &ev, self.deps.clock.now())
                .await
            {
                Err(StoreError::Conflict { .. }) if attempt + 1 < RETRIES => attempt += 1,
                Err(e) => return Err(e.into()),
                Ok(()) => {
                    self.deps.wakers.reconciler.notify_one();
                    return Ok(target);
                }
            }
        }
    }
}

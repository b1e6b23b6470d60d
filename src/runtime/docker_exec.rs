//! Running a command inside a running container (the health gate's command probe):
//! Docker's exec API, started detached and polled until it exits or times out.

use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions};

use super::RuntimeError;
use super::docker_convert::err;

/// The command's exit code, or `None` when it was still running at `timeout` (it is left
/// to finish inside the container; Docker has no exec kill).
pub(super) async fn exec(
    docker: &Docker,
    name: &str,
    cmd: &[String],
    timeout: Duration,
) -> Result<Option<i64>, RuntimeError> {
    let created = docker
        .create_exec(
            name,
            CreateExecOptions {
                cmd: Some(cmd.to_vec()),
                attach_stdout: Some(false),
                attach_stderr: Some(false),
                ..Default::default()
            },
        )
        .await
        .map_err(err("exec", name))?;
    docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: true,
                ..Default::default()
            }),
        )
        .await
        .map_err(err("exec", name))?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let state = docker
            .inspect_exec(&created.id)
            .await
            .map_err(err("exec", name))?;
        if state.running != Some(true)
            && let Some(code) = state.exit_code
        {
            return Ok(Some(code));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! Canary smoke checks: `[[rollout.smoke]]` HTTP GETs run against every canary during
//! the soak. The HTTP call is an adapter ([`SmokeProbe`]); the verdict is pure
//! ([`verdict`]).

use std::future::Future;
use std::pin::Pin;

use crate::config::SmokeCheck;

/// What came back from one smoke request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmokeResponse {
    pub status: u16,
    pub body: String,
}

/// Pass or a reason naming the check, e.g. `GET /version: status 500, expected 200`.
pub fn verdict(check: &SmokeCheck, got: &Result<SmokeResponse, String>) -> Result<(), String> {
    let path = &check.path;
    match got {
        Err(e) => Err(format!("GET {path}: {e}")),
        Ok(r) if r.status != check.status => Err(format!(
            "GET {path}: status {}, expected {}",
            r.status, check.status
        )),
        Ok(r) => match &check.body_contains {
            Some(want) if !r.body.contains(want.as_str()) => {
                Err(format!("GET {path}: body does not contain `{want}`"))
            }
            _ => Ok(()),
        },
    }
}

/// Performs the request against a workspace (knows how to reach its container).
pub trait SmokeProbe: Send + Sync + 'static {
    fn get<'a>(
        &'a self,
        workspace: &'a str,
        path: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<SmokeResponse, String>> + Send + 'a>>;
}

/// Runs every check for `image` against `workspace`; the first failure's reason.
pub async fn run_checks(
    probe: &dyn SmokeProbe,
    checks: &[SmokeCheck],
    image: &str,
    workspace: &str,
) -> Option<String> {
    for c in checks.iter().filter(|c| c.image == image) {
        let got = probe.get(workspace, &c.path).await;
        if let Err(reason) = verdict(c, &got) {
            return Some(reason);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: Option<&str>) -> SmokeCheck {
        SmokeCheck {
            image: "a/b:c".to_owned(),
            path: "/version".to_owned(),
            status: 200,
            body_contains: body.map(str::to_owned),
        }
    }
    fn ok(status: u16, body: &str) -> Result<SmokeResponse, String> {
        Ok(SmokeResponse {
            status,
            body: body.to_owned(),
        })
    }

    #[test]
    fn status_body_and_transport_failures_are_named() {
        assert_eq!(verdict(&check(None), &ok(200, "")), Ok(()));
        assert_eq!(verdict(&check(Some("v2")), &ok(200, "app v2\n")), Ok(()));
        assert_eq!(
            verdict(&check(None), &ok(500, "")).unwrap_err(),
            "GET /version: status 500, expected 200"
        );
        assert_eq!(
            verdict(&check(Some("v2")), &ok(200, "v1")).unwrap_err(),
            "GET /version: body does not contain `v2`"
        );
        assert_eq!(
            verdict(&check(None), &Err("connection refused".to_owned())).unwrap_err(),
            "GET /version: connection refused"
        );
    }
}

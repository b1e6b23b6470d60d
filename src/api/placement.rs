//! Which Docker host a new workspace goes to, and the refusal of a move.
//!
//! A workspace is placed once, at creation: on the host its body names (which must be
//! registered), or — when it names none — on the only registered host. With more than
//! one host registered the body must name one. Moving a workspace to another host
//! would move its volumes and snapshots across the network; it is refused.

use crate::domain::HostName;
use crate::store::HostRow;

use super::error::ApiError;

/// Refuses a host that already runs as many workspaces as its agent says it can.
pub(super) fn check_capacity(host: &HostRow, placed: i64) -> Result<(), ApiError> {
    match host.capacity {
        Some(cap) if placed >= cap => Err(ApiError::conflict(
            "host_full",
            format!(
                "host: `{}` already runs {placed} workspaces, its capacity ([agent] capacity {cap})",
                host.name
            ),
        )),
        _ => Ok(()),
    }
}

/// The host for a new workspace, given what the body asked and the registered hosts.
pub(super) fn place(asked: Option<HostName>, hosts: &[HostRow]) -> Result<HostName, ApiError> {
    let names = || {
        hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match asked {
        Some(h) if hosts.iter().any(|r| r.name == h) => Ok(h),
        // Before any host is registered (a store without a daemon yet) only the built-in
        // host can be meant.
        Some(h) if hosts.is_empty() && h == HostName::local() => Ok(h),
        Some(h) => Err(ApiError::bad_request(
            "unknown_host",
            format!(
                "host: `{h}` is not a registered host (registered: {}); register it with \
                 `sluice host add {h}`",
                if hosts.is_empty() {
                    "none".to_owned()
                } else {
                    names()
                }
            ),
        )),
        None => match hosts {
            [] => Ok(HostName::local()),
            [only] => Ok(only.name.clone()),
            _ => Err(ApiError::bad_request(
                "host_required",
                format!(
                    "host: required when more than one host is registered (registered: {})",
                    names()
                ),
            )),
        },
    }
}

/// A PATCH may repeat the workspace's host; naming another is a move, which is refused.
pub(super) fn check_unmoved(
    workspace: &str,
    current: &HostName,
    asked: Option<&HostName>,
) -> Result<(), ApiError> {
    match asked {
        Some(h) if h != current => Err(ApiError::conflict(
            "move_not_supported",
            format!(
                "host: workspace `{workspace}` runs on `{current}`; moving it to `{h}` would \
                 move its volumes and snapshots between hosts, which sluice does not do. \
                 Create a new workspace on `{h}` and restore its data there instead"
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::HostSchedule;
    use chrono::DateTime;

    fn host(name: &str) -> HostRow {
        HostRow {
            name: HostName::parse(name).unwrap(),
            labels: Default::default(),
            capacity: None,
            schedule: HostSchedule::Active,
            has_token: true,
            agent_instance: None,
            agent_version: None,
            heartbeat_at: None,
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
        }
    }
    fn h(n: &str) -> HostName {
        HostName::parse(n).unwrap()
    }

    #[test]
    fn a_workspace_goes_where_it_asks_or_to_the_only_host() {
        assert_eq!(place(None, &[]).unwrap(), HostName::local());
        assert_eq!(place(None, &[host("a")]).unwrap(), h("a"));
        assert_eq!(
            place(Some(h("b")), &[host("a"), host("b")]).unwrap(),
            h("b")
        );
        let e = place(None, &[host("a"), host("b")]).unwrap_err();
        assert!(e.to_string().contains("host: required"), "{e}");
        let e = place(Some(h("c")), &[host("a"), host("b")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("host: `c` is not a registered host (registered: a, b)"),
            "{e}"
        );
    }

    #[test]
    fn a_full_host_takes_no_more_workspaces() {
        let mut full = host("a");
        assert!(
            check_capacity(&full, 100).is_ok(),
            "no capacity reported: no limit"
        );
        full.capacity = Some(2);
        assert!(check_capacity(&full, 1).is_ok());
        let e = check_capacity(&full, 2).unwrap_err();
        assert!(
            e.to_string()
                .contains("host: `a` already runs 2 workspaces"),
            "{e}"
        );
    }

    #[test]
    fn naming_another_host_in_a_patch_is_a_refused_move() {
        assert!(check_unmoved("w", &h("a"), None).is_ok());
        assert!(check_unmoved("w", &h("a"), Some(&h("a"))).is_ok());
        let e = check_unmoved("w", &h("a"), Some(&h("b"))).unwrap_err();
        assert!(
            e.to_string().contains("host: workspace `w` runs on `a`"),
            "{e}"
        );
    }
}

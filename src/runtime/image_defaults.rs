//! What an image supplies to its containers unless `docker run` overrides it, and a
//! container spec with that taken out: how a container's configuration is read back
//! (`docker_config`) and how the one a workspace wants is compared with it (drift).

use std::collections::BTreeMap;

use super::ContainerSpec;

/// An image's own env, labels, command, entrypoint, user, working directory and stop
/// signal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub stop_signal: Option<String>,
}

fn unless_default(v: Option<String>, default: Option<&String>) -> Option<String> {
    v.filter(|x| !x.is_empty() && Some(x) != default)
}

impl ContainerSpec {
    /// The spec as `docker run` would have to say it on an image with `img`'s defaults:
    /// what the image supplies anyway taken out, env sorted.
    #[must_use]
    pub fn less_image(mut self, img: &ImageDefaults) -> Self {
        self.labels.retain(|k, v| img.labels.get(k) != Some(v));
        self.env.retain(|e| !img.env.contains(e));
        self.env.sort();
        if self.entrypoint == img.entrypoint {
            self.entrypoint = None;
        }
        if self.entrypoint.is_none() && self.cmd == img.cmd {
            self.cmd = None;
        }
        self.user = unless_default(self.user, img.user.as_ref());
        self.working_dir = unless_default(self.working_dir, img.working_dir.as_ref());
        self.stop_signal = unless_default(self.stop_signal, img.stop_signal.as_ref());
        self
    }
}

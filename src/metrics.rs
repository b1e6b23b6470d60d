//! One Prometheus registry for the whole daemon. Each loop registers its own collectors
//! here at startup; `/metrics` renders the registry.

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new(
                "sluice_build_info",
                "Build information; the value is always 1.",
            ),
            &["version"],
        )
        .expect("static metric definition is valid");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry
            .register(Box::new(build.clone()))
            .expect("registered once");
        Self { registry }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition of every registered metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

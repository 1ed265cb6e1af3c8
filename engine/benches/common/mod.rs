//! What the Docker benches share: a runner on a state directory, with the
//! bundled plugins (precompiled once into the bench cache) and the
//! engine's defaults.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use slipway::checkout::Checkouts;
use slipway::jobs::executor::{ContainerExecutor, RunnerSettings};
use slipway::plugins::sandbox::SandboxOptions;
use slipway::plugins::{LimitsPolicy, PluginSandbox, Registry};
use slipway::queue::JobStore;

/// A Docker runner for `store`, with checkouts under `state`.
pub fn docker_executor(
    runtime: &slipway::runner::Runtime,
    state: &Path,
    store: Arc<dyn JobStore>,
    engine_id: String,
) -> ContainerExecutor {
    let sandbox = Arc::new(
        PluginSandbox::new(SandboxOptions {
            cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-cache")),
            policy: LimitsPolicy::default(),
            pooling: true,
            single_caller: false,
        })
        .unwrap(),
    );
    ContainerExecutor::new(
        runtime.clone(),
        Checkouts::new(state, Duration::from_secs(120)),
        Arc::new(Registry::load(sandbox, true, &[])),
        store,
        RunnerSettings {
            engine_id,
            base_images: Default::default(),
            ecosystem_order: slipway::config::DEFAULT_ECOSYSTEM_ORDER
                .iter()
                .map(|s| s.to_string())
                .collect(),
            job_user: slipway::runner::prepare::JOB_USER,
            build_network: "host".into(),
            holder_image: slipway::config::DEFAULT_HOLDER_IMAGE.into(),
            stop_grace: Duration::from_secs(1),
            ca_bundle: None,
            cache_budget_mb: 2048,
            image_budget_mb: None,
            output_kept_mb: 1024,
            selinux_relabel: false,
        },
    )
}

//! Package-manager cache volumes: the plan's `cache` entries (`pip` at
//! `/home/app/.cache/pip`, `npm` at `~/.npm`, ...) become named volumes,
//! one per manager and repository (shared by the engines of a daemon), mounted into job and workspace
//! containers so the next job of the repository starts warm. A volume that
//! grows past its budget is removed after the job (the next one starts
//! cold and fills it again).

use std::collections::HashMap;

use super::container::{self, ContainerLimits, ContainerSpec, Hardening, SelinuxLabel, bind};
use super::{LABEL_ENGINE, LABEL_MANAGED, LABEL_ROLE, Role};
use crate::plugins::bindings::CacheMount;
use crate::runtime::{LogsOptions, Runtime};

/// Which cache a volume holds.
pub const LABEL_CACHE: &str = "io.slipway.cache";

/// When each volume was last found within its budget.
static MEASURED: std::sync::Mutex<Option<HashMap<String, std::time::Instant>>> =
    std::sync::Mutex::new(None);
const REMEASURE_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// A cache volume to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheVolume {
    /// The Docker volume (see [`volume_name`]).
    pub name: String,
    /// Absolute path in the container, from the plan's cache entry.
    pub path: String,
}

/// The volume name: manager and repository, as Docker allows. Shared by
/// every engine on the daemon (`serve` and each `slipway run`), so a warm
/// cache serves them all; the label names the engine that made it.
pub fn volume_name(id: &str, scope: &str) -> String {
    let clean = |s: &str| super::image::name_component(s);
    format!("{VOLUME_PREFIX}{}-{}", clean(id), clean(scope))
}

/// Why a cache volume could not be made ready (an infrastructure failure:
/// the job is retried).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The plan names a cache at a relative path.
    #[error("cache `{id}`: `{path}` is not an absolute path")]
    RelativePath {
        /// The cache's id (`pip`, `npm`, ...).
        id: String,
        /// The path the plan gave.
        path: String,
    },
    /// The runtime refused to create the volume.
    #[error("cache `{id}`: cannot create volume {volume}: {reason}")]
    Create {
        /// The cache's id.
        id: String,
        /// The volume's name.
        volume: String,
        /// The runtime's words.
        reason: String,
    },
    /// The volume could not be given to the job user.
    #[error("cannot hand cache volume {volume} to {owner}: {reason}")]
    HandOver {
        /// The volume's name.
        volume: String,
        /// `uid:gid` of the job user.
        owner: String,
        /// What the helper container said, or why it did not run.
        reason: String,
    },
}

/// How every cache volume's name begins.
pub const VOLUME_PREFIX: &str = "slipway-cache-";

/// Create (once) the volumes for `mounts`, owned by `uid:gid` so the job's
/// user can write them. Returns what to mount.
pub async fn prepare(
    runtime: &Runtime,
    engine: &str,
    scope: &str,
    mounts: &[CacheMount],
    (uid, gid): (u32, u32),
    helper_image: &str,
    label: Option<SelinuxLabel>,
) -> Result<Vec<CacheVolume>, CacheError> {
    let mut out = Vec::new();
    for m in mounts {
        if !m.path.starts_with('/') {
            return Err(CacheError::RelativePath {
                id: m.id.clone(),
                path: m.path.clone(),
            });
        }
        let name = volume_name(&m.id, scope);
        if !runtime.volume_exists(&name).await {
            let labels = HashMap::from([
                (LABEL_MANAGED.to_owned(), "true".to_owned()),
                (LABEL_ENGINE.to_owned(), engine.to_owned()),
                (LABEL_ROLE.to_owned(), Role::Cache.label().to_owned()),
                (LABEL_CACHE.to_owned(), m.id.clone()),
            ]);
            runtime
                .create_volume(&name, labels)
                .await
                .map_err(|e| CacheError::Create {
                    id: m.id.clone(),
                    volume: name.clone(),
                    reason: e.to_string(),
                })?;
            let helper = Helper {
                runtime,
                image: helper_image,
                engine,
                label,
            };
            hand_to(&helper, &name, uid, gid).await?;
        }
        out.push(CacheVolume {
            name,
            path: m.path.clone(),
        });
    }
    Ok(out)
}

/// A new volume belongs to root; give it to the job user.
async fn hand_to(helper: &Helper<'_>, volume: &str, uid: u32, gid: u32) -> Result<(), CacheError> {
    let owner = format!("{uid}:{gid}");
    let argv = ["chown".to_owned(), owner.clone(), "/cache".to_owned()];
    let failed = |reason: String| CacheError::HandOver {
        volume: volume.to_owned(),
        owner: owner.clone(),
        reason,
    };
    match helper.run(volume, &argv).await {
        Ok((0, _)) => Ok(()),
        Ok((code, out)) => Err(failed(format!("exit {code}: {}", out.trim()))),
        Err(e) => Err(failed(e.to_string())),
    }
}

/// One-off containers that work on a cache volume (hand it over, measure it).
struct Helper<'a> {
    runtime: &'a Runtime,
    /// A busybox (the holder image).
    image: &'a str,
    engine: &'a str,
    label: Option<SelinuxLabel>,
}

impl Helper<'_> {
    /// Run `argv` in a one-off container with `volume` at `/cache`, as root
    /// with only the capabilities a `chown` needs; its exit code and output.
    async fn run(
        &self,
        volume: &str,
        argv: &[String],
    ) -> Result<(i64, String), super::RunnerError> {
        let (runtime, image, engine, label) = (self.runtime, self.image, self.engine, self.label);
        use futures_util::StreamExt;
        let spec = ContainerSpec {
            name: format!("{volume}-helper-{}", fastrand::u32(..)),
            image: image.to_owned(),
            cmd: Some(argv.to_vec()),
            entrypoint: Some(vec![]),
            env: vec![],
            workdir: None,
            user: Some("0:0".into()),
            binds: vec![bind(volume, "/cache", false, label)],
            labels: HashMap::from([
                (LABEL_MANAGED.to_owned(), "true".to_owned()),
                (LABEL_ENGINE.to_owned(), engine.to_owned()),
                (LABEL_ROLE.to_owned(), Role::Cache.label().to_owned()),
            ]),
            limits: ContainerLimits {
                memory_mb: Some(32),
                pids: Some(16),
                cpus: None,
            },
            network: "none".into(),
            // Keeps CHOWN and DAC_OVERRIDE, drops everything else.
            hardening: Hardening::Service,
            output_kept_mb: None,
            gpus: None,
            reach: Default::default(),
        };
        let id = container::create_and_start(runtime, &spec).await?;
        let code = container::wait_exit(runtime, &id).await.unwrap_or(-1);
        let mut output = String::new();
        let mut logs = runtime.logs(&id, LogsOptions::default());
        while let Some(Ok(chunk)) = logs.next().await {
            output.push_str(&String::from_utf8_lossy(&chunk.bytes));
        }
        container::remove(runtime, &id).await;
        Ok((code, output))
    }
}

/// Remove the volumes among `used` that are larger than `budget_bytes`
/// (measured with `du` in a one-off container); returns their names. A
/// volume another job is using stays, for a later pass.
pub async fn prune(
    runtime: &Runtime,
    used: &[CacheVolume],
    budget_bytes: u64,
    image: &str,
    engine: &str,
    label: Option<SelinuxLabel>,
) -> Vec<String> {
    let mut removed = Vec::new();
    for v in used {
        // Measuring costs a container: a volume found within its budget is
        // measured again only after a while.
        {
            let mut measured = MEASURED.lock().unwrap_or_else(|p| p.into_inner());
            let measured = measured.get_or_insert_with(HashMap::new);
            if measured
                .get(&v.name)
                .is_some_and(|at| at.elapsed() < REMEASURE_AFTER)
            {
                continue;
            }
            measured.insert(v.name.clone(), std::time::Instant::now());
        }
        let argv = ["du".to_owned(), "-sk".to_owned(), "/cache".to_owned()];
        let helper = Helper {
            runtime,
            image,
            engine,
            label,
        };
        let Ok((0, out)) = helper.run(&v.name, &argv).await else {
            continue;
        };
        let Some(kib) = out
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if kib * 1024 <= budget_bytes {
            continue;
        }
        if runtime.remove_volume(&v.name).await.is_ok() {
            MEASURED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(HashMap::new)
                .remove(&v.name);
            tracing::info!(volume = %v.name, kib, budget_bytes, "cache volume past its budget: removed");
            removed.push(v.name.clone());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_valid_volume_names() {
        assert_eq!(
            super::volume_name("pip", "acme/Web App"),
            "slipway-cache-pip-acme-web-app"
        );
    }
}

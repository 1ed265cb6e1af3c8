//! GPU requests: what the host offers, and what a job that asks for GPUs
//! gets. The daemon offers GPUs when it has the NVIDIA runtime (the NVIDIA
//! Container Toolkit registers it) or a CDI spec directory with an NVIDIA
//! spec; a job's container then gets a device request, as `docker run
//! --gpus` makes one. Without them, `required` fails the job before
//! anything starts and `preferred` runs it on the CPU with `SLIPWAY_GPU=0`.

use crate::job::{GpuPolicy, Gpus};
use crate::runtime::{HostFacts, Runtime, RuntimeError};

/// What the daemon says about GPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuOffer {
    /// The runtime that hands devices to containers (`nvidia`), if any.
    pub runtime: Option<String>,
    /// Container runtimes the daemon has, for the reason when none fits.
    pub runtimes: Vec<String>,
}

impl GpuOffer {
    /// Jobs can get GPUs here: the daemon has a runtime named like `nvidia`.
    pub fn available(&self) -> bool {
        self.runtime.is_some()
    }

    /// Why there is no GPU, in terms of what to install.
    pub fn missing(&self) -> String {
        format!(
            "the container engine offers no GPU (its runtimes: {}; no `nvidia` runtime): install the NVIDIA driver and the NVIDIA Container Toolkit on the host and run `nvidia-ctk runtime configure`",
            if self.runtimes.is_empty() {
                "none reported".to_owned()
            } else {
                self.runtimes.join(", ")
            }
        )
    }
}

/// Ask the runtime what it offers.
pub async fn offer(runtime: &Runtime) -> Result<GpuOffer, RuntimeError> {
    Ok(GpuOffer::of(&runtime.host_facts().await?))
}

impl GpuOffer {
    /// The offer in the host's facts: a runtime named like `nvidia`.
    pub fn of(facts: &HostFacts) -> GpuOffer {
        let runtime = facts
            .runtimes
            .iter()
            .chain(std::iter::once(&facts.default_runtime))
            .find(|r| r.contains("nvidia"))
            .cloned();
        GpuOffer {
            runtime,
            runtimes: facts.runtimes.clone(),
        }
    }
}

/// What a job gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuDecision {
    /// It asked for none.
    None,
    /// A device request for this many GPUs (`-1`: all of them).
    Devices(i64),
    /// It preferred GPUs; the host has none: the CPU, and why.
    Fallback(String),
    /// It required GPUs; the host has none: the job fails, and why.
    Refused(String),
}

impl GpuDecision {
    /// `SLIPWAY_GPU` for the container: `1` with GPUs, `0` on the fallback.
    pub fn env(&self) -> Option<(String, String)> {
        match self {
            GpuDecision::Devices(_) => Some(("SLIPWAY_GPU".into(), "1".into())),
            GpuDecision::Fallback(_) => Some(("SLIPWAY_GPU".into(), "0".into())),
            GpuDecision::None | GpuDecision::Refused(_) => None,
        }
    }

    /// The device count a container gets, if any.
    pub fn devices(&self) -> Option<i64> {
        match self {
            GpuDecision::Devices(n) => Some(*n),
            _ => None,
        }
    }
}

/// Decide from the request and the offer.
pub fn decide(gpus: Option<Gpus>, policy: Option<GpuPolicy>, offer: &GpuOffer) -> GpuDecision {
    let Some(gpus) = gpus else {
        return GpuDecision::None;
    };
    let asked = match gpus {
        Gpus::Count(n) => format!("{n} GPU(s)"),
        Gpus::Every(_) => "every GPU".to_owned(),
    };
    if offer.available() {
        return GpuDecision::Devices(match gpus {
            Gpus::Count(n) => i64::from(n),
            Gpus::Every(_) => -1,
        });
    }
    match policy.unwrap_or_default() {
        GpuPolicy::Required => GpuDecision::Refused(format!(
            "the job requires {asked} (gpu = \"required\"), and {}; or set gpu = \"preferred\" to run it on the CPU",
            offer.missing()
        )),
        GpuPolicy::Preferred => GpuDecision::Fallback(format!(
            "fallback to cpu: {asked} preferred, but {}",
            offer.missing()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::AllGpus;

    fn none() -> GpuOffer {
        GpuOffer {
            runtime: None,
            runtimes: vec!["io.containerd.runc.v2".into(), "runc".into()],
        }
    }

    fn nvidia() -> GpuOffer {
        GpuOffer {
            runtime: Some("nvidia".into()),
            runtimes: vec!["nvidia".into(), "runc".into()],
        }
    }

    #[test]
    fn a_host_with_the_runtime_gives_devices() {
        assert_eq!(
            decide(Some(Gpus::Count(2)), None, &nvidia()),
            GpuDecision::Devices(2)
        );
        let all = decide(
            Some(Gpus::Every(AllGpus::All)),
            Some(GpuPolicy::Preferred),
            &nvidia(),
        );
        assert_eq!(all, GpuDecision::Devices(-1));
        assert_eq!(all.env(), Some(("SLIPWAY_GPU".into(), "1".into())));
        assert_eq!(decide(None, None, &nvidia()), GpuDecision::None);
    }

    #[test]
    fn without_one_required_is_refused_and_preferred_falls_back() {
        let GpuDecision::Refused(why) = decide(Some(Gpus::Count(1)), None, &none()) else {
            panic!("required is the default");
        };
        assert!(why.contains("requires 1 GPU(s)"), "{why}");
        assert!(
            why.contains("runtimes: io.containerd.runc.v2, runc"),
            "{why}"
        );
        assert!(why.contains("NVIDIA Container Toolkit"), "{why}");
        let fallback = decide(Some(Gpus::Count(1)), Some(GpuPolicy::Preferred), &none());
        let GpuDecision::Fallback(why) = &fallback else {
            panic!("{fallback:?}");
        };
        assert!(
            why.starts_with("fallback to cpu: 1 GPU(s) preferred"),
            "{why}"
        );
        assert_eq!(fallback.env(), Some(("SLIPWAY_GPU".into(), "0".into())));
        assert_eq!(fallback.devices(), None);
    }
}

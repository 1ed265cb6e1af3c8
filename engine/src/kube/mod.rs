//! Kubernetes, as manifests: a job said as one Pod (docs/kubernetes.md).
//! No cluster logic lives here: nothing talks to an API server; the
//! output is YAML that `kubectl apply` or `podman kube play` runs.
//!
//! - [`objects`]: the `core/v1` subset a Pod uses, as typed serde structs.
//! - [`readiness`]: a readiness plugin's probe as a Kubernetes probe, and
//!   as the wait a workload runs when its services are plain containers.
//! - [`manifest`]: [`JobPod`](manifest::JobPod) (what the job's Docker pod
//!   is made of) into a [`Pod`](objects::Pod): the checkout init container,
//!   services as sidecars, the hardened workload, and the YAML.
//! - [`source`]: the local repository at its commit, and its files there.
//! - [`job`]: the [`JobPod`](manifest::JobPod) of a repository, from its
//!   plan, profile, image tag and services' probes (`slipway pod-manifest`).

pub mod job;
pub mod manifest;
pub mod objects;
pub mod readiness;
pub mod source;

//! A [`ContainerSpec`] as Docker's create request. The hardening itself
//! is decided in `runtime::spec`; this is only how Docker spells it.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceRequest, EndpointSettings, HostConfig, HostConfigLogConfig,
    NetworkingConfig, PortBinding,
};

use crate::runtime::spec::{
    ContainerSpec, DEFAULT_PIDS, Hardening, IDLE, SERVICE_CAPABILITIES, TMP_OPTIONS,
};

/// The host side of the request: hardening, limits, mounts, logging.
pub fn host_config(spec: &ContainerSpec) -> HostConfig {
    let memory = spec.limits.memory_mb.map(|mb| (mb * 1024 * 1024) as i64);
    let full = spec.hardening == Hardening::Full;
    HostConfig {
        binds: Some(spec.binds.clone()),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: (!full).then(|| SERVICE_CAPABILITIES.map(str::to_owned).to_vec()),
        security_opt: Some(vec!["no-new-privileges".into()]),
        readonly_rootfs: Some(full),
        init: Some(true),
        tmpfs: full.then(|| HashMap::from([("/tmp".to_owned(), TMP_OPTIONS.to_owned())])),
        network_mode: Some(spec.network.clone()),
        memory,
        // No swap beyond the memory limit.
        memory_swap: memory,
        pids_limit: Some(spec.limits.pids.map(|p| p as i64).unwrap_or(DEFAULT_PIDS)),
        nano_cpus: spec.limits.cpus.map(|c| (c * 1e9) as i64),
        device_requests: spec.gpus.map(|count| {
            vec![DeviceRequest {
                count: Some(count),
                capabilities: Some(vec![vec!["gpu".to_owned()]]),
                ..Default::default()
            }]
        }),
        port_bindings: (!spec.reach.publish.is_empty()).then(|| {
            let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
            for p in &spec.reach.publish {
                bindings
                    .entry(port_key(p.container_port, &p.protocol))
                    .or_default()
                    .get_or_insert_with(Vec::new)
                    .push(PortBinding {
                        host_ip: p.host_ip.clone(),
                        host_port: p.host_port.map(|port| port.to_string()),
                    });
            }
            bindings
        }),
        log_config: spec.output_kept_mb.map(|mb| HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_owned(), format!("{}m", mb.div_ceil(2).max(1))),
                ("max-file".to_owned(), "2".to_owned()),
            ])),
        }),
        ..Default::default()
    }
}

/// `80/tcp`, as Docker names a container port.
fn port_key(port: u16, protocol: &str) -> String {
    format!("{port}/{protocol}")
}

/// The whole create request.
pub fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    // Only the idle loop reads stdin: everything else gets EOF there.
    let idles = spec
        .cmd
        .as_ref()
        .is_some_and(|c| c.iter().map(String::as_str).eq(IDLE));
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.cmd.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: spec.workdir.clone(),
        user: spec.user.clone(),
        labels: Some({
            let mut labels = spec.labels.clone();
            if let Some(node) = crate::runtime::node() {
                labels.insert(crate::runtime::LABEL_NODE.to_owned(), node.to_owned());
            }
            labels
        }),
        open_stdin: Some(idles),
        // No network: runc's own fresh namespace (loopback only, up)
        // instead of an empty libnetwork sandbox; ~70 ms less per start.
        network_disabled: Some(spec.network == "none"),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        exposed_ports: (!spec.reach.publish.is_empty()).then(|| {
            spec.reach
                .publish
                .iter()
                .map(|p| port_key(p.container_port, &p.protocol))
                .collect()
        }),
        // Names on a user-defined network (the daemon's DNS answers them).
        networking_config: (!spec.reach.aliases.is_empty()).then(|| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                spec.network.clone(),
                EndpointSettings {
                    aliases: Some(spec.reach.aliases.clone()),
                    ..Default::default()
                },
            )])),
        }),
        host_config: Some(host_config(spec)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::spec::ContainerLimits;

    fn spec(hardening: Hardening) -> ContainerSpec {
        ContainerSpec {
            name: "n".into(),
            image: "i".into(),
            cmd: None,
            entrypoint: None,
            env: vec![],
            workdir: None,
            user: Some("1000:1000".into()),
            binds: vec![],
            labels: HashMap::new(),
            limits: ContainerLimits {
                memory_mb: Some(64),
                ..Default::default()
            },
            network: "none".into(),
            hardening,
            output_kept_mb: None,
            gpus: None,
            reach: Default::default(),
        }
    }

    #[test]
    fn workloads_are_fully_hardened() {
        let hc = host_config(&spec(Hardening::Full));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(hc.cap_add, None);
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(
            (hc.memory, hc.memory_swap),
            (Some(64 << 20), Some(64 << 20))
        );
        assert_eq!(hc.pids_limit, Some(DEFAULT_PIDS));
    }

    #[test]
    fn services_keep_only_what_dropping_to_their_user_needs() {
        let hc = host_config(&spec(Hardening::Service));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(hc.cap_add.as_ref().map(Vec::len), Some(5));
        assert_eq!(hc.security_opt, Some(vec!["no-new-privileges".to_owned()]));
        assert_eq!(hc.readonly_rootfs, Some(false));
    }
}

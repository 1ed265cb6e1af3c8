//! `slipway doctor` as users run it, against this machine's Docker.

use std::process::Command;

use serde_json::Value;

/// Doctor with its registry probe kept on loopback (tests send nothing
/// past this machine): port 1 is closed, so that registry is unreachable.
fn doctor(state: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, Vec<Value>) {
    doctor_with(state, env, &["127.0.0.1:1"])
}

fn doctor_with(
    state: &std::path::Path,
    env: &[(&str, &str)],
    registries: &[&str],
) -> (Option<i32>, Vec<Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["doctor", "--json"])
        .args(registries.iter().flat_map(|r| ["--registry", r]))
        .env("SLIPWAY_STATE_DIR", state)
        .env_remove("SLIPWAY_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let checks: Vec<Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), checks)
}

fn find<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {checks:?}"))
}

#[test]
fn a_healthy_host_passes_and_each_problem_comes_with_its_fix() {
    let state = tempfile::tempdir().unwrap();
    let (code, checks) = doctor(state.path(), &[]);
    assert_eq!(code, Some(0), "{checks:#?}");
    for name in [
        "container engine",
        "resource limits",
        "holder image",
        "state directory",
        "plugins",
    ] {
        assert_eq!(find(&checks, name)["status"], "ok", "{name}: {checks:#?}");
    }
    assert!(
        find(&checks, "container engine")["detail"]
            .as_str()
            .unwrap()
            .contains("API 1.")
    );

    // A state directory that cannot be one, and a holder image that is not there.
    let file = state.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let (code, checks) = doctor(
        &file,
        &[(
            "SLIPWAY_RUNNER__HOLDER_IMAGE",
            "slipway-test/no-such-holder:1",
        )],
    );
    assert_eq!(code, Some(1), "{checks:#?}");
    let holder = find(&checks, "holder image");
    assert_eq!(holder["status"], "fail");
    assert!(
        holder["fix"]
            .as_str()
            .unwrap()
            .contains("scripts/images.sh"),
        "{holder}"
    );
    let dir = find(&checks, "state directory");
    assert_eq!(dir["status"], "fail");
    assert!(
        dir["fix"].as_str().unwrap().contains("SLIPWAY_STATE_DIR"),
        "{dir}"
    );
}

/// A TLS-inspecting proxy, as a client sees one: a server on loopback whose
/// certificate is signed by a CA no public root program has (openssl
/// s_server with a CA and leaf made for the test).
struct InspectingProxy {
    dir: tempfile::TempDir,
    port: u16,
    server: std::process::Child,
}

impl InspectingProxy {
    fn start() -> InspectingProxy {
        let dir = tempfile::tempdir().unwrap();
        let sh = |script: &str| {
            let out = Command::new("sh")
                .arg("-c")
                .arg(script)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh(
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=test-inspecting-proxy-ca 2>/dev/null \
            && openssl req -newkey rsa:2048 -nodes -keyout leaf.key -out leaf.csr -subj /CN=127.0.0.1 2>/dev/null \
            && printf 'subjectAltName=IP:127.0.0.1\\n' > ext \
            && openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext -out leaf.pem 2>/dev/null",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-cert", "leaf.pem", "-key", "leaf.key"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl (Debian's openssl, which ca-certificates brings)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        InspectingProxy { dir, port, server }
    }
}

impl Drop for InspectingProxy {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[test]
fn intercepted_tls_is_a_warning_until_ca_bundle_holds_the_proxy_ca() {
    let proxy = InspectingProxy::start();
    let state = tempfile::tempdir().unwrap();
    let target = format!("127.0.0.1:{}", proxy.port);
    let (code, checks) = doctor_with(state.path(), &[], &[&target]);
    assert_eq!(code, Some(0), "a warning is not a failure: {checks:#?}");
    let tls = find(&checks, "outbound tls");
    assert_eq!(tls["status"], "warn", "{tls}");
    assert!(
        tls["detail"]
            .as_str()
            .unwrap()
            .contains("TLS is intercepted"),
        "{tls}"
    );
    assert!(tls["detail"].as_str().unwrap().contains(&target), "{tls}");
    assert!(
        tls["fix"].as_str().unwrap().contains("SLIPWAY_CA_BUNDLE"),
        "{tls}"
    );

    // With the proxy's CA in the bundle: trusted, and said so.
    let bundle = proxy.dir.path().join("ca.pem");
    let (code, checks) = doctor_with(
        state.path(),
        &[("SLIPWAY_CA_BUNDLE", bundle.to_str().unwrap())],
        &[&target],
    );
    assert_eq!(code, Some(0), "{checks:#?}");
    let tls = find(&checks, "outbound tls");
    assert_eq!(tls["status"], "ok", "{tls}");
    assert!(
        tls["detail"]
            .as_str()
            .unwrap()
            .contains("trusted through ca_bundle"),
        "{tls}"
    );

    // A bundle of another CA does not cover it.
    let other = proxy.dir.path().join("other.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other",
            "-keyout",
        ])
        .arg(proxy.dir.path().join("other.key"))
        .arg("-out")
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    let (_, checks) = doctor_with(
        state.path(),
        &[("SLIPWAY_CA_BUNDLE", other.to_str().unwrap())],
        &[&target],
    );
    let tls = find(&checks, "outbound tls");
    assert_eq!(tls["status"], "warn", "{tls}");
    assert!(tls["fix"].as_str().unwrap().contains("other.pem"), "{tls}");

    // A closed port is not interception.
    let (_, checks) = doctor(state.path(), &[]);
    let tls = find(&checks, "outbound tls");
    assert_eq!(tls["status"], "info", "{tls}");
    assert!(
        tls["detail"].as_str().unwrap().contains("not reachable"),
        "{tls}"
    );
}

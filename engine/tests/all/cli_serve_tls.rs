//! `slipway serve` terminating TLS itself: real certificates from two test
//! CAs, a real engine on loopback, clients that verify the chain and name.
//! Needs Docker (the engine starts its runner); fails loudly without it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};

use crate::support::serve::{self, Server, TOKEN};

/// A test certificate authority (also the store's, in `store_tls.rs`).
pub(crate) struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// A server certificate for `localhost` and 127.0.0.1: the chain
    /// (server certificate, then this CA's) and the key, as PEM.
    pub(crate) fn issue(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        (
            format!("{}{}", cert.pem(), self.0.pem()),
            key.serialize_pem(),
        )
    }

    /// This authority's certificate, as PEM.
    pub(crate) fn pem(&self) -> String {
        self.0.pem()
    }

    pub(crate) fn root(&self) -> CertificateDer<'static> {
        self.0.der().clone()
    }
}

/// Where the engine's certificate and key live, replaced as cert-manager
/// replaces them: written next to them, then renamed over them.
struct CertDir {
    dir: tempfile::TempDir,
}

impl CertDir {
    fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    fn replace(&self, file: &Path, contents: &str) {
        let staged = self.dir.path().join(".staged");
        std::fs::write(&staged, contents).unwrap();
        std::fs::rename(&staged, file).unwrap();
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SLIPWAY_TLS__CERT", self.cert().display().to_string()),
            ("SLIPWAY_TLS__KEY", self.key().display().to_string()),
        ]
    }
}

fn cert_dir(cert: &str, key: &str) -> CertDir {
    let dir = CertDir {
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::write(dir.cert(), cert).unwrap();
    std::fs::write(dir.key(), key).unwrap();
    dir
}

fn port(server: &Server) -> u16 {
    server.url.rsplit(':').next().unwrap().parse().unwrap()
}

/// `GET path` over HTTPS to `localhost` at `port`, trusting only `root`
/// (chain and name verified); status and body, or why there is none.
pub(crate) fn https_get(
    port: u16,
    root: &CertificateDer<'static>,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let (status, _, body) = https_request(
        port,
        root,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n{auth}Connection: close\r\n\r\n"
        ),
    )?;
    Ok((status, body))
}

/// Send `request` (all of it) over HTTPS to `localhost` at `port`, trusting
/// only `root`; status, head and body of the answer.
fn https_request(
    port: u16,
    root: &CertificateDer<'static>,
    request: &str,
) -> Result<(u16, String, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut stream = rustls::StreamOwned::new(tls, tcp);
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    if let Err(e) = stream.read_to_end(&mut answer) {
        // A peer that closes without close_notify still answered.
        if e.kind() != std::io::ErrorKind::UnexpectedEof || answer.is_empty() {
            return Err(e.to_string());
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {head}"))?;
    Ok((status, head.to_owned(), body.to_owned()))
}

fn healthcheck(server: &Server, certs: &CertDir, url: &str, ready: bool) -> std::process::Output {
    let mut cmd = serve::slipway(server.state(), url);
    cmd.arg("healthcheck");
    if ready {
        cmd.arg("--ready");
    }
    cmd.envs(certs.env()).output().unwrap()
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn serve_speaks_only_https_and_swaps_in_a_renewed_certificate_without_a_restart() {
    let (ca1, ca2) = (Ca::new("Slipway test CA 1"), Ca::new("Slipway test CA 2"));
    let (root1, root2) = (ca1.root(), ca2.root());
    let (cert1, key1) = ca1.issue();
    let certs = cert_dir(&cert1, &key1);
    let env = certs.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = serve::start_until(tempfile::tempdir().unwrap(), &env, "https", |s| {
        https_get(port(s), &root1, "/healthz", None).is_ok_and(|(status, _)| status == 200)
    });
    let port = port(&server);
    assert!(
        server
            .log()
            .contains(&format!("listening on https://127.0.0.1:{port}")),
        "{}",
        server.log()
    );

    // The API over TLS: the token authenticates, its absence does not.
    let (status, body) = https_get(port, &root1, "/api/v1/jobs", Some(TOKEN)).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        serde_json::from_str::<serde_json::Value>(&body).is_ok(),
        "{body}"
    );
    let (status, _) = https_get(port, &root1, "/api/v1/jobs", None).unwrap();
    assert_eq!(status, 401);
    // The dashboard's session cookie is `Secure` over TLS.
    let form = format!("token={TOKEN}");
    let (status, head, _) = https_request(
        port,
        &root1,
        &format!(
            "POST /ui/login HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    )
    .unwrap();
    assert_eq!(status, 303, "{head}");
    let cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_default();
    assert!(
        cookie.contains("slipway_session=")
            && cookie.contains("; Secure")
            && cookie.contains("HttpOnly"),
        "{head}"
    );
    // A client that trusts another CA gets no session.
    assert!(https_get(port, &root2, "/healthz", None).is_err());

    // Plain HTTP on the same port gets no HTTP answer.
    let plain: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let answer = plain.get(format!("http://127.0.0.1:{port}/healthz")).call();
    assert!(answer.is_err(), "plain HTTP was answered: {answer:?}");

    // The container healthcheck, with the image's http:// SLIPWAY_URL.
    let local = format!("http://127.0.0.1:{port}");
    for ready in [false, true] {
        let out = healthcheck(&server, &certs, &local, ready);
        assert!(out.status.success(), "{}", serve::text(&out));
    }

    // Renewed by another CA, renamed into place: within the poll period
    // (5 s) and a margin, new connections get the new certificate.
    let (cert2, key2) = ca2.issue();
    certs.replace(&certs.key(), &key2);
    certs.replace(&certs.cert(), &cert2);
    wait_for(
        "the renewed certificate is served",
        Duration::from_secs(15),
        || https_get(port, &root2, "/healthz", None).is_ok_and(|(status, _)| status == 200),
    );
    let old = https_get(port, &root1, "/healthz", None);
    assert!(old.is_err(), "a client trusting only CA 1 got {old:?}");
    let (status, _) = https_get(port, &root2, "/api/v1/jobs", Some(TOKEN)).unwrap();
    assert_eq!(status, 200);
    let out = healthcheck(&server, &certs, &local, false);
    assert!(out.status.success(), "{}", serve::text(&out));

    // A key that does not parse: logged, and the CA 2 pair kept.
    certs.replace(&certs.key(), "-----BEGIN PRIVATE KEY-----\nnot a key\n");
    wait_for("the bad key is reported", Duration::from_secs(20), || {
        server.log().contains("TLS certificate not reloaded")
    });
    let log = server.log();
    assert!(
        log.contains("tls.key holds no PEM private key") && log.contains("previous certificate"),
        "{log}"
    );
    let (status, _) = https_get(port, &root2, "/healthz", None).unwrap();
    assert_eq!(status, 200);
}

#[test]
fn serve_refuses_to_start_with_a_broken_certificate_pair() {
    let ca = Ca::new("Slipway test CA");
    let (cert, _) = ca.issue();
    let (_, other_key) = ca.issue();
    let certs = cert_dir(&cert, &other_key);
    let state = tempfile::tempdir().unwrap();
    let refusal = |env: &[(&str, String)]| {
        let mut child = serve::slipway(state.path(), "https://127.0.0.1:1")
            .arg("serve")
            .env("SLIPWAY_LISTEN", "127.0.0.1:0")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("serve started with a broken certificate pair");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let said = refusal(&certs.env());
    assert!(
        said.contains("does not belong to the certificate in") && said.contains("tls.key"),
        "{said}"
    );
    let said = refusal(&certs.env()[..1]);
    assert!(
        said.contains("`tls.key`: not set, but `tls.cert` is"),
        "{said}"
    );
}

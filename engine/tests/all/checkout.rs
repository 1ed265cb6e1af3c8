//! Checkouts from real git repositories and plain directories.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use slipway::checkout::{CheckoutError, Checkouts};

use crate::support::git;

fn commit(dir: &Path, file: &str, text: &str) -> String {
    std::fs::write(dir.join(file), text).unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", text]);
    git(dir, &["rev-parse", "HEAD"])
}

/// A bare repository holding one commit of `app.txt` (`text`) on `main`.
fn bare_repo(text: &str) -> (tempfile::TempDir, String) {
    let work = tempfile::tempdir().unwrap();
    git(work.path(), &["init", "-q"]);
    let sha = commit(work.path(), "app.txt", text);
    let bare = tempfile::tempdir().unwrap();
    git(bare.path(), &["init", "-q", "--bare"]);
    git(
        work.path(),
        &["push", "-q", bare.path().to_str().unwrap(), "main"],
    );
    (bare, sha)
}

/// The git configuration of every mirror under the state directory.
fn mirror_configs(state: &Path) -> Vec<String> {
    std::fs::read_dir(state.join("mirrors"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path().join("config")).unwrap())
        .collect()
}

#[test]
fn exact_commits_refs_and_new_commits_through_the_mirror() {
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q"]);
    let first = commit(repo.path(), "app.txt", "one");
    let second = commit(repo.path(), "app.txt", "two");
    let state = tempfile::tempdir().unwrap();
    let checkouts = Checkouts::new(state.path(), Duration::from_secs(60));
    let source = repo.path().to_str().unwrap();

    let old = checkouts.prepare(source, &first, "job-1").unwrap();
    assert_eq!(old.sha.as_deref(), Some(first.as_str()));
    assert_eq!(
        std::fs::read_to_string(old.path.join("app.txt")).unwrap(),
        "one"
    );
    assert_eq!(git(&old.path, &["rev-parse", "HEAD"]), first);

    let by_ref = checkouts.prepare(source, "main", "job-2").unwrap();
    assert_eq!(
        by_ref.sha.as_deref(),
        Some(second.as_str()),
        "a ref is resolved to its SHA"
    );

    let third = commit(repo.path(), "app.txt", "three");
    let fresh = checkouts
        .prepare(&format!("file://{source}"), &third, "job-3")
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(fresh.path.join("app.txt")).unwrap(),
        "three"
    );
    let again = checkouts.prepare(source, &third, "job-4").unwrap();
    assert_eq!(
        again.sha.as_deref(),
        Some(third.as_str()),
        "the cached mirror is fetched, not stale"
    );
    assert_eq!(
        std::fs::read_dir(state.path().join("mirrors"))
            .unwrap()
            .count(),
        2,
        "one mirror per source URL"
    );

    checkouts.remove("job-1").unwrap();
    assert!(!old.path.exists());
}

#[test]
fn unknown_commits_and_bad_sources_are_clear_errors() {
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q"]);
    commit(repo.path(), "a", "a");
    let state = tempfile::tempdir().unwrap();
    let checkouts = Checkouts::new(state.path(), Duration::from_secs(60));
    let source = repo.path().to_str().unwrap();
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let e = checkouts.prepare(source, missing, "j").unwrap_err();
    assert!(matches!(e, CheckoutError::UnknownCommit { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("commit `{missing}` is not in")),
        "{e}"
    );
    assert!(matches!(
        checkouts
            .prepare(source, "--upload-pack=x", "j")
            .unwrap_err(),
        CheckoutError::UnknownCommit { .. }
    ));
    let e = checkouts
        .prepare("/nonexistent/repo.git", "main", "j")
        .unwrap_err();
    assert!(e.to_string().contains("git clone"), "{e}");
}

#[test]
fn plain_directories_are_snapshotted_and_symlinks_not_followed() {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("sub/file.txt"), "before").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.path().join("escape")).unwrap();
    let state = tempfile::tempdir().unwrap();
    let checkouts = Checkouts::new(state.path(), Duration::from_secs(60));
    let snap = checkouts
        .prepare(src.path().to_str().unwrap(), "HEAD", "job")
        .unwrap();
    assert_eq!(snap.sha, None);
    std::fs::write(src.path().join("sub/file.txt"), "after").unwrap();
    assert_eq!(
        std::fs::read_to_string(snap.path.join("sub/file.txt")).unwrap(),
        "before",
        "the job has its own copy"
    );
    let link = snap.path.join("escape");
    assert!(
        link.symlink_metadata().unwrap().file_type().is_symlink(),
        "copied as a link, not the target's content"
    );
}

#[test]
fn checkouts_past_the_size_limit_are_refused_and_removed() {
    // 3 MiB of noise: git cannot compress it below the 1 MiB limit.
    let noise: Vec<u8> = (0..3 << 20).map(|_| fastrand::u8(..)).collect();
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q"]);
    std::fs::write(repo.path().join("blob.bin"), &noise).unwrap();
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-q", "-m", "big"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blob.bin"), &noise).unwrap();

    let state = tempfile::tempdir().unwrap();
    let small = Checkouts::new(state.path(), Duration::from_secs(60)).with_max_mb(1);
    for source in [repo.path(), dir.path()] {
        let err = small
            .prepare(source.to_str().unwrap(), "HEAD", "job")
            .unwrap_err();
        assert!(
            matches!(err, CheckoutError::TooLarge { limit_mb: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("runner.checkout_max_mb"), "{err}");
        assert!(
            !state.path().join("checkouts/job").exists(),
            "a refused checkout is removed"
        );
    }
    let roomy = Checkouts::new(state.path(), Duration::from_secs(60)).with_max_mb(16);
    for source in [repo.path(), dir.path()] {
        let ok = roomy
            .prepare(source.to_str().unwrap(), "HEAD", "job")
            .unwrap();
        assert_eq!(std::fs::read(ok.path.join("blob.bin")).unwrap(), noise);
    }
}

/// A git repository served over HTTP on loopback (git's "dumb" protocol:
/// plain files) behind Basic authentication; counts the requests that
/// carried the expected `Authorization` header.
struct PrivateRepoServer {
    url: String,
    authorized: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

fn serve_private_repo(bare: &Path, expected: String) -> PrivateRepoServer {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/app.git", listener.local_addr().unwrap());
    let authorized = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (root, seen) = (bare.to_path_buf(), authorized.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut auth_ok = false;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                    break;
                }
                if header.trim() == format!("Authorization: {expected}") {
                    auth_ok = true;
                }
            }
            let path = request.split(' ').nth(1).unwrap_or("/").to_owned();
            let path = path.split('?').next().unwrap();
            let reply = if !auth_ok {
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".as_bytes().to_vec()
            } else {
                seen.fetch_add(1, Ordering::Relaxed);
                match path
                    .strip_prefix("/app.git/")
                    .filter(|p| !p.contains(".."))
                    .and_then(|p| std::fs::read(root.join(p)).ok())
                {
                    Some(body) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend(body);
                        r
                    }
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .as_bytes()
                            .to_vec()
                    }
                }
            };
            let _ = stream.write_all(&reply);
        }
    });
    PrivateRepoServer { url, authorized }
}

/// The outbound policy of a test that serves repositories on loopback:
/// 127.0.0.1 allowed by name, as an operator would allow an internal host.
fn loopback_allowed() -> std::sync::Arc<slipway::outbound::OutboundPolicy> {
    std::sync::Arc::new(slipway::outbound::OutboundPolicy {
        allow_hosts: vec!["127.0.0.1".into()],
        ..Default::default()
    })
}

#[test]
fn private_repositories_are_reached_with_the_configured_credential_only() {
    use base64::Engine as _;
    use slipway::git_auth::GitCredentials;
    let (bare, sha) = bare_repo("private");
    git(bare.path(), &["update-server-info"]);
    let basic = base64::engine::general_purpose::STANDARD.encode("ci-bot:s3cret-token");
    let server = serve_private_repo(bare.path(), format!("Basic {basic}"));
    let host = server.url.split('/').nth(2).unwrap().to_owned();

    // The credential file holds `user:token`; the configuration names it.
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "ci-bot:s3cret-token\n").unwrap();
    let credentials =
        GitCredentials::new([(host.clone(), format!("file:{}", secret.path().display()))].into())
            .unwrap()
            .with_outbound(loopback_allowed());

    // Without it: refused at once (no prompt), and nothing is left.
    let state = tempfile::tempdir().unwrap();
    let without = Checkouts::new(state.path(), Duration::from_secs(30))
        .with_credentials(GitCredentials::default().with_outbound(loopback_allowed()));
    let err = without.prepare(&server.url, &sha, "job-1").unwrap_err();
    assert!(
        matches!(err, CheckoutError::Git { .. }) && err.to_string().contains("git_credentials"),
        "the error says what to configure: {err}"
    );
    assert!(!state.path().join("checkouts/job-1").exists());

    // With it: the ref resolves at submit and the commit checks out.
    let resolved =
        slipway::checkout::resolve_ref(&server.url, "main", Duration::from_secs(30), &credentials)
            .unwrap();
    assert_eq!(resolved, sha);
    let with = Checkouts::new(state.path(), Duration::from_secs(30)).with_credentials(credentials);
    let checkout = with.prepare(&server.url, &sha, "job-2").unwrap();
    assert_eq!(git(&checkout.path, &["rev-parse", "HEAD"]), sha);
    assert_eq!(
        std::fs::read_to_string(checkout.path.join("app.txt")).unwrap(),
        "private"
    );
    assert!(server.authorized.load(std::sync::atomic::Ordering::Relaxed) > 0);
    // The credential is not written into the mirror's configuration.
    for config in mirror_configs(state.path()) {
        assert!(
            !config.contains("s3cret") && !config.contains(&basic),
            "{config}"
        );
    }
}

/// A git server over SSH on loopback: the system's `sshd` with a private
/// configuration, host key and authorized key, run by this test (never as
/// a system service). Needs openssh-server (scripts/setup.sh installs it);
/// without it the test fails, it does not skip.
struct SshServer {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) -> String {
    keygen_of(&["-t", "ed25519"], path)
}

/// A key of `kind` (`-t rsa -b 2048`...) at `path`: its public line.
fn keygen_of(kind: &[&str], path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", "slipway-test"])
        .args(kind)
        .arg("-f")
        .arg(path)
        .output()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(out.status.success(), "{out:?}");
    std::fs::read_to_string(path.with_extension("pub")).unwrap()
}

fn serve_ssh(authorized: &str) -> SshServer {
    let sshd = Path::new("/usr/sbin/sshd");
    assert!(
        sshd.exists(),
        "/usr/sbin/sshd is missing: apt-get install openssh-server (scripts/setup.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let host_key = dir.path().join("host_key");
    keygen(&host_key);
    std::fs::write(dir.path().join("authorized_keys"), authorized).unwrap();
    // sshd's privilege separation directory.
    std::fs::create_dir_all("/run/sshd").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n",
            host_key.display(),
            dir.path().join("authorized_keys").display(),
            dir.path().join("sshd.pid").display(),
        ),
    )
    .unwrap();
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stderr(std::fs::File::create(dir.path().join("sshd.log")).unwrap())
        .spawn()
        .unwrap();
    let server = SshServer { child, port, dir };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "sshd does not listen: {}",
            std::fs::read_to_string(server.dir.path().join("sshd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// A repository served over SSH on loopback, a deploy key the server
/// accepts, and the known hosts file that names the server's host key.
struct SshRepo {
    server: SshServer,
    /// Kept: the bare repository the server reads.
    _bare: tempfile::TempDir,
    sha: String,
    /// The deploy key, the known hosts file, and the other keys of a test.
    keys: tempfile::TempDir,
    deploy: std::path::PathBuf,
    known_hosts: std::path::PathBuf,
    url: String,
}

fn ssh_repo(text: &str) -> SshRepo {
    let (bare, sha) = bare_repo(text);
    let keys = tempfile::tempdir().unwrap();
    let deploy = keys.path().join("deploy");
    // RSA and ECDSA deploy keys are accepted too.
    let authorized = [
        keygen(&deploy),
        keygen_of(
            &["-t", "rsa", "-b", "2048"],
            &keys.path().join("deploy-rsa"),
        ),
        keygen_of(
            &["-t", "ecdsa", "-b", "384"],
            &keys.path().join("deploy-ecdsa"),
        ),
    ];
    let server = serve_ssh(&authorized.concat());
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        user.trim(),
        server.port,
        bare.path().display()
    );
    let host_public = std::fs::read_to_string(server.dir.path().join("host_key.pub")).unwrap();
    let key_type_and_body: Vec<&str> = host_public.split_whitespace().take(2).collect();
    let known_hosts = keys.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{} {}\n",
            server.port,
            key_type_and_body.join(" ")
        ),
    )
    .unwrap();
    SshRepo {
        server,
        _bare: bare,
        sha,
        keys,
        deploy,
        known_hosts,
        url,
    }
}

/// Credentials that map 127.0.0.1 to the key file `key`, with `known` as
/// the known hosts.
fn ssh_credentials(key: &Path, known: &Path) -> slipway::git_auth::GitCredentials {
    slipway::git_auth::GitCredentials::new(Default::default())
        .unwrap()
        .with_outbound(loopback_allowed())
        .with_ssh_keys(
            [("127.0.0.1".to_owned(), format!("file:{}", key.display()))].into(),
            Some(known.to_path_buf()),
        )
        .unwrap()
}

/// The SSH tests take turns: each looks for the agents (or key files) it
/// left in the temporary directory, and the watch of one must not see
/// the other's.
static SSH_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The engine's SSH agents (private directories under the temporary
/// directories), or key files of an older engine, there now. One left by
/// a process killed earlier is in the list before a test as after it.
fn agents_and_key_files() -> std::collections::BTreeSet<std::path::PathBuf> {
    [std::env::temp_dir(), "/tmp".into()]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten())
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("slipway-ssh-agent-") || name.starts_with("slipway-git-key-")
        })
        .map(|e| e.path())
        .collect()
}

/// Deploy keys: an SSH URL of a host mapped under `git_ssh_keys` is
/// reached with that key only, the server's host key checked against
/// `git_known_hosts`; the key's agent is gone after each call.
#[test]
fn ssh_repositories_are_reached_with_the_configured_deploy_key() {
    let _turn = SSH_TESTS.lock().unwrap_or_else(|p| p.into_inner());
    let before = agents_and_key_files();
    let repo = ssh_repo("over ssh");
    let (url, sha) = (&repo.url, &repo.sha);

    // With the deploy key: the ref resolves and the exact commit checks out.
    let credentials = ssh_credentials(&repo.deploy, &repo.known_hosts);
    let resolved =
        slipway::checkout::resolve_ref(url, "main", Duration::from_secs(30), &credentials).unwrap();
    assert_eq!(&resolved, sha);
    let state = tempfile::tempdir().unwrap();
    let checkouts =
        Checkouts::new(state.path(), Duration::from_secs(30)).with_credentials(credentials);
    let checkout = checkouts.prepare(url, sha, "job-1").unwrap();
    assert_eq!(&git(&checkout.path, &["rev-parse", "HEAD"]), sha);
    assert_eq!(
        std::fs::read_to_string(checkout.path.join("app.txt")).unwrap(),
        "over ssh"
    );
    for config in mirror_configs(state.path()) {
        assert!(
            !config.contains("sshCommand")
                && !config.contains("slipway-git-key")
                && !config.contains("slipway-ssh-agent"),
            "{config}"
        );
    }

    // RSA (signed with the SHA-2 hash ssh asks for) and ECDSA keys.
    for other in ["deploy-rsa", "deploy-ecdsa"] {
        let credentials = ssh_credentials(&repo.keys.path().join(other), &repo.known_hosts);
        let resolved =
            slipway::checkout::resolve_ref(url, "main", Duration::from_secs(30), &credentials)
                .unwrap_or_else(|e| panic!("{other}: {e}"));
        assert_eq!(&resolved, sha, "{other}");
    }

    // Another key: refused by the server.
    let stranger = repo.keys.path().join("stranger");
    keygen(&stranger);
    let err = slipway::checkout::resolve_ref(
        url,
        "main",
        Duration::from_secs(30),
        &ssh_credentials(&stranger, &repo.known_hosts),
    )
    .unwrap_err();
    assert!(err.to_string().contains("Permission denied"), "{err}");

    // A server whose host key is not the known one: refused by ssh.
    let other_host = repo.keys.path().join("other_host");
    let other = keygen(&other_host);
    let wrong_known = repo.keys.path().join("wrong_known_hosts");
    let other: Vec<&str> = other.split_whitespace().take(2).collect();
    std::fs::write(
        &wrong_known,
        format!("[127.0.0.1]:{} {}\n", repo.server.port, other.join(" ")),
    )
    .unwrap();
    let err = slipway::checkout::resolve_ref(
        url,
        "main",
        Duration::from_secs(30),
        &ssh_credentials(&repo.deploy, &wrong_known),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("Host key verification failed")
            || err
                .to_string()
                .contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{err}"
    );
    let left: Vec<_> = agents_and_key_files()
        .difference(&before)
        .cloned()
        .collect();
    assert!(
        left.is_empty(),
        "each agent stops with its git call: {left:?}"
    );
}

/// Watches the places a key file could be written to, on a thread of
/// its own, for a regular file holding any line of a private key's body:
/// the top of the temporary directories (and, whole, any directory made
/// there after the watch began), the home directory's `.ssh`, and
/// `deep` whole. Files are read again only when their size or mtime
/// changes, so a pass is quick and a short-lived file is seen.
struct KeyFileWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<(Vec<std::path::PathBuf>, usize)>>,
}

impl KeyFileWatch {
    fn start(key: &Path, deep: Vec<std::path::PathBuf>) -> KeyFileWatch {
        use std::collections::{HashMap, HashSet};
        use std::path::PathBuf;
        let text = std::fs::read_to_string(key).unwrap();
        let markers: Vec<String> = text
            .lines()
            .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
            .map(str::to_owned)
            .collect();
        assert!(!markers.is_empty(), "{text}");
        let own = key.to_path_buf();
        let mut shallow: Vec<PathBuf> =
            vec![std::env::temp_dir(), "/tmp".into(), "/dev/shm".into()];
        if let Some(home) = std::env::var_os("HOME") {
            shallow.push(PathBuf::from(&home));
            shallow.push(PathBuf::from(home).join(".ssh"));
        }
        let listing = |dir: &Path| -> Vec<PathBuf> {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect()
        };
        // Directories there before the watch: other tests' and the
        // machine's, not scanned whole.
        let before: HashSet<PathBuf> = shallow.iter().flat_map(|d| listing(d)).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen: HashMap<PathBuf, (u64, Option<std::time::SystemTime>)> = HashMap::new();
            let mut found = Vec::new();
            let mut passes = 0;
            let mut check = |path: &Path, found: &mut Vec<PathBuf>| {
                let Ok(meta) = path.symlink_metadata() else {
                    return;
                };
                // Regular files only: reading a FIFO would block.
                if !meta.is_file() || meta.len() > (1 << 20) || path == own {
                    return;
                }
                let stamp = (meta.len(), meta.modified().ok());
                if seen.get(path) == Some(&stamp) {
                    return;
                }
                seen.insert(path.to_path_buf(), stamp);
                let Ok(bytes) = std::fs::read(path) else {
                    return;
                };
                let content = String::from_utf8_lossy(&bytes);
                if markers.iter().any(|m| content.contains(m.as_str()))
                    && !found.iter().any(|f| f == path)
                {
                    found.push(path.to_path_buf());
                }
            };
            loop {
                // One pass more after the stop: what is left at the end.
                let last = stopped.load(std::sync::atomic::Ordering::SeqCst);
                let mut stack: Vec<PathBuf> = deep.clone();
                for dir in &shallow {
                    for entry in listing(dir) {
                        if entry.is_dir() && !entry.is_symlink() {
                            if !before.contains(&entry) {
                                stack.push(entry);
                            }
                        } else {
                            check(&entry, &mut found);
                        }
                    }
                }
                while let Some(dir) = stack.pop() {
                    for entry in listing(&dir) {
                        if entry.is_dir() && !entry.is_symlink() {
                            stack.push(entry);
                        } else {
                            check(&entry, &mut found);
                        }
                    }
                }
                passes += 1;
                if last {
                    return (found, passes);
                }
            }
        });
        KeyFileWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// Every file seen holding the key, and the number of passes made.
    fn finish(mut self) -> (Vec<std::path::PathBuf>, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// "Keys never written to disk": while a deploy-key checkout runs over
/// the real loopback sshd (ref resolution, the mirror's clone, a later
/// fetch), a watcher scans the temporary directories, the home
/// directory and the state directory for any file holding the key's
/// text; none ever appears, during the git calls or after them.
#[test]
fn a_deploy_key_checkout_writes_no_key_file_anywhere() {
    let _turn = SSH_TESTS.lock().unwrap_or_else(|p| p.into_inner());
    let before = agents_and_key_files();
    let repo = ssh_repo("no key on disk");
    let state = tempfile::tempdir().unwrap();
    let watch = KeyFileWatch::start(&repo.deploy, vec![state.path().to_path_buf()]);
    let credentials = ssh_credentials(&repo.deploy, &repo.known_hosts);
    let resolved =
        slipway::checkout::resolve_ref(&repo.url, "main", Duration::from_secs(30), &credentials)
            .unwrap();
    assert_eq!(resolved, repo.sha);
    let checkouts =
        Checkouts::new(state.path(), Duration::from_secs(30)).with_credentials(credentials);
    let first = checkouts.prepare(&repo.url, &repo.sha, "job-1").unwrap();
    // The mirror exists now: this one fetches.
    let second = checkouts.prepare(&repo.url, &repo.sha, "job-2").unwrap();
    for checkout in [&first, &second] {
        assert_eq!(git(&checkout.path, &["rev-parse", "HEAD"]), repo.sha);
    }
    let (found, passes) = watch.finish();
    assert!(found.is_empty(), "the key was written to {found:?}");
    assert!(passes >= 3, "the watch made {passes} passes only");
    let left: Vec<_> = agents_and_key_files()
        .difference(&before)
        .cloned()
        .collect();
    assert!(
        left.is_empty(),
        "each agent stops with its git call: {left:?}"
    );
}

/// Jobs of one repository checked out at the same time share its mirror:
/// the first clone and the fetches take turns, and every checkout gets the
/// exact commit.
#[test]
fn concurrent_checkouts_of_a_new_repository_share_its_mirror() {
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q"]);
    let sha = commit(repo.path(), "app.txt", "shared");
    let state = tempfile::tempdir().unwrap();
    let checkouts = Checkouts::new(state.path(), Duration::from_secs(60));
    let source = repo.path().to_str().unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let checkouts = &checkouts;
                s.spawn(move || {
                    checkouts
                        .prepare(source, "HEAD", &format!("job-{i}"))
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, r) in results.into_iter().enumerate() {
        let checkout = r.unwrap_or_else(|e| panic!("checkout {i}: {e}"));
        assert_eq!(checkout.sha.as_deref(), Some(sha.as_str()), "checkout {i}");
        assert_eq!(git(&checkout.path, &["rev-parse", "HEAD"]), sha);
    }
    let mirrors: Vec<_> = std::fs::read_dir(state.path().join("mirrors"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        mirrors.len(),
        1,
        "one mirror, nothing partial left: {mirrors:?}"
    );
}

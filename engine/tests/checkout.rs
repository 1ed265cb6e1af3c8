//! Checkouts from real git repositories and plain directories.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use slipway::checkout::{CheckoutError, Checkouts};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn commit(dir: &Path, file: &str, text: &str) -> String {
    std::fs::write(dir.join(file), text).unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", text]);
    git(dir, &["rev-parse", "HEAD"])
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

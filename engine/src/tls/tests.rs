use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;

/// A self-signed certificate for `localhost` and its key, as PEM.
fn pair() -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    (generated.cert.pem(), generated.signing_key.serialize_pem())
}

fn write(dir: &Path, cert: &str, key: &str) -> TlsFiles {
    let files = TlsFiles {
        cert: dir.join("fullchain.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
    files
}

#[test]
fn a_matching_pair_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair();
    let loaded = write(dir.path(), &cert, &key).load().unwrap();
    assert_eq!(loaded.cert.len(), 1);
}

#[test]
fn each_broken_pair_is_refused_naming_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair();
    let (_, other_key) = pair();
    let err = |files: &TlsFiles| files.load().unwrap_err().to_string();

    let missing = TlsFiles {
        cert: dir.path().join("nowhere.pem"),
        key: dir.path().join("key.pem"),
    };
    let e = err(&missing);
    assert!(
        e.contains("cannot read the TLS certificate file") && e.contains("nowhere.pem"),
        "{e}"
    );

    let files = write(dir.path(), "not a certificate\n", &key);
    let e = err(&files);
    assert!(
        e.contains("fullchain.pem holds no usable PEM certificate")
            && e.contains("`tls.cert` must be"),
        "{e}"
    );

    let files = write(dir.path(), &cert, "-----BEGIN PRIVATE KEY-----\ngarbage\n");
    let e = err(&files);
    assert!(e.contains("key.pem holds no PEM private key"), "{e}");

    let files = write(dir.path(), &cert, &other_key);
    let e = err(&files);
    assert!(
        e.contains("does not belong to the certificate in") && e.contains("key.pem"),
        "{e}"
    );
}

#[tokio::test]
async fn a_changed_pair_is_swapped_in_and_a_bad_one_kept_out() {
    let dir = tempfile::tempdir().unwrap();
    let (live, staging) = (dir.path().join("live"), dir.path().join("staging"));
    std::fs::create_dir(&live).unwrap();
    std::fs::create_dir(&staging).unwrap();
    let (cert1, key1) = pair();
    let files = write(&live, &cert1, &key1);
    let resolver = CertResolver::load(files.clone()).unwrap();
    let first = resolver.current().cert[0].clone();
    let stop = CancellationToken::new();
    let period = Duration::from_millis(50);
    let watching = tokio::spawn(resolver.clone().watch(period, stop.clone()));
    let serves = |want: rustls::pki_types::CertificateDer<'static>| {
        let resolver = resolver.clone();
        async move {
            for _ in 0..100 {
                if resolver.current().cert[0] == want {
                    return true;
                }
                tokio::time::sleep(period).await;
            }
            false
        }
    };

    // Renewed the way cert-manager does it: new files renamed into place.
    let (cert2, key2) = pair();
    let staged = write(&staging, &cert2, &key2);
    std::fs::rename(&staged.cert, &files.cert).unwrap();
    std::fs::rename(&staged.key, &files.key).unwrap();
    let second = rustls::pki_types::CertificateDer::from_pem_slice(cert2.as_bytes()).unwrap();
    assert!(serves(second.clone()).await);
    assert_ne!(first, second);

    // A key of another certificate: the second pair stays in use.
    std::fs::write(&files.key, &key1).unwrap();
    tokio::time::sleep(period * 10).await;
    assert_eq!(resolver.current().cert[0], second);

    // Put right again: picked up.
    std::fs::write(&files.cert, &cert1).unwrap();
    assert!(serves(first).await);
    stop.cancel();
    watching.await.unwrap();
}

//! The PostgreSQL store over TLS, against a real server that refuses plain
//! connections: `sslmode` and `sslrootcert` in the `store` URL, as libpq
//! reads them; the certificate is always verified; every kind of
//! connection the store makes (its pool, the `LISTEN` loop, a node's
//! session lock, `doctor`'s inspection) goes through TLS.

use std::sync::Arc;
use std::time::Duration;

use slipway::job::SpecPolicy;
use slipway::queue::{JobQueue, PostgresStore};

use crate::cli_serve_tls::Ca;
use crate::support::postgres::TestPostgres;
use crate::support::spec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_speaks_verified_tls_when_its_url_asks() {
    let ca = Ca::new("Slipway test database CA");
    let (chain, key) = ca.issue();
    let pg = TestPostgres::start_tls(&chain, &key);
    let plain = pg.database();
    let files = tempfile::tempdir().unwrap();
    let ca_file = files.path().join("db-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    // Trusting the database's CA: the store opens, and works.
    let url = format!(
        "{plain}?sslmode=verify-full&sslrootcert={}",
        ca_file.display()
    );
    let store = Arc::new(
        PostgresStore::open(&url, SpecPolicy::default())
            .await
            .unwrap(),
    );
    let woken = Arc::new(tokio::sync::Notify::new());
    let stop = tokio_util::sync::CancellationToken::new();
    let listener = {
        let (store, woken, stop) = (store.clone(), woken.clone(), stop.clone());
        tokio::spawn(async move { store.listen(woken, stop).await })
    };
    let id = store.submit(spec("succeed")).await.unwrap().record.id;
    assert_eq!(store.get(id).await.unwrap().unwrap().id, id);
    // The LISTEN loop connects over TLS too: once it listens, a submit
    // wakes it.
    let mut heard = false;
    for _ in 0..20 {
        store.submit(spec("succeed")).await.unwrap();
        if tokio::time::timeout(Duration::from_millis(500), woken.notified())
            .await
            .is_ok()
        {
            heard = true;
            break;
        }
    }
    assert!(heard, "the LISTEN loop never heard a submit over TLS");
    // A node's session lock has a connection of its own.
    let node = store.claim_node("tls-node", None).await.unwrap();
    drop(node);
    let seen = slipway::queue::postgres_store::inspect(&url).await.unwrap();
    assert_eq!(
        seen.schema,
        slipway::queue::postgres_store::schema::SCHEMA_VERSION
    );
    stop.cancel();
    listener.await.unwrap();

    // `sslrootcert` alone asks for TLS as well.
    let implied = format!("{plain}?sslrootcert={}", ca_file.display());
    PostgresStore::open(&implied, SpecPolicy::default())
        .await
        .unwrap();

    // Not trusting it: refused, and the error says it was the certificate.
    let untrusted = format!("{plain}?sslmode=require");
    let err = PostgresStore::open(&untrusted, SpecPolicy::default())
        .await
        .err()
        .expect("a certificate no trusted authority signed is refused")
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let err = slipway::queue::postgres_store::inspect(&untrusted)
        .await
        .expect_err("doctor's inspection verifies too")
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // Plain: this server refuses it, and says so.
    let err = PostgresStore::open(&plain, SpecPolicy::default())
        .await
        .err()
        .expect("the server refuses plain connections")
        .to_string();
    assert!(err.contains("no encryption"), "{err}");
}

//! Where a test's store lives, for the suites that run against every
//! store: a redb file in a temporary directory, or a fresh database on the
//! tests' PostgreSQL server ([`super::postgres::TestPostgres`]).

use std::sync::Arc;
use std::time::Duration;

use slipway::job::SpecPolicy;
use slipway::queue::{JobStore, PostgresStore, RedbStore};

use super::postgres::TestPostgres;

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default.
    Redb,
    /// The shared store, on the tests' own server.
    Postgres,
}

/// One test's store: opened, and opened again after a "restart".
pub struct Place {
    backend: Backend,
    /// Logs and the redb file.
    pub dir: tempfile::TempDir,
    url: Option<String>,
}

impl Place {
    /// A new, empty place for `backend`.
    pub fn new(backend: Backend) -> Place {
        let url = match backend {
            Backend::Redb => None,
            Backend::Postgres => Some(TestPostgres::shared().database()),
        };
        Place {
            backend,
            dir: tempfile::tempdir().unwrap(),
            url,
        }
    }

    /// The PostgreSQL URL (`None` for redb).
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// Open the store (again: a redb file is free once the last opener's
    /// writer thread has let go of it, which may take a moment after a drop).
    pub async fn open(&self) -> Arc<dyn JobStore> {
        match self.backend {
            Backend::Redb => {
                let path = self.dir.path().join("store.redb");
                for _ in 0..200 {
                    if let Ok(store) = RedbStore::open(&path, SpecPolicy::default()) {
                        return Arc::new(store);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Arc::new(RedbStore::open(&path, SpecPolicy::default()).unwrap())
            }
            Backend::Postgres => Arc::new(
                PostgresStore::open(self.url.as_deref().unwrap(), SpecPolicy::default())
                    .await
                    .unwrap(),
            ),
        }
    }
}

/// Each named `async fn(Backend)` of the calling module becomes two tests,
/// `store_redb::<name>` and `store_postgres::<name>`: one suite, every store.
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod store_redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::stores::Backend::Redb).await
                }
            )*
        }
        mod store_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::stores::Backend::Postgres).await
                }
            )*
        }
    };
}

//! A real PostgreSQL server for the tests, started by the tests: a fresh
//! cluster (`initdb`) in a temporary directory, listening on a free
//! loopback port and a Unix socket in that directory, trust
//! authentication for the `slipway` user. As root the server runs as the
//! `postgres` user (PostgreSQL refuses root). A watchdog shell stops the
//! server and removes its files when the test process exits, however it
//! exits.
//!
//! PostgreSQL missing is a failure, not a skip: `scripts/setup.sh`
//! installs it (Debian's `postgresql`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One PostgreSQL cluster of the tests.
pub struct TestPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// The directory of PostgreSQL's server programs (the newest installed).
fn server_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("postgres").exists());
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/postgres): \
             run scripts/setup.sh, which installs Debian's postgresql; these tests do not skip"
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    // The effective uid, without a libc dependency: /proc knows it.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

impl TestPostgres {
    /// A new cluster, started; its files live until the test process ends
    /// (or [`TestPostgres::stop`] and a drop of the value).
    pub fn start() -> TestPostgres {
        let server = TestPostgres::init();
        server.resume();
        server
    }

    /// A new cluster whose TCP port speaks only TLS, with this certificate
    /// chain and key (PEM); its Unix socket stays plain, for `psql`.
    pub fn start_tls(chain_pem: &str, key_pem: &str) -> TestPostgres {
        let server = TestPostgres::init();
        let data = server.data();
        std::fs::write(data.join("server.crt"), chain_pem).unwrap();
        std::fs::write(data.join("server.key"), key_pem).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let key = data.join("server.key");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(
            &mut conf,
            b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        )
        .unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        if server.as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(data.join("server.crt"))
                .arg(data.join("server.key"))
                .arg(data.join("pg_hba.conf"))
                .status()
                .unwrap();
            assert!(status.success(), "chown of the TLS files failed");
        }
        server.resume();
        server
    }

    /// A new cluster, not started; stopped and removed with the process.
    fn init() -> TestPostgres {
        let bin = server_bin();
        let dir = tempfile::Builder::new()
            .prefix("slipway-pg-")
            .tempdir_in("/var/tmp")
            .unwrap()
            .keep();
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(
                status.success(),
                "chown of {} to postgres failed",
                dir.display()
            );
        }
        let server = TestPostgres {
            bin,
            dir,
            port: free_port(),
            as_postgres,
        };
        let out = server
            .command("initdb")
            .args([
                "-U",
                "slipway",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(server.data())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        server.watchdog();
        server
    }

    /// The cluster every test of this process shares (one database each:
    /// [`TestPostgres::database`]).
    pub fn shared() -> &'static TestPostgres {
        static SHARED: OnceLock<TestPostgres> = OnceLock::new();
        SHARED.get_or_init(TestPostgres::start)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `program` of the server's bin directory, as the user that owns the
    /// cluster.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// Stop the server and remove the cluster once the test process is gone.
    fn watchdog(&self) {
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 1; done; \
             {stop} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
            parent = std::process::id(),
            stop = if self.as_postgres {
                format!(
                    "runuser -u postgres -- {}",
                    self.bin.join("pg_ctl").display()
                )
            } else {
                self.bin.join("pg_ctl").display().to_string()
            },
            data = self.data().display(),
            dir = self.dir.display(),
        );
        let mut watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Reaped if it ends first (it normally outlives this process).
        std::thread::spawn(move || {
            let _ = watchdog.wait();
        });
    }

    /// Start the server (again), and wait until it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
            self.port,
            self.dir.display()
        );
        let out = self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(self.data())
            .args(["-l"])
            .arg(self.dir.join("server.log"))
            .args(["-o", &options, "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }

    /// Stop the server at once (`immediate`: as a crash or a power cut
    /// would, recovery at the next start).
    pub fn stop(&self) {
        let out = self
            .command("pg_ctl")
            .args(["-w", "-D"])
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://slipway@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Run `sql` in database `db` with psql; its output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let psql = Path::new(&self.bin).join("psql");
        let psql = if psql.exists() {
            psql
        } else {
            PathBuf::from("psql")
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(&psql)
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(&self.dir)
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "slipway",
                    "-d",
                    db,
                    "-c",
                    sql,
                ])
                .output()
                .unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).trim().to_owned();
            }
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            // Another test's CREATE DATABASE copies template1 at the same time.
            if err.contains("being accessed by other users") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            panic!("psql -c {sql:?} failed: {err}");
        }
    }
}

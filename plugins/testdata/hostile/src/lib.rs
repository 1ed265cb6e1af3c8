//! A plugin that misbehaves on command, for the engine's sandbox tests.
//!
//! `detect` reads the first line of `.hostile` at the repository root and does
//! what it says (`loop`, `sleep` and `poll-forever`: wait in a host call,
//! `read <path>`, `alloc`, `write`, `read-outside`, `socket <port>`,
//! `big-string`, `alias`: 4,096 evidence notes that all point at one 1 MiB
//! string (64 KiB of guest memory that a host copying naively turns into
//! 4 GiB), `panic`, `garbage`, `log-flood`, `stdout-flood`, `count`,
//! `claim-all`: confidence 100, `error-escape`: an error whose message carries
//! terminal escape sequences and a forged line); without the file it behaves.
//! `plan` reads the same line: `plan-*` modes return a plan with one field a
//! host must refuse (`plan-nul`, `plan-step-newline`, `plan-env-name`,
//! `plan-cache-root`, `plan-cache-workspace`, `plan-cache-dotdot`,
//! `plan-lockfile-outside`, `plan-note-escape`), `plan-fail` an error. Attempts the sandbox must refuse report what happened as
//! an `internal` error, so the tests can check the refusal, not just a trap.

use slipway_plugin_sdk::ecosystem::*;
use slipway_plugin_sdk::{Repo, export_ecosystem, internal, log, malformed};

struct Hostile;

fn detection(note: String) -> Detection {
    Detection {
        confidence: 10,
        evidence: vec![Evidence::new(".hostile", Some(1), note)],
    }
}

/// `count` evidence notes sharing one leaked buffer of `len` bytes: the
/// canonical ABI lowers each `String` as its pointer and length, so the
/// result names the same bytes `count` times. The notes are never dropped
/// here (the host refuses the result before `post-return` could free them).
fn aliased_notes(count: usize, len: usize) -> Detection {
    let shared: &'static mut str = Box::leak("a".repeat(len).into_boxed_str());
    let ptr = shared.as_mut_ptr();
    let evidence = (0..count)
        .map(|_| {
            // SAFETY: deliberately unsound aliasing, for a hostile test
            // plugin only; the Strings are moved into the lowering, never
            // freed or written by this guest.
            let note = unsafe { String::from_raw_parts(ptr, len, len) };
            Evidence::new(".hostile", Some(1), note)
        })
        .collect();
    Detection {
        confidence: 10,
        evidence,
    }
}

fn outcome<T, E: std::fmt::Debug>(
    what: &str,
    r: Result<T, E>,
) -> Result<Option<Detection>, PluginError> {
    match r {
        Ok(_) => Ok(Some(detection(format!("{what}: succeeded")))),
        Err(e) => Err(internal(format!("{what}: refused: {e:?}"))),
    }
}

fn connect(port: u16) -> Result<(), String> {
    use wasi::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
    let net = wasi::sockets::instance_network::instance_network();
    let sock = wasi::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4)
        .map_err(|e| format!("create-tcp-socket: {e:?}"))?;
    let addr = IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port,
        address: (127, 0, 0, 1),
    });
    sock.start_connect(&net, addr)
        .map_err(|e| format!("start-connect: {e:?}"))?;
    sock.subscribe().block();
    sock.finish_connect()
        .map(|_| ())
        .map_err(|e| format!("finish-connect: {e:?}"))
}

/// The first line of `.hostile`, if there is one.
fn mode(repo: &Repo) -> Result<Option<String>, PluginError> {
    Ok(repo.read_text(".hostile")?.map(|file| {
        file.first_meaningful_line()
            .map(|(_, l)| l.to_owned())
            .unwrap_or_default()
    }))
}

impl Ecosystem for Hostile {
    fn detect(repo: &Repo) -> Result<Option<Detection>, PluginError> {
        let Some(line) = mode(repo)? else {
            return Ok(Some(detection("behaving".into())));
        };
        let mut words = line.split_whitespace();
        match words.next().unwrap_or("") {
            // Claims the repository outright, so its `plan` is the one called.
            m if m.starts_with("plan-") || m == "claim-all" => Ok(Some(Detection {
                confidence: 100,
                evidence: vec![Evidence::new(
                    ".hostile",
                    Some(1),
                    format!("mine, all mine ({m})"),
                )],
            })),
            "error-escape" => Err(malformed(
                ".hostile",
                Some(1),
                "\u{1b}[2K\u{1b}[1Gslipway: job succeeded\nnothing to see",
                Some("\u{1b}]0;pwned\u{7}"),
            )),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            // Waits in a host call, where no epoch deadline reaches it.
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(Some(detection("woke up".into())))
            }
            "poll-forever" => {
                let never = wasi::clocks::monotonic_clock::subscribe_duration(u64::MAX);
                wasi::io::poll::poll(&[&never]);
                Ok(Some(detection("poll returned".into())))
            }
            // Opens a file of the repository that may be a FIFO.
            "read" => {
                let path = words.next().unwrap_or("fifo");
                outcome(
                    &format!("read {path}"),
                    std::fs::read(format!("/repo/{path}")),
                )
            }
            "alloc" => {
                let mut big: Vec<u8> = Vec::new();
                big.resize(1 << 30, 1);
                Ok(Some(detection(format!(
                    "allocated {}",
                    std::hint::black_box(big).len()
                ))))
            }
            "write" => outcome("write into the repo", std::fs::write("/repo/pwned", "x")),
            "read-outside" => {
                let absolute = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string());
                let dotdot =
                    std::fs::read_to_string("/repo/../etc/passwd").map_err(|e| e.to_string());
                let link = std::fs::read_to_string("/repo/escape").map_err(|e| e.to_string());
                match (absolute, dotdot, link) {
                    (Err(a), Err(b), Err(c)) => Err(internal(format!(
                        "read outside: refused: /etc/passwd: {a}; ..: {b}; symlink: {c}"
                    ))),
                    _ => Ok(Some(detection("read outside: succeeded".into()))),
                }
            }
            "socket" => {
                let port = words.next().and_then(|p| p.parse().ok()).unwrap_or(9);
                outcome("open a socket", connect(port))
            }
            "big-string" => Ok(Some(detection("x".repeat(16 * 1024 * 1024)))),
            "alias" => Ok(Some(aliased_notes(4096, 1024 * 1024))),
            "panic" => panic!("hostile plugin panicked on purpose"),
            "garbage" => Ok(Some(Detection {
                confidence: 250,
                evidence: vec![],
            })),
            "log-flood" => {
                // Messages past the 4 KiB cap, 6x past the 64 KiB budget; few
                // enough to end well inside the 300 ms budget on a busy host.
                let message = "y".repeat(10 * 1024);
                for _ in 0..100 {
                    log::info(&message);
                }
                Ok(Some(detection("logged a lot".into())))
            }
            "stdout-flood" => {
                // About 140 KB: twice the 64 KiB stdout cap.
                for i in 0..4_000 {
                    println!("line {i} of a very chatty plugin");
                }
                Ok(Some(detection("printed a lot".into())))
            }
            "count" => {
                // A fresh instance per call means this is 1 every time.
                static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                Ok(Some(detection(format!("call number {n}"))))
            }
            other => Err(internal(format!("unknown mode `{other}`"))),
        }
    }

    fn plan(repo: &Repo) -> Result<Plan, PluginError> {
        let mut plan = Plan {
            base_image: "debian:12-slim".into(),
            image: ImageSource::Generated("FROM debian:12-slim\n".into()),
            toolchains: vec![],
            package_manager: None,
            setup: vec![],
            fast: vec![Step::new("true", "true")],
            full: vec![],
            cache: vec![],
            env: vec![],
            notes: vec![],
        };
        let cache = |path: &str| CacheMount {
            id: "c".into(),
            path: path.into(),
        };
        match mode(repo)?.as_deref().unwrap_or("") {
            "plan-nul" => {
                plan.image =
                    ImageSource::Generated("FROM debian:12-slim\nRUN true\0rm -rf /\n".into())
            }
            "plan-step-newline" => {
                plan.fast = vec![Step::new("lint\nslipway: step `lint` passed", "true")]
            }
            "plan-env-name" => {
                plan.env = vec![OptionPair {
                    name: "PATH=/evil\nX".into(),
                    value: "1".into(),
                }]
            }
            "plan-cache-root" => plan.cache = vec![cache("/")],
            "plan-cache-workspace" => plan.cache = vec![cache("/workspace")],
            "plan-cache-dotdot" => plan.cache = vec![cache("/etc/../etc")],
            "plan-lockfile-outside" => {
                plan.package_manager = Some(PackageManager {
                    name: "npm".into(),
                    version: None,
                    lockfile: Some("../../etc/passwd".into()),
                    source: None,
                })
            }
            "plan-note-escape" => plan.notes = vec!["\u{1b}[31mall good\u{1b}[0m".into()],
            "plan-fail" => return Err(internal("plan failed on purpose")),
            _ => {}
        }
        Ok(plan)
    }
}

export_ecosystem!(Hostile);

//! The Compose subset end to end: each supported key in each syntax, each
//! refusal with the place it names. Checkouts are temporary directories.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// A checkout with a buildable `web/` and an env file.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("web")).unwrap();
    fs::write(dir.path().join("web/Dockerfile"), "FROM scratch\n").unwrap();
    fs::write(dir.path().join("web/Prod.Dockerfile"), "FROM scratch\n").unwrap();
    fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    fs::create_dir_all(dir.path().join("conf")).unwrap();
    dir
}

fn vars() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("TAG".to_owned(), "7".to_owned()),
        ("DB_PASSWORD".to_owned(), "s3cret".to_owned()),
        ("FROM_DEPLOY".to_owned(), "deployed".to_owned()),
    ])
}

fn try_parse(dir: &Path, text: &str) -> Result<Stack, ComposeError> {
    parse(text, "compose.yaml", dir, &vars())
}

fn ok(dir: &Path, text: &str) -> Stack {
    try_parse(dir, text).unwrap_or_else(|e| panic!("{e}"))
}

fn err(dir: &Path, text: &str) -> ComposeError {
    match try_parse(dir, text) {
        Ok(stack) => panic!("parsed, expected an error: {stack:#?}"),
        Err(e) => e,
    }
}

fn svc<'s>(stack: &'s Stack, name: &str) -> &'s Service {
    stack
        .services
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

fn real(dir: &Path, rel: &str) -> PathBuf {
    dir.canonicalize().unwrap().join(rel)
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The path and line of an `Invalid` error, and its text.
fn invalid(e: &ComposeError) -> (&str, Option<usize>, &str) {
    match e {
        ComposeError::Invalid {
            path,
            line,
            message,
            ..
        } => (path, *line, message),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// --- the supported keys, in each syntax ---

#[test]
fn a_minimal_file() {
    let dir = repo();
    let stack = ok(dir.path(), "services:\n  web:\n    image: nginx:1.27\n");
    assert_eq!(stack.name, None);
    assert!(stack.volumes.is_empty());
    let web = svc(&stack, "web");
    assert_eq!(web.image.as_deref(), Some("nginx:1.27"));
    assert_eq!(web.build, None);
    assert_eq!(web.command, None);
    assert_eq!(web.restart, Restart::No);
    assert_eq!(web.healthcheck, None);
    assert!(web.environment.is_empty() && web.ports.is_empty() && web.volumes.is_empty());
}

#[test]
fn top_level_name_version_and_volumes() {
    let dir = repo();
    let stack = ok(
        dir.path(),
        r#"version: "3.9"
name: shop
volumes:
  pgdata:
  cache: {}
services:
  web:
    image: nginx
"#,
    );
    assert_eq!(stack.name.as_deref(), Some("shop"));
    assert_eq!(stack.volumes, ["cache", "pgdata"]);
}

#[test]
fn build_as_a_string_and_as_a_mapping() {
    let dir = repo();
    let stack = ok(
        dir.path(),
        r#"services:
  short:
    build: ./web/
  root:
    build: .
  long:
    image: registry.example/web:${TAG}
    build:
      context: web
      dockerfile: Prod.Dockerfile
      args:
        VERSION: 1.2
        DEBUG: false
      target: prod
  listargs:
    build:
      context: ./web
      args:
        - A=1
        - FROM_DEPLOY
        - NOT_SET
"#,
    );
    let short = svc(&stack, "short").build.as_ref().unwrap();
    assert_eq!(short.context, PathBuf::from("web"));
    assert_eq!(short.dockerfile, None);
    assert!(short.args.is_empty());
    assert_eq!(
        svc(&stack, "root").build.as_ref().unwrap().context,
        PathBuf::from(".")
    );
    let long = svc(&stack, "long");
    assert_eq!(long.image.as_deref(), Some("registry.example/web:7"));
    let b = long.build.as_ref().unwrap();
    assert_eq!(b.context, PathBuf::from("web"));
    assert_eq!(b.dockerfile.as_deref(), Some("Prod.Dockerfile"));
    assert_eq!(b.args, map(&[("VERSION", "1.2"), ("DEBUG", "false")]));
    assert_eq!(b.target.as_deref(), Some("prod"));
    let l = svc(&stack, "listargs").build.as_ref().unwrap();
    assert_eq!(l.args, map(&[("A", "1"), ("FROM_DEPLOY", "deployed")]));
}

#[test]
fn command_and_entrypoint_as_strings_and_lists() {
    let dir = repo();
    let stack = ok(
        dir.path(),
        r#"services:
  a:
    image: x
    command: sh -c 'echo "$$HOME" && sleep 1' --flag\ with\ space
    entrypoint: ["/bin/tini", "--"]
  b:
    image: x
    command: ["npm", "run", "start:${TAG}", 5]
    entrypoint: /docker-entrypoint.sh
"#,
    );
    let a = svc(&stack, "a");
    assert_eq!(
        a.command,
        Some(strings(&[
            "sh",
            "-c",
            "echo \"$HOME\" && sleep 1",
            "--flag with space"
        ]))
    );
    assert_eq!(a.entrypoint, Some(strings(&["/bin/tini", "--"])));
    let b = svc(&stack, "b");
    assert_eq!(b.command, Some(strings(&["npm", "run", "start:7", "5"])));
    assert_eq!(b.entrypoint, Some(strings(&["/docker-entrypoint.sh"])));
}

#[test]
fn environment_as_a_mapping_and_as_a_list() {
    let dir = repo();
    let stack = ok(
        dir.path(),
        r#"services:
  a:
    image: x
    environment:
      STRING: text
      NUMBER: 5432
      FLOAT: 1.5
      BOOL: true
      INTERPOLATED: postgres://app:${DB_PASSWORD}@db/app
      FROM_DEPLOY:
      NOT_SET:
  b:
    image: x
    environment:
      - A=1
      - B=has=equals
      - EMPTY=
      - FROM_DEPLOY
      - NOT_SET
"#,
    );
    assert_eq!(
        svc(&stack, "a").environment,
        map(&[
            ("STRING", "text"),
            ("NUMBER", "5432"),
            ("FLOAT", "1.5"),
            ("BOOL", "true"),
            ("INTERPOLATED", "postgres://app:s3cret@db/app"),
            ("FROM_DEPLOY", "deployed"),
        ])
    );
    assert_eq!(
        svc(&stack, "b").environment,
        map(&[
            ("A", "1"),
            ("B", "has=equals"),
            ("EMPTY", ""),
            ("FROM_DEPLOY", "deployed"),
        ])
    );
}

#[test]
fn env_files_come_first_and_environment_overrides_them() {
    let dir = repo();
    fs::write(
        dir.path().join("conf/app.env"),
        "# shared\nA=from-file\nB=\"quoted value\"\nC='single'\n",
    )
    .unwrap();
    fs::write(dir.path().join("conf/more.env"), "B=second-file\nD=4\n").unwrap();
    let stack = ok(
        dir.path(),
        r#"services:
  one:
    image: x
    env_file: conf/app.env
  mapping:
    image: x
    env_file: {path: conf/more.env}
  many:
    image: x
    env_file:
      - ./conf/app.env
      - path: conf/more.env
      - path: conf/optional.env
        required: false
    environment:
      A: from-environment
"#,
    );
    assert_eq!(
        svc(&stack, "one").environment,
        map(&[("A", "from-file"), ("B", "quoted value"), ("C", "single")])
    );
    assert_eq!(
        svc(&stack, "mapping").environment,
        map(&[("B", "second-file"), ("D", "4")])
    );
    assert_eq!(
        svc(&stack, "many").environment,
        map(&[
            ("A", "from-environment"),
            ("B", "second-file"),
            ("C", "single"),
            ("D", "4"),
        ])
    );
}

#[test]
fn env_file_refusals() {
    let dir = repo();
    let e = err(
        dir.path(),
        "services:\n  web:\n    image: x\n    env_file: missing.env\n",
    );
    let (path, line, message) = invalid(&e);
    assert_eq!((path, line), ("services.web.env_file", Some(4)));
    assert!(
        message.contains("cannot read the env file `missing.env`"),
        "{message}"
    );

    let e = err(
        dir.path(),
        "services:\n  web:\n    image: x\n    env_file: [../secrets.env]\n",
    );
    assert_eq!(invalid(&e).0, "services.web.env_file[0]");
    assert!(e.to_string().contains("outside the repository"), "{e}");

    fs::write(dir.path().join("bad.env"), "A=1\nthis is not a line\n").unwrap();
    let e = err(
        dir.path(),
        "services:\n  web:\n    image: x\n    env_file: bad.env\n",
    );
    assert!(
        e.to_string()
            .contains("env file `bad.env`, line 2: expected `KEY=VALUE`"),
        "{e}"
    );
}

#[test]
fn ports_in_short_and_long_syntax() {
    let dir = repo();
    let stack = ok(
        dir.path(),
        r#"services:
  web:
    image: x
    ports:
      - "8080:80"
      - "127.0.0.1:8443:443"
      - "80"
      - 9000
      - "5353:53/UDP"
      - "127.0.0.1::6000"
      - "[::1]:7000:7001/tcp"
      - "${TAG}${TAG}:70"
      - 22:22
      - 127.0.0.1:5432:5432
      - target: 5432
      - target: 53
        published: 5300
        host_ip: 0.0.0.0
        protocol: udp
      - target: "81"
        published: "8181"
"#,
    );
    let port =
        |host_ip: Option<&str>, published: Option<u16>, target: u16, protocol: Protocol| Port {
            host_ip: host_ip.map(str::to_owned),
            published,
            target,
            protocol,
        };
    assert_eq!(
        svc(&stack, "web").ports,
        [
            port(None, Some(8080), 80, Protocol::Tcp),
            port(Some("127.0.0.1"), Some(8443), 443, Protocol::Tcp),
            port(None, None, 80, Protocol::Tcp),
            port(None, None, 9000, Protocol::Tcp),
            port(None, Some(5353), 53, Protocol::Udp),
            port(Some("127.0.0.1"), None, 6000, Protocol::Tcp),
            port(Some("::1"), Some(7000), 7001, Protocol::Tcp),
            port(None, Some(77), 70, Protocol::Tcp),
            port(None, Some(22), 22, Protocol::Tcp),
            port(Some("127.0.0.1"), Some(5432), 5432, Protocol::Tcp),
            port(None, None, 5432, Protocol::Tcp),
            port(Some("0.0.0.0"), Some(5300), 53, Protocol::Udp),
            port(None, Some(8181), 81, Protocol::Tcp),
        ]
    );
    assert_eq!(Protocol::Udp.name(), "udp");
}

#[test]
fn port_ranges_and_bad_ports_are_refused() {
    let dir = repo();
    let e = err(
        dir.path(),
        "services:\n  web:\n    image: x\n    ports:\n      - \"80:80\"\n      - \"3000-3005:3000-3005\"\n",
    );
    let (path, line, message) = invalid(&e);
    assert_eq!((path, line), ("services.web.ports[1]", Some(6)));
    assert!(
        message.contains("port ranges (`3000-3005`) are not supported"),
        "{message}"
    );

    let e = err(
        dir.path(),
        "services:\n  web:\n    image: x\n    ports:\n      - target: 80\n        published: 8000-8010\n",
    );
    assert_eq!(invalid(&e).0, "services.web.ports[0].published");
    assert!(e.to_string().contains("port ranges"), "{e}");

    for (bad, words) in [
        ("\"70000\"", "not a port number"),
        ("\"0\"", "not a port number"),
        ("\"80/sctp\"", "protocol `sctp`"),
        ("{target: 80, protocol: icmp}", "protocol `icmp`"),
        ("\"1.2.3:80:80\"", "not an IP address"),
        ("\"a:b:c:d\"", "is not a port"),
    ] {
        let text = format!("services:\n  web:\n    image: x\n    ports: [{bad}]\n");
        let e = err(dir.path(), &text);
        assert!(e.to_string().contains(words), "{bad}: {e}");
    }
}

#[test]
fn volumes_in_short_and_long_syntax() {
    let dir = repo();
    fs::create_dir_all(dir.path().join("static")).unwrap();
    let stack = ok(
        dir.path(),
        r#"volumes:
  data:
services:
  web:
    image: x
    volumes:
      - data:/var/lib/data
      - data:/readonly:ro
      - ./conf:/etc/app:ro
      - ./static/:/srv/static:rw
      - ./not-yet-there:/cache
      - type: volume
        source: data
        target: /long
      - type: bind
        source: conf
        target: /etc/long
        read_only: true
"#,
    );
    assert_eq!(
        svc(&stack, "web").volumes,
        [
            Mount::Named {
                volume: "data".into(),
                target: "/var/lib/data".into(),
                read_only: false
            },
            Mount::Named {
                volume: "data".into(),
                target: "/readonly".into(),
                read_only: true
            },
            Mount::Bind {
                source: real(dir.path(), "conf"),
                target: "/etc/app".into(),
                read_only: true
            },
            Mount::Bind {
                source: real(dir.path(), "static"),
                target: "/srv/static".into(),
                read_only: false
            },
            Mount::Bind {
                source: real(dir.path(), "not-yet-there"),
                target: "/cache".into(),
                read_only: false
            },
            Mount::Named {
                volume: "data".into(),
                target: "/long".into(),
                read_only: false
            },
            Mount::Bind {
                source: real(dir.path(), "conf"),
                target: "/etc/long".into(),
                read_only: true
            },
        ]
    );
}

#[test]
fn bind_mounts_outside_the_checkout_are_refused() {
    let dir = repo();
    let cases = [
        ("/etc:/host-etc", "absolute path"),
        ("../other-repo:/x", "through `..`"),
        ("./conf/../../x:/x", "through `..`"),
        ("~/.ssh:/root/.ssh:ro", "home directory"),
    ];
    for (spec, words) in cases {
        let text = format!("services:\n  web:\n    image: x\n    volumes:\n      - {spec}\n");
        let e = err(dir.path(), &text);
        let (path, line, message) = invalid(&e);
        assert_eq!((path, line), ("services.web.volumes[0]", Some(5)), "{spec}");
        assert!(message.starts_with("bind mount: "), "{message}");
        assert!(message.contains(words), "{spec}: {message}");
    }
    let e = err(
        dir.path(),
        "services:\n  web:\n    image: x\n    volumes:\n      - type: bind\n        source: /var/run/docker.sock\n        target: /var/run/docker.sock\n",
    );
    let (path, line, _) = invalid(&e);
    assert_eq!((path, line), ("services.web.volumes[0].source", Some(6)));
}

#[cfg(unix)]
#[test]
fn a_symlink_out_of_the_checkout_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let dir = repo();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
    std::os::unix::fs::symlink("conf", dir.path().join("inner")).unwrap();
    let e = err(
        dir.path(),
        "services:\n  web:\n    image: x\n    volumes:\n      - ./escape/data:/data\n",
    );
    let (path, line, message) = invalid(&e);
    assert_eq!((path, line), ("services.web.volumes[0]", Some(5)));
    assert!(
        message.contains("outside the repository through a symlink"),
        "{message}"
    );

    // A symlink that stays inside is followed: the mount is its target.
    let stack = ok(
        dir.path(),
        "services:\n  web:\n    image: x\n    volumes:\n      - ./inner:/data\n",
    );
    assert_eq!(
        svc(&stack, "web").volumes,
        [Mount::Bind {
            source: real(dir.path(), "conf"),
            target: "/data".into(),
            read_only: false
        }]
    );
}

#[test]
fn volume_refusals() {
    let dir = repo();
    let e = err(
        dir.path(),
        "services:\n  web:\n    image: x\n    volumes:\n      - pgdata:/var/lib/postgresql/data\n",
    );
    let (path, line, message) = invalid(&e);
    assert_eq!((path, line), ("services.web.volumes[0]", Some(5)));
    assert!(
        message.contains("volume `pgdata` is not declared"),
        "{message}"
    );

    for (spec, words) in [
        ("/anonymous", "anonymous volume"),
        ("./conf:relative", "not an absolute path"),
        ("./conf:/x:z", "option `z`"),
        ("./conf:/x:ro:extra", "is not a volume"),
        ("{type: tmpfs, source: x, target: /t}", "type `tmpfs`"),
        ("{type: volume, target: /t}", "anonymous volumes"),
        ("{source: x, target: /t}", "needs `type`"),
    ] {
        let text = format!(
            "volumes: {{x: {{}}}}\nservices:\n  web:\n    image: x\n    volumes:\n      - {spec}\n"
        );
        let e = err(dir.path(), &text);
        assert!(e.to_string().contains(words), "{spec}: {e}");
    }
}

#[test]
fn build_contexts_that_escape_are_refused() {
    let dir = repo();
    let e = err(dir.path(), "services:\n  web:\n    build: ../elsewhere\n");
    let (path, line, message) = invalid(&e);
    assert_eq!((path, line), ("services.web.build", Some(3)));
    assert!(
        message.contains("build context: `../elsewhere` leads outside"),
        "{message}"
    );

    let e = err(
        dir.path(),
        "services:\n  web:\n    build:\n      context: /srv/app\n",
    );
    let (path, line, _) = invalid(&e);
    assert_eq!((path, line), ("services.web.build.context", Some(4)));

    let e = err(
        dir.path(),
        "services:\n  web:\n    build:\n      context: web\n      dockerfile: ../../Dockerfile\n",
    );
    let (path, line, message) = invalid(&e);
    assert_eq!((path, line), ("services.web.build.dockerfile", Some(5)));
    assert!(message.contains("Dockerfile: "), "{message}");

    let e = err(
        dir.path(),
        "services:\n  web:\n    build: https://github.com/x/y.git\n",
    );
    assert!(e.to_string().contains("remote build context"), "{e}");

    let e = err(dir.path(), "services:\n  web:\n    build: ./conf\n");
    assert!(e.to_string().contains("there is no `Dockerfile`"), "{e}");
    let e = err(dir.path(), "services:\n  web:\n    build: ./nowhere\n");
    assert!(e.to_string().contains("is not a directory"), "{e}");
}

#[cfg(unix)]
#[test]
fn a_build_context_through_a_symlink_out_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let dir = repo();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("vendor")).unwrap();
    let e = err(dir.path(), "services:\n  web:\n    build: vendor\n");
    assert!(e.to_string().contains("through a symlink"), "{e}");
}

#[test]
fn depends_on_as_a_list_and_as_a_mapping() {
    let dir = repo();
    let stack = ok(
        dir.path(),
        r#"services:
  db:
    image: postgres
    healthcheck:
      test: pg_isready
  cache:
    image: redis
  api:
    image: x
    depends_on: [db, cache]
  web:
    image: x
    depends_on:
      api:
      db:
        condition: service_healthy
      cache:
        condition: service_started
"#,
    );
    assert_eq!(
        svc(&stack, "api").depends_on,
        [
            ("db".to_owned(), Condition::Started),
            ("cache".to_owned(), Condition::Started)
        ]
    );
    assert_eq!(
        svc(&stack, "web").depends_on,
        [
            ("api".to_owned(), Condition::Started),
            ("db".to_owned(), Condition::Healthy),
            ("cache".to_owned(), Condition::Started)
        ]
    );
}

#[test]
fn start_order_puts_dependencies_first_and_ties_by_name() {
    let dir = repo();
    let stack = ok(
        dir.path(),
        r#"services:
  worker:
    image: x
    depends_on: [db]
  web:
    image: x
    depends_on: [api, cache]
  api:
    image: x
    depends_on: [db]
  db:
    image: x
  cache:
    image: x
"#,
    );
    let order: Vec<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(order, ["cache", "db", "api", "web", "worker"]);
}

#[test]
fn a_service_depending_on_itself_is_refused() {
    let dir = repo();
    let e = err(
        dir.path(),
        "services:\n  web:\n    image: x\n    depends_on:\n      - web\n",
    );
    let (path, line, message) = invalid(&e);
    assert_eq!((path, line), ("services.web.depends_on[0]", Some(5)));
    assert!(message.contains("`web` depends on itself"), "{message}");
}

#[test]
fn a_three_service_cycle_is_named() {
    let dir = repo();
    let e = err(
        dir.path(),
        r#"services:
  c:
    image: x
    depends_on: [a]
  b:
    image: x
    depends_on: [c]
  a:
    image: x
    depends_on: [b]
  d:
    image: x
    depends_on: [a]
"#,
    );
    let (path, line, message) = invalid(&e);
    assert_eq!((path, line), ("services.a.depends_on", Some(10)));
    assert!(message.contains("a cycle: a -> b -> c -> a"), "{message}");
}

#[test]
fn dependency_refusals() {
    let dir = repo();
    let e = err(
        dir.path(),
        "services:\n  web:\n    image: x\n    depends_on: [db]\n",
    );
    let (path, line, message) = invalid(&e);
    assert_eq!((path, line), ("services.web.depends_on[0]", Some(4)));
    assert!(
        message.contains("`db` is not a service of this file (services: web)"),
        "{message}"
    );

    let e = err(
        dir.path(),
        "services:\n  db:\n    image: x\n  web:\n    image: x\n    depends_on:\n      db:\n        condition: service_completed_successfully\n",
    );
    let (path, line, message) = invalid(&e);
    assert_eq!(
        (path, line),
        ("services.web.depends_on.db.condition", Some(8))
    );
    assert!(
        message.contains("`service_completed_successfully` is not supported"),
        "{message}"
    );

    let e = err(
        dir.path(),
        "services:\n  db:\n    image: x\n  web:\n    image: x\n    depends_on:\n      db: {condition: service_healthy}\n",
    );
    assert!(e.to_string().contains("`db` has no healthcheck"), "{e}");

    let e = err(
        dir.path(),
        "services:\n  db:\n    image: x\n  web:\n    image: x\n    depends_on: [db, db]\n",
    );
    assert!(e.to_string().contains("listed twice"), "{e}");
}

#[test]
fn healthcheck_forms() {
    let dir = repo();
    let stack = ok(
        dir.path(),
        r#"services:
  cmd:
    image: x
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost/"]
      interval: 1m30s
      timeout: 500ms
      retries: 5
      start_period: 1h
  shell:
    image: x
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U app || exit 1"]
  string:
    image: x
    healthcheck:
      test: redis-cli ping
      retries: "${TAG}"
  none:
    image: x
    healthcheck:
      test: ["NONE"]
  disabled:
    image: x
    healthcheck:
      disable: true
"#,
    );
    assert_eq!(
        svc(&stack, "cmd").healthcheck,
        Some(Healthcheck {
            test: strings(&["curl", "-f", "http://localhost/"]),
            interval: Duration::from_secs(90),
            timeout: Duration::from_millis(500),
            retries: 5,
            start_period: Duration::from_secs(3600),
        })
    );
    assert_eq!(
        svc(&stack, "shell").healthcheck,
        Some(Healthcheck {
            test: strings(&["sh", "-c", "pg_isready -U app || exit 1"]),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            retries: 3,
            start_period: Duration::ZERO,
        })
    );
    let string = svc(&stack, "string").healthcheck.as_ref().unwrap();
    assert_eq!(string.test, strings(&["sh", "-c", "redis-cli ping"]));
    assert_eq!(string.retries, 7);
    assert_eq!(svc(&stack, "none").healthcheck, None);
    assert_eq!(svc(&stack, "disabled").healthcheck, None);
}

#[test]
fn healthcheck_refusals() {
    let dir = repo();
    for (body, words) in [
        ("{test: [CMD]}", "expected `[\"CMD\""),
        ("{test: \"\"}", "must not be empty"),
        ("{test: [WHAT, x]}", "expected `[\"CMD\""),
        ("{interval: 10s}", "needs `test`"),
        ("{test: x, disable: true}", "contradict"),
        ("{test: x, interval: 10}", "`10` has no unit"),
        ("{test: x, timeout: soon}", "`soon` is not a duration"),
        ("{test: x, retries: -1}", "not a count of retries"),
    ] {
        let text = format!("services:\n  web:\n    image: x\n    healthcheck: {body}\n");
        let e = err(dir.path(), &text);
        assert!(e.to_string().contains(words), "{body}: {e}");
    }
}

#[test]
fn restart_policies() {
    let dir = repo();
    let stack = ok(
        dir.path(),
        r#"services:
  a: {image: x, restart: "no"}
  b: {image: x, restart: no}
  c: {image: x, restart: always}
  d: {image: x, restart: on-failure}
  e: {image: x, restart: "on-failure:5"}
  f: {image: x, restart: unless-stopped}
"#,
    );
    let got: Vec<Restart> = stack.services.iter().map(|s| s.restart).collect();
    assert_eq!(
        got,
        [
            Restart::No,
            Restart::No,
            Restart::Always,
            Restart::OnFailure { max_retries: None },
            Restart::OnFailure {
                max_retries: Some(5)
            },
            Restart::UnlessStopped,
        ]
    );
    let e = err(
        dir.path(),
        "services:\n  a: {image: x, restart: sometimes}\n",
    );
    assert!(
        e.to_string()
            .contains("`sometimes` is not a restart policy"),
        "{e}"
    );
    let e = err(
        dir.path(),
        "services:\n  a: {image: x, restart: \"on-failure:x\"}\n",
    );
    assert!(
        e.to_string().contains("`x` is not a count of restarts"),
        "{e}"
    );
}

#[test]
fn user_working_dir_and_labels() {
    let dir = repo();
    let stack = ok(
        dir.path(),
        r#"services:
  a:
    image: x
    user: "1000:1000"
    working_dir: /app
    labels:
      com.example.team: web
      com.example.port: 80
  b:
    image: x
    user: 1000
    labels:
      - "com.example.team=db"
      - "com.example.flag"
"#,
    );
    let a = svc(&stack, "a");
    assert_eq!(a.user.as_deref(), Some("1000:1000"));
    assert_eq!(a.working_dir.as_deref(), Some("/app"));
    assert_eq!(
        a.labels,
        map(&[("com.example.team", "web"), ("com.example.port", "80")])
    );
    let b = svc(&stack, "b");
    assert_eq!(b.user.as_deref(), Some("1000"));
    assert_eq!(b.working_dir, None);
    assert_eq!(
        b.labels,
        map(&[("com.example.team", "db"), ("com.example.flag", "")])
    );
    let e = err(dir.path(), "services:\n  a: {image: x, working_dir: app}\n");
    assert!(e.to_string().contains("not an absolute path"), "{e}");
}

#[test]
fn yaml_anchors_and_merge_keys() {
    let dir = repo();
    let stack = ok(
        dir.path(),
        r#"services:
  api: &app
    image: app:${TAG}
    environment: &env
      MODE: api
    restart: always
  worker:
    <<: *app
    environment:
      <<: *env
      MODE: worker
"#,
    );
    let worker = svc(&stack, "worker");
    assert_eq!(worker.image.as_deref(), Some("app:7"));
    assert_eq!(worker.restart, Restart::Always);
    assert_eq!(worker.environment, map(&[("MODE", "worker")]));
}

// --- refusals: syntax, unknown keys, variables ---

#[test]
fn a_syntax_error_keeps_its_line_and_column() {
    let dir = repo();
    let e = err(dir.path(), "services:\n  web:\n    image: [nginx\n  db:\n");
    match &e {
        ComposeError::Syntax {
            line,
            column,
            message,
            ..
        } => {
            // libyaml notices the missing `]` on the line after it.
            assert_eq!((*line, *column), (Some(4), Some(5)), "{e:?}");
            assert!(message.contains("flow sequence"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().starts_with("compose.yaml:"), "{e}");

    let e = err(
        dir.path(),
        "services:\n  web:\n    image: x\n   bad: indent\n",
    );
    assert!(
        matches!(e, ComposeError::Syntax { line: Some(4), .. }),
        "{e:?}"
    );

    let e = err(
        dir.path(),
        "services:\n  web:\n    image: x\n    image: y\n",
    );
    assert!(
        matches!(e, ComposeError::Syntax { line: Some(4), .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("`image` is given twice"), "{e}");

    let e = err(
        dir.path(),
        "services:\n  web:\n    image: x\n    command: !reset []\n",
    );
    assert!(
        e.to_string().contains("tag `!reset` is not supported"),
        "{e}"
    );
}

#[test]
fn an_unknown_top_level_key_is_refused_with_its_line() {
    let dir = repo();
    let e = err(
        dir.path(),
        "services:\n  web:\n    image: x\nnetworks:\n  front: {}\n",
    );
    match &e {
        ComposeError::Unsupported {
            line, path, key, ..
        } => {
            assert_eq!(
                (line, path.as_str(), key.as_str()),
                (&Some(4), "networks", "networks")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        e.to_string(),
        "compose.yaml:4: `networks` is not supported by Slipway (supported: services, volumes, name, version)"
    );
}

#[test]
fn an_unknown_service_key_is_refused_with_path_and_line() {
    let dir = repo();
    let e = err(
        dir.path(),
        r#"name: shop
services:
  db:
    image: postgres
  web:
    image: nginx
    ports: ["80:80"]
    deploy:
      replicas: 2
"#,
    );
    assert_eq!(e.line(), Some(8));
    assert!(
        e.to_string().starts_with(
            "compose.yaml:8: services.web: `deploy` is not supported by Slipway (supported: image, build, command, entrypoint, environment, env_file, ports, volumes, depends_on, healthcheck, restart, user, working_dir, labels)"
        ),
        "{e}"
    );
    assert!(matches!(&e, ComposeError::Unsupported { path, .. } if path == "services.web.deploy"));
}

#[test]
fn unknown_keys_in_build_healthcheck_ports_and_volumes() {
    let dir = repo();
    let cases = [
        (
            "services:\n  web:\n    build:\n      context: web\n      dockerfile_inline: FROM x\n",
            "services.web.build.dockerfile_inline",
            5,
        ),
        (
            "services:\n  web:\n    image: x\n    healthcheck:\n      test: [CMD, x]\n      start_interval: 5s\n",
            "services.web.healthcheck.start_interval",
            6,
        ),
        (
            "services:\n  web:\n    image: x\n    ports:\n      - target: 80\n        mode: host\n",
            "services.web.ports[0].mode",
            6,
        ),
        (
            "services:\n  web:\n    image: x\n    volumes:\n      - type: bind\n        source: .\n        target: /x\n        bind: {propagation: shared}\n",
            "services.web.volumes[0].bind",
            8,
        ),
        (
            "volumes:\n  data:\n    driver: local\nservices:\n  web:\n    image: x\n",
            "volumes.data.driver",
            3,
        ),
        (
            "services:\n  db:\n    image: x\n  web:\n    image: x\n    depends_on:\n      db:\n        restart: true\n",
            "services.web.depends_on.db.restart",
            8,
        ),
    ];
    for (text, want_path, want_line) in cases {
        let e = err(dir.path(), text);
        match &e {
            ComposeError::Unsupported { path, line, .. } => {
                assert_eq!((path.as_str(), *line), (want_path, Some(want_line)), "{e}");
            }
            other => panic!("{want_path}: {other:?}"),
        }
    }
    let e = err(
        dir.path(),
        "volumes:\n  data:\n    driver: local\nservices:\n  web:\n    image: x\n",
    );
    assert!(e.to_string().contains("declare the volume as"), "{e}");
}

#[test]
fn unknown_keys_are_refused_before_anything_else() {
    let dir = repo();
    // An unset variable, a bind outside the checkout and a missing env file
    // come first in the file; the unknown key is still what is reported.
    let e = err(
        dir.path(),
        r#"services:
  web:
    image: app:${UNSET}
    volumes: ["/etc:/etc"]
    env_file: nowhere.env
  db:
    image: postgres
    privileged: true
"#,
    );
    assert!(
        matches!(&e, ComposeError::Unsupported { key, line: Some(8), .. } if key == "privileged"),
        "{e:?}"
    );
}

#[test]
fn an_unset_variable_is_refused_with_its_name_and_line() {
    let dir = repo();
    let e = err(
        dir.path(),
        "services:\n  web:\n    image: x\n    environment:\n      DATABASE_URL: postgres://app:${DB_PASS}@db/app\n",
    );
    match &e {
        ComposeError::Variable {
            name, line, path, ..
        } => {
            assert_eq!(name.as_deref(), Some("DB_PASS"));
            assert_eq!(*line, Some(5));
            assert_eq!(path, "services.web.environment.DATABASE_URL");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string().starts_with(
            "compose.yaml:5: services.web.environment.DATABASE_URL: variable `DB_PASS` is not set"
        ),
        "{e}"
    );

    let e = err(
        dir.path(),
        "services:\n  web:\n    image: \"${IMAGE:?name the image to deploy}\"\n",
    );
    assert!(
        e.to_string()
            .contains("variable `IMAGE` is required: name the image to deploy"),
        "{e}"
    );
    assert_eq!(e.line(), Some(3));
}

#[test]
fn variables_change_values_never_the_structure() {
    let dir = repo();
    let mut v = vars();
    v.insert("EVIL".to_owned(), "x\n    privileged: true".to_owned());
    let stack = parse(
        "services:\n  web:\n    image: x\n    environment:\n      A: ${EVIL}\n      B: ${MISSING:-fallback}\n",
        "compose.yaml",
        dir.path(),
        &v,
    )
    .unwrap();
    let web = svc(&stack, "web");
    assert_eq!(web.environment["A"], "x\n    privileged: true");
    assert_eq!(web.environment["B"], "fallback");
}

#[test]
fn names_and_required_keys() {
    let dir = repo();
    for bad in [
        "Web",
        "-web",
        "web.app",
        "a234567890123456789012345678901234567890123456789012345678901234",
    ] {
        let text = format!("services:\n  {bad}:\n    image: x\n");
        let e = err(dir.path(), &text);
        let (path, line, message) = invalid(&e);
        assert_eq!((path, line), (format!("services.{bad}").as_str(), Some(2)));
        assert!(message.contains("not a valid service name"), "{message}");
    }
    let e = err(dir.path(), "services:\n  web:\n    restart: always\n");
    assert!(e.to_string().contains("needs `image` or `build`"), "{e}");
    let e = err(dir.path(), "services: {}\n");
    assert!(e.to_string().contains("at least one service"), "{e}");
    let e = err(dir.path(), "volumes: {}\n");
    assert!(e.to_string().contains("at least one service"), "{e}");
    let e = err(dir.path(), "");
    assert!(e.to_string().contains("the file is empty"), "{e}");
    let e = err(dir.path(), "- a\n- b\n");
    assert!(e.to_string().contains("must be a mapping"), "{e}");
    let e = err(dir.path(), "name: Shop\nservices:\n  a: {image: x}\n");
    assert!(e.to_string().contains("not a valid project name"), "{e}");
    let e = err(
        dir.path(),
        "services:\n  web:\n    image: x\n    ports: \"80:80\"\n",
    );
    assert!(e.to_string().contains("expected a list of ports"), "{e}");
}

#[test]
fn extension_fields_are_refused_with_a_hint() {
    let dir = repo();
    let e = err(
        dir.path(),
        "x-common: &c\n  restart: always\nservices:\n  web:\n    image: x\n",
    );
    assert_eq!(e.line(), Some(1));
    assert!(e.to_string().contains("`x-common` is not supported"), "{e}");
    assert!(e.to_string().contains("merged with `<<:`"), "{e}");
}

#[test]
fn deep_nesting_and_alias_bombs_are_errors_not_crashes() {
    let dir = repo();
    let deep = format!(
        "services:\n  web:\n    image: x\n    labels: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(matches!(
        err(dir.path(), &deep),
        ComposeError::Syntax { .. }
    ));

    let mut bomb = String::from(
        "services:\n  web:\n    image: x\n    labels:\n      a: &a [x, x, x, x, x, x, x, x, x, x]\n",
    );
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h"])
    {
        bomb.push_str(&format!("      {name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    assert!(matches!(
        err(dir.path(), &bomb),
        ComposeError::Syntax { .. }
    ));
}

// --- files ---

#[test]
fn find_file_tries_the_default_names_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let e = find_file(dir.path(), None).unwrap_err();
    assert!(matches!(&e, ComposeError::NotFound { looked_for } if looked_for.len() == 4));
    fs::write(dir.path().join("docker-compose.yml"), "services: {}\n").unwrap();
    assert_eq!(find_file(dir.path(), None).unwrap(), "docker-compose.yml");
    fs::write(dir.path().join("compose.yml"), "services: {}\n").unwrap();
    assert_eq!(find_file(dir.path(), None).unwrap(), "compose.yml");
    fs::write(dir.path().join("compose.yaml"), "services: {}\n").unwrap();
    assert_eq!(find_file(dir.path(), None).unwrap(), "compose.yaml");

    fs::create_dir(dir.path().join("deploy")).unwrap();
    fs::write(dir.path().join("deploy/prod.yaml"), "services: {}\n").unwrap();
    assert_eq!(
        find_file(dir.path(), Some("deploy/prod.yaml")).unwrap(),
        "deploy/prod.yaml"
    );
    assert!(matches!(
        find_file(dir.path(), Some("deploy/missing.yaml")),
        Err(ComposeError::NotFound { .. })
    ));
    let e = find_file(dir.path(), Some("../../etc/passwd")).unwrap_err();
    assert!(e.to_string().contains("outside the repository"), "{e}");
}

#[test]
fn load_reads_the_file_of_the_checkout() {
    let dir = repo();
    fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    build: web\n    image: shop/web:${TAG}\n",
    )
    .unwrap();
    let stack = load(dir.path(), "compose.yaml", &vars()).unwrap();
    assert_eq!(svc(&stack, "web").image.as_deref(), Some("shop/web:7"));

    let e = load(dir.path(), "other.yaml", &vars()).unwrap_err();
    assert!(
        matches!(&e, ComposeError::Read { file, .. } if file == "other.yaml"),
        "{e:?}"
    );
    let e = load(dir.path(), "/etc/passwd", &vars()).unwrap_err();
    assert!(e.to_string().contains("absolute path"), "{e}");

    fs::write(
        dir.path().join("bad.yaml"),
        "services:\n  web:\n    image: x\n    cap_add: [ALL]\n",
    )
    .unwrap();
    let e = load(dir.path(), "bad.yaml", &vars()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("bad.yaml:4: services.web: `cap_add`"),
        "{e}"
    );
}

// --- robustness ---

#[test]
fn no_input_makes_it_panic() {
    let dir = repo();
    let base = r#"version: "3"
name: shop
volumes: {data: {}}
services:
  web: &w
    build: {context: web, args: [A=1]}
    image: x:${TAG:-1}
    command: sh -c 'echo "hi"'
    environment: {A: 1, B: "${TAG}"}
    ports: ["127.0.0.1:80:80/udp", {target: 81}]
    volumes: ["data:/d:ro", "./conf:/c", {type: bind, source: ., target: /r}]
    depends_on: {db: {condition: service_healthy}}
    healthcheck: {test: ["CMD-SHELL", "true"], interval: 1m30s}
    restart: on-failure:3
    labels: [a=b]
  db:
    <<: *w
    depends_on: []
"#;
    assert_eq!(ok(dir.path(), base).services[0].name, "db");
    let alphabet = b":-[]{}\"'$\n #&*!|>,?%@`\\\t0a";
    // A fixed xorshift, so that a failure can be replayed.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut oks = 0;
    for _ in 0..1500 {
        let mut bytes = base.as_bytes().to_vec();
        for _ in 0..(1 + next() % 4) {
            let at = (next() as usize) % bytes.len();
            let c = alphabet[(next() as usize) % alphabet.len()];
            match next() % 3 {
                0 => bytes[at] = c,
                1 => bytes.insert(at, c),
                _ => {
                    bytes.remove(at);
                }
            }
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let result = std::panic::catch_unwind(|| try_parse(dir.path(), &text));
        match result {
            Ok(Ok(_)) => oks += 1,
            Ok(Err(e)) => assert!(!e.to_string().is_empty()),
            Err(_) => panic!("panicked on:\n{text}"),
        }
    }
    // Mutants both pass and fail: the mutation did reach the parser.
    assert!(oks > 0 && oks < 1500, "{oks} of 1500 parsed");
}

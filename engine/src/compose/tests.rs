//! The Compose subset: both syntaxes of each supported key, and each
//! refusal with the place it names.

use super::*;

fn checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("web")).unwrap();
    std::fs::write(dir.path().join("web/Dockerfile"), "FROM x\n").unwrap();
    dir
}

fn read(text: &str, dir: &Path) -> Result<Stack, ComposeError> {
    let vars = BTreeMap::from([("TAG".to_owned(), "7".to_owned())]);
    parse(text, "compose.yaml", dir, &vars)
}

fn error(text: &str) -> String {
    let dir = checkout();
    read(text, dir.path()).unwrap_err().to_string()
}

#[test]
fn every_supported_key_in_both_syntaxes() {
    let dir = checkout();
    std::fs::write(
        dir.path().join("web/app.env"),
        "# app\nA=1\nexport B=\"two\"\nC='3'\n",
    )
    .unwrap();
    let text = r#"
version: "3.9"
name: shop
services:
  web:
    build:
      context: ./web
      dockerfile: Dockerfile
      args: {VERSION: "1.0"}
      target: prod
    command: python3 -m http.server "8000"
    entrypoint: ["/bin/sh", "-c"]
    env_file: web/app.env
    environment:
      C: overridden
      PORT: 8000
      DEBUG: false
    ports:
      - "127.0.0.1:8080:8000"
      - 9000
      - "5353:53/udp"
      - {target: 443, published: "8443", host_ip: "0.0.0.0", protocol: tcp}
    volumes:
      - data:/srv/data:ro
      - ./web:/app
      - {type: bind, source: ./web, target: /conf, read_only: true}
    depends_on:
      db: {condition: service_healthy}
      cache: {condition: service_started}
    healthcheck:
      test: ["CMD", "curl", "-f", "http://127.0.0.1:8000/"]
      interval: 1m30s
      timeout: 500ms
      retries: 5
      start_period: 10s
    restart: on-failure:3
    user: "1000:1000"
    working_dir: /app
    labels: ["team=shop", "tier=web"]
  db:
    image: postgres:${TAG}
    environment: ["POSTGRES_DB=shop", "TAG", "UNSET_LEFT_OUT"]
    healthcheck:
      test: pg_isready
    restart: unless-stopped
  cache:
    image: redis:7
    depends_on: [db]
    restart: always
    healthcheck: {disable: true}
volumes:
  data:
"#;
    let stack = read(text, dir.path()).unwrap();
    assert_eq!(stack.name.as_deref(), Some("shop"));
    assert_eq!(stack.volumes, ["data"]);
    let names: Vec<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "cache", "web"], "dependencies first");
    let web = &stack.services[2];
    let build = web.build.as_ref().unwrap();
    assert_eq!(build.context, PathBuf::from("web"));
    assert_eq!(build.args.get("VERSION").map(String::as_str), Some("1.0"));
    assert_eq!(build.target.as_deref(), Some("prod"));
    assert_eq!(
        web.command.as_deref().unwrap(),
        ["python3", "-m", "http.server", "8000"]
    );
    assert_eq!(web.entrypoint.as_deref().unwrap(), ["/bin/sh", "-c"]);
    let env: Vec<(&str, &str)> = web
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("A", "1"),
            ("B", "two"),
            ("C", "overridden"),
            ("DEBUG", "false"),
            ("PORT", "8000")
        ]
    );
    assert_eq!(
        web.ports,
        [
            Port {
                host_ip: Some("127.0.0.1".into()),
                published: Some(8080),
                target: 8000,
                protocol: Protocol::Tcp
            },
            Port {
                host_ip: None,
                published: None,
                target: 9000,
                protocol: Protocol::Tcp
            },
            Port {
                host_ip: None,
                published: Some(5353),
                target: 53,
                protocol: Protocol::Udp
            },
            Port {
                host_ip: Some("0.0.0.0".into()),
                published: Some(8443),
                target: 443,
                protocol: Protocol::Tcp
            },
        ]
    );
    assert_eq!(
        web.volumes,
        [
            Mount::Named {
                volume: "data".into(),
                target: "/srv/data".into(),
                read_only: true
            },
            Mount::Bind {
                source: dir.path().join("web"),
                target: "/app".into(),
                read_only: false
            },
            Mount::Bind {
                source: dir.path().join("web"),
                target: "/conf".into(),
                read_only: true
            },
        ]
    );
    assert_eq!(
        web.depends_on,
        [
            ("cache".to_owned(), Condition::Started),
            ("db".to_owned(), Condition::Healthy)
        ]
    );
    let h = web.healthcheck.as_ref().unwrap();
    assert_eq!(h.test, ["curl", "-f", "http://127.0.0.1:8000/"]);
    assert_eq!(
        (h.interval, h.timeout, h.retries, h.start_period),
        (
            Duration::from_secs(90),
            Duration::from_millis(500),
            5,
            Duration::from_secs(10)
        )
    );
    assert_eq!(
        web.restart,
        Restart::OnFailure {
            max_retries: Some(3)
        }
    );
    assert_eq!(
        (web.user.as_deref(), web.working_dir.as_deref()),
        (Some("1000:1000"), Some("/app"))
    );
    assert_eq!(web.labels.get("team").map(String::as_str), Some("shop"));

    let db = &stack.services[0];
    assert_eq!(db.image.as_deref(), Some("postgres:7"), "interpolated");
    assert_eq!(
        db.environment.get("TAG").map(String::as_str),
        Some("7"),
        "a bare name takes the env's value"
    );
    assert!(!db.environment.contains_key("UNSET_LEFT_OUT"));
    assert_eq!(
        db.healthcheck.as_ref().unwrap().test,
        ["sh", "-c", "pg_isready"]
    );
    assert_eq!(db.restart, Restart::UnlessStopped);
    let cache = &stack.services[1];
    assert_eq!(cache.healthcheck, None, "disabled");
    assert_eq!(cache.depends_on, [("db".to_owned(), Condition::Started)]);
}

#[test]
fn an_unknown_key_is_refused_with_its_path_and_line() {
    let top = error("services:\n  web:\n    image: x\nnetworks:\n  front: {}\n");
    assert!(
        top.contains("unknown field `networks`") && top.contains("line 4"),
        "{top}"
    );
    let service = error("services:\n  web:\n    image: x\n    deploy:\n      replicas: 2\n");
    assert!(
        service.contains("services.web: unknown field `deploy`") && service.contains("line 4"),
        "{service}"
    );
    let build = error("services:\n  web:\n    build:\n      context: web\n      cache_from: [x]\n");
    assert!(
        build.contains("services.web.build: unknown field `cache_from`")
            && build.contains("line 5"),
        "{build}"
    );
    let health = error("services:\n  web:\n    image: x\n    healthcheck:\n      tset: [CMD, x]\n");
    assert!(
        health.contains("services.web.healthcheck: unknown field `tset`")
            && health.contains("line 5"),
        "{health}"
    );
    let volume = error("services:\n  web:\n    image: x\nvolumes:\n  data:\n    driver: nfs\n");
    assert!(
        volume.contains("volumes.data: unknown field `driver`"),
        "{volume}"
    );
    assert!(top.contains("docs/compose.md"), "{top}");
}

#[test]
fn a_syntax_error_names_its_line() {
    let e = error("services:\n  web:\n    image: [x\n");
    assert!(e.starts_with("compose.yaml: ") && e.contains("line"), "{e}");
}

#[test]
fn binds_and_build_contexts_stay_inside_the_checkout() {
    let dir = checkout();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
    let cases = [
        (
            "- /etc:/etc",
            "bind source `/etc` is outside the repository",
        ),
        ("- ../x:/x", "bind source `../x` is outside the repository"),
        (
            "- ./escape/sub:/x",
            "bind source `./escape/sub` is outside the repository",
        ),
        ("- ./web/../../x:/x", "is outside the repository"),
    ];
    for (mount, expected) in cases {
        let text = format!("services:\n  web:\n    image: x\n    volumes:\n      {mount}\n");
        let e = read(&text, dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("services.web.volumes[0]") && e.contains(expected),
            "{mount}: {e}"
        );
    }
    for context in ["..", "/srv", "escape"] {
        let text = format!("services:\n  web:\n    build: {context}\n");
        let e = read(&text, dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("services.web.build.context") && e.contains("outside the repository"),
            "{context}: {e}"
        );
    }
    let inside = read(
        "services:\n  web:\n    image: x\n    volumes:\n      - ./web/../web:/w\n",
        dir.path(),
    )
    .unwrap();
    assert_eq!(
        inside.services[0].volumes[0],
        Mount::Bind {
            source: dir.path().join("web"),
            target: "/w".into(),
            read_only: false
        }
    );
}

#[test]
fn depends_on_must_name_real_services_without_a_cycle() {
    let itself = error("services:\n  a:\n    image: x\n    depends_on: [a]\n");
    assert!(
        itself.contains("services.a.depends_on: a service cannot depend on itself"),
        "{itself}"
    );
    let unknown = error("services:\n  a:\n    image: x\n    depends_on: [b]\n");
    assert!(unknown.contains("no service `b`"), "{unknown}");
    let cycle = error(
        "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [c]\n  c:\n    image: x\n    depends_on: [a]\n",
    );
    assert!(
        cycle.contains("goes round in a circle: a -> b -> c -> a"),
        "{cycle}"
    );
    let completed = error(
        "services:\n  a:\n    image: x\n  b:\n    image: x\n    depends_on:\n      a: {condition: service_completed_successfully}\n",
    );
    assert!(
        completed.contains("service_completed_successfully` is not supported"),
        "{completed}"
    );
}

#[test]
fn volumes_variables_and_ports_are_checked() {
    let undeclared = error("services:\n  a:\n    image: x\n    volumes: [\"data:/d\"]\n");
    assert!(
        undeclared.contains("volume `data` is not declared"),
        "{undeclared}"
    );
    let unset = error("services:\n  a:\n    image: \"x:${NOPE}\"\n");
    assert!(
        unset.starts_with("compose.yaml:3: variable `NOPE` is not set"),
        "{unset}"
    );
    let required = error("services:\n  a:\n    image: \"${NOPE:?give the image}\"\n");
    assert!(
        required.contains("variable `NOPE` is required: give the image"),
        "{required}"
    );
    let dir = checkout();
    let ok = read(
        "services:\n  a:\n    image: \"x:${NOPE:-1}$$HOME\"\n",
        dir.path(),
    )
    .unwrap();
    assert_eq!(ok.services[0].image.as_deref(), Some("x:1$HOME"));
    let range = error("services:\n  a:\n    image: x\n    ports: [\"8000-8010:8000-8010\"]\n");
    assert!(range.contains("port ranges are not supported"), "{range}");
    let anonymous = error("services:\n  a:\n    image: x\n    volumes: [\"/data\"]\n");
    assert!(anonymous.contains("anonymous volume"), "{anonymous}");
    let neither = error("services:\n  a:\n    restart: always\n");
    assert!(
        neither.contains("services.a: needs `image` or `build`"),
        "{neither}"
    );
}

#[test]
fn files_are_found_in_compose_s_order() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        find_file(dir.path(), None),
        Err(ComposeError::Missing { .. })
    ));
    std::fs::write(dir.path().join("docker-compose.yml"), "").unwrap();
    assert_eq!(find_file(dir.path(), None).unwrap(), "docker-compose.yml");
    std::fs::write(dir.path().join("compose.yaml"), "").unwrap();
    assert_eq!(find_file(dir.path(), None).unwrap(), "compose.yaml");
    assert!(find_file(dir.path(), Some("deploy/stack.yaml")).is_err());
}

#[test]
fn durations_and_words() {
    assert_eq!(parse_duration("1h2m3s").unwrap(), Duration::from_secs(3723));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert!(parse_duration("soon").is_err() && parse_duration("10").is_err());
    assert_eq!(
        shell_words(r#"a 'b c' "d \"e\"" f\ g"#).unwrap(),
        ["a", "b c", "d \"e\"", "f g"]
    );
    assert!(shell_words("'open").is_err());
}

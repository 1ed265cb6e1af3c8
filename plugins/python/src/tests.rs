use super::*;
use crate::plan::validation::COMPILE_CHECK;
use slipway_plugin_sdk::testing;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> String {
    format!("{FIX}/{name}")
}

fn plan_of(name: &str) -> Plan {
    testing::plan::<Python>(fixture(name)).unwrap_or_else(|e| panic!("{name}: {}", e.describe()))
}

fn dockerfile(plan: &Plan) -> &str {
    plan.generated_dockerfile().expect("a generated Dockerfile")
}

fn commands(steps: &[Step]) -> Vec<&str> {
    steps.iter().map(|s| s.command.as_str()).collect()
}

fn notes(plan: &Plan) -> String {
    plan.notes.join("\n")
}

/// Rules every generated Dockerfile follows.
fn check_dockerfile_rules(plan: &Plan) {
    let d = dockerfile(plan);
    assert!(d.starts_with(&format!("FROM {}\n", plan.base_image)), "{d}");
    assert!(!d.contains("--mount"), "{d}");
    assert!(d.contains("useradd --uid 1000"), "{d}");
    assert!(d.contains("USER app\n"), "{d}");
    assert!(d.contains("PATH=/opt/venv/bin:$PATH"), "{d}");
    assert!(d.contains("python -m venv /opt/venv"), "{d}");
    assert!(d.trim_end().ends_with("WORKDIR /workspace"), "{d}");
    assert!(!d.contains("COPY . "), "{d}");
    for line in d.lines().filter(|l| l.starts_with("COPY")) {
        assert!(!line.contains("/workspace"), "{line}");
    }
    assert!(plan.env.iter().any(|e| e.name == "CI" && e.value == "true"));
}

#[test]
fn uv_project_with_lockfile() {
    let det = testing::detect::<Python>(fixture("uv"))
        .unwrap()
        .expect("detected");
    assert_eq!(det.confidence, 90);
    assert!(det.evidence.iter().any(|e| e.file == "uv.lock"));
    assert!(
        det.evidence
            .iter()
            .any(|e| e.file == "pyproject.toml" && e.line == Some(1))
    );

    let plan = plan_of("uv");
    check_dockerfile_rules(&plan);
    // .python-version pins 3.11.4; requires-python agrees and is overruled.
    assert_eq!(plan.base_image, "python:3.11-slim");
    let tc = &plan.toolchains[0];
    assert_eq!(
        (tc.tool.as_str(), tc.resolved.as_str(), tc.hint.kind),
        ("python", "3.11", ConstraintKind::Pin)
    );
    assert_eq!(tc.hint.source.as_ref().unwrap().file, ".python-version");
    assert_eq!(tc.overruled.len(), 1);
    assert_eq!(tc.overruled[0].hint.source.as_ref().unwrap().line, Some(4));
    assert!(!tc.overruled[0].reason.contains("conflicts"));

    let pm = plan.package_manager.as_ref().unwrap();
    assert_eq!(
        (pm.name.as_str(), pm.lockfile.as_deref()),
        ("uv", Some("uv.lock"))
    );
    let d = dockerfile(&plan);
    assert!(d.contains("pip install --no-cache-dir uv"), "{d}");
    assert!(d.contains("uv sync --frozen --no-install-project"), "{d}");
    assert!(d.contains("UV_PROJECT_ENVIRONMENT=/opt/venv"), "{d}");
    assert!(
        d.contains("COPY --chown=1000:1000 [\"pyproject.toml\", \"uv.lock\", \"./\"]"),
        "{d}"
    );
    assert!(
        d.contains("RUN pip install --no-cache-dir 'hatchling'\n"),
        "{d}"
    );

    assert_eq!(
        commands(&plan.fast),
        vec![
            "ruff check --no-fix --no-fix-only --output-format json .",
            "mypy ."
        ]
    );
    assert_eq!(plan.fast[0].report.as_ref().unwrap().format, "ruff-json");
    assert_eq!(plan.fast[0].report.as_ref().unwrap().path, None);
    assert_eq!(
        commands(&plan.full),
        vec!["python -m pytest --junitxml=.slipway/junit.xml"]
    );
    let report = plan.full[0].report.as_ref().unwrap();
    assert_eq!(
        (report.format.as_str(), report.path.as_deref()),
        ("junit-xml", Some(".slipway/junit.xml"))
    );
    assert_eq!(plan.setup.len(), 1);
    assert!(
        plan.setup[0]
            .command
            .starts_with("pip install --no-index --no-deps --no-build-isolation")
    );
    let caches: Vec<(&str, &str)> = plan
        .cache
        .iter()
        .map(|c| (c.id.as_str(), c.path.as_str()))
        .collect();
    assert!(
        caches.contains(&("uv", "/home/app/.cache/uv")),
        "{caches:?}"
    );
    // All tools are declared: nothing installed unpinned.
    assert!(
        !notes(&plan).contains("not a declared dependency"),
        "{}",
        notes(&plan)
    );
}

#[test]
fn poetry_project_pins_poetry_from_the_lockfile() {
    assert_eq!(
        testing::detect::<Python>(fixture("poetry"))
            .unwrap()
            .unwrap()
            .confidence,
        90
    );
    let plan = plan_of("poetry");
    check_dockerfile_rules(&plan);
    // ^3.10 is a range: the newest line that satisfies it.
    assert_eq!(plan.base_image, "python:3.13-slim");
    let tc = &plan.toolchains[0];
    assert_eq!(tc.hint.kind, ConstraintKind::Range);
    assert_eq!(tc.hint.source.as_ref().unwrap().line, Some(9));
    let pm = plan.package_manager.as_ref().unwrap();
    assert_eq!(pm.name, "poetry");
    assert_eq!(pm.version.as_deref(), Some("1.8.3"));
    assert_eq!(pm.source.as_ref().unwrap().line, Some(1));
    let d = dockerfile(&plan);
    assert!(
        d.contains("pip install --no-cache-dir 'poetry==1.8.3'"),
        "{d}"
    );
    assert!(d.contains("POETRY_VIRTUALENVS_CREATE=false"), "{d}");
    assert!(
        d.contains("touch 'README.md' && poetry install --no-root --no-interaction"),
        "{d}"
    );
    assert!(d.contains("\"pyproject.toml\", \"poetry.lock\""), "{d}");
    assert!(d.contains("'poetry-core>=1.0.0'"), "{d}");
    assert!(
        plan.cache
            .iter()
            .any(|c| c.id == "poetry" && c.path == "/home/app/.cache/pypoetry")
    );
    // pytest is a dev dependency.
    assert_eq!(
        commands(&plan.full),
        vec!["python -m pytest --junitxml=.slipway/junit.xml"]
    );
    // No linter configured: the compile check stands in.
    assert_eq!(commands(&plan.fast), vec![COMPILE_CHECK]);
}

#[test]
fn pipenv_runtime_txt_pin_beats_pipfile_range_with_a_conflict_note() {
    let plan = plan_of("pipenv");
    check_dockerfile_rules(&plan);
    assert_eq!(plan.base_image, "python:3.11-slim");
    let tc = &plan.toolchains[0];
    assert_eq!(tc.hint.written_form, "python-3.11.6");
    assert_eq!(tc.hint.constraint, "3.11.6");
    assert_eq!(tc.overruled.len(), 1);
    assert_eq!(
        tc.overruled[0].hint.source.as_ref().unwrap().file,
        "Pipfile"
    );
    assert!(
        tc.overruled[0]
            .reason
            .contains("conflicts: 3.11 does not satisfy `3.9`"),
        "{}",
        tc.overruled[0].reason
    );
    assert!(
        notes(&plan).contains("python `3.9` from Pipfile ignored"),
        "{}",
        notes(&plan)
    );
    let pm = plan.package_manager.as_ref().unwrap();
    assert_eq!(
        (pm.name.as_str(), pm.lockfile.as_deref()),
        ("pipenv", Some("Pipfile.lock"))
    );
    let d = dockerfile(&plan);
    assert!(
        d.contains("pipenv verify && pipenv requirements --dev"),
        "{d}"
    );
    assert!(d.contains("\"Pipfile\", \"Pipfile.lock\""), "{d}");
    assert_eq!(
        commands(&plan.full),
        vec!["python -m pytest --junitxml=.slipway/junit.xml"]
    );
    assert!(plan.setup.is_empty());
}

#[test]
fn requirements_with_includes_local_lines_and_version_manager_pins() {
    let det = testing::detect::<Python>(fixture("requirements"))
        .unwrap()
        .unwrap();
    assert_eq!(det.confidence, 80);
    let plan = plan_of("requirements");
    check_dockerfile_rules(&plan);
    // mise.toml beats .tool-versions (both pins; the first wins).
    assert_eq!(plan.base_image, "python:3.10-slim");
    let tc = &plan.toolchains[0];
    assert_eq!(tc.hint.source.as_ref().unwrap().file, "mise.toml");
    assert_eq!(
        tc.overruled[0].hint.source.as_ref().unwrap().file,
        ".tool-versions"
    );
    assert_eq!(tc.overruled[0].hint.source.as_ref().unwrap().line, Some(2));
    assert!(
        tc.overruled[0]
            .reason
            .starts_with("an earlier pin (mise.toml) wins"),
        "{}",
        tc.overruled[0].reason
    );
    let d = dockerfile(&plan);
    assert!(
        d.contains(
            "COPY --chown=1000:1000 [\"requirements.txt\", \"requirements-dev.txt\", \"./\"]"
        ),
        "{d}"
    );
    assert!(
        d.contains("COPY --chown=1000:1000 [\"requirements/base.txt\", \"requirements/base.txt\"]"),
        "{d}"
    );
    assert!(d.contains("sed -i -e 2d 'requirements.txt' && pip install --no-cache-dir -r 'requirements.txt' -r 'requirements-dev.txt'"), "{d}");
    assert!(d.contains("'setuptools>=61' 'wheel'"), "{d}");
    assert!(
        notes(&plan).contains("requirements.txt:2: `-e .` installs a local path"),
        "{}",
        notes(&plan)
    );
    assert_eq!(
        commands(&plan.fast),
        vec!["ruff check --no-fix --no-fix-only --output-format json ."]
    );
    assert_eq!(
        commands(&plan.full),
        vec!["python -m pytest --junitxml=.slipway/junit.xml"]
    );
    assert_eq!(plan.package_manager.as_ref().unwrap().name, "pip");
    assert!(
        plan.cache
            .iter()
            .any(|c| c.id == "pip" && c.path == "/home/app/.cache/pip")
    );
}

#[test]
fn project_without_lockfile_uses_pip_and_the_default_line() {
    let det = testing::detect::<Python>(fixture("project"))
        .unwrap()
        .unwrap();
    assert_eq!(det.confidence, 80);
    let plan = plan_of("project");
    check_dockerfile_rules(&plan);
    assert_eq!(plan.base_image, "python:3.12-slim");
    assert_eq!(plan.toolchains[0].hint.kind, ConstraintKind::Default);
    assert!(notes(&plan).contains("not frozen"), "{}", notes(&plan));
    let d = dockerfile(&plan);
    assert!(
        d.contains("RUN pip install --no-cache-dir 'attrs>=23' 'rich' 'pytest>=8'\n"),
        "{d}"
    );
    assert!(!d.contains("sphinx"), "{d}");
    assert!(d.contains("\"pyproject.toml\", \"./\""), "{d}");
    assert!(
        plan.setup[0]
            .command
            .starts_with("SETUPTOOLS_SCM_PRETEND_VERSION=0.0.0 pip install"),
        "{:?}",
        plan.setup
    );
    // conftest.py: pytest; it is declared in the `test` extra.
    assert_eq!(
        commands(&plan.full),
        vec!["python -m pytest --junitxml=.slipway/junit.xml"]
    );
    assert!(!d.contains(" pytest\n"), "{d}");
}

#[test]
fn tool_only_pyproject_and_other_ecosystems_are_not_python() {
    assert!(
        testing::detect::<Python>(fixture("tool-only"))
            .unwrap()
            .is_none()
    );
    assert!(
        testing::detect::<Python>(fixture("none"))
            .unwrap()
            .is_none()
    );
    assert!(
        testing::detect::<Python>(fixture("no-such-fixture"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn version_file_alone_is_a_weak_detection_and_first_line_wins() {
    let det = testing::detect::<Python>(fixture("version-only"))
        .unwrap()
        .unwrap();
    assert_eq!(det.confidence, 50);
    assert_eq!(det.evidence[0].file, ".python-version");
    let plan = plan_of("version-only");
    check_dockerfile_rules(&plan);
    assert_eq!(plan.base_image, "python:3.9-slim");
    assert_eq!(plan.toolchains[0].hint.written_form, "python-3.9.18");
    assert_eq!(plan.toolchains[0].hint.constraint, "3.9.18");
    assert!(
        notes(&plan).contains(".python-version lists 2 versions"),
        "{}",
        notes(&plan)
    );
    assert!(plan.full.is_empty());
    assert_eq!(plan.fast.len(), 1);
    assert_eq!(plan.fast[0].name, "compile");
}

#[test]
fn malformed_manifests_name_the_file_and_line() {
    let e = testing::detect::<Python>(fixture("malformed-pyproject"))
        .unwrap_err()
        .describe();
    assert!(
        e.starts_with("malformed input: pyproject.toml:6: is not valid TOML"),
        "{e}"
    );
    let e = testing::plan::<Python>(fixture("malformed-pyproject"))
        .unwrap_err()
        .describe();
    assert!(e.contains("pyproject.toml:6"), "{e}");
    let e = testing::plan::<Python>(fixture("malformed-pipfile"))
        .unwrap_err()
        .describe();
    assert!(
        e.starts_with("malformed input: Pipfile:5: is not valid TOML"),
        "{e}"
    );
}

#[test]
fn pyenv_environment_names_are_ignored_with_a_note() {
    let plan = plan_of("pyenv-name");
    assert_eq!(plan.base_image, "python:3.12-slim");
    assert!(
        notes(&plan).contains(".python-version:1: `myproject-env` ignored"),
        "{}",
        notes(&plan)
    );
}

#[test]
fn tests_dir_without_pytest_runs_unittest() {
    let plan = plan_of("unittest");
    assert_eq!(
        commands(&plan.full),
        vec!["python -m unittest discover -s tests"]
    );
    assert!(plan.setup.is_empty());
}

#[test]
fn unsupported_pin_is_an_error_naming_the_file() {
    let e = testing::plan::<Python>(fixture("unsupported-pin"))
        .unwrap_err()
        .describe();
    assert!(
        e.contains(".python-version: no python release line satisfies `3.7.17`"),
        "{e}"
    );
}

#[test]
fn binary_lockfile_is_noted_not_a_panic() {
    let plan = plan_of("garbage-lock");
    let pm = plan.package_manager.as_ref().unwrap();
    assert_eq!((pm.name.as_str(), pm.version.as_deref()), ("poetry", None));
    assert!(
        notes(&plan).contains("poetry.lock could not be read"),
        "{}",
        notes(&plan)
    );
    assert!(dockerfile(&plan).contains("pip install --no-cache-dir 'poetry' &&"));
}

#[test]
fn non_python_runtime_txt_is_ignored() {
    let plan = plan_of("other-runtime");
    assert_eq!(plan.base_image, "python:3.12-slim");
    assert!(
        notes(&plan).contains("runtime.txt ignored: `ruby-3.2.2` is not a Python runtime"),
        "{}",
        notes(&plan)
    );
}

#[test]
fn undeclared_tools_are_installed_with_a_note() {
    let dir =
        std::env::temp_dir().join(format!("slipway-python-undeclared-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("requirements.txt"), "flask\n").unwrap();
    std::fs::write(dir.join("mypy.ini"), "[mypy]\n").unwrap();
    std::fs::write(dir.join("pytest.ini"), "[pytest]\n").unwrap();
    let plan = testing::plan::<Python>(&dir).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(commands(&plan.fast), vec!["mypy ."]);
    assert!(
        dockerfile(&plan).contains("RUN pip install --no-cache-dir mypy pytest\n"),
        "{}",
        dockerfile(&plan)
    );
    assert!(
        notes(&plan).contains("mypy, pytest configured but not a declared dependency"),
        "{}",
        notes(&plan)
    );
}

#[test]
fn version_manager_pin_alone_is_a_weak_detection() {
    let det = testing::detect::<Python>(fixture("mise-only"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            det.confidence,
            det.evidence[0].file.as_str(),
            det.evidence[0].line
        ),
        (50, "mise.toml", Some(3))
    );
    assert_eq!(plan_of("mise-only").base_image, "python:3.13-slim");
    assert!(
        testing::detect::<Python>(fixture("mise-node"))
            .unwrap()
            .is_none()
    );
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("slipway-python-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A project that configures ruff to fix still gets a lint that only
/// reports: `--no-fix` and `--no-fix-only` override the configuration.
#[test]
fn configured_ruff_fixes_are_turned_off() {
    let cases: [(&str, &str, &str); 3] = [
        (
            "pyproject-fix",
            "pyproject.toml",
            "[project]\nname = \"x\"\n\n[tool.ruff]\nfix = true\n",
        ),
        ("ruff-toml-fix-only", "ruff.toml", "fix-only = true\n"),
        (
            "dot-ruff-toml-fix",
            ".ruff.toml",
            "fix = true\nunsafe-fixes = true\n",
        ),
    ];
    for (name, file, text) in cases {
        let dir = scratch(name);
        std::fs::write(dir.join("requirements.txt"), "ruff\n").unwrap();
        std::fs::write(dir.join(file), text).unwrap();
        let plan = testing::plan::<Python>(&dir).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let ruff = plan.fast.iter().find(|s| s.name == "ruff").expect("ruff");
        assert_eq!(
            ruff.command, "ruff check --no-fix --no-fix-only --output-format json .",
            "{name}"
        );
        assert_eq!(ruff.report.as_ref().unwrap().format, "ruff-json");
        for step in plan.fast.iter().chain(&plan.full) {
            let words: Vec<&str> = step.command.split_whitespace().collect();
            assert!(
                !words
                    .iter()
                    .any(|w| matches!(*w, "--fix" | "--fix-only" | "--unsafe-fixes")),
                "{name}: {}",
                step.command
            );
        }
    }
}

#[test]
fn no_linter_declared_byte_compiles_into_tmp() {
    let plan = plan_of("project");
    let compile: Vec<&Step> = plan.fast.iter().filter(|s| s.name == "compile").collect();
    if plan.fast.len() == 1 {
        assert_eq!(compile.len(), 1, "{:?}", plan.fast);
        let c = &compile[0].command;
        assert!(c.starts_with("PYTHONPYCACHEPREFIX=/tmp/"), "{c}");
        assert!(c.contains("python -m compileall -q"), "{c}");
        assert!(
            notes(&plan).contains("chosen because the project declares no linter"),
            "{}",
            notes(&plan)
        );
    }
    // ruff or mypy configured: no compile step.
    let plan = plan_of("uv");
    assert!(
        plan.fast.iter().all(|s| s.name != "compile"),
        "{:?}",
        plan.fast
    );
}

#[test]
fn mypy_files_in_config_runs_bare_mypy_and_says_where_from() {
    let dir = scratch("mypy-files");
    std::fs::write(
        dir.join("pyproject.toml"),
        "[project]\nname = \"x\"\nversion = \"0\"\ndependencies = [\"mypy\"]\n\n[tool.mypy]\nfiles = [\"src\"]\n",
    )
    .unwrap();
    let plan = testing::plan::<Python>(&dir).unwrap();
    assert_eq!(commands(&plan.fast), vec!["mypy"]);
    assert!(
        notes(&plan).contains("mypy: `mypy` with the `files` of pyproject.toml [tool.mypy]"),
        "{}",
        notes(&plan)
    );

    // mypy.ini with files.
    let _ = std::fs::remove_file(dir.join("pyproject.toml"));
    std::fs::write(dir.join("requirements.txt"), "mypy\n").unwrap();
    std::fs::write(
        dir.join("mypy.ini"),
        "[mypy]\nfiles = src, tests\nstrict = True\n",
    )
    .unwrap();
    let plan = testing::plan::<Python>(&dir).unwrap();
    assert_eq!(commands(&plan.fast), vec!["mypy"]);
    assert!(notes(&plan).contains("of mypy.ini"), "{}", notes(&plan));

    // setup.cfg [mypy] with files.
    let _ = std::fs::remove_file(dir.join("mypy.ini"));
    std::fs::write(
        dir.join("setup.cfg"),
        "[metadata]\nname = x\n\n[mypy]\nfiles = pkg\n",
    )
    .unwrap();
    let plan = testing::plan::<Python>(&dir).unwrap();
    assert_eq!(commands(&plan.fast), vec!["mypy"]);
    assert!(
        notes(&plan).contains("of setup.cfg [mypy]"),
        "{}",
        notes(&plan)
    );

    // Without files: `mypy .`, noted.
    std::fs::write(dir.join("setup.cfg"), "[mypy]\nstrict = True\n").unwrap();
    let plan = testing::plan::<Python>(&dir).unwrap();
    assert_eq!(commands(&plan.fast), vec!["mypy ."]);
    assert!(notes(&plan).contains("without `files`"), "{}", notes(&plan));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The text after the marker, checked for what layering on another image needs.
fn layered_section(plan: &Plan) -> &str {
    let d = dockerfile(plan);
    assert!(d.contains("useradd") && d.contains("\nUSER app"), "{d}");
    let after = testing::layerable_section(d, "app");
    assert!(!after.contains("python -m venv /opt/venv"), "{d}");
    assert!(
        after.contains("RUN mkdir -p /opt/deps\nWORKDIR /opt/deps\n"),
        "{d}"
    );
    assert!(after.ends_with("WORKDIR /workspace\n"), "{d}");
    after
}

#[test]
fn dependency_section_after_the_marker_installs_deps_and_test_tools() {
    // A [project] without a lockfile and pytest configured but not declared
    // (as examples/dockerfile-app): the section installs it with the pip on PATH.
    let dir = scratch("layered");
    std::fs::write(
        dir.join("pyproject.toml"),
        "[project]\nname = \"x\"\nversion = \"0\"\ndependencies = [\"requests\"]\n\n[tool.pytest.ini_options]\ntestpaths = [\"tests\"]\n",
    )
    .unwrap();
    let plan = testing::plan::<Python>(&dir).unwrap();
    let after = layered_section(&plan);
    assert!(
        after.contains("RUN pip install --no-cache-dir 'requests'\n"),
        "{after}"
    );
    assert!(after.contains("pytest"), "{after}");
    assert_eq!(
        commands(&plan.full),
        vec!["python -m pytest --junitxml=.slipway/junit.xml"]
    );
    let _ = std::fs::remove_dir_all(&dir);

    // Every manager: self-contained; a manager's tool is installed when missing.
    for name in ["uv", "poetry", "pipenv", "requirements", "project"] {
        let plan = plan_of(name);
        let after = layered_section(&plan);
        assert!(
            after.contains("pip install")
                || after.contains("sync")
                || after.contains("poetry install"),
            "{name}: {after}"
        );
    }
    let uv = plan_of("uv");
    let after = layered_section(&uv);
    assert!(
        after.contains("RUN command -v uv >/dev/null 2>&1 || { python -m venv /opt/tools"),
        "{after}"
    );
    assert!(after.contains("UV_PROJECT_ENVIRONMENT=\"$(python -c 'import sys; print(sys.prefix)')\" uv sync --frozen"), "{after}");
}

#[test]
fn example_dockerfile_app_layer_has_pytest() {
    let dir = format!(
        "{}/../../examples/dockerfile-app",
        env!("CARGO_MANIFEST_DIR")
    );
    if std::path::Path::new(&dir).exists() {
        let plan = testing::plan::<Python>(&dir).unwrap_or_else(|e| panic!("{}", e.describe()));
        let after = layered_section(&plan);
        assert!(
            after.contains("RUN pip install --no-cache-dir ") && after.contains(" pytest\n"),
            "{after}"
        );
        assert_eq!(
            commands(&plan.full),
            vec!["python -m pytest --junitxml=.slipway/junit.xml"]
        );
        println!(
            "{}\n{:?}\n{:?}\n{:?}",
            dockerfile(&plan),
            plan.fast,
            plan.full,
            plan.notes
        );
    }
}

mod golden;

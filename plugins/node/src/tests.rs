use super::*;
use slipway_plugin_sdk::testing;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn plan(name: &str) -> Plan {
    testing::plan::<Node>(fixture(name)).unwrap_or_else(|e| panic!("{name}: {}", e.describe()))
}

fn plan_err(name: &str) -> String {
    match testing::plan::<Node>(fixture(name)) {
        Ok(_) => panic!("{name}: expected an error"),
        Err(e) => e.describe(),
    }
}

fn detect(name: &str) -> Option<Detection> {
    testing::detect::<Node>(fixture(name)).unwrap_or_else(|e| panic!("{name}: {}", e.describe()))
}

fn dockerfile_of(p: &Plan) -> &str {
    p.generated_dockerfile().expect("a generated Dockerfile")
}

fn commands(steps: &[Step]) -> Vec<&str> {
    steps.iter().map(|s| s.command.as_str()).collect()
}

fn has_note(p: &Plan, needle: &str) -> bool {
    p.notes.iter().any(|n| n.contains(needle))
}

/// A fresh directory under the system temp dir (for generated fixtures).
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("slipway-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---- detection ----

#[test]
fn package_json_with_lockfile_is_75() {
    let d = detect("npm-lockfile").unwrap();
    assert_eq!(d.confidence, 75);
    let files: Vec<&str> = d.evidence.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(files, ["package.json", "package-lock.json"]);
}

#[test]
fn package_json_alone_is_70() {
    assert_eq!(detect("defaults").unwrap().confidence, 70);
    assert_eq!(detect("mise").unwrap().confidence, 70);
}

#[test]
fn only_a_version_file_is_50() {
    let d = detect("node-version-only").unwrap();
    assert_eq!(d.confidence, 50);
    assert_eq!(d.evidence[0].file, ".node-version");

    let dir = scratch("tool-versions-only");
    std::fs::write(
        dir.join(".tool-versions"),
        "python 3.12.1\nnodejs 20.11.0\n",
    )
    .unwrap();
    let d = testing::detect::<Node>(&dir).unwrap().unwrap();
    assert_eq!(d.confidence, 50);
    assert_eq!(
        (d.evidence[0].file.as_str(), d.evidence[0].line),
        (".tool-versions", Some(2))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn other_ecosystems_are_not_detected() {
    assert!(detect("not-node").is_none());
    // A version manager file without node is not node's either.
    let dir = scratch("tool-versions-python");
    std::fs::write(dir.join(".tool-versions"), "python 3.12.1\n").unwrap();
    std::fs::write(dir.join("mise.toml"), "[tools]\nruby = \"3.3\"\n").unwrap();
    assert!(testing::detect::<Node>(&dir).unwrap().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_package_json_is_an_error_naming_the_file_and_line() {
    let e = testing::detect::<Node>(fixture("malformed-package-json"))
        .unwrap_err()
        .describe();
    assert!(
        e.starts_with("malformed input: package.json:3: is not valid JSON"),
        "{e}"
    );
    let e = plan_err("malformed-package-json");
    assert!(e.starts_with("malformed input: package.json:3:"), "{e}");
}

#[test]
fn package_json_that_is_not_an_object_is_malformed() {
    let dir = scratch("array-manifest");
    std::fs::write(dir.join("package.json"), "[1, 2]\n").unwrap();
    let e = testing::detect::<Node>(&dir).unwrap_err().describe();
    assert!(
        e.starts_with("malformed input: package.json:1: is not a JSON object"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- node version precedence ----

#[test]
fn engines_range_without_pins() {
    let p = plan("npm-lockfile");
    assert_eq!(p.base_image, "node:22-slim");
    let t = &p.toolchains[0];
    assert_eq!(
        (t.tool.as_str(), t.resolved.as_str(), t.hint.kind),
        ("node", "22", ConstraintKind::Range)
    );
    assert_eq!(t.hint.written_form, ">=18 <23");
    assert_eq!(
        t.hint.source.as_ref().unwrap().line,
        Some(7),
        "line of engines.node, not engines.npm"
    );
}

#[test]
fn nvmrc_pin_beats_engines_and_is_normalised() {
    let p = plan("nvmrc-pin");
    let t = &p.toolchains[0];
    assert_eq!(p.base_image, "node:18-slim");
    assert_eq!(
        (t.hint.constraint.as_str(), t.hint.written_form.as_str()),
        ("18.17.0", "v18.17.0")
    );
    assert_eq!(t.hint.source.as_ref().unwrap().file, ".nvmrc");
    assert_eq!(t.overruled.len(), 1);
    assert!(
        has_note(
            &p,
            "node `>=20` from package.json ignored: a pin (.nvmrc) beats a range; conflicts: 18 does not satisfy `>=20`"
        ),
        "{:?}",
        p.notes
    );
}

#[test]
fn node_version_file_alone() {
    let p = plan("node-version-only");
    assert_eq!(p.base_image, "node:20-slim");
    assert!(p.package_manager.is_none());
    assert!(p.setup.is_empty() && p.full.is_empty());
    assert_eq!(p.fast[0].name, "syntax");
    assert!(has_note(&p, "no package.json"));
    let d = dockerfile_of(&p);
    assert!(
        d.starts_with("FROM node:20-slim\n")
            && d.contains("USER node\n")
            && d.ends_with("WORKDIR /workspace\n"),
        "{d}"
    );
}

#[test]
fn tool_versions_beats_nvmrc() {
    let p = plan("tool-versions");
    let t = &p.toolchains[0];
    assert_eq!(
        (
            t.resolved.as_str(),
            t.hint.source.as_ref().unwrap().file.as_str()
        ),
        ("22", ".tool-versions")
    );
    assert_eq!(t.hint.source.as_ref().unwrap().line, Some(3));
    assert!(
        has_note(
            &p,
            "node `18` from .nvmrc ignored: an earlier pin (.tool-versions) wins"
        ),
        "{:?}",
        p.notes
    );
}

#[test]
fn mise_beats_tool_versions() {
    let p = plan("mise");
    let t = &p.toolchains[0];
    assert_eq!(
        (
            t.resolved.as_str(),
            t.hint.source.as_ref().unwrap().file.as_str()
        ),
        ("20", "mise.toml")
    );
    assert!(
        has_note(
            &p,
            "node `22` from .tool-versions ignored: an earlier pin (mise.toml) wins; conflicts"
        ),
        "{:?}",
        p.notes
    );
}

#[test]
fn nvmrc_lts_alias() {
    let p = plan("nvmrc-lts-alias");
    assert_eq!(p.base_image, "node:18-slim");
    assert_eq!(p.toolchains[0].hint.constraint, "lts/hydrogen");
    // engines agrees with 18: overruled without a conflict.
    assert!(
        has_note(
            &p,
            "node `^18 || ^20` from package.json ignored: a pin (.nvmrc) beats a range"
        ),
        "{:?}",
        p.notes
    );
    assert!(!has_note(&p, "conflicts"), "{:?}", p.notes);
}

#[test]
fn no_hints_is_the_lts_default() {
    let p = plan("defaults");
    let t = &p.toolchains[0];
    assert_eq!(
        (t.resolved.as_str(), t.hint.kind, t.hint.source.is_none()),
        ("24", ConstraintKind::Default, true)
    );
    assert_eq!(p.base_image, "node:24-slim");
}

#[test]
fn bad_version_hints_are_errors_naming_the_file() {
    let e = plan_err("nvmrc-garbage");
    assert!(
        e.starts_with("malformed input: .nvmrc:1: cannot read version constraint `banana`"),
        "{e}"
    );
    let e = plan_err("engines-not-string");
    assert!(
        e.starts_with("malformed input: package.json:4: `engines.node` must be a string"),
        "{e}"
    );
    let e = plan_err("engines-too-old");
    assert!(
        e.contains("package.json: no node release line satisfies `^14`"),
        "{e}"
    );
}

#[test]
fn huge_and_binary_hint_files_are_errors_naming_the_file() {
    let dir = scratch("huge-nvmrc");
    std::fs::write(dir.join("package.json"), "{\"name\": \"x\"}").unwrap();
    std::fs::write(dir.join(".nvmrc"), vec![b'1'; 3 * 1024 * 1024]).unwrap();
    let e = testing::plan::<Node>(&dir).unwrap_err().describe();
    assert!(e.contains(".nvmrc: is larger than"), "{e}");
    std::fs::write(dir.join(".nvmrc"), [0xff, 0xfe, 0x00, 0x31]).unwrap();
    let e = testing::plan::<Node>(&dir).unwrap_err().describe();
    assert!(e.contains(".nvmrc: is not UTF-8"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- package managers and the image ----

#[test]
fn npm_with_lockfile_installs_frozen_outside_workspace() {
    let p = plan("npm-lockfile");
    let pm = p.package_manager.as_ref().unwrap();
    assert_eq!(
        (
            pm.name.as_str(),
            pm.lockfile.as_deref(),
            pm.version.as_deref()
        ),
        ("npm", Some("package-lock.json"), None)
    );
    assert_eq!(pm.source.as_ref().unwrap().file, "package-lock.json");
    let d = dockerfile_of(&p);
    assert!(d.starts_with("FROM node:22-slim\n"), "{d}");
    assert!(!d.contains("--mount"), "{d}");
    assert!(d.contains("USER node\n"), "{d}");
    assert!(d.contains("WORKDIR /opt/deps\nCOPY --chown=1000:1000 package.json package-lock.json .npmrc ./\nRUN npm ci"), "{d}");
    assert!(!d.contains("COPY . "), "{d}");
    assert!(d.ends_with("WORKDIR /workspace\n"), "{d}");
    assert!(!d.contains("npm install -g"), "{d}");
    assert_eq!(
        commands(&p.setup),
        ["ln -sfn /opt/deps/node_modules node_modules"]
    );
    assert_eq!(p.setup[0].name, "deps");
    assert_eq!(commands(&p.fast), ["npm run lint", "npm run typecheck"]);
    assert_eq!(commands(&p.full), ["npm run test"]);
    assert_eq!(
        (p.cache[0].id.as_str(), p.cache[0].path.as_str()),
        ("npm", "/home/node/.npm")
    );
    assert!(p.env.iter().any(|e| e.name == "CI" && e.value == "true"));
}

#[test]
fn no_lockfile_is_npm_install_not_frozen() {
    let p = plan("defaults");
    let pm = p.package_manager.as_ref().unwrap();
    assert_eq!((pm.name.as_str(), pm.lockfile.as_deref()), ("npm", None));
    let d = dockerfile_of(&p);
    assert!(
        d.contains("COPY --chown=1000:1000 package.json ./\nRUN npm install"),
        "{d}"
    );
    assert!(has_note(&p, "not frozen"), "{:?}", p.notes);
    // npm's placeholder test script is skipped, with a note.
    assert!(p.full.is_empty());
    assert!(has_note(&p, "placeholder"), "{:?}", p.notes);
    // No lint script, no ESLint: the syntax check stands in, with a note.
    assert_eq!(p.fast.len(), 1);
    assert_eq!(p.fast[0].name, "syntax");
}

#[test]
fn pnpm_from_package_manager() {
    let p = plan("pnpm-package-manager");
    let pm = p.package_manager.as_ref().unwrap();
    assert_eq!(
        (
            pm.name.as_str(),
            pm.version.as_deref(),
            pm.lockfile.as_deref()
        ),
        ("pnpm", Some("9.1.0"), Some("pnpm-lock.yaml"))
    );
    let src = pm.source.as_ref().unwrap();
    assert_eq!((src.file.as_str(), src.line), ("package.json", Some(3)));
    let d = dockerfile_of(&p);
    assert!(d.contains("RUN npm install -g pnpm@9.1.0\n"), "{d}");
    assert!(d.contains("COPY --chown=1000:1000 package.json pnpm-lock.yaml ./\nRUN pnpm install --frozen-lockfile && mkdir -p /opt/deps/node_modules\n"), "{d}");
    // Global installs happen as root, before USER.
    assert!(
        d.find("npm install -g").unwrap() < d.find("USER node").unwrap(),
        "{d}"
    );
    assert_eq!(commands(&p.fast), ["pnpm run lint", "pnpm run type-check"]);
    assert_eq!(commands(&p.full), ["pnpm run test"]);
    assert_eq!(p.cache[0].path, "/home/node/.local/share/pnpm/store");
}

#[test]
fn pnpm_version_from_lockfile_format() {
    let p = plan("pnpm-lockfile-v6");
    let pm = p.package_manager.as_ref().unwrap();
    assert_eq!((pm.name.as_str(), pm.version.as_deref()), ("pnpm", None));
    assert_eq!(pm.source.as_ref().unwrap().file, "pnpm-lock.yaml");
    assert!(dockerfile_of(&p).contains("RUN npm install -g pnpm@8\n"));
}

#[test]
fn yarn_classic() {
    let p = plan("yarn-classic");
    let d = dockerfile_of(&p);
    assert!(d.contains("RUN npm install -g --force yarn@1\n"), "{d}");
    assert!(
        d.contains("package.json yarn.lock ./\nRUN yarn install --frozen-lockfile"),
        "{d}"
    );
    assert_eq!(commands(&p.fast), ["yarn lint"]);
    assert_eq!(commands(&p.full), ["yarn test"]);
    assert_eq!(p.cache[0].path, "/home/node/.cache/yarn");
}

#[test]
fn yarn_berry() {
    let p = plan("yarn-berry");
    let pm = p.package_manager.as_ref().unwrap();
    assert_eq!(
        (pm.name.as_str(), pm.version.as_deref()),
        ("yarn", Some("4.1.0"))
    );
    let d = dockerfile_of(&p);
    assert!(
        d.contains("RUN npm install -g --force @yarnpkg/cli-dist@4.1.0\n"),
        "{d}"
    );
    assert!(d.contains("ENV YARN_NODE_LINKER=node-modules\n"), "{d}");
    assert!(
        d.contains(
            "COPY --chown=1000:1000 package.json yarn.lock ./\nRUN yarn install --immutable && mkdir -p /opt/deps/node_modules\n"
        ),
        "{d}"
    );
    assert!(has_note(&p, ".yarnrc.yml not copied"), "{:?}", p.notes);
}

#[test]
fn bun_with_binary_lockfile_is_never_read() {
    let p = plan("bun-binary-lockfile");
    let pm = p.package_manager.as_ref().unwrap();
    assert_eq!(
        (pm.name.as_str(), pm.lockfile.as_deref()),
        ("bun", Some("bun.lockb"))
    );
    let d = dockerfile_of(&p);
    assert!(d.contains("RUN npm install -g bun@1\n"), "{d}");
    assert!(
        d.contains("package.json bun.lockb ./\nRUN bun install --frozen-lockfile && mkdir -p /opt/deps/node_modules\n"),
        "{d}"
    );
    assert_eq!(commands(&p.full), ["bun run test"]);
    assert_eq!(p.cache[0].path, "/home/node/.bun/install/cache");
    assert_eq!(detect("bun-binary-lockfile").unwrap().confidence, 75);
}

#[test]
fn bun_text_lockfile() {
    let p = plan("bun-text-lockfile");
    assert_eq!(
        p.package_manager.as_ref().unwrap().lockfile.as_deref(),
        Some("bun.lock")
    );
    assert_eq!(commands(&p.fast), ["bun run lint"]);
}

#[test]
fn package_manager_field_beats_a_foreign_lockfile() {
    let p = plan("pm-conflicts-lockfile");
    let pm = p.package_manager.as_ref().unwrap();
    assert_eq!(
        (
            pm.name.as_str(),
            pm.version.as_deref(),
            pm.lockfile.as_deref()
        ),
        ("pnpm", Some("8.15.4"), None)
    );
    let d = dockerfile_of(&p);
    assert!(
        d.contains("RUN pnpm install --no-frozen-lockfile && mkdir -p /opt/deps/node_modules\n"),
        "{d}"
    );
    assert!(!d.contains("package-lock.json"), "{d}");
    assert!(has_note(&p, "not frozen"), "{:?}", p.notes);
    assert!(
        has_note(
            &p,
            "package-lock.json ignored: packageManager in package.json chooses pnpm"
        ),
        "{:?}",
        p.notes
    );
}

#[test]
fn first_lockfile_wins_and_the_other_is_noted() {
    let p = plan("two-lockfiles");
    assert_eq!(p.package_manager.as_ref().unwrap().name, "npm");
    assert!(
        has_note(&p, "yarn.lock ignored: package-lock.json comes first"),
        "{:?}",
        p.notes
    );
    assert!(!dockerfile_of(&p).contains("yarn.lock"));
}

#[test]
fn package_manager_version_cannot_inject_commands() {
    let e = plan_err("pm-injection");
    assert!(
        e.starts_with("malformed input: package.json:3: packageManager"),
        "{e}"
    );
}

#[test]
fn unknown_package_manager_is_noted_and_the_lockfile_decides() {
    let dir = scratch("deno-pm");
    std::fs::write(
        dir.join("package.json"),
        "{\"name\": \"d\", \"packageManager\": \"deno@1.40.0\"}",
    )
    .unwrap();
    std::fs::write(dir.join("yarn.lock"), "# yarn lockfile v1\n").unwrap();
    let p = testing::plan::<Node>(&dir).unwrap();
    assert_eq!(p.package_manager.as_ref().unwrap().name, "yarn");
    assert!(
        has_note(&p, "packageManager `deno@1.40.0` ignored"),
        "{:?}",
        p.notes
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn eslint_config_without_lint_script_runs_eslint_with_a_json_report() {
    let p = plan("eslint-no-lint-script");
    assert_eq!(commands(&p.fast), ["npx eslint . -f json", "npm run tsc"]);
    let r = p.fast[0].report.as_ref().unwrap();
    assert_eq!(
        (r.format.as_str(), r.path.as_deref()),
        ("eslint-json", None)
    );
    assert_eq!(p.fast[1].name, "typecheck");
    assert!(has_note(&p, "no `test` script"), "{:?}", p.notes);
}

#[test]
fn every_plan_runs_as_node_without_buildkit_mounts() {
    for name in [
        "npm-lockfile",
        "nvmrc-pin",
        "node-version-only",
        "tool-versions",
        "mise",
        "nvmrc-lts-alias",
        "defaults",
        "pnpm-package-manager",
        "pnpm-lockfile-v6",
        "yarn-classic",
        "yarn-berry",
        "bun-binary-lockfile",
        "bun-text-lockfile",
        "eslint-no-lint-script",
        "pm-conflicts-lockfile",
        "two-lockfiles",
    ] {
        let p = plan(name);
        let d = dockerfile_of(&p);
        assert!(
            d.starts_with(&format!("FROM {}\n", p.base_image)),
            "{name}: {d}"
        );
        assert!(
            d.contains("\nUSER node\n") && !d.contains("--mount"),
            "{name}: {d}"
        );
        assert!(d.ends_with("WORKDIR /workspace\n"), "{name}: {d}");
        assert!(p.env.iter().any(|e| e.name == "CI"), "{name}");
        assert_eq!(p.toolchains.len(), 1, "{name}");
    }
}

#[test]
fn workspaces_are_noted() {
    let dir = scratch("workspaces");
    std::fs::write(
        dir.join("package.json"),
        "{\"name\": \"mono\", \"packageManager\": \"pnpm@9.1.0\"}",
    )
    .unwrap();
    std::fs::write(dir.join("pnpm-lock.yaml"), "lockfileVersion: '9.0'\n").unwrap();
    std::fs::write(
        dir.join("pnpm-workspace.yaml"),
        "packages:\n  - 'packages/*'\n",
    )
    .unwrap();
    let p = testing::plan::<Node>(&dir).unwrap();
    assert!(has_note(&p, "workspaces declared"), "{:?}", p.notes);
    assert!(
        dockerfile_of(&p)
            .contains("COPY --chown=1000:1000 package.json pnpm-lock.yaml pnpm-workspace.yaml ./")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn example_node_app_plans() {
    let dir = format!("{}/../../examples/node-app", env!("CARGO_MANIFEST_DIR"));
    if std::path::Path::new(&dir).exists() {
        let p = testing::plan::<Node>(&dir).unwrap_or_else(|e| panic!("{}", e.describe()));
        assert!(dockerfile_of(&p).contains("npm ci"));
        println!(
            "{}\n{:?}\n{:?}\n{:?}",
            dockerfile_of(&p),
            commands(&p.fast),
            commands(&p.full),
            p.notes
        );
    }
}

#[test]
fn install_without_dependencies_still_has_node_modules() {
    // `npm ci` with nothing to install creates no node_modules; the setup
    // step links it into the checkout, so the image must make it.
    let dir = scratch("no-deps");
    std::fs::write(
        dir.join("package.json"),
        "{\"name\": \"x\", \"scripts\": {\"test\": \"node --test\"}}",
    )
    .unwrap();
    std::fs::write(
        dir.join("package-lock.json"),
        "{\"name\": \"x\", \"lockfileVersion\": 3, \"packages\": {}}",
    )
    .unwrap();
    let p = testing::plan::<Node>(&dir).unwrap();
    let d = dockerfile_of(&p);
    assert!(
        d.contains("RUN npm ci --no-audit --no-fund && mkdir -p /opt/deps/node_modules\n"),
        "{d}"
    );
    // Made as the image's user, after USER node.
    assert!(
        d.find("USER node").unwrap() < d.find("mkdir -p /opt/deps/node_modules").unwrap(),
        "{d}"
    );
    assert_eq!(
        commands(&p.setup),
        ["ln -sfn /opt/deps/node_modules node_modules"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_linter_declared_runs_a_syntax_check() {
    let p = plan("defaults");
    assert_eq!(p.fast.len(), 1);
    let s = &p.fast[0];
    assert_eq!(s.name, "syntax");
    assert!(
        s.command.contains("xargs -0 -r -n1 node --check"),
        "{}",
        s.command
    );
    assert!(s.command.contains("-name node_modules"), "{}", s.command);
    for ext in ["'*.js'", "'*.mjs'", "'*.cjs'"] {
        assert!(s.command.contains(ext), "{}", s.command);
    }
    assert!(
        has_note(&p, "chosen because the project declares no linter"),
        "{:?}",
        p.notes
    );
    // A declared linter wins: no syntax step.
    let p = plan("npm-lockfile");
    assert!(p.fast.iter().all(|s| s.name != "syntax"));
    assert!(!has_note(&p, "declares no linter"), "{:?}", p.notes);
}

#[test]
fn dependency_section_after_the_marker_is_self_contained() {
    for name in [
        "npm-lockfile",
        "pnpm-package-manager",
        "yarn-classic",
        "yarn-berry",
        "bun-text-lockfile",
    ] {
        let p = plan(name);
        let d = dockerfile_of(&p);
        assert!(d.contains("\nUSER node\n"), "{name}: {d}");
        let after = testing::layerable_section(d, "node");
        assert!(
            after.contains("WORKDIR /opt/deps\nCOPY --chown=1000:1000 package.json"),
            "{name}: {d}"
        );
        assert!(
            after.contains("install") || after.contains("npm ci"),
            "{name}: {d}"
        );
        assert!(after.ends_with("WORKDIR /workspace\n"), "{name}: {d}");
    }
    // A package manager installed before the marker is installed again after
    // it only when the layered image lacks that version.
    let d = dockerfile_of(&plan("pnpm-package-manager")).to_owned();
    let after = d.split_once(DEPS_MARKER).unwrap().1;
    assert!(
        after.contains("RUN pnpm --version 2>/dev/null | grep -Eq '^9[.]1[.]0([.]|$)' || npm install -g pnpm@9.1.0\n"),
        "{d}"
    );
    // No dependencies declared: nothing worth layering, no marker.
    let p = plan("defaults");
    assert!(
        !dockerfile_of(&p).contains(DEPS_MARKER),
        "{}",
        dockerfile_of(&p)
    );
    assert!(has_note(&p, "declares no dependencies"), "{:?}", p.notes);
    // No package.json: nothing to install, no marker.
    assert!(!dockerfile_of(&plan("node-version-only")).contains(DEPS_MARKER));
}

// ---- validation judges the code as it is ----

/// A scratch project with this package.json (and these extra files).
fn plan_with(name: &str, package_json: &str, files: &[&str]) -> Plan {
    let dir = scratch(name);
    std::fs::write(dir.join("package.json"), package_json).unwrap();
    for f in files {
        std::fs::write(dir.join(f), "export default [];\n").unwrap();
    }
    let p = testing::plan::<Node>(&dir).unwrap_or_else(|e| panic!("{name}: {}", e.describe()));
    let _ = std::fs::remove_dir_all(&dir);
    p
}

#[test]
fn a_fixing_lint_script_is_replaced_by_eslint_in_check_mode() {
    let p = plan_with(
        "lint-fix",
        r#"{"scripts":{"lint":"eslint --fix .","typecheck":"tsc --noEmit"}}"#,
        &["eslint.config.mjs"],
    );
    assert_eq!(
        commands(&p.fast),
        ["npx eslint . -f json", "npm run typecheck"]
    );
    assert_eq!(p.fast[0].report.as_ref().unwrap().format, "eslint-json");
    assert!(
        has_note(
            &p,
            "package.json `lint` script not run: `eslint --fix .` would change the checkout; running ESLint directly without --fix (`npx eslint . -f json`), as eslint.config.mjs configures it"
        ),
        "{:?}",
        p.notes
    );
    // eslintConfig in package.json counts as a configuration too.
    let p = plan_with(
        "lint-fix-eslintconfig",
        r#"{"scripts":{"lint":"eslint . --fix"},"eslintConfig":{}}"#,
        &[],
    );
    assert_eq!(commands(&p.fast), ["npx eslint . -f json"]);
    assert!(
        has_note(&p, "as package.json eslintConfig configures it"),
        "{:?}",
        p.notes
    );
}

#[test]
fn a_writing_lint_script_without_eslint_config_is_skipped() {
    // Through a pre script and a called script: neither is run.
    for (name, scripts) in [
        (
            "prelint",
            r#"{"lint":"eslint .","prelint":"prettier --write ."}"#,
        ),
        (
            "called",
            r#"{"lint":"npm run format && eslint .","format":"prettier -w src"}"#,
        ),
    ] {
        let p = plan_with(name, &format!(r#"{{"scripts":{scripts}}}"#), &[]);
        assert_eq!(p.fast.len(), 1, "{name}: {:?}", p.fast);
        assert_eq!(p.fast[0].name, "syntax");
        assert!(
            has_note(&p, "`lint` script not run"),
            "{name}: {:?}",
            p.notes
        );
        assert!(has_note(&p, "; no lint step"), "{name}: {:?}", p.notes);
        assert!(
            has_note(&p, "instead of the `lint` script"),
            "{name}: {:?}",
            p.notes
        );
        assert!(!has_note(&p, "declares no linter"), "{name}: {:?}", p.notes);
    }
    let p = plan_with(
        "prelint",
        r#"{"scripts":{"lint":"eslint .","prelint":"prettier --write ."}}"#,
        &[],
    );
    assert!(
        has_note(
            &p,
            "`prettier --write .` (script `prelint`) would change the checkout"
        ),
        "{:?}",
        p.notes
    );
}

#[test]
fn writing_typecheck_and_test_scripts_are_skipped() {
    let p = plan_with(
        "test-writes",
        r#"{"scripts":{"lint":"eslint .","type-check":"prettier --write . && tsc","test":"jest -u"}}"#,
        &[],
    );
    assert_eq!(commands(&p.fast), ["npm run lint"]);
    assert!(p.full.is_empty(), "{:?}", p.full);
    assert!(
        has_note(
            &p,
            "`type-check` script not run: `prettier --write .` would change the checkout; no typecheck step"
        ),
        "{:?}",
        p.notes
    );
    assert!(
        has_note(
            &p,
            "`test` script not run: `jest -u` would change the checkout; the full tier is empty"
        ),
        "{:?}",
        p.notes
    );
}

#[test]
fn no_step_fixes_or_writes() {
    let check_mode = |p: &Plan, what: &str| {
        for s in p.fast.iter().chain(&p.full) {
            assert!(
                !s.command.contains("--fix") && !s.command.contains("--write"),
                "{what}: {}",
                s.command
            );
        }
    };
    for name in [
        "npm-lockfile",
        "pnpm-package-manager",
        "yarn-classic",
        "yarn-berry",
        "eslint-no-lint-script",
        "defaults",
    ] {
        let p = plan(name);
        check_mode(&p, name);
        assert!(!has_note(&p, "script not run"), "{name}: {:?}", p.notes);
    }
    let p = plan_with(
        "fix-everywhere",
        r#"{"scripts":{"lint":"eslint --fix .","typecheck":"tsc && npm run lint -- --fix","test":"vitest run && npm run lint"}}"#,
        &[".eslintrc.json"],
    );
    check_mode(&p, "fix-everywhere");
    assert_eq!(commands(&p.fast), ["npx eslint . -f json"]);
    assert!(p.full.is_empty());
}

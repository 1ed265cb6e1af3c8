//! Would running a `package.json` script change the checkout? Validation
//! judges the code as it is, so a script that fixes or formats in place
//! (`eslint --fix`, `prettier --write`, `jest -u`, ...) is not run as is.
//!
//! The check reads the script's commands, those of its `pre`/`post` scripts
//! and of the scripts it runs (`npm run x`, `yarn x`, `run-s 'x:*'`, ...).
//! It is a reading of shell text, not a shell: it errs towards "writes".

/// Flags that make a tool write its fixes or output, whatever the tool
/// (ESLint, stylelint, Biome, oxlint, standard, xo, prettier, ...).
const WRITE_FLAGS: &[&str] = &["--fix", "--write", "--apply", "--apply-unsafe"];
/// `--fix-…` flags that do not write.
const FIX_FLAGS_THAT_DO_NOT_WRITE: &[&str] = &["--fix-dry-run", "--fix-type"];
/// Package managers whose `run` (or bare script name) runs another script.
const RUNNERS: &[&str] = &["npm", "pnpm", "yarn", "bun"];
/// npm-run-all and its aliases: every argument is a script name or glob.
const RUN_ALL: &[&str] = &["npm-run-all", "npm-run-all2", "run-s", "run-p"];

/// A command of script `name` (or of a script it runs) that would
/// change the checkout, as "`command`" or "`command` (script `other`)".
/// `None` when there is no such script or nothing in it writes.
pub(crate) fn writes(scripts: &[(String, String)], name: &str) -> Option<String> {
    let mut seen = Vec::new();
    let mut todo = vec![name.to_owned()];
    while let Some(current) = todo.pop() {
        if seen.contains(&current) {
            continue;
        }
        seen.push(current.clone());
        let Some((_, text)) = scripts.iter().find(|(k, _)| *k == current) else {
            continue;
        };
        // npm (and yarn 1, pnpm with enable-pre-post-scripts) run these too.
        todo.extend([format!("post{current}"), format!("pre{current}")]);
        for command in commands(text) {
            let words = words(command);
            if writes_in_place(&words) {
                return Some(if current == name {
                    format!("`{command}`")
                } else {
                    format!("`{command}` (script `{current}`)")
                });
            }
            for called in called_scripts(&words, scripts) {
                todo.push(called);
            }
        }
    }
    None
}

/// The simple commands of a script: split at `&&`, `||`, `;`, `|`, `&` and
/// newlines (quotes are not honoured, which only splits more).
fn commands(script: &str) -> impl Iterator<Item = &str> {
    script
        .split(['&', '|', ';', '\n'])
        .map(str::trim)
        .filter(|c| !c.is_empty())
}

/// The words of a command, quotes trimmed.
fn words(command: &str) -> Vec<&str> {
    command
        .split_whitespace()
        .map(|w| w.trim_matches(['"', '\'']))
        .filter(|w| !w.is_empty())
        .collect()
}

/// Does this command write into the checkout?
fn writes_in_place(words: &[&str]) -> bool {
    let has_tool = |names: &[&str]| {
        words
            .iter()
            .any(|w| names.contains(&w.rsplit('/').next().unwrap_or(w)))
    };
    let has = |flags: &[&str]| words.iter().any(|w| flags.contains(w));
    let generic = words.iter().any(|w| {
        let flag = w.split('=').next().unwrap_or(w);
        WRITE_FLAGS.contains(&flag)
            || (flag.starts_with("--fix-") && !FIX_FLAGS_THAT_DO_NOT_WRITE.contains(&flag))
    });
    generic
        || (has_tool(&["prettier"]) && has(&["-w"]))
        || (has_tool(&["jest", "vitest"])
            && has(&["-u", "--update", "--updateSnapshot", "--update-snapshot"]))
        || (has_tool(&["dprint"]) && has(&["fmt"]))
        || (has_tool(&["sort-package-json"]) && !has(&["--check", "-c"]))
}

/// The scripts a command runs: `npm run x`, `pnpm x`, `yarn run x`,
/// `bun run x`, `npm test`, `run-s x 'y:*'`, `concurrently npm:x`.
fn called_scripts(words: &[&str], scripts: &[(String, String)]) -> Vec<String> {
    let mut called = Vec::new();
    let matching = |pattern: &str| -> Vec<String> {
        scripts
            .iter()
            .filter(|(k, _)| glob(pattern, k))
            .map(|(k, _)| k.clone())
            .collect()
    };
    for (i, word) in words.iter().enumerate() {
        let tool = word.rsplit('/').next().unwrap_or(word);
        let rest = &words[i + 1..];
        if RUNNERS.contains(&tool) {
            let args: Vec<&str> = rest
                .iter()
                .copied()
                .filter(|w| !w.starts_with('-'))
                .collect();
            if tool != "npm" {
                // `pnpm x`, `yarn workspace w x`: any argument may be a script.
                called.extend(args.iter().map(|a| (*a).to_owned()));
            } else if let Some(at) = args
                .iter()
                .position(|a| matches!(*a, "run" | "run-script" | "rum" | "urn"))
            {
                called.extend(args.get(at + 1).map(|a| (*a).to_owned()));
            } else if args
                .first()
                .is_some_and(|a| matches!(*a, "test" | "t" | "tst"))
            {
                called.push("test".to_owned());
            }
        } else if RUN_ALL.contains(&tool) {
            for arg in rest.iter().take_while(|w| **w != "--") {
                if !arg.starts_with('-') {
                    called.extend(matching(arg));
                }
            }
        }
        if let Some(s) = word.strip_prefix("npm:") {
            called.extend(matching(s));
        }
    }
    called
}

/// npm-run-all globs, read loosely: `*` matches anything (also across `:`).
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scripts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn fixing_and_formatting_commands_write() {
        for script in [
            "eslint --fix .",
            "eslint . --fix --ext .ts",
            "eslint src --fix=true",
            "tsc --noEmit && eslint --fix src",
            "prettier --write .",
            "prettier -w 'src/**/*.ts'",
            "node_modules/.bin/prettier --write=true .",
            "stylelint '**/*.css' --fix",
            "biome check --write .",
            "biome check --apply .",
            "oxlint --fix-suggestions",
            "jest -u",
            "vitest run --update",
            "dprint fmt",
            "sort-package-json",
            "npx standard --fix",
        ] {
            assert!(
                writes(&scripts(&[("lint", script)]), "lint").is_some(),
                "{script}"
            );
        }
        let s = scripts(&[("lint", "tsc --noEmit && eslint --fix src")]);
        assert_eq!(writes(&s, "lint").as_deref(), Some("`eslint --fix src`"));
    }

    #[test]
    fn checking_commands_do_not_write() {
        for script in [
            "eslint .",
            "eslint . --fix-dry-run --fix-type problem",
            "eslint --max-warnings 0 src && tsc --noEmit",
            "prettier --check .",
            "prettier -c . && prettier --list-different .",
            "biome check .",
            "biome ci .",
            "jest --ci",
            "vitest run",
            "dprint check",
            "sort-package-json --check",
            "node --check index.js",
            "tsc -w",
        ] {
            assert_eq!(
                writes(&scripts(&[("lint", script)]), "lint"),
                None,
                "{script}"
            );
        }
    }

    #[test]
    fn hooks_and_called_scripts_are_read() {
        let s = scripts(&[("lint", "eslint ."), ("prelint", "prettier --write .")]);
        assert_eq!(
            writes(&s, "lint").as_deref(),
            Some("`prettier --write .` (script `prelint`)")
        );
        for (runner, pattern) in [
            ("npm run format", "format"),
            ("pnpm format", "format"),
            ("yarn run format -- --silent", "format"),
            ("bun run format", "format"),
            ("run-s lint:* format", "format"),
            ("npm-run-all --parallel 'format:*'", "format:*"),
            ("concurrently \"npm:format*\"", "format*"),
        ] {
            let s = scripts(&[
                ("lint", &format!("eslint . && {runner}")),
                ("format", "prettier --write ."),
                ("format:css", "stylelint --fix '**/*.css'"),
            ]);
            assert!(writes(&s, "lint").is_some(), "{runner} ({pattern})");
        }
        // `npm run lint -- --fix`: the extra flag is on the calling command.
        let s = scripts(&[("lint", "eslint ."), ("test", "npm run lint -- --fix")]);
        assert!(writes(&s, "test").is_some());
        assert_eq!(writes(&s, "lint"), None);
        // Cycles end; unknown scripts are nothing.
        let s = scripts(&[("a", "npm run b"), ("b", "npm run a && npm run missing")]);
        assert_eq!(writes(&s, "a"), None);
        assert_eq!(writes(&s, "missing"), None);
    }

    #[test]
    fn globs() {
        assert!(glob("lint:*", "lint:js"));
        assert!(glob("lint:*", "lint:js:fix"));
        assert!(glob("*", "x"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("lint:*", "lint"));
        assert!(!glob("lint", "lint:js"));
        assert!(!glob("a*c", "abcd"));
    }
}

//! Quoting for the POSIX shell: the one way plugins put a value read from the
//! repository (a file name, a version, a requirement) into a step's command
//! or a generated Dockerfile's `RUN` line.
//!
//! Quoting protects the *shell* only. A generated Dockerfile is parsed line by
//! line before any shell sees it: a newline inside a quoted word still ends
//! the `RUN` instruction and starts a new one. A value that goes into a
//! Dockerfile must therefore also be checked for line breaks (better: held to
//! a small character set, and the plan refused with a
//! [`malformed`](crate::malformed) error naming the file when it is not).

/// `s` as one word for a POSIX shell (`sh -c`, a Dockerfile's shell-form
/// `RUN`): wrapped in single quotes, each embedded `'` written as `'\''`
/// (close the quote, an escaped quote, reopen). Inside single quotes nothing
/// is special (`$`, `` ` ``, `\`, `"`, `*`, spaces, newlines), so the shell
/// passes `s` on exactly as given. The empty string becomes `''`.
///
/// ```
/// use slipway_plugin_sdk::shell::quote;
/// assert_eq!(quote("src/main.rs"), "'src/main.rs'");
/// assert_eq!(quote("it's"), r"'it'\''s'");
/// assert_eq!(quote("$(id)"), "'$(id)'");
/// ```
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Characters that never need quoting (a word made of them only is left
/// bare by [`quote_if_needed`]).
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_./=:,".contains(c)
}

/// Like [`quote`], but a non-empty word made only of ASCII letters, digits
/// and `-_./=:,` is returned as it is, for commands people read in logs
/// (`redis-cli -p 6379 ping` rather than `'redis-cli' '-p' '6379' 'ping'`).
/// Anything else goes through [`quote`].
///
/// ```
/// use slipway_plugin_sdk::shell::quote_if_needed;
/// assert_eq!(quote_if_needed("-p"), "-p");
/// assert_eq!(quote_if_needed("a b"), "'a b'");
/// ```
pub fn quote_if_needed(s: &str) -> String {
    if !s.is_empty() && s.chars().all(is_plain) {
        s.to_owned()
    } else {
        quote(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const HOSTILE: &[&str] = &[
        "",
        "plain",
        "two words",
        "  leading and trailing  ",
        "it's",
        "'",
        "''",
        "'\\''",
        "a\nb",
        "line\n\nbreaks\n",
        "tab\there",
        "$HOME",
        "${HOME}",
        "$(touch PWNED)",
        "`touch PWNED`",
        "'; touch PWNED; '",
        "\"double\" quotes",
        "back\\slash\\",
        "glob * ? [a]",
        "semi; colon && and || or | pipe > redirect < in & bg",
        "# not a comment",
        "~user",
        "-n",
        "é ünïcode ✓",
    ];

    #[test]
    fn quote_wraps_and_escapes_single_quotes() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("two words"), "'two words'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("'"), "''\\'''");
        assert_eq!(quote("a\nb"), "'a\nb'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote("`id`"), "'`id`'");
        assert_eq!(quote("$(id)"), "'$(id)'");
        assert_eq!(quote("\"x\""), "'\"x\"'");
        assert_eq!(quote("back\\slash"), "'back\\slash'");
    }

    #[test]
    fn quote_if_needed_leaves_plain_words_bare() {
        for w in ["redis-cli", "-p", "6379", "a=b", "src/main.rs", "x,y:z_1"] {
            assert_eq!(quote_if_needed(w), w);
        }
        for w in ["", "it's", "a b", "$x", "`x`", "a\nb", "é"] {
            assert_eq!(quote_if_needed(w), quote(w), "{w:?}");
        }
    }

    /// What a real `sh` makes of the quoted words: each comes back as exactly
    /// one argument, unchanged, and nothing in it is run.
    #[test]
    fn sh_reads_each_quoted_word_back_unchanged() {
        if Command::new("sh").arg("-c").arg("true").status().is_err() {
            eprintln!("no sh on this host: skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pwned = dir.path().join("pwned");
        let hostile: Vec<String> = HOSTILE
            .iter()
            .map(|w| w.replace("PWNED", &pwned.display().to_string()))
            .collect();
        let words: Vec<String> = hostile.iter().map(|w| quote(w)).collect();
        let bare: Vec<String> = hostile.iter().map(|w| quote_if_needed(w)).collect();
        for quoted in [words, bare] {
            // printf prints every argument followed by NUL.
            let script = format!("printf '%s\\0' {}", quoted.join(" "));
            let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
            assert!(out.status.success(), "{script}: {out:?}");
            let got: Vec<&str> = std::str::from_utf8(&out.stdout)
                .unwrap()
                .strip_suffix('\0')
                .unwrap()
                .split('\0')
                .collect();
            assert_eq!(got, hostile, "{script}");
        }
        assert!(!pwned.exists(), "a quoted word was run");
    }
}

//! Small text formats inside Compose values: shell words, durations and
//! env files.

use std::collections::BTreeMap;
use std::time::Duration;

/// `line` split into words as a POSIX shell would, without expanding
/// anything: whitespace separates words, single quotes keep everything,
/// double quotes keep all but `\"`, `\\`, `\$`, `` \` ``, and a backslash
/// outside quotes keeps the next character.
pub(crate) fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word exists as soon as a character or a pair of quotes is seen:
    // `''` is one empty word.
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unclosed single quote in `{line}`")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            // A backslash before a newline joins the lines.
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unclosed double quote in `{line}`")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unclosed double quote in `{line}`")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err(format!("`{line}` ends with a lone backslash")),
            },
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// A duration in Compose's format (Go's): numbers with units, `1m30s`,
/// `10s`, `500ms`, `1.5h`, `0`. Units: `ns`, `us` (`µs`), `ms`, `s`, `m`,
/// `h`.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    let help = || {
        format!(
            "`{text}` is not a duration: write a number and a unit, like `30s`, `1m30s` or `500ms`"
        )
    };
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(help());
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(help()),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(help());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| help())?
        };
        let mut part = whole.checked_mul(nanos_per_unit).ok_or_else(help)?;
        let mut scale = nanos_per_unit;
        for digit in fraction.bytes() {
            scale /= 10;
            part = part
                .checked_add(u128::from(digit - b'0') * scale)
                .ok_or_else(help)?;
        }
        total = total.checked_add(part).ok_or_else(help)?;
    }
    let nanos = u64::try_from(total).map_err(|_| format!("`{text}` is too long a duration"))?;
    Ok(Duration::from_nanos(nanos))
}

/// An env file's `KEY=VALUE` lines: blank lines and `#` comments are
/// skipped, `export ` before a key is allowed, a value may be in single
/// quotes (kept as is) or double quotes (`\n`, `\t`, `\"`, `\\` unescaped),
/// an unquoted value ends at ` #`. A line with a bare `KEY` takes its value
/// from `vars`, or is left out, as in `environment`. The error names the line.
pub(crate) fn env_file(
    text: &str,
    vars: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            if valid_key(line) {
                if let Some(v) = vars.get(line) {
                    out.push((line.to_owned(), v.clone()));
                }
                continue;
            }
            return Err(format!("line {}: expected `KEY=VALUE`", n + 1));
        };
        let key = key.trim();
        if !valid_key(key) {
            return Err(format!(
                "line {}: `{key}` is not a variable name (letters, digits, `_`, `.`, `-`)",
                n + 1
            ));
        }
        let value = value.trim_start();
        let value = if let Some(quoted) = value.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.chars();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => v.push('\n'),
                        Some('t') => v.push('\t'),
                        Some(c @ ('"' | '\\')) => v.push(c),
                        Some(c) => {
                            v.push('\\');
                            v.push(c);
                        }
                        None => return Err(format!("line {}: unclosed double quote", n + 1)),
                    },
                    Some(c) => v.push(c),
                    None => return Err(format!("line {}: unclosed double quote", n + 1)),
                }
            }
            v
        } else if let Some(quoted) = value.strip_prefix('\'') {
            match quoted.split_once('\'') {
                Some((v, _)) => v.to_owned(),
                None => return Err(format!("line {}: unclosed single quote", n + 1)),
            }
        } else {
            let end = value.find(" #").unwrap_or(value.len());
            value[..end].trim_end().to_owned()
        };
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        shell_words(s).unwrap()
    }

    #[test]
    fn shell_words_split_like_sh() {
        assert_eq!(words("npm run start"), ["npm", "run", "start"]);
        assert_eq!(words("  a \t b\n c  "), ["a", "b", "c"]);
        assert_eq!(
            words("sh -c 'echo $HOME; ls'"),
            ["sh", "-c", "echo $HOME; ls"]
        );
        assert_eq!(
            words(r#"echo "a \"b\" \$c \d""#),
            ["echo", r#"a "b" $c \d"#]
        );
        assert_eq!(words(r"a\ b c\\d"), ["a b", r"c\d"]);
        assert_eq!(words("x'y'\"z\" ''"), ["xyz", ""]);
        assert_eq!(words(""), Vec::<String>::new());
    }

    #[test]
    fn shell_words_refuse_unclosed_quotes() {
        assert!(shell_words("echo 'a").unwrap_err().contains("single quote"));
        assert!(
            shell_words("echo \"a")
                .unwrap_err()
                .contains("double quote")
        );
        assert!(shell_words("echo a\\").unwrap_err().contains("backslash"));
    }

    #[test]
    fn durations_in_compose_format() {
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("2us"), Ok(Duration::from_micros(2)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert_eq!(duration("1h2m3s4ms"), Ok(Duration::from_millis(3_723_004)));
    }

    #[test]
    fn bad_durations_are_refused() {
        for bad in [
            "10",
            "",
            "s",
            "10x",
            "1..5s",
            "-1s",
            "1.2.3s",
            "99999999999999999999999h",
        ] {
            assert!(duration(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn env_files_read_like_dotenv() {
        let vars = BTreeMap::from([("FROM_DEPLOY".to_owned(), "d".to_owned())]);
        let text = "# comment\n\nA=1\nexport B=\"two \\\"2\\\"\"\nC='$3 raw'\nD=four # note\nE=\nFROM_DEPLOY\nNOT_SET\n  F = spaced  \n";
        let got = env_file(text, &vars).unwrap();
        assert_eq!(
            got,
            [
                ("A", "1"),
                ("B", "two \"2\""),
                ("C", "$3 raw"),
                ("D", "four"),
                ("E", ""),
                ("FROM_DEPLOY", "d"),
                ("F", "spaced"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn env_file_errors_name_the_line() {
        let vars = BTreeMap::new();
        assert_eq!(
            env_file("A=1\nnot a line\n", &vars).unwrap_err(),
            "line 2: expected `KEY=VALUE`"
        );
        assert!(
            env_file("A=\"open\n", &vars)
                .unwrap_err()
                .starts_with("line 1: unclosed")
        );
        assert!(
            env_file("B C=1\n", &vars)
                .unwrap_err()
                .contains("not a variable name")
        );
    }
}

//! Variable interpolation, as Compose does it, into the values of the tree.
//!
//! Values only, after the YAML is read: a variable's value can then never add
//! keys or change the structure of the file, whatever it contains. Keys are
//! not interpolated (Compose does not either).

use std::collections::BTreeMap;

use super::error::{Fault, FaultKind, KeyPath};
use super::yaml::Value;

/// How deep `${A:-${B:-...}}` may nest; deeper is surely a mistake, and the
/// bound keeps the recursion off the end of the stack.
const MAX_NESTING: usize = 16;

/// A failed interpolation: the variable to blame when there is one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct VarError {
    pub(crate) name: Option<String>,
    pub(crate) message: String,
}

/// Interpolates every string value of `value`, in the order of the file.
pub(crate) fn tree(
    value: &mut Value,
    vars: &BTreeMap<String, String>,
    path: &KeyPath,
) -> Result<(), Fault> {
    match value {
        Value::String(s) => {
            *s = text(s, vars).map_err(|e| Fault {
                path: path.clone(),
                kind: FaultKind::Variable {
                    name: e.name,
                    message: e.message,
                },
            })?;
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                tree(item, vars, &path.index(i))?;
            }
        }
        Value::Map(entries) => {
            for (key, item) in entries.iter_mut() {
                tree(item, vars, &path.key(key))?;
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// `text` with `${VAR}`, `$VAR`, `${VAR:-default}`, `${VAR-default}`,
/// `${VAR:?message}`, `${VAR?message}`, `${VAR:+other}`, `${VAR+other}`
/// replaced and `$$` made a literal `$`.
pub(crate) fn text(text: &str, vars: &BTreeMap<String, String>) -> Result<String, VarError> {
    expand(text, vars, 0)
}

fn expand(text: &str, vars: &BTreeMap<String, String>, depth: usize) -> Result<String, VarError> {
    if depth > MAX_NESTING {
        return Err(plain(format!(
            "variables nest more than {MAX_NESTING} deep: simplify the defaults"
        )));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match after.bytes().next() {
            Some(b'$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some(b'{') => {
                let body_and_rest = &after[1..];
                let Some(end) = closing_brace(body_and_rest) else {
                    return Err(plain(format!(
                        "`${{` without its closing `}}` in `{text}`: close it, or write `$$` for a literal `$`"
                    )));
                };
                out.push_str(&braced(&body_and_rest[..end], vars, depth)?);
                rest = &body_and_rest[end + 1..];
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                let len = name_len(after);
                out.push_str(&lookup(&after[..len], vars)?);
                rest = &after[len..];
            }
            _ => {
                return Err(plain(format!(
                    "a `$` that starts no variable in `{text}`: write `$$` for a literal `$`"
                )));
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The length of the variable name at the start of `s`.
fn name_len(s: &str) -> usize {
    s.bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || b == b'_'))
        .unwrap_or(s.len())
}

/// Where the `}` that closes a `${` is, given the text after the `{`;
/// nested `${...}` (in defaults) and `$$` are stepped over.
fn closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The body of a `${...}`.
fn braced(body: &str, vars: &BTreeMap<String, String>, depth: usize) -> Result<String, VarError> {
    let len = name_len(body);
    let name = &body[..len];
    if name.bytes().next().is_none_or(|b| b.is_ascii_digit()) {
        return Err(plain(format!(
            "`${{{body}}}` is not a variable: a name is letters, digits and `_`, not starting with a digit"
        )));
    }
    let value = vars.get(name);
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let op = &body[len..];
    let (kind, arg) = if let Some(arg) = op.strip_prefix(":-") {
        ("default-if-empty", arg)
    } else if let Some(arg) = op.strip_prefix('-') {
        ("default", arg)
    } else if let Some(arg) = op.strip_prefix(":?") {
        ("required-non-empty", arg)
    } else if let Some(arg) = op.strip_prefix('?') {
        ("required", arg)
    } else if let Some(arg) = op.strip_prefix(":+") {
        ("alternative-if-non-empty", arg)
    } else if let Some(arg) = op.strip_prefix('+') {
        ("alternative", arg)
    } else if op.is_empty() {
        return lookup(name, vars);
    } else {
        return Err(plain(format!(
            "`${{{body}}}` is not a supported form: use `${{{name}}}`, `${{{name}:-default}}`, `${{{name}-default}}`, `${{{name}:?message}}` or `${{{name}?message}}`"
        )));
    };
    let value = value.cloned().unwrap_or_default();
    match kind {
        "default-if-empty" if !non_empty => expand(arg, vars, depth + 1),
        "default" if !set => expand(arg, vars, depth + 1),
        "required-non-empty" if !non_empty => Err(required(name, arg, vars, depth)),
        "required" if !set => Err(required(name, arg, vars, depth)),
        "alternative-if-non-empty" => {
            if non_empty {
                expand(arg, vars, depth + 1)
            } else {
                Ok(String::new())
            }
        }
        "alternative" => {
            if set {
                expand(arg, vars, depth + 1)
            } else {
                Ok(String::new())
            }
        }
        _ => Ok(value),
    }
}

fn required(name: &str, message: &str, vars: &BTreeMap<String, String>, depth: usize) -> VarError {
    // The message may itself use variables; when those fail, the raw text
    // still says enough.
    let message = expand(message, vars, depth + 1).unwrap_or_else(|_| message.to_owned());
    let message = if message.is_empty() {
        format!("variable `{name}` is required and not set: set it in the deployment's env")
    } else {
        format!("variable `{name}` is required: {message}")
    };
    VarError {
        name: Some(name.to_owned()),
        message,
    }
}

fn lookup(name: &str, vars: &BTreeMap<String, String>) -> Result<String, VarError> {
    vars.get(name).cloned().ok_or_else(|| VarError {
        name: Some(name.to_owned()),
        // Compose would warn and use an empty string; a deployment must not
        // start with a blank setting unnoticed.
        message: format!(
            "variable `{name}` is not set: set it in the deployment's env, or give a default with `${{{name}:-default}}`"
        ),
    })
}

fn plain(message: String) -> VarError {
    VarError {
        name: None,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("TAG".to_owned(), "7".to_owned()),
            ("EMPTY".to_owned(), String::new()),
            ("HOST".to_owned(), "db".to_owned()),
        ])
    }

    fn ok(s: &str) -> String {
        text(s, &vars()).unwrap()
    }

    fn err(s: &str) -> VarError {
        text(s, &vars()).unwrap_err()
    }

    #[test]
    fn plain_and_braced_variables() {
        assert_eq!(ok("app:$TAG"), "app:7");
        assert_eq!(ok("app:${TAG}-x"), "app:7-x");
        assert_eq!(ok("$HOST:$TAG"), "db:7");
        assert_eq!(ok("no variables"), "no variables");
        assert_eq!(ok("ünïcode ${TAG} ✓"), "ünïcode 7 ✓");
    }

    #[test]
    fn defaults_tell_unset_from_empty() {
        assert_eq!(ok("${NOPE:-d}"), "d");
        assert_eq!(ok("${NOPE-d}"), "d");
        assert_eq!(ok("${EMPTY:-d}"), "d");
        assert_eq!(ok("${EMPTY-d}"), "");
        assert_eq!(ok("${TAG:-d}"), "7");
        assert_eq!(ok("${NOPE:-}"), "");
        assert_eq!(ok("${NOPE:-${HOST}:5432}"), "db:5432");
        assert_eq!(ok("${NOPE:-${ALSO_NOPE:-x}}"), "x");
    }

    #[test]
    fn alternatives() {
        assert_eq!(ok("${TAG:+set}"), "set");
        assert_eq!(ok("${EMPTY:+set}"), "");
        assert_eq!(ok("${EMPTY+set}"), "set");
        assert_eq!(ok("${NOPE+set}"), "");
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(ok("echo $$HOME"), "echo $HOME");
        assert_eq!(ok("$$${TAG}"), "$7");
        assert_eq!(ok("${NOPE:-$$x}"), "$x");
    }

    #[test]
    fn unset_and_required_variables_are_errors_naming_them() {
        let e = err("postgres://${DB_USER}@db");
        assert_eq!(e.name.as_deref(), Some("DB_USER"));
        assert!(e.message.contains("`DB_USER` is not set"), "{}", e.message);

        let e = err("$SECRET");
        assert_eq!(e.name.as_deref(), Some("SECRET"));

        let e = err("${TOKEN:?the API token is needed}");
        assert_eq!(e.name.as_deref(), Some("TOKEN"));
        assert!(
            e.message.contains("the API token is needed"),
            "{}",
            e.message
        );

        let e = err("${EMPTY:?must not be empty}");
        assert_eq!(e.name.as_deref(), Some("EMPTY"));
        assert_eq!(ok("${EMPTY?only unset fails}"), "");
    }

    #[test]
    fn malformed_expressions_are_errors() {
        assert!(err("${TAG").message.contains("without its closing"));
        assert!(err("cost: 5$").message.contains("write `$$`"));
        assert!(err("echo $1").message.contains("write `$$`"));
        assert!(err("${}").message.contains("is not a variable"));
        assert!(err("${TAG:x}").message.contains("not a supported form"));
        let deep = format!("{}x{}", "${A:-".repeat(40), "}".repeat(40));
        assert!(err(&deep).message.contains("nest more than"));
    }

    #[test]
    fn the_tree_is_interpolated_with_paths() {
        let mut v = Value::Map(vec![(
            "env".to_owned(),
            Value::Seq(vec![
                Value::String("A=${TAG}".into()),
                Value::Number("5".into()),
                Value::String("B=${MISSING}".into()),
            ]),
        )]);
        let f = tree(&mut v, &vars(), &KeyPath::default()).unwrap_err();
        assert_eq!(f.path.to_string(), "env[2]");
        assert!(matches!(f.kind, FaultKind::Variable { name: Some(ref n), .. } if n == "MISSING"));
        let Value::Map(entries) = &v else { panic!() };
        assert_eq!(
            entries[0].1,
            Value::Seq(vec![
                Value::String("A=7".into()),
                Value::Number("5".into()),
                Value::String("B=${MISSING}".into()),
            ])
        );
    }
}

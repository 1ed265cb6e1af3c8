//! The YAML side: the text read into a plain tree, the keys checked against
//! the subset, and the line of a path found again in the text.
//!
//! The tree keeps no positions (serde gives none); an error's line is found
//! by reading the text once more with a probe that stops, with an error that
//! the YAML reader marks with its position, at the node the path names.
//! That second read happens only for an error.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::{Fault, FaultKind, KeyPath, Seg};

/// A node of the file. Scalars keep their text; numbers and booleans are
/// told apart from strings because some keys accept one and not the other.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Seq(Vec<Value>),
    Map(Vec<(String, Value)>),
}

impl Value {
    /// The value of `key`, when this is a mapping that has it.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// What the node is, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// The most nodes a file may expand to: aliases can multiply a small text
/// into a huge tree ("billion laughs").
const MAX_NODES: usize = 100_000;

/// Reads `text` (one YAML document) into a tree. YAML merge keys (`<<`)
/// are applied; tags, duplicate keys and keys that are not scalars are
/// refused.
pub(crate) fn read(text: &str) -> Result<Value, serde_yaml_ng::Error> {
    let budget = Cell::new(MAX_NODES);
    ValueSeed { budget: &budget }.deserialize(serde_yaml_ng::Deserializer::from_str(text))
}

struct ValueSeed<'b> {
    budget: &'b Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        let left = self.budget.get();
        if left == 0 {
            return Err(de::Error::custom(format!(
                "the file expands to more than {MAX_NODES} values (through aliases?)"
            )));
        }
        self.budget.set(left - 1);
        d.deserialize_any(ValueVisitor {
            budget: self.budget,
        })
    }
}

struct ValueVisitor<'b> {
    budget: &'b Cell<usize>,
}

impl<'de> Visitor<'de> for ValueVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Number(v.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        ValueSeed {
            budget: self.budget,
        }
        .deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ValueSeed {
            budget: self.budget,
        })? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(String, Value)> = Vec::new();
        let mut seen = HashSet::new();
        let mut merged = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed { seen: &seen })? {
            let value = map.next_value_seed(ValueSeed {
                budget: self.budget,
            })?;
            seen.insert(key.clone());
            if key == "<<" {
                merged.push(value);
            } else {
                entries.push((key, value));
            }
        }
        // `<<: *base` (or a list of them): keys of the file win over merged
        // ones, and earlier merged mappings over later ones.
        for value in merged {
            let sources = match value {
                Value::Map(m) => vec![m],
                Value::Seq(items) => {
                    let mut maps = Vec::new();
                    for item in items {
                        match item {
                            Value::Map(m) => maps.push(m),
                            other => {
                                return Err(de::Error::custom(format!(
                                    "`<<` merges mappings, not {}",
                                    other.kind()
                                )));
                            }
                        }
                    }
                    maps
                }
                other => {
                    return Err(de::Error::custom(format!(
                        "`<<` merges mappings, not {}",
                        other.kind()
                    )));
                }
            };
            for (k, v) in sources.into_iter().flatten() {
                if seen.insert(k.clone()) {
                    entries.push((k, v));
                }
            }
        }
        Ok(Value::Map(entries))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, _rest): (String, _) = data.variant()?;
        Err(de::Error::custom(format!(
            "the YAML tag `!{tag}` is not supported by Slipway: remove it"
        )))
    }
}

/// A mapping's key, as text; the error for a duplicate is raised here so
/// that it is marked with the key's own position.
#[derive(Clone, Copy)]
struct KeySeed<'s> {
    seen: &'s HashSet<String>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl KeySeed<'_> {
    // Raised inside the visitor, so that the reader marks it with the key's
    // position rather than the mapping's.
    fn check<E: de::Error>(self, key: String) -> Result<String, E> {
        if self.seen.contains(&key) {
            return Err(E::custom(format!(
                "`{key}` is given twice in the same mapping: keep one"
            )));
        }
        Ok(key)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.check(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.check(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.check(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.check(v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.check(v.to_owned())
    }
}

/// The marker of the probe's own error, told apart from a reader's error.
const FOUND: &str = "\u{1}slipway: found\u{1}";

/// The line (from 1) of the node at `path` in `text`: the key's line when
/// the path ends with a key, the item's when it ends with an index. Keys
/// written in the mapping itself are looked for before merged ones.
pub(crate) fn locate(text: &str, path: &[Seg]) -> Option<usize> {
    if path.is_empty() {
        return None;
    }
    for merges in [false, true] {
        let probe = Probe { rest: path, merges };
        match probe.deserialize(serde_yaml_ng::Deserializer::from_str(text)) {
            Ok(()) => {}
            Err(e) if e.to_string().contains(FOUND) => return e.location().map(|l| l.line()),
            Err(_) => return None,
        }
    }
    None
}

#[derive(Clone, Copy)]
struct Probe<'p> {
    rest: &'p [Seg],
    merges: bool,
}

impl Probe<'_> {
    fn here<E: de::Error>(self) -> Result<(), E> {
        if self.rest.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.here()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.here()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.here()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.here()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.here()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.here()?;
        let want = match self.rest.first() {
            Some(Seg::Index(n)) => Some(*n),
            _ => None,
        };
        let mut i = 0;
        loop {
            let found = if Some(i) == want {
                let inner = Probe {
                    rest: &self.rest[1..],
                    ..self
                };
                seq.next_element_seed(inner)?.is_some()
            } else {
                seq.next_element::<IgnoredAny>()?.is_some()
            };
            if !found {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.here()?;
        let want = match self.rest.first() {
            Some(Seg::Key(k)) => Some(k.as_str()),
            _ => None,
        };
        while let Some(found) = map.next_key_seed(KeyProbe {
            want,
            last: self.rest.len() == 1,
        })? {
            match found {
                KeyMatch::Wanted => map.next_value_seed(Probe {
                    rest: &self.rest[1..],
                    ..self
                })?,
                KeyMatch::Merge if self.merges && want.is_some() => {
                    map.next_value_seed(MergeProbe(self))?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        // Tags are refused when the tree is read; nothing to find here.
        Err(de::Error::custom("tag"))
    }
}

enum KeyMatch {
    Wanted,
    Merge,
    Other,
}

/// A key, compared with the wanted one; when it is the path's last step the
/// probe stops on it, so that the error is marked with the key's position.
struct KeyProbe<'p> {
    want: Option<&'p str>,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = KeyMatch;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<KeyMatch, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = KeyMatch;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyMatch, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyMatch, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyMatch, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyMatch, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyMatch, E> {
        if Some(v) == self.want {
            if self.last {
                return Err(E::custom(FOUND));
            }
            Ok(KeyMatch::Wanted)
        } else if v == "<<" {
            Ok(KeyMatch::Merge)
        } else {
            Ok(KeyMatch::Other)
        }
    }
}

/// The value of a `<<` key: a mapping (or a list of them) searched for the
/// same key as the mapping that merges it.
struct MergeProbe<'p>(Probe<'p>);

impl<'de> DeserializeSeed<'de> for MergeProbe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MergeProbe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping to merge")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.0.visit_map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self.0)?.is_some() {}
        Ok(())
    }
}

/// What the keys of a node may be, where the node is a mapping, and what its
/// items may be, where it is a list. Values of other kinds are checked when
/// the service is resolved.
pub(crate) struct Shape {
    map: Keys,
    items: Option<&'static Shape>,
}

enum Keys {
    /// Any key, any value (labels, environment, build args).
    Any,
    /// Only these keys.
    Fixed(&'static [(&'static str, &'static Shape)]),
    /// Any key (a name), each value of this shape.
    Named(&'static Shape),
}

static ANY: Shape = Shape {
    map: Keys::Any,
    items: None,
};

/// The top level of a Compose file.
pub(crate) static TOP: Shape = Shape {
    map: Keys::Fixed(&[
        ("services", &SERVICES),
        ("volumes", &VOLUMES),
        ("name", &ANY),
        ("version", &ANY),
    ]),
    items: None,
};

static SERVICES: Shape = Shape {
    map: Keys::Named(&SERVICE),
    items: None,
};

static VOLUMES: Shape = Shape {
    map: Keys::Named(&VOLUME),
    items: None,
};

/// A declared volume takes no option: volumes are the engine's own local
/// volumes.
static VOLUME: Shape = Shape {
    map: Keys::Fixed(&[]),
    items: None,
};

static SERVICE: Shape = Shape {
    map: Keys::Fixed(&[
        ("image", &ANY),
        ("build", &BUILD),
        ("command", &ANY),
        ("entrypoint", &ANY),
        ("environment", &ANY),
        ("env_file", &ENV_FILES),
        ("ports", &PORTS),
        ("volumes", &MOUNTS),
        ("depends_on", &DEPENDS_ON),
        ("healthcheck", &HEALTHCHECK),
        ("restart", &ANY),
        ("user", &ANY),
        ("working_dir", &ANY),
        ("labels", &ANY),
    ]),
    items: None,
};

static BUILD: Shape = Shape {
    map: Keys::Fixed(&[
        ("context", &ANY),
        ("dockerfile", &ANY),
        ("args", &ANY),
        ("target", &ANY),
    ]),
    items: None,
};

/// `env_file: {path, required}` is not in the specification, but what it
/// means is plain, so it is read like an item of the list.
static ENV_FILES: Shape = Shape {
    map: Keys::Fixed(ENV_FILE_KEYS),
    items: Some(&ENV_FILE),
};

static ENV_FILE: Shape = Shape {
    map: Keys::Fixed(ENV_FILE_KEYS),
    items: None,
};

static ENV_FILE_KEYS: &[(&str, &Shape)] = &[("path", &ANY), ("required", &ANY)];

static PORTS: Shape = Shape {
    map: Keys::Any,
    items: Some(&PORT),
};

static PORT: Shape = Shape {
    map: Keys::Fixed(&[
        ("target", &ANY),
        ("published", &ANY),
        ("host_ip", &ANY),
        ("protocol", &ANY),
    ]),
    items: None,
};

static MOUNTS: Shape = Shape {
    map: Keys::Any,
    items: Some(&MOUNT),
};

static MOUNT: Shape = Shape {
    map: Keys::Fixed(&[
        ("type", &ANY),
        ("source", &ANY),
        ("target", &ANY),
        ("read_only", &ANY),
    ]),
    items: None,
};

static DEPENDS_ON: Shape = Shape {
    map: Keys::Named(&DEPENDENCY),
    items: None,
};

static DEPENDENCY: Shape = Shape {
    map: Keys::Fixed(&[("condition", &ANY)]),
    items: None,
};

static HEALTHCHECK: Shape = Shape {
    map: Keys::Fixed(&[
        ("test", &ANY),
        ("interval", &ANY),
        ("timeout", &ANY),
        ("retries", &ANY),
        ("start_period", &ANY),
        ("disable", &ANY),
    ]),
    items: None,
};

/// The first key of `value` (in the order of the file) that `shape` does
/// not allow.
pub(crate) fn check_keys(value: &Value, shape: &Shape, path: &KeyPath) -> Result<(), Fault> {
    match value {
        Value::Map(entries) => {
            for (key, inner) in entries {
                let inner_shape = match &shape.map {
                    Keys::Any => continue,
                    Keys::Named(s) => *s,
                    Keys::Fixed(allowed) => match allowed.iter().find(|(k, _)| k == key) {
                        Some((_, s)) => *s,
                        None => {
                            return Err(Fault {
                                path: path.key(key),
                                kind: FaultKind::Unsupported {
                                    key: key.clone(),
                                    supported: supported(allowed, key),
                                },
                            });
                        }
                    },
                };
                check_keys(inner, inner_shape, &path.key(key))?;
            }
            Ok(())
        }
        Value::Seq(items) => {
            if let Some(item_shape) = shape.items {
                for (i, item) in items.iter().enumerate() {
                    check_keys(item, item_shape, &path.index(i))?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn supported(allowed: &[(&str, &Shape)], key: &str) -> String {
    if allowed.is_empty() {
        // Only a declared volume allows no key at all.
        return "no options; declare the volume as `name:` or `name: {}`".to_owned();
    }
    let mut list = allowed
        .iter()
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(", ");
    if key.starts_with("x-") {
        // Extension fields mostly carry YAML anchors; say where else to
        // put one.
        list.push_str("; an anchor can be set on a service and merged with `<<:` instead");
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(text: &str, path: &[Seg]) -> Option<usize> {
        locate(text, path)
    }

    fn k(s: &str) -> Seg {
        Seg::Key(s.to_owned())
    }

    #[test]
    fn reads_scalars_lists_and_mappings() {
        let v = read("a: 1\nb: [x, 'y']\nc: true\nd:\ne: 1.5\n").unwrap();
        assert_eq!(v.get("a"), Some(&Value::Number("1".into())));
        assert_eq!(
            v.get("b"),
            Some(&Value::Seq(vec![
                Value::String("x".into()),
                Value::String("y".into())
            ]))
        );
        assert_eq!(v.get("c"), Some(&Value::Bool(true)));
        assert_eq!(v.get("d"), Some(&Value::Null));
        assert_eq!(v.get("e"), Some(&Value::Number("1.5".into())));
    }

    #[test]
    fn merge_keys_are_applied_and_the_mapping_wins() {
        let v = read("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n").unwrap();
        let c = v.get("c").unwrap();
        assert_eq!(c.get("x"), Some(&Value::Number("1".into())));
        assert_eq!(c.get("y"), Some(&Value::Number("3".into())));
        assert_eq!(c.get("<<"), None);
    }

    #[test]
    fn duplicate_keys_tags_and_alias_bombs_are_refused() {
        let e = read("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(e.to_string().contains("`a` is given twice"), "{e}");
        assert_eq!(e.location().map(|l| l.line()), Some(3));

        let e = read("a: !reset []\n").unwrap_err();
        assert!(e.to_string().contains("tag `!reset`"), "{e}");

        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (prev, name) in ["a", "b", "c", "d", "e", "f"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g"])
        {
            bomb.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let e = read(&bomb).unwrap_err();
        assert!(
            e.to_string().contains("expands to more than")
                || e.to_string().contains("repetition limit"),
            "{e}"
        );
    }

    #[test]
    fn locates_keys_items_and_merged_keys() {
        let text = "services:\n  web:\n    image: x\n    ports:\n      - \"80\"\n      - target: 81\n        protocol: udp\n";
        assert_eq!(
            line_of(text, &[k("services"), k("web"), k("image")]),
            Some(3)
        );
        assert_eq!(
            line_of(text, &[k("services"), k("web"), k("ports"), Seg::Index(1)]),
            Some(6)
        );
        assert_eq!(
            line_of(
                text,
                &[
                    k("services"),
                    k("web"),
                    k("ports"),
                    Seg::Index(1),
                    k("protocol")
                ]
            ),
            Some(7)
        );
        assert_eq!(line_of(text, &[k("services"), k("db")]), None);

        let merged = "x: &x\n  deploy: {}\ns:\n  web:\n    <<: *x\n    image: y\n";
        assert_eq!(line_of(merged, &[k("s"), k("web"), k("deploy")]), Some(2));
        assert_eq!(line_of(merged, &[k("s"), k("web"), k("image")]), Some(6));
    }

    #[test]
    fn unknown_keys_are_found_in_file_order() {
        let v = read("services:\n  web:\n    image: x\n    privileged: true\n    deploy: {}\n")
            .unwrap();
        let f = check_keys(&v, &TOP, &KeyPath::default()).unwrap_err();
        assert_eq!(f.path.to_string(), "services.web.privileged");
        match f.kind {
            FaultKind::Unsupported { key, supported } => {
                assert_eq!(key, "privileged");
                assert!(
                    supported.starts_with("image, build, command"),
                    "{supported}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

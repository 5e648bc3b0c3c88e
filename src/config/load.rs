//! The one loading pipeline of every TOML configuration (the daemon's and the
//! reference API's): a file and `PREFIX__SECTION__KEY` environment overrides
//! layered by the `config` crate into one tree, then decoded with
//! `serde_ignored` (unknown keys, by path) and `serde_path_to_error` (the
//! path of a bad value), and an [`Errors`] collector that every section's
//! `validate` writes to. Every problem is reported at once: a bad value is
//! recorded, taken out of the tree (its default applies) and the tree is
//! decoded again, so the next bad value shows too. No error text is parsed.

use std::collections::BTreeSet;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::{ConfigError, ConfigErrors};

/// Where a configuration comes from.
pub struct Sources<'a> {
    pub file: Option<&'a Path>,
    /// `REHAB_CANARY` or `REHAB_SIM`: variables `PREFIX__SECTION__KEY`.
    pub env_prefix: &'a str,
    pub env: Vec<(String, String)>,
    /// Keys whose environment value is a comma-separated list.
    pub list_keys: &'a [&'a str],
}

/// Every problem found in one configuration, each naming its key.
#[derive(Debug, Default)]
pub struct Errors(Vec<ConfigError>);

impl Errors {
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }

    pub fn invalid(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Records `message` against `key` unless `ok`.
    pub fn check(&mut self, ok: bool, key: &str, message: &str) {
        if !ok {
            self.invalid(key, message);
        }
    }

    /// Records an error unless `min <= v <= max`.
    pub fn range<T: PartialOrd + std::fmt::Display>(&mut self, key: &str, v: T, min: T, max: T) {
        if v < min || v > max {
            self.invalid(key, format!("must be between {min} and {max}, got {v}"));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.0))
        }
    }

    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }

    /// The errors `f` records, in order.
    pub fn collect(f: impl FnOnce(&mut Errors)) -> Vec<ConfigError> {
        let mut errs = Errors::default();
        f(&mut errs);
        errs.0
    }
}

/// Layers the sources into one tree: the file, then the environment.
pub fn layered(src: Sources<'_>, errs: &mut Errors) -> Result<config::Value, ConfigErrors> {
    let origin = || {
        src.file
            .map_or_else(|| "config".to_owned(), |p| p.display().to_string())
    };
    let load_error = |message: String| {
        ConfigErrors(vec![ConfigError::Load {
            path: origin(),
            message,
        }])
    };
    let mut builder = config::Config::builder();
    if let Some(path) = src.file {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => load_error("file not found".to_owned()),
            _ => load_error(e.to_string()),
        })?;
        builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
    }
    let prefix = format!("{}__", src.env_prefix);
    let mut env = config::Map::new();
    for (k, v) in src.env {
        let Some(rest) = k.strip_prefix(&prefix) else {
            continue;
        };
        // A variable with no key after the prefix (`PREFIX__=1`) or an
        // empty segment names no key: name the variable instead.
        if rest.split("__").any(str::is_empty) {
            errs.push(ConfigError::UnknownKey { key: k });
            continue;
        }
        env.insert(k, v);
    }
    let mut environment = config::Environment::with_prefix(src.env_prefix)
        .prefix_separator("__")
        .separator("__")
        .source(Some(env));
    if !src.list_keys.is_empty() {
        environment = environment.try_parsing(true).list_separator(",");
        for key in src.list_keys {
            environment = environment.with_list_parse_key(key);
        }
    }
    builder = builder.add_source(environment);
    let built = builder.build().map_err(|e| load_error(e.to_string()))?;
    Ok(built.cache)
}

/// Decodes `tree` into `T`, recording every unknown key and every bad value
/// (whose default then applies) in `errs`.
pub fn decode<T: DeserializeOwned + Default>(mut tree: config::Value, errs: &mut Errors) -> T {
    let mut unknown = BTreeSet::new();
    let mut bad = BTreeSet::new();
    // Each pass takes one bad value out; a tree has finitely many.
    loop {
        let mut ignored = |path: serde_ignored::Path<'_>| {
            unknown.insert(path.to_string());
        };
        let de = serde_ignored::Deserializer::new(tree.clone(), &mut ignored);
        match serde_path_to_error::deserialize::<_, T>(de) {
            Ok(value) => {
                for key in unknown {
                    errs.push(ConfigError::UnknownKey { key });
                }
                return value;
            }
            Err(e) => {
                let key = e.path().to_string();
                errs.invalid(key.clone(), message(e.inner()));
                if !bad.insert(key.clone()) || !remove(&mut tree, &key) {
                    // Nothing left to take out: the rest is defaults.
                    for key in unknown {
                        errs.push(ConfigError::UnknownKey { key });
                    }
                    return T::default();
                }
            }
        }
    }
}

/// The error without the key and origin the `config` crate wraps around it:
/// the path is ours, from `serde_path_to_error`.
fn message(e: &config::ConfigError) -> String {
    match e {
        config::ConfigError::At { error, .. } => message(error),
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => format!("invalid type: {unexpected}, expected {expected}"),
        other => other.to_string(),
    }
}

/// Removes the value at a dotted path (`a.b.c`, or `.` for the root).
fn remove(tree: &mut config::Value, path: &str) -> bool {
    let mut node = tree;
    let mut parts = path.split('.').filter(|p| !p.is_empty()).peekable();
    if parts.peek().is_none() {
        *node = config::Value::new(None, config::ValueKind::Table(config::Map::new()));
        return true;
    }
    while let Some(part) = parts.next() {
        let config::ValueKind::Table(table) = &mut node.kind else {
            return false;
        };
        if parts.peek().is_none() {
            return table.remove(part).is_some();
        }
        match table.get_mut(part) {
            Some(next) => node = next,
            None => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::time::Duration;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Root {
        a: Inner,
        n: u32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default)]
    struct Inner {
        x: u32,
        #[serde(with = "humantime_serde")]
        d: Duration,
    }

    impl Default for Inner {
        fn default() -> Self {
            Inner {
                x: 7,
                d: Duration::from_secs(1),
            }
        }
    }

    fn load(toml: &str, env: &[(&str, &str)]) -> (Root, Vec<ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        let mut errs = Errors::default();
        let tree = layered(
            Sources {
                file: Some(&path),
                env_prefix: "T",
                env: env
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                list_keys: &[],
            },
            &mut errs,
        )
        .unwrap();
        let root = decode(tree, &mut errs);
        (root, errs.into_vec())
    }

    fn keys(errs: &[ConfigError]) -> Vec<&str> {
        errs.iter().filter_map(ConfigError::key).collect()
    }

    #[test]
    fn every_bad_value_and_unknown_key_is_named_and_the_rest_decodes() {
        let (root, errs) = load(
            "n = \"many\"\nzz = 1\n[a]\nx = \"seven\"\nd = \"soon\"\ny = 2\n",
            &[("T__A__W", "1")],
        );
        let mut k = keys(&errs);
        k.sort_unstable();
        assert_eq!(k, ["a.d", "a.w", "a.x", "a.y", "n", "zz"], "{errs:?}");
        assert_eq!(root, Root::default());
    }

    #[test]
    fn environment_overrides_the_file_with_typed_values() {
        let (root, errs) = load("[a]\nx = 1\n", &[("T__A__X", "5"), ("T__N", "3")]);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!((root.a.x, root.n), (5, 3));
        let (_, errs) = load("", &[("T__", "1"), ("T__A____X", "1")]);
        assert_eq!(keys(&errs), ["T__", "T__A____X"]);
    }

    #[test]
    fn a_missing_file_is_a_load_error() {
        let mut errs = Errors::default();
        let err = layered(
            Sources {
                file: Some(Path::new("/nonexistent/c.toml")),
                env_prefix: "T",
                env: Vec::new(),
                list_keys: &[],
            },
            &mut errs,
        )
        .unwrap_err();
        assert!(err.to_string().contains("file not found"), "{err}");
    }
}

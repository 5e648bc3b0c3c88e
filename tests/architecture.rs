//! The layering rules of `docs/architecture.md`, checked on the source: the
//! top-level modules' imports form no cycle (a module never imports one that
//! imports it back), the configuration is a leaf, and the traffic path does
//! not depend on the admin server. `scripts/import-graph.sh` prints the graph.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use support::root;

/// Top-level module -> the top-level modules its non-test code names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = root().join("src");
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let module = first.trim_end_matches(".rs").to_owned();
            if matches!(module.as_str(), "lib" | "main") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests may reach anywhere; only the shipped code is judged.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let deps = g.entry(module.clone()).or_default();
            for line in code.lines() {
                let line = line.trim_start();
                if line.starts_with("//") {
                    continue;
                }
                for (i, _) in line.match_indices("crate::") {
                    let name: String = line[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != module {
                        deps.insert(name);
                    }
                }
            }
        }
    }
    g
}

/// A cycle through `start`, if any (depth-first).
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut c = path[at..].to_vec();
            c.push(node.to_owned());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in g.get(node).into_iter().flatten() {
            if let Some(c) = visit(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_import_no_cycle() {
    let g = graph();
    assert!(
        g.contains_key("config") && g.contains_key("traffic"),
        "{g:?}"
    );
    assert_eq!(cycle(&g), None, "import cycle in {g:#?}");
}

#[test]
fn configuration_and_the_shared_leaves_import_no_runtime_module() {
    let g = graph();
    let allowed: BTreeSet<&str> = ["api", "exit", "html", "status"].into();
    for leaf in ["config", "api", "exit", "html", "status"] {
        let deps = &g[leaf];
        assert!(
            deps.iter().all(|d| allowed.contains(d.as_str())),
            "{leaf} imports {deps:?}"
        );
    }
}

#[test]
fn the_traffic_path_does_not_depend_on_the_admin_server() {
    let g = graph();
    for m in ["traffic", "reload", "lag", "client", "metrics", "oneshot"] {
        assert!(!g[m].contains("admin"), "{m} imports admin: {:?}", g[m]);
    }
    assert!(
        !g["client"].contains("metrics"),
        "the client records nothing"
    );
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    g.get_mut("c").unwrap().clear();
    assert_eq!(cycle(&g), None);
}

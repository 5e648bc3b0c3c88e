//! The Kubernetes manifests (`deploy/kubernetes`): a kustomize base and the
//! staging overlay, validated offline.
//!
//! - Built-in kinds: `kubernetes-validate --strict` (PyPI) against the oldest
//!   Kubernetes the manifests support (1.28, for the pod-index label) and the
//!   newest the tool knows, on every manifest file and on the rendered base
//!   and overlay.
//! - The two Prometheus Operator kinds, for which the tool has no schema (it
//!   only warns): the PrometheusRule's groups must equal the rules file's and
//!   pass `promtool check rules`; both CRD objects are held to the fields
//!   listed here (an allowlist of the CRDs' fields we use), and the
//!   ServiceMonitor must select the Service by its labels and port name.
//! - Rendering: `kubectl kustomize` (or `kustomize build`) renders base and
//!   overlay. Without either, the semantic checks run on the base's files and
//!   the overlay's kustomization, and every reference in each
//!   kustomization.yaml (resources, patches and what they target,
//!   generators, replicas, replacements) is checked by hand, as it also is
//!   with a renderer.
//!
//! kubernetes-validate and promtool missing is a failure, never a skip:
//! `scripts/test.sh` installs both.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rehab_canary::config::Config;
use rehab_canary::slo;
use serde::Deserialize;
use serde_json::{json, Value};
use support::process::{canary, run, tool};
use support::{root, temp_file};

const K8S: &str = "deploy/kubernetes";
/// What gets applied: the base (not on its own in practice) and each overlay.
const TARGETS: [&str; 2] = ["base", "overlays/staging"];
/// The oldest Kubernetes the manifests support: StatefulSet pods carry the
/// `apps.kubernetes.io/pod-index` label from 1.28 on.
const MIN_KUBERNETES: &str = "1.28.0";
const CRD_API: &str = "monitoring.coreos.com/v1";
const CRD_KINDS: [&str; 2] = ["ServiceMonitor", "PrometheusRule"];
const POD_INDEX: &str = "metadata.labels['apps.kubernetes.io/pod-index']";

fn k8s() -> PathBuf {
    root().join(K8S)
}

/// Every document of a YAML file, as JSON values (empty documents dropped).
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_docs(&text, &path.display().to_string())
}

fn parse_docs(text: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{what}: invalid YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// Every `.yaml`/`.yml` file under `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn kustomization(dir: &Path) -> Value {
    let path = dir.join("kustomization.yaml");
    assert!(
        path.is_file(),
        "{} has no kustomization.yaml",
        dir.display()
    );
    yaml_docs(&path).pop().unwrap_or(Value::Null)
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn kind(v: &Value) -> &str {
    s(v, "/kind")
}

fn name(v: &Value) -> &str {
    s(v, "/metadata/name")
}

fn is_crd(v: &Value) -> bool {
    s(v, "/apiVersion") == CRD_API && CRD_KINDS.contains(&kind(v))
}

/// Files a kustomization uses as patches or replacements: partial objects
/// or JSON patches, not manifests of their own.
fn patch_files(dir: &Path) -> Vec<PathBuf> {
    let k = kustomization(dir);
    list(&k, "patches")
        .iter()
        .chain(list(&k, "replacements"))
        .filter_map(|p| p.get("path").and_then(Value::as_str))
        .map(|p| dir.join(p))
        .collect()
}

fn kustomization_dirs() -> Vec<PathBuf> {
    yaml_files(&k8s())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "kustomization.yaml"))
        .map(|p| p.parent().unwrap().to_path_buf())
        .collect()
}

/// The objects a kustomization accumulates before its own transformations:
/// its resource files, its bases' objects, and stand-ins for generated maps.
fn raw_objects(dir: &Path) -> Vec<Value> {
    let k = kustomization(dir);
    let mut out = Vec::new();
    for r in list(&k, "resources") {
        let path = dir.join(r.as_str().expect("a resource is a path"));
        if path.is_dir() {
            out.extend(raw_objects(&path));
        } else {
            out.extend(yaml_docs(&path));
        }
    }
    for (generator, kind) in [
        ("configMapGenerator", "ConfigMap"),
        ("secretGenerator", "Secret"),
    ] {
        for g in list(&k, generator) {
            if g.get("behavior")
                .and_then(Value::as_str)
                .unwrap_or("create")
                == "create"
            {
                out.push(
                    json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": g["name"]}}),
                );
            }
        }
    }
    out
}

/// The command that renders a kustomization, if this machine has one.
fn renderer() -> Option<(&'static str, &'static str)> {
    static FOUND: OnceLock<Option<(&str, &str)>> = OnceLock::new();
    *FOUND.get_or_init(find_renderer)
}

fn find_renderer() -> Option<(&'static str, &'static str)> {
    let works = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works("kubectl", &["version", "--client"]) {
        Some(("kubectl", "kustomize"))
    } else if works("kustomize", &["version"]) {
        Some(("kustomize", "build"))
    } else {
        eprintln!(
            "NOTE: neither kubectl nor kustomize is installed: the base and the overlay are NOT \
             rendered; checking the base's files and every kustomization reference instead"
        );
        None
    }
}

/// The rendered YAML of a target, with a renderer.
fn render_text(target: &str) -> Option<String> {
    let (cmd, sub) = renderer()?;
    let out = run(Command::new(cmd).arg(sub).arg(k8s().join(target)));
    out.assert_success(&format!("{cmd} {sub} {K8S}/{target}"));
    Some(out.stdout)
}

/// A target's objects: rendered when a renderer exists, else the raw objects
/// of the base (patches and overlays not applied).
fn objects(target: &str) -> (Vec<Value>, bool) {
    match render_text(target) {
        Some(text) => (parse_docs(&text, target), true),
        None => (raw_objects(&k8s().join("base")), false),
    }
}

fn find<'a>(objs: &'a [Value], kind_: &str) -> &'a Value {
    let found: Vec<&Value> = objs.iter().filter(|o| kind(o) == kind_).collect();
    assert_eq!(found.len(), 1, "expected exactly one {kind_}");
    found[0]
}

/// A kustomize field path (`a.b.[name=x].c`) in an object.
fn field<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(obj, |v, seg| {
        if let Some(sel) = seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let (k, want) = sel.split_once('=')?;
            v.as_array()?.iter().find(|e| e[k].as_str() == Some(want))
        } else if let Ok(i) = seg.parse::<usize>() {
            v.get(i)
        } else {
            v.get(seg)
        }
    })
}

/// Whether a kustomize selector (`target:`, `select:`, `source:`) matches.
fn selects(sel: &Value, obj: &Value) -> bool {
    let api = s(obj, "/apiVersion");
    let (group, version) = api.rsplit_once('/').unwrap_or(("", api));
    [
        ("kind", kind(obj)),
        ("name", name(obj)),
        ("group", group),
        ("version", version),
    ]
    .iter()
    .all(|(k, v)| sel.get(*k).and_then(Value::as_str).is_none_or(|w| w == *v))
}

fn kubernetes_validate(files: &[PathBuf], version: Option<&str>) -> (bool, String) {
    let mut args = vec!["--strict".to_owned()];
    if let Some(v) = version {
        args.extend(["-k".to_owned(), v.to_owned()]);
    }
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tool(
        "kubernetes-validate",
        &args,
        "PyPI package `kubernetes-validate`",
    )
}

#[test]
fn kustomization_references_exist_and_patches_hit_objects() {
    let dirs = kustomization_dirs();
    let rel: BTreeSet<PathBuf> = dirs
        .iter()
        .map(|d| d.strip_prefix(k8s()).unwrap().to_path_buf())
        .collect();
    for t in TARGETS {
        assert!(rel.contains(Path::new(t)), "no kustomization in {K8S}/{t}");
    }
    let mut used: BTreeSet<PathBuf> = BTreeSet::new();
    for dir in &dirs {
        let here = dir.display();
        let k = kustomization(dir);
        used.insert(dir.join("kustomization.yaml"));
        assert_eq!(s(&k, "/kind"), "Kustomization", "{here}");
        for r in list(&k, "resources") {
            let path = dir.join(r.as_str().unwrap());
            assert!(
                path.is_file() || path.join("kustomization.yaml").is_file(),
                "{here}: resource {r} does not exist"
            );
            used.insert(path);
        }
        let objs = raw_objects(dir);
        for generator in ["configMapGenerator", "secretGenerator"] {
            for g in list(&k, generator) {
                for f in list(g, "files") {
                    let f = f.as_str().unwrap();
                    let f = f.split_once('=').map_or(f, |(_, p)| p);
                    assert!(
                        dir.join(f).is_file(),
                        "{here}: {generator} file {f} missing"
                    );
                }
                if s(g, "/behavior") == "replace" || s(g, "/behavior") == "merge" {
                    assert!(
                        objs.iter().any(|o| name(o) == s(g, "/name")),
                        "{here}: {generator} {} replaces nothing",
                        g["name"]
                    );
                }
            }
        }
        for p in list(&k, "patches") {
            let (text, what) = match (p.get("path").and_then(Value::as_str), p.get("patch")) {
                (Some(path), _) => {
                    let file = dir.join(path);
                    assert!(file.is_file(), "{here}: patch {path} does not exist");
                    used.insert(file.clone());
                    (std::fs::read_to_string(file).unwrap(), path.to_owned())
                }
                (None, Some(Value::String(inline))) => (inline.clone(), "inline patch".into()),
                _ => panic!("{here}: a patch without path or patch: {p}"),
            };
            let patch = parse_docs(&text, &what).pop().unwrap_or(Value::Null);
            let targets: Vec<&Value> = match p.get("target") {
                Some(t) => objs.iter().filter(|o| selects(t, o)).collect(),
                // A strategic merge patch names its object itself.
                None => objs
                    .iter()
                    .filter(|o| kind(o) == kind(&patch) && name(o) == name(&patch))
                    .collect(),
            };
            assert!(!targets.is_empty(), "{here}: {what} targets no object");
            // JSON 6902: every replaced/removed/tested path exists, and the
            // parent of every added one.
            for op in patch.as_array().into_iter().flatten() {
                let path = s(op, "/path");
                let must = match s(op, "/op") {
                    "add" => path.rsplit_once('/').map_or("", |(p, _)| p),
                    _ => path,
                };
                for t in &targets {
                    assert!(
                        t.pointer(must).is_some(),
                        "{here}: {what}: {must} is not in {}/{}",
                        kind(t),
                        name(t)
                    );
                }
            }
        }
        for r in list(&k, "replicas") {
            assert!(
                objs.iter()
                    .any(|o| name(o) == s(r, "/name") && kind(o) == "StatefulSet"),
                "{here}: replicas names no StatefulSet: {r}"
            );
        }
        for r in list(&k, "replacements") {
            let src = &r["source"];
            let from: Vec<&Value> = objs.iter().filter(|o| selects(src, o)).collect();
            assert_eq!(from.len(), 1, "{here}: replacement source {src}");
            assert!(
                field(from[0], s(src, "/fieldPath")).is_some(),
                "{here}: no {} in the source",
                src["fieldPath"]
            );
            for t in list(r, "targets") {
                let to: Vec<&Value> = objs.iter().filter(|o| selects(&t["select"], o)).collect();
                assert!(!to.is_empty(), "{here}: replacement selects nothing: {t}");
                for fp in list(t, "fieldPaths") {
                    for o in &to {
                        assert!(
                            field(o, fp.as_str().unwrap()).is_some(),
                            "{here}: no {fp} in {}/{}",
                            kind(o),
                            name(o)
                        );
                    }
                }
            }
        }
    }
    // No manifest lies around that no kustomization applies.
    for f in yaml_files(&k8s()) {
        assert!(
            used.contains(&f),
            "{} is used by no kustomization",
            f.display()
        );
    }
}

#[test]
fn manifests_pass_kubernetes_validate_strict() {
    // The tool works and is strict: a misspelt field fails.
    let (dir, bad) = temp_file(
        "bad.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIp: None}\n",
    );
    let (ok, text) = kubernetes_validate(std::slice::from_ref(&bad), None);
    assert!(
        !ok && text.contains("clusterIp"),
        "strict mode let a typo pass:\n{text}"
    );

    // Every file that is a whole manifest (not a kustomization, not a patch).
    let patches: BTreeSet<PathBuf> = kustomization_dirs()
        .iter()
        .flat_map(|d| patch_files(d))
        .collect();
    let mut files: Vec<PathBuf> = yaml_files(&k8s())
        .into_iter()
        .filter(|f| !f.ends_with("kustomization.yaml") && !patches.contains(f))
        .collect();
    // And what kubectl would apply, patches and generators included.
    for t in TARGETS {
        if let Some(text) = render_text(t) {
            let f = dir.path().join(format!("{}.yaml", t.replace('/', "-")));
            std::fs::write(&f, text).unwrap();
            files.push(f);
        }
    }
    let docs: Vec<Value> = files.iter().flat_map(|f| yaml_docs(f)).collect();
    let builtin = docs.iter().filter(|d| !is_crd(d)).count();
    let crds = docs.len() - builtin;
    assert!(
        builtin >= 5 && crds >= 2,
        "{builtin} built-in objects, {crds} CRD objects"
    );
    for version in [Some(MIN_KUBERNETES), None] {
        let (ok, text) = kubernetes_validate(&files, version);
        let mut passed = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if line.starts_with("INFO ") && line.contains(" passed for resource ") {
                passed += 1;
            } else if line.starts_with("WARN ") {
                // The tool has no schema for CRD kinds and only warns: those
                // are checked in the tests below; any other warning fails.
                assert!(
                    CRD_KINDS.iter().any(|k| line.contains(&format!(
                        "Couldn't find schema for kind {k} with api version {CRD_API}"
                    ))),
                    "kubernetes-validate: {line}"
                );
            } else {
                panic!("kubernetes-validate ({version:?}): {line}\n{text}");
            }
        }
        assert!(
            ok,
            "kubernetes-validate --strict ({version:?}) failed:\n{text}"
        );
        assert_eq!(passed, builtin, "not every object was validated:\n{text}");
    }
}

fn rules_file_groups() -> Value {
    let rules = yaml_docs(&root().join(slo::RULES_PATH)).pop().unwrap();
    let groups = rules["groups"].clone();
    assert!(groups.as_array().is_some_and(|g| !g.is_empty()));
    groups
}

fn promtool_check_groups(groups: &Value, what: &str) {
    let yaml = serde_norway::to_string(&json!({ "groups": groups })).unwrap();
    let (_dir, path) = temp_file("groups.yml", &yaml);
    let (ok, text) = tool(
        "promtool",
        &["check", "rules", path.to_str().unwrap()],
        "Debian package `prometheus`",
    );
    assert!(
        ok && text.contains("SUCCESS"),
        "{what}: promtool check rules:\n{text}"
    );
}

#[test]
fn prometheus_rule_has_exactly_the_rules_file_groups() {
    let path = root().join(slo::PROMETHEUS_RULE_PATH);
    let cfg = Config::load_with_env(Some(&root().join("config/default.toml")), []).unwrap();
    let have = std::fs::read_to_string(&path).unwrap();
    assert!(
        have == slo::prometheus_rule_yaml(&cfg.slo),
        "{} is stale; regenerate with:\n  cargo run -- slo-rules --config config/default.toml \
         --format prometheusrule --output {}",
        slo::PROMETHEUS_RULE_PATH,
        slo::PROMETHEUS_RULE_PATH
    );
    let want = rules_file_groups();
    let mut checked = vec![(
        yaml_docs(&path).pop().unwrap(),
        "the committed file".to_owned(),
    )];
    for t in TARGETS {
        let (objs, rendered) = objects(t);
        if rendered {
            checked.push((
                find(&objs, "PrometheusRule").clone(),
                format!("rendered {t}"),
            ));
        }
    }
    for (rule, what) in &checked {
        assert_eq!(s(rule, "/apiVersion"), CRD_API, "{what}");
        assert_eq!(kind(rule), "PrometheusRule", "{what}");
        assert_only_keys(rule, &RULE_FIELDS, what);
        assert!(
            rule["spec"]["groups"] == want,
            "{what}: spec.groups differ from {}",
            slo::RULES_PATH
        );
        promtool_check_groups(&rule["spec"]["groups"], what);
    }
}

/// The fields of the two CRD objects we use: a strict subset of their
/// schemas (the tool has none), so a misspelt key fails here instead of
/// being pruned silently by the API server. `*` matches any key (label
/// names, and the rule groups, whose content promtool checks).
const RULE_FIELDS: [&str; 6] = [
    "apiVersion",
    "kind",
    "metadata.name",
    "metadata.namespace",
    "metadata.labels.*",
    "spec.groups",
];
const MONITOR_FIELDS: [&str; 12] = [
    "apiVersion",
    "kind",
    "metadata.name",
    "metadata.namespace",
    "metadata.labels.*",
    "spec.jobLabel",
    "spec.selector.matchLabels.*",
    "spec.endpoints.[].port",
    "spec.endpoints.[].path",
    "spec.endpoints.[].interval",
    "spec.endpoints.[].scheme",
    "spec.endpoints.[].scrapeTimeout",
];

fn leaf_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(m) => m.iter().for_each(|(k, v)| leaf_paths(v, &join(k), out)),
        Value::Array(a) if a.iter().all(Value::is_object) && !a.is_empty() => {
            a.iter().for_each(|v| leaf_paths(v, &join("[]"), out))
        }
        _ => out.push(prefix.to_owned()),
    }
}

fn assert_only_keys(obj: &Value, allowed: &[&str], what: &str) {
    let mut paths = Vec::new();
    leaf_paths(obj, "", &mut paths);
    for p in paths {
        let ok = allowed.iter().any(|a| match a.strip_suffix(".*") {
            Some(parent) => p.starts_with(&format!("{parent}.")),
            None => p == *a || p.starts_with(&format!("{a}.")),
        });
        assert!(
            ok,
            "{what}: {} {} has an unexpected field {p}",
            kind(obj),
            name(obj)
        );
    }
}

/// The job Prometheus must give the canary's series: `slo.job` of the config
/// in a target's ConfigMap (the generated alerts select `up{job=...}`).
fn slo_job(target: &str) -> String {
    let cfg = Config::load_with_env(Some(&k8s().join(target).join("config.toml")), []).unwrap();
    cfg.slo.job
}

#[test]
fn service_is_headless_and_the_service_monitor_scrapes_it_as_the_slo_job() {
    for t in TARGETS {
        let (objs, rendered) = objects(t);
        let svc = find(&objs, "Service");
        let mon = find(&objs, "ServiceMonitor");
        assert_only_keys(mon, &MONITOR_FIELDS, t);
        assert_eq!(
            s(svc, "/spec/clusterIP"),
            "None",
            "{t}: the Service is not headless"
        );
        let ports = list(&svc["spec"], "ports");
        assert_eq!(ports.len(), 1, "{t}");
        assert_eq!(ports[0]["name"], "metrics", "{t}");
        assert_eq!(ports[0]["port"], 8742, "{t}");
        assert_eq!(ports[0]["targetPort"], "metrics", "{t}");
        let labels = svc["metadata"]["labels"].as_object().unwrap();
        let selector = mon["spec"]["selector"]["matchLabels"].as_object().unwrap();
        assert!(!selector.is_empty(), "{t}");
        for (k, v) in selector {
            assert_eq!(
                labels.get(k),
                Some(v),
                "{t}: the ServiceMonitor's selector {k}"
            );
        }
        let endpoints = list(&mon["spec"], "endpoints");
        assert_eq!(endpoints.len(), 1, "{t}");
        assert_eq!(
            endpoints[0]["port"], ports[0]["name"],
            "{t}: endpoint port name"
        );
        assert_eq!(endpoints[0]["path"], "/metrics", "{t}");
        let job_label = s(mon, "/spec/jobLabel");
        assert_eq!(
            labels.get(job_label).and_then(Value::as_str),
            Some(slo_job(t).as_str()),
            "{t}: the job label (the Service's label {job_label:?}) must equal slo.job"
        );
        // The PrometheusRule is generated from the defaults: its alerts
        // select the default job.
        assert_eq!(slo_job(t), Config::default().slo.job, "{t}: slo.job");
        if rendered {
            assert_eq!(
                s(mon, "/metadata/namespace"),
                s(svc, "/metadata/namespace"),
                "{t}: a ServiceMonitor without namespaceSelector sees its own namespace"
            );
        }
    }
}

fn env<'a>(container: &'a Value, var: &str) -> &'a Value {
    list(container, "env")
        .iter()
        .find(|e| e["name"] == var)
        .unwrap_or_else(|| panic!("no env {var}"))
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The shard count an overlay keeps equal to replicas when not rendered:
/// its `replicas:` and a replacement from spec.replicas into the env value.
fn assert_overlay_copies_replicas(target: &str) {
    let k = kustomization(&k8s().join(target));
    let copies = list(&k, "replacements").iter().any(|r| {
        r["source"]["kind"] == "StatefulSet"
            && r["source"]["fieldPath"] == "spec.replicas"
            && list(r, "targets").iter().any(|t| {
                list(t, "fieldPaths").iter().any(|f| {
                    f.as_str().is_some_and(|f| {
                        f.ends_with(".env.[name=REHAB_CANARY__SHARD__TOTAL].value")
                    })
                })
            })
    });
    assert!(
        copies,
        "{target}: no replacement copies spec.replicas into REHAB_CANARY__SHARD__TOTAL"
    );
}

#[test]
fn statefulset_is_sharded_probed_and_restricted() {
    for t in TARGETS {
        let (objs, rendered) = objects(t);
        let ss = find(&objs, "StatefulSet");
        let spec = &ss["spec"];
        let pod = &spec["template"]["spec"];
        let pod_labels = &spec["template"]["metadata"]["labels"];
        assert_eq!(spec["podManagementPolicy"], "Parallel", "{t}");
        assert_eq!(spec["serviceName"], name(find(&objs, "Service")), "{t}");
        assert!(
            labels_match(&spec["selector"]["matchLabels"], pod_labels),
            "{t}"
        );
        let containers = list(pod, "containers");
        assert_eq!(containers.len(), 1, "{t}");
        let c = &containers[0];

        // Sharding: index from the pod-index label, total == replicas.
        let replicas = spec["replicas"].as_u64().expect("replicas");
        assert_eq!(
            env(c, "REHAB_CANARY__SHARD__TOTAL")["value"],
            replicas.to_string(),
            "{t}: shard total must equal replicas"
        );
        assert_overlay_copies_replicas(t);
        assert_eq!(
            env(c, "REHAB_CANARY__SHARD__INDEX")["valueFrom"]["fieldRef"]["fieldPath"],
            POD_INDEX,
            "{t}"
        );
        assert_eq!(
            env(c, "REHAB_CANARY__SERVER__LISTEN")["value"],
            "0.0.0.0:8742",
            "{t}"
        );
        let metrics = list(c, "ports")
            .iter()
            .find(|p| p["name"] == "metrics")
            .expect("a metrics port");
        assert_eq!(metrics["containerPort"], 8742, "{t}");

        // Probes on the admin routes, never on the target.
        for (probe, path) in [
            ("livenessProbe", "/-/healthy"),
            ("readinessProbe", "/-/ready"),
        ] {
            assert_eq!(c[probe]["httpGet"]["path"], path, "{t}: {probe}");
            assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{t}: {probe}");
        }

        // Config from the ConfigMap, read-only.
        let args: Vec<&str> = list(c, "args").iter().filter_map(Value::as_str).collect();
        assert_eq!(
            args,
            ["run", "--config", "/etc/rehab-canary/config.toml"],
            "{t}"
        );
        let mount = |vol: &str| {
            list(c, "volumeMounts")
                .iter()
                .find(|m| m["name"] == vol)
                .unwrap_or_else(|| panic!("{t}: no mount {vol}"))
        };
        let volume = |vol: &str| {
            list(pod, "volumes")
                .iter()
                .find(|v| v["name"] == vol)
                .unwrap()
        };
        let config = mount("config");
        assert_eq!(config["mountPath"], "/etc/rehab-canary", "{t}");
        assert_eq!(config["readOnly"], true, "{t}");
        let cm = s(volume("config"), "/configMap/name");
        let map = objs
            .iter()
            .find(|o| kind(o) == "ConfigMap" && name(o) == cm)
            .unwrap_or_else(|| panic!("{t}: no ConfigMap {cm}"));
        if rendered {
            let toml = s(map, "/data/config.toml");
            let want = std::fs::read_to_string(k8s().join(t).join("config.toml")).unwrap();
            assert_eq!(
                toml, want,
                "{t}: the ConfigMap is not the target's config.toml"
            );
        }

        // The token: a Secret mounted as a directory (a subPath never sees a
        // rotation), read through auth.token_file.
        let token = mount("token");
        assert_eq!(token["readOnly"], true, "{t}");
        assert!(
            token.get("subPath").is_none(),
            "{t}: subPath defeats rotation"
        );
        assert!(volume("token")["secret"]["secretName"].is_string(), "{t}");
        let file = s(env(c, "REHAB_CANARY__AUTH__TOKEN_FILE"), "/value");
        assert_eq!(
            Path::new(file).parent(),
            Some(Path::new(s(token, "/mountPath"))),
            "{t}: the token file is not in the Secret's mount"
        );

        // The restricted Pod Security Standard, and a read-only root.
        let psc = &pod["securityContext"];
        let csc = &c["securityContext"];
        assert_eq!(psc["runAsNonRoot"], true, "{t}");
        let uid = psc["runAsUser"].as_u64().expect("a numeric runAsUser");
        assert!(uid > 0, "{t}");
        assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{t}");
        assert_eq!(csc["allowPrivilegeEscalation"], false, "{t}");
        assert_eq!(csc["readOnlyRootFilesystem"], true, "{t}");
        assert_eq!(csc["capabilities"]["drop"], json!(["ALL"]), "{t}");
        assert!(csc["capabilities"].get("add").is_none(), "{t}");
        assert!(csc.get("privileged").is_none_or(|p| p == false), "{t}");
        for key in ["runAsNonRoot", "runAsUser"] {
            assert!(csc.get(key).is_none_or(|v| *v == psc[key]), "{t}: {key}");
        }
        assert!(
            pod.get("hostNetwork").is_none() && pod.get("hostPID").is_none(),
            "{t}"
        );
        let ns = find(&objs, "Namespace");
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted",
            "{t}"
        );
        for r in ["requests", "limits"] {
            for res in ["cpu", "memory"] {
                assert!(c["resources"][r][res].is_string(), "{t}: no {r}.{res}");
            }
        }

        // Disruptions and traffic rules apply to these pods.
        let pdb = find(&objs, "PodDisruptionBudget");
        assert!(
            labels_match(&pdb["spec"]["selector"]["matchLabels"], pod_labels),
            "{t}"
        );
        let np = find(&objs, "NetworkPolicy");
        assert!(
            labels_match(&np["spec"]["podSelector"]["matchLabels"], pod_labels),
            "{t}"
        );
        assert_eq!(
            np["spec"]["policyTypes"],
            json!(["Ingress", "Egress"]),
            "{t}"
        );
        let ingress = list(&np["spec"], "ingress");
        assert_eq!(ingress.len(), 1, "{t}");
        assert_eq!(
            ingress[0]["ports"],
            json!([{"port": "metrics", "protocol": "TCP"}]),
            "{t}"
        );
        assert!(
            !list(&ingress[0], "from").is_empty(),
            "{t}: ingress from anywhere"
        );
        let egress = list(&np["spec"], "egress");
        assert_eq!(egress.len(), 2, "{t}: egress is the target and DNS only");
        assert!(egress[0]["to"][0]["ipBlock"]["cidr"].is_string(), "{t}");
        assert!(
            !list(&egress[0], "ports").is_empty(),
            "{t}: target on any port"
        );
        assert_eq!(
            egress[1]["to"][0]["podSelector"]["matchLabels"]["k8s-app"], "kube-dns",
            "{t}"
        );
        assert_eq!(
            egress[1]["ports"],
            json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]),
            "{t}"
        );
    }
}

/// Each target's config file with the environment its pods get: the last
/// shard's index, the shard total, the listen address and a token file.
#[test]
fn configs_pass_check_config_with_the_pod_environment() {
    let (_dir, token) = temp_file("token", "example-token\n");
    let check = |config: &Path, index: &str, total: &str| {
        let mut cmd = canary(&["check-config", "--config"]);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("REHAB_CANARY")) {
            cmd.env_remove(k);
        }
        let out = run(cmd
            .arg(config)
            .env("REHAB_CANARY__SHARD__INDEX", index)
            .env("REHAB_CANARY__SHARD__TOTAL", total)
            .env("REHAB_CANARY__SERVER__LISTEN", "0.0.0.0:8742")
            .env("REHAB_CANARY__AUTH__TOKEN_FILE", &token));
        (out.code, out.stderr)
    };
    for t in TARGETS {
        let (objs, _) = objects(t);
        let ss = find(&objs, "StatefulSet");
        let c = &ss["spec"]["template"]["spec"]["containers"][0];
        let total = s(env(c, "REHAB_CANARY__SHARD__TOTAL"), "/value").to_owned();
        let last = (total.parse::<u32>().unwrap() - 1).to_string();
        let config = k8s().join(t).join("config.toml");
        let (code, err) = check(&config, &last, &total);
        assert_eq!(code, Some(0), "{t}: check-config failed:\n{err}");
        // A cluster older than 1.28 has no pod-index label: the value is
        // empty and the daemon refuses to start, naming the key.
        let (code, err) = check(&config, "", &total);
        assert_eq!(code, Some(64), "{t}");
        assert!(err.contains("shard.index"), "{err}");
    }
}

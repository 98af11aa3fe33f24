//! The Kubernetes manifests under `deploy/kubernetes/` agree with the binary
//! they deploy, with the image, with the production compose files and with
//! themselves.
//!
//! No cluster is needed. The files `kustomization.yaml` lists are read as
//! YAML and checked against what the built binary says about itself in
//! `shardgate <role> --help` (subcommands, the variables each role reads, the
//! addresses it listens on), against `compose/Dockerfile` (binary path, user,
//! media directory) and against the environment the production compose
//! files give each role; and every name one object refers to (a Secret key, a
//! Service's pods, a budget's pods, a volume claim) must exist.

// Shared with tests/compose.rs, which uses the rest of it.
#[allow(dead_code)]
mod compose_support;

use compose_support::{
    interpolations, roles, shardgate_services, subcommands, Dockerfile, Role, COREAPP_FILE, MASTER_FILE, WEBAPP_FILE,
};
use serde::Deserialize;
use serde_yaml::Value;
use shardgate_core::config::IGNORED_OFFICIAL_ENV;
use shardgate_core::control_auth::ClusterSecret;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The control-plane secret every master, coreapp and webapp must be given.
const CLUSTER_SECRET_ENV: &str = "SHARDGATE_CLUSTER_SECRET";

/// The image name the manifests use; `kustomization.yaml` sets its registry and tag.
const IMAGE: &str = "shardgate";

/// Variables the compose files need because a host publishes the container's
/// ports under its own name and port numbers; a pod is reached at its own
/// name and the container's ports, so the manifests set none of them.
const HOST_PUBLISHING_ENV: [&str; 3] = ["COREAPP_EXTERNAL_PORTS", "WEBAPP_HOSTNAME", "WEBAPP_EXTERNAL_PORTS"];

/// Variables the manifests set beyond the compose files: the node id from
/// the pod name (compose derives it from the host name), and the media
/// directory next to the volume mounted there (compose leaves it to the image).
const POD_ONLY_ENV: [&str; 2] = ["SHARDGATE_NODE_ID", "WA_MEDIA_DIR"];

/// What a probe takes from its container's environment to call the node as
/// the node listens: the cluster secret and the listen addresses.
const PROBE_ENV: [&str; 3] = [CLUSTER_SECRET_ENV, "SHARDGATE_CONTROL_LISTEN", "WEBAPP_LISTEN"];

/// How long a stopping coreapp may spend on each shard it holds: the lease
/// keeper's `drop_shard` waits this long for the shard's worker to say `bye`
/// and close the session, before it releases the shard in the database.
const SHARD_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What every placeholder in the templates contains.
const PLACEHOLDER: &str = "CHANGE-ME";

// --- reading the manifests ---------------------------------------------------------

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

fn read_yaml_documents(name: &str) -> Vec<Value> {
    let path = manifests_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap_or_else(|e| panic!("{name} is not YAML: {e}")))
        .filter(|document| !document.is_null())
        .collect()
}

fn kustomization() -> Value {
    let mut documents = read_yaml_documents("kustomization.yaml");
    assert_eq!(documents.len(), 1, "kustomization.yaml is one document");
    documents.remove(0)
}

/// The files `kustomization.yaml` applies.
fn resources() -> Vec<String> {
    strings_at(&kustomization(), "resources")
}

fn strings_at(value: &Value, key: &str) -> Vec<String> {
    match value.get(key) {
        Some(Value::Sequence(items)) => items.iter().map(text).collect(),
        _ => Vec::new(),
    }
}

/// A scalar as Kubernetes reads it.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// A `key: value` mapping of strings (labels, selectors, data).
fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    match value {
        Some(Value::Mapping(map)) => map.iter().map(|(k, v)| (text(k), text(v))).collect(),
        _ => BTreeMap::new(),
    }
}

/// One object of one manifest.
#[derive(Debug)]
struct Object {
    file: String,
    value: Value,
}

impl Object {
    fn kind(&self) -> String {
        self.value.get("kind").map(text).unwrap_or_default()
    }

    fn name(&self) -> String {
        self.value.get("metadata").and_then(|m| m.get("name")).map(text).unwrap_or_default()
    }

    fn label(&self) -> String {
        format!("{}: {} {}", self.file, self.kind(), self.name())
    }

    fn spec(&self) -> &Value {
        self.value.get("spec").unwrap_or_else(|| panic!("{} has no spec", self.label()))
    }

    /// A `matchLabels` selector; the manifests use no `matchExpressions`.
    fn match_labels(&self) -> BTreeMap<String, String> {
        let selector = self.spec().get("selector").unwrap_or_else(|| panic!("{} has no selector", self.label()));
        assert!(selector.get("matchExpressions").is_none(), "{}: use matchLabels only", self.label());
        string_map(selector.get("matchLabels"))
    }

    /// The keys of a ConfigMap or Secret, `data` and `stringData` alike.
    fn keys(&self) -> BTreeMap<String, String> {
        let mut keys = string_map(self.value.get("data"));
        keys.extend(string_map(self.value.get("stringData")));
        keys
    }
}

/// Every object of every file `kustomization.yaml` lists.
fn objects() -> Vec<Object> {
    resources()
        .into_iter()
        .flat_map(|file| read_yaml_documents(&file).into_iter().map(move |value| Object { file: file.clone(), value }))
        .collect()
}

fn find<'a>(objects: &'a [Object], kind: &str, name: &str) -> Option<&'a Object> {
    objects.iter().find(|o| o.kind() == kind && o.name() == name)
}

/// Whether every label `selector` asks for is on `labels`.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Where a container variable's value comes from.
#[derive(Debug, Clone, PartialEq)]
enum EnvSource {
    /// `value`, with `$(NAME)` references.
    Literal(String),
    /// The downward API, `fieldRef.fieldPath`.
    Field(String),
    /// A key of a ConfigMap or Secret, set one by one or with `envFrom`.
    Key { kind: &'static str, name: String, key: String },
}

/// A Deployment or StatefulSet and its one container.
struct Workload<'a> {
    object: &'a Object,
}

impl<'a> Workload<'a> {
    fn all(objects: &'a [Object]) -> Vec<Workload<'a>> {
        objects
            .iter()
            .filter(|o| matches!(o.kind().as_str(), "Deployment" | "StatefulSet"))
            .map(|object| Workload { object })
            .collect()
    }

    fn label(&self) -> String {
        self.object.label()
    }

    fn pod_spec(&self) -> &'a Value {
        self.object.spec().get("template").and_then(|t| t.get("spec")).expect("a pod template")
    }

    fn pod_labels(&self) -> BTreeMap<String, String> {
        string_map(self.object.spec().get("template").and_then(|t| t.get("metadata")).and_then(|m| m.get("labels")))
    }

    fn replicas(&self) -> u64 {
        self.object.spec().get("replicas").and_then(Value::as_u64).unwrap_or(1)
    }

    fn container(&self) -> &'a Value {
        let Some(Value::Sequence(containers)) = self.pod_spec().get("containers") else {
            panic!("{} has no containers", self.label())
        };
        assert_eq!(containers.len(), 1, "{}: one container per pod, the node", self.label());
        &containers[0]
    }

    fn command(&self) -> Vec<String> {
        strings_at(self.container(), "command")
    }

    /// The subcommand its container runs.
    fn role(&self) -> String {
        self.command().get(1).cloned().unwrap_or_else(|| panic!("{} has no subcommand", self.label()))
    }

    /// The container's environment in the order Kubernetes builds it: every
    /// `envFrom` key, then each `env` entry (which wins over `envFrom`).
    fn env(&self, objects: &[Object]) -> Vec<(String, EnvSource)> {
        let container = self.container();
        let mut env = Vec::new();
        if let Some(Value::Sequence(sources)) = container.get("envFrom") {
            for source in sources {
                let (kind, reference) = match (source.get("configMapRef"), source.get("secretRef")) {
                    (Some(r), None) => ("ConfigMap", r),
                    (None, Some(r)) => ("Secret", r),
                    _ => panic!("{}: envFrom {source:?} is neither a ConfigMap nor a Secret", self.label()),
                };
                assert!(source.get("prefix").is_none(), "{}: envFrom without prefixes", self.label());
                let name = reference.get("name").map(text).unwrap_or_default();
                let object = find(objects, kind, &name)
                    .unwrap_or_else(|| panic!("{}: envFrom {kind} {name}, which no manifest defines", self.label()));
                for key in object.keys().into_keys() {
                    env.push((key.clone(), EnvSource::Key { kind, name: name.clone(), key }));
                }
            }
        }
        if let Some(Value::Sequence(entries)) = container.get("env") {
            for entry in entries {
                let name = entry.get("name").map(text).expect("env name");
                let source = if let Some(value) = entry.get("value") {
                    EnvSource::Literal(text(value))
                } else {
                    let from =
                        entry.get("valueFrom").unwrap_or_else(|| panic!("{}: {name} has no value", self.label()));
                    let key_of = |kind, r: &Value| EnvSource::Key {
                        kind,
                        name: r.get("name").map(text).unwrap_or_default(),
                        key: r.get("key").map(text).unwrap_or_default(),
                    };
                    match (from.get("fieldRef"), from.get("configMapKeyRef"), from.get("secretKeyRef")) {
                        (Some(f), None, None) => EnvSource::Field(f.get("fieldPath").map(text).unwrap_or_default()),
                        (None, Some(r), None) => key_of("ConfigMap", r),
                        (None, None, Some(r)) => key_of("Secret", r),
                        _ => panic!("{}: {name}: unsupported valueFrom {from:?}", self.label()),
                    }
                };
                env.retain(|(n, _)| *n != name);
                env.push((name, source));
            }
        }
        env
    }

    /// The variables set to a literal value.
    fn literal_env(&self, objects: &[Object]) -> BTreeMap<String, String> {
        self.env(objects)
            .into_iter()
            .filter_map(|(name, source)| match source {
                EnvSource::Literal(value) => Some((name, value)),
                _ => None,
            })
            .collect()
    }

    /// (name, containerPort) of each declared port.
    fn ports(&self) -> Vec<(Option<String>, u16)> {
        let Some(Value::Sequence(ports)) = self.container().get("ports") else { return Vec::new() };
        ports
            .iter()
            .map(|p| {
                let port = p.get("containerPort").and_then(Value::as_u64).expect("containerPort");
                (p.get("name").map(text), u16::try_from(port).expect("a port number"))
            })
            .collect()
    }

    /// The container port a Service's `targetPort` or a probe's `port` names.
    fn resolve_port(&self, port: &Value) -> Option<u16> {
        match port {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(name) => self.ports().into_iter().find(|(n, _)| n.as_ref() == Some(name)).map(|(_, p)| p),
            _ => None,
        }
    }

    /// Each probe the container declares, by its field name.
    fn probes(&self) -> Vec<(&'static str, &'a Value)> {
        ["startupProbe", "readinessProbe", "livenessProbe"]
            .into_iter()
            .filter_map(|kind| self.container().get(kind).map(|probe| (kind, probe)))
            .collect()
    }

    /// (volume name, mount path) of each mount.
    fn mounts(&self) -> Vec<(String, String)> {
        let Some(Value::Sequence(mounts)) = self.container().get("volumeMounts") else { return Vec::new() };
        mounts
            .iter()
            .map(|m| (m.get("name").map(text).unwrap_or_default(), m.get("mountPath").map(text).unwrap_or_default()))
            .collect()
    }

    /// The claim behind the pod volume `volume`, if it is a claim.
    fn claim_of(&self, volume: &str) -> Option<String> {
        let Some(Value::Sequence(volumes)) = self.pod_spec().get("volumes") else { return None };
        volumes
            .iter()
            .find(|v| v.get("name").map(text).as_deref() == Some(volume))
            .and_then(|v| v.get("persistentVolumeClaim"))
            .and_then(|c| c.get("claimName"))
            .map(text)
    }
}

/// The production compose file of a role.
fn compose_file_of(role: &str) -> &'static str {
    match role {
        "master" => MASTER_FILE,
        "coreapp" => COREAPP_FILE,
        "webapp" => WEBAPP_FILE,
        other => panic!("no production compose file runs {other}"),
    }
}

/// The port a role listens on with the literal values a container sets.
fn listen_ports(role: &Role, env: &BTreeMap<String, String>) -> Vec<u16> {
    role.listen_addrs(env).iter().map(|(_, addr)| addr.port()).collect()
}

/// A number at `key` of `value`, as the manifests write it.
fn number_at(value: &Value, key: &str) -> Option<u64> {
    value.get(key).and_then(Value::as_u64)
}

/// The number after `flag` on the runtime stage's `command` line of the Dockerfile.
fn dockerfile_id(dockerfile: &Dockerfile, command: &str, flag: &str) -> u64 {
    let line = dockerfile
        .runtime_text
        .lines()
        .flat_map(|l| l.split("&&"))
        .find(|l| l.trim_start().trim_start_matches("RUN ").trim_start().starts_with(command))
        .unwrap_or_else(|| panic!("compose/Dockerfile's runtime stage runs no {command}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == flag).unwrap_or_else(|| panic!("{command} without {flag}: {line}"));
    words[at + 1].parse().unwrap_or_else(|_| panic!("{command} {flag} {} is not a number", words[at + 1]))
}

/// Where the image points `WA_MEDIA_DIR` (its `ENV`).
fn dockerfile_media_dir(dockerfile: &Dockerfile) -> String {
    dockerfile
        .runtime_text
        .lines()
        .find_map(|l| l.strip_prefix("ENV WA_MEDIA_DIR="))
        .expect("compose/Dockerfile sets ENV WA_MEDIA_DIR")
        .trim()
        .to_string()
}

// --- the files -------------------------------------------------------------------

#[test]
fn kustomization_applies_every_manifest_and_sets_the_image_every_container_runs() {
    let listed: BTreeSet<String> = resources().into_iter().collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(manifests_dir())
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    assert_eq!(listed, on_disk, "kustomization.yaml must list every manifest of deploy/kubernetes, and only them");
    let images = kustomization().get("images").cloned().unwrap_or(Value::Null);
    let Value::Sequence(images) = images else { panic!("kustomization.yaml sets no images") };
    let ours = images
        .iter()
        .find(|i| i.get("name").map(text).as_deref() == Some(IMAGE))
        .expect("kustomization.yaml sets the shardgate image");
    assert!(ours.get("newName").is_some() && ours.get("newTag").is_some(), "set the registry and the tag: {ours:?}");
    let objects = objects();
    for object in &objects {
        assert!(object.value.get("apiVersion").is_some(), "{}: no apiVersion", object.label());
        assert!(!object.name().is_empty(), "{}: no metadata.name", object.label());
    }
    let workloads = Workload::all(&objects);
    for workload in &workloads {
        let image = workload.container().get("image").map(text).unwrap_or_default();
        assert_eq!(image, IMAGE, "{}: the image kustomization.yaml rewrites, untagged", workload.label());
    }
    let names: BTreeSet<String> = objects.iter().map(|o| format!("{} {}", o.kind(), o.name())).collect();
    assert_eq!(names.len(), objects.len(), "two objects share a kind and a name");
}

#[test]
fn masters_and_coreapps_run_as_stateful_sets_and_webapps_as_a_deployment() {
    let objects = objects();
    let workloads = Workload::all(&objects);
    let of_role = |role: &str| -> Vec<&Workload> { workloads.iter().filter(|w| w.role() == role).collect() };
    for (role, kind, replicas) in
        [("master", "StatefulSet", 2..=2), ("coreapp", "StatefulSet", 2..=3), ("webapp", "Deployment", 2..=2)]
    {
        let found = of_role(role);
        assert_eq!(found.len(), 1, "one {kind} runs every {role}");
        assert_eq!(found[0].object.kind(), kind, "{}: {role}s run as a {kind}", found[0].label());
        assert!(
            replicas.contains(&found[0].replicas()),
            "{}: {replicas:?} {role}s, not {}",
            found[0].label(),
            found[0].replicas()
        );
    }
    assert_eq!(workloads.len(), 3, "only the three roles run; the database is external");
}

// --- the binary ------------------------------------------------------------------

#[test]
fn every_container_runs_a_real_server_subcommand_from_the_dockerfile_binary_path() {
    let subcommands = subcommands();
    let binary = Dockerfile::read().binary_path;
    let servers = roles();
    let objects = objects();
    for workload in Workload::all(&objects) {
        let command = workload.command();
        assert_eq!(command.first(), Some(&binary), "{}: run the image's binary {binary}", workload.label());
        let role = workload.role();
        assert!(subcommands.contains(&role), "{}: `{role}` is not a subcommand of shardgate", workload.label());
        assert!(servers.contains_key(&role), "{}: `{role}` is not a server role", workload.label());
        assert_eq!(command.len(), 2, "{}: settings go through the environment, not arguments", workload.label());
        assert!(workload.container().get("args").is_none(), "{}: no args either", workload.label());
    }
}

#[test]
fn every_variable_a_container_sets_is_read_by_its_role_or_documented_as_ignored() {
    let roles = roles();
    let objects = objects();
    for workload in Workload::all(&objects) {
        let role = &roles[&workload.role()];
        let reads = role.env_names();
        let env = workload.env(&objects);
        for (at, (name, source)) in env.iter().enumerate() {
            assert!(
                reads.contains(name) || IGNORED_OFFICIAL_ENV.contains(&name.as_str()),
                "{}: {name} is neither read by `shardgate {}` (its --help lists {reads:?}) nor in IGNORED_OFFICIAL_ENV",
                workload.label(),
                role.name
            );
            // Kubernetes expands `$(NAME)` only for a variable set before it.
            if let EnvSource::Literal(value) = source {
                for reference in value.split("$(").skip(1).filter_map(|rest| rest.split_once(')')).map(|(n, _)| n) {
                    assert!(
                        env[..at].iter().any(|(n, _)| n == reference),
                        "{}: {name} refers to $({reference}), which is not set before it",
                        workload.label()
                    );
                }
            }
        }
    }
}

#[test]
fn every_container_gets_the_environment_its_production_compose_service_gets() {
    let objects = objects();
    for workload in Workload::all(&objects) {
        let role = workload.role();
        let service = shardgate_services(compose_file_of(&role)).into_iter().next().expect("one service");
        let compose = service.env();
        let want: BTreeSet<&String> = compose.keys().filter(|n| !HOST_PUBLISHING_ENV.contains(&n.as_str())).collect();
        let env = workload.env(&objects);
        let got: BTreeSet<&String> = env.iter().map(|(n, _)| n).collect();
        let missing: Vec<_> = want.difference(&got).collect();
        assert!(
            missing.is_empty(),
            "{}: {} sets {missing:?}, the manifest does not",
            workload.label(),
            service.label()
        );
        let extra: Vec<_> = got.difference(&want).filter(|n| !POD_ONLY_ENV.contains(&n.as_str())).collect();
        assert!(extra.is_empty(), "{}: sets {extra:?}, which {} does not", workload.label(), service.label());
        // A value the compose file fixes (no `${...}`) is the same here.
        for (name, value) in workload.literal_env(&objects) {
            let Some(raw) = service.raw_environment(&name) else { continue };
            if interpolations(&raw).is_empty() {
                assert_eq!(value, raw, "{}: {name} as {} sets it", workload.label(), service.label());
            }
        }
    }
}

#[test]
fn every_secret_and_config_map_key_a_container_reads_exists() {
    let objects = objects();
    for workload in Workload::all(&objects) {
        for (name, source) in workload.env(&objects) {
            let EnvSource::Key { kind, name: object, key } = source else { continue };
            let found = find(&objects, kind, &object).unwrap_or_else(|| {
                panic!("{}: {name} reads {kind} {object}, which no manifest defines", workload.label())
            });
            assert!(
                found.keys().contains_key(&key),
                "{}: {name} reads key {key} of {}, which has {:?}",
                workload.label(),
                found.label(),
                found.keys().keys()
            );
        }
    }
}

#[test]
fn every_master_coreapp_and_webapp_gets_the_one_cluster_secret_from_a_secret() {
    let objects = objects();
    let mut sources = BTreeSet::new();
    for workload in Workload::all(&objects) {
        let env = workload.env(&objects);
        let source = env.iter().find(|(n, _)| n == CLUSTER_SECRET_ENV).map(|(_, s)| s.clone());
        match source {
            Some(EnvSource::Key { kind: "Secret", name, key }) => sources.insert((name, key)),
            other => panic!("{}: {CLUSTER_SECRET_ENV} must come from a Secret, not {other:?}", workload.label()),
        };
        for (name, source) in &env {
            if name.starts_with("WA_DB_") {
                assert!(
                    matches!(source, EnvSource::Key { .. }),
                    "{}: {name} comes from the database ConfigMap or Secret, shared by every node",
                    workload.label()
                );
            }
        }
    }
    assert_eq!(sources.len(), 1, "every node of one cluster must share one {CLUSTER_SECRET_ENV}: {sources:?}");
}

#[test]
fn secret_templates_hold_only_placeholders_that_the_nodes_refuse() {
    let objects = objects();
    let secrets: Vec<&Object> = objects.iter().filter(|o| o.kind() == "Secret").collect();
    assert!(!secrets.is_empty(), "the manifests template their Secrets");
    for secret in secrets {
        for (key, value) in secret.keys() {
            // A committed secret is a leaked one: the file is a template.
            assert!(value.contains(PLACEHOLDER), "{}: {key} must be a {PLACEHOLDER} placeholder", secret.label());
            if key == CLUSTER_SECRET_ENV {
                assert!(
                    ClusterSecret::new(&value).is_err(),
                    "{}: a forgotten {key} must stop the nodes at start, so its placeholder must be one they refuse",
                    secret.label()
                );
            }
        }
    }
}

#[test]
fn every_container_port_is_the_port_its_role_listens_on() {
    let roles = roles();
    let objects = objects();
    for workload in Workload::all(&objects) {
        let role = &roles[&workload.role()];
        let env = workload.literal_env(&objects);
        for (flag, addr) in role.listen_addrs(&env) {
            assert!(
                addr.ip().is_unspecified(),
                "{}: `{} {flag}` is {addr}; in a pod it must listen on 0.0.0.0 to be reachable",
                workload.label(),
                role.name
            );
        }
        let declared: Vec<u16> = workload.ports().iter().map(|(_, p)| *p).collect();
        assert_eq!(declared, listen_ports(role, &env), "{}: declare the port the role listens on", workload.label());
    }
    // The defaults the manifests rely on, as `--help` gives them.
    assert_eq!(listen_ports(&roles["webapp"], &BTreeMap::new()), [9090], "the webapp serves on 9090");
    for role in ["master", "coreapp"] {
        assert_eq!(roles[role].default_control_port(), 6252, "shardgate {role} binds the control port 6252");
    }
}

// --- probes ----------------------------------------------------------------------

#[test]
fn every_probe_runs_the_image_healthcheck_or_calls_the_port_the_role_listens_on() {
    let binary = Dockerfile::read().binary_path;
    let roles = roles();
    let objects = objects();
    for workload in Workload::all(&objects) {
        let kinds: Vec<&str> = workload.probes().iter().map(|(kind, _)| *kind).collect();
        for needed in ["readinessProbe", "livenessProbe"] {
            assert!(kinds.contains(&needed), "{}: no {needed}", workload.label());
        }
        let ports = listen_ports(&roles[&workload.role()], &workload.literal_env(&objects));
        for (kind, probe) in workload.probes() {
            if let Some(exec) = probe.get("exec") {
                assert_eq!(
                    strings_at(exec, "command"),
                    [binary.clone(), "healthcheck".to_string()],
                    "{}: the {kind} runs `shardgate healthcheck`, which probes the role of PID 1",
                    workload.label()
                );
                continue;
            }
            let port =
                probe.get("httpGet").or(probe.get("tcpSocket")).and_then(|p| p.get("port")).unwrap_or_else(|| {
                    panic!("{}: the {kind} is neither exec, httpGet nor tcpSocket", workload.label())
                });
            let resolved = workload.resolve_port(port);
            assert!(
                resolved.is_some_and(|p| ports.contains(&p)),
                "{}: the {kind} calls port {port:?}, not one the role listens on ({ports:?})",
                workload.label()
            );
        }
    }
}

#[test]
fn the_healthcheck_probe_is_a_subcommand_reading_the_secret_and_listen_address_its_container_sets() {
    let subcommands = subcommands();
    assert!(
        subcommands.contains("healthcheck"),
        "the exec probes run `shardgate healthcheck`, which is not a subcommand ({subcommands:?})"
    );
    let reads = Role::from_help("healthcheck").env_names();
    let objects = objects();
    for workload in Workload::all(&objects) {
        for (name, _) in workload.env(&objects).iter().filter(|(n, _)| PROBE_ENV.contains(&n.as_str())) {
            assert!(
                reads.contains(name),
                "{}: sets {name}, which `shardgate healthcheck` does not read ({reads:?}): the probe would call \
                 the node at the wrong address or without the secret",
                workload.label()
            );
        }
    }
}

// --- names, services and budgets ---------------------------------------------------

#[test]
fn every_workload_selects_its_own_pods_and_only_them() {
    let objects = objects();
    let workloads = Workload::all(&objects);
    for workload in &workloads {
        let selector = workload.object.match_labels();
        assert!(selects(&selector, &workload.pod_labels()), "{}: the selector must match the pods", workload.label());
        for other in workloads.iter().filter(|o| o.label() != workload.label()) {
            assert!(
                !selects(&selector, &other.pod_labels()),
                "{}: its selector also matches the pods of {}",
                workload.label(),
                other.label()
            );
        }
        if let Some(Value::Sequence(spreads)) = workload.pod_spec().get("topologySpreadConstraints") {
            for spread in spreads {
                let spread_selector = string_map(spread.get("labelSelector").and_then(|s| s.get("matchLabels")));
                assert_eq!(spread_selector, selector, "{}: spread the pods of this workload", workload.label());
            }
        }
    }
}

#[test]
fn masters_and_coreapps_advertise_their_pod_name_under_a_headless_service_of_the_control_port() {
    let roles = roles();
    let objects = objects();
    for workload in Workload::all(&objects).iter().filter(|w| matches!(w.role().as_str(), "master" | "coreapp")) {
        let role = &roles[&workload.role()];
        let control = listen_ports(role, &workload.literal_env(&objects))[0];
        let service_name = workload.object.spec().get("serviceName").map(text).unwrap_or_else(|| {
            panic!("{}: a StatefulSet names the headless Service that gives its pods DNS names", workload.label())
        });
        let service = find(&objects, "Service", &service_name)
            .unwrap_or_else(|| panic!("{}: serviceName {service_name} is not a Service", workload.label()));
        let spec = service.spec();
        assert_eq!(spec.get("clusterIP").map(text).as_deref(), Some("None"), "{}: headless", service.label());
        assert_eq!(
            spec.get("publishNotReadyAddresses").and_then(Value::as_bool),
            Some(true),
            "{}: the other nodes call a starting node too, so its name must resolve before it is ready",
            service.label()
        );
        let selector = string_map(spec.get("selector"));
        assert!(selects(&selector, &workload.pod_labels()), "{}: select {}", service.label(), workload.label());
        let Some(Value::Sequence(ports)) = spec.get("ports") else { panic!("{} has no ports", service.label()) };
        assert!(
            ports.iter().any(|p| number_at(p, "port") == Some(u64::from(control))
                && p.get("targetPort").and_then(|t| workload.resolve_port(t)) == Some(control)),
            "{}: expose the control port {control} of {}",
            service.label(),
            workload.label()
        );

        let env = workload.env(&objects);
        let source_of = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone());
        assert_eq!(
            source_of("SHARDGATE_NODE_ID"),
            Some(EnvSource::Field("metadata.name".into())),
            "{}: the node id is the pod name, stable and unique",
            workload.label()
        );
        assert_eq!(
            source_of("COREAPP_HOSTNAME"),
            Some(EnvSource::Literal(format!("$(SHARDGATE_NODE_ID).{service_name}"))),
            "{}: advertise <pod>.<headless service>, the name every pod of the namespace resolves",
            workload.label()
        );
        assert_eq!(
            source_of("COREAPP_EXTERNAL_PORTS"),
            None,
            "{}: a pod is called on its own port, so the node advertises the control port it binds",
            workload.label()
        );
    }
}

#[test]
fn the_webapp_service_balances_the_rest_api_over_the_webapp_pods() {
    let roles = roles();
    let objects = objects();
    let workloads = Workload::all(&objects);
    let webapp = workloads.iter().find(|w| w.role() == "webapp").expect("a webapp workload");
    let api = listen_ports(&roles["webapp"], &webapp.literal_env(&objects))[0];
    let services: Vec<&Object> = objects
        .iter()
        .filter(|o| o.kind() == "Service" && selects(&string_map(o.spec().get("selector")), &webapp.pod_labels()))
        .collect();
    assert_eq!(services.len(), 1, "one Service selects the webapp pods");
    let spec = services[0].spec();
    assert!(
        spec.get("type").map(text).as_deref().unwrap_or("ClusterIP") == "ClusterIP" && spec.get("clusterIP").is_none(),
        "{}: a ClusterIP Service, balanced over the webapps",
        services[0].label()
    );
    let Some(Value::Sequence(ports)) = spec.get("ports") else { panic!("{} has no ports", services[0].label()) };
    assert!(
        ports.iter().any(|p| number_at(p, "port") == Some(u64::from(api))
            && p.get("targetPort").and_then(|t| webapp.resolve_port(t)) == Some(api)),
        "{}: serve the REST API on {api}",
        services[0].label()
    );
}

#[test]
fn every_role_has_a_disruption_budget_and_masters_and_coreapps_lose_at_most_one_pod() {
    let objects = objects();
    let workloads = Workload::all(&objects);
    let budgets: Vec<&Object> = objects.iter().filter(|o| o.kind() == "PodDisruptionBudget").collect();
    for budget in &budgets {
        let selector = budget.match_labels();
        let selected: Vec<&Workload> = workloads.iter().filter(|w| selects(&selector, &w.pod_labels())).collect();
        assert_eq!(selected.len(), 1, "{}: select the pods of exactly one workload", budget.label());
    }
    for workload in &workloads {
        let mine: Vec<&&Object> =
            budgets.iter().filter(|b| selects(&b.match_labels(), &workload.pod_labels())).collect();
        assert_eq!(mine.len(), 1, "{}: one PodDisruptionBudget", workload.label());
        let spec = mine[0].spec();
        let max_unavailable = match (number_at(spec, "maxUnavailable"), number_at(spec, "minAvailable")) {
            (Some(max), None) => max,
            (None, Some(min)) => workload.replicas().saturating_sub(min),
            _ => panic!("{}: set maxUnavailable or minAvailable, as a number", mine[0].label()),
        };
        assert!(max_unavailable >= 1, "{}: a drain must be able to move a pod", mine[0].label());
        assert!(max_unavailable < workload.replicas(), "{}: a drain must leave one pod", mine[0].label());
        if matches!(workload.role().as_str(), "master" | "coreapp") {
            assert_eq!(max_unavailable, 1, "{}: one {} at a time", mine[0].label(), workload.role());
        }
    }
}

// --- the pod -----------------------------------------------------------------------

#[test]
fn every_node_mounts_the_one_shared_read_write_many_media_volume_where_wa_media_dir_points() {
    let dockerfile = Dockerfile::read();
    let image_media_dir = dockerfile_media_dir(&dockerfile);
    let roles = roles();
    let objects = objects();
    let mut claims = BTreeSet::new();
    for workload in Workload::all(&objects) {
        let env = workload.literal_env(&objects);
        if roles[&workload.role()].env_names().contains("WA_MEDIA_DIR") {
            assert!(env.contains_key("WA_MEDIA_DIR"), "{}: state WA_MEDIA_DIR next to its mount", workload.label());
        }
        let media_dir = env.get("WA_MEDIA_DIR").unwrap_or(&image_media_dir);
        let mounts: Vec<(String, String)> = workload.mounts().into_iter().filter(|(_, at)| at == media_dir).collect();
        assert_eq!(mounts.len(), 1, "{}: mount the media volume at {media_dir}", workload.label());
        let claim = workload.claim_of(&mounts[0].0).unwrap_or_else(|| {
            panic!("{}: the media volume must be a PersistentVolumeClaim, shared by every pod", workload.label())
        });
        claims.insert(claim);
    }
    assert_eq!(claims.len(), 1, "every node must share one media volume, not {claims:?}");
    let claim = claims.pop_first().expect("one claim");
    let pvc = find(&objects, "PersistentVolumeClaim", &claim).unwrap_or_else(|| panic!("no claim {claim}"));
    assert_eq!(
        strings_at(pvc.spec(), "accessModes"),
        ["ReadWriteMany"],
        "{}: pods on different Kubernetes nodes write it at once",
        pvc.label()
    );
}

#[test]
fn pods_run_as_the_dockerfile_user_without_root_or_privilege_escalation() {
    let dockerfile = Dockerfile::read();
    let uid = dockerfile_id(&dockerfile, "useradd", "--uid");
    let gid = dockerfile_id(&dockerfile, "groupadd", "--gid");
    let objects = objects();
    for workload in Workload::all(&objects) {
        let pod = workload.pod_spec().get("securityContext").cloned().unwrap_or(Value::Null);
        let container = workload.container().get("securityContext").cloned().unwrap_or(Value::Null);
        // A container's own setting wins over the pod's.
        let setting = |key: &str| container.get(key).or(pod.get(key)).cloned();
        assert_eq!(setting("runAsUser").and_then(|v| v.as_u64()), Some(uid), "{}: the image's uid", workload.label());
        assert_eq!(setting("runAsGroup").and_then(|v| v.as_u64()), Some(gid), "{}: the image's gid", workload.label());
        assert_eq!(
            number_at(&pod, "fsGroup"),
            Some(gid),
            "{}: volumes writable by the image's group",
            workload.label()
        );
        assert_eq!(setting("runAsNonRoot").and_then(|v| v.as_bool()), Some(true), "{}: runAsNonRoot", workload.label());
        assert_eq!(
            container.get("allowPrivilegeEscalation").and_then(Value::as_bool),
            Some(false),
            "{}: no privilege escalation",
            workload.label()
        );
    }
}

#[test]
fn every_container_requests_cpu_and_memory_and_is_limited_in_memory() {
    let objects = objects();
    for workload in Workload::all(&objects) {
        let resources = workload.container().get("resources").cloned().unwrap_or(Value::Null);
        for (section, key) in [("requests", "cpu"), ("requests", "memory"), ("limits", "memory")] {
            assert!(
                resources.get(section).and_then(|s| s.get(key)).is_some(),
                "{}: set resources.{section}.{key}",
                workload.label()
            );
        }
    }
}

#[test]
fn coreapps_are_given_the_time_to_close_every_session_and_release_every_shard() {
    let max_shards = *shardgate_core::master::ALLOWED_SHARDS.iter().max().expect("shard counts");
    let needed = SHARD_CLOSE_WAIT * max_shards;
    let objects = objects();
    for workload in Workload::all(&objects).iter().filter(|w| w.role() == "coreapp") {
        let grace = number_at(workload.pod_spec(), "terminationGracePeriodSeconds").unwrap_or(30);
        assert!(
            Duration::from_secs(grace) > needed,
            "{}: terminationGracePeriodSeconds {grace} s; a coreapp holding all {max_shards} shards may take {needed:?} \
             to close their sessions, and killed earlier it leaves them leased until the lease expires",
            workload.label()
        );
    }
}

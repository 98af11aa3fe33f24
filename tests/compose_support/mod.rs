//! What `tests/compose.rs` reads the deployment with: the compose files
//! under `compose/` as compose itself reads them (merge keys, `${...}`
//! interpolation, services, ports, volumes, env files), `compose/Dockerfile`,
//! and the built binary's own description of its roles in `--help`.

use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The one-server development file and the one-host-per-role production files.
pub const DEV_FILE: &str = "multiconnect-compose.yml";
pub const WEBAPP_FILE: &str = "multiconnect-webapp.yml";
pub const MASTER_FILE: &str = "multiconnect-master.yml";
pub const COREAPP_FILE: &str = "multiconnect-coreapp.yml";
pub const COMPOSE_FILES: [&str; 4] = [DEV_FILE, WEBAPP_FILE, MASTER_FILE, COREAPP_FILE];

/// What an operator exports before `docker compose up`: the variables the
/// files require (`${NAME:?...}`); every other one takes the file's default.
const OPERATOR_ENV: [(&str, &str); 4] = [
    ("WA_API_VERSION", "v9.9.9"),
    ("COREAPP_HOSTNAME", "host-a.example"),
    ("SHARDGATE_UPSTREAM", "upstream.example:5222"),
    ("SHARDGATE_CLUSTER_SECRET", "operator-chosen-cluster-secret"),
];

// --- the binary's own description --------------------------------------------

/// Runs the built binary with `args` and no environment, so that clap's help
/// shows no values taken from ours.
fn shardgate_stdout(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_shardgate")).args(args).env_clear().output().expect("run shardgate");
    assert!(out.status.success(), "shardgate {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The subcommands `shardgate --help` lists.
pub fn subcommands() -> BTreeSet<String> {
    let help = shardgate_stdout(&["--help"]);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// One option of a subcommand's `--help`.
#[derive(Debug)]
struct HelpOption {
    long: String,
    env: Option<String>,
    default: Option<String>,
}

/// A role as its `--help` describes it.
#[derive(Debug)]
pub struct Role {
    /// The subcommand.
    pub name: String,
    options: Vec<HelpOption>,
}

impl Role {
    /// The subcommand `name` as its `--help` describes it.
    pub fn from_help(name: &str) -> Role {
        let help = shardgate_stdout(&[name, "--help"]);
        let mut blocks: Vec<String> = Vec::new();
        for line in help.lines().skip_while(|l| !l.starts_with("Options:")).skip(1) {
            if line.trim_start().starts_with('-') {
                blocks.push(line.to_string());
            } else if let Some(block) = blocks.last_mut() {
                block.push(' ');
                block.push_str(line.trim());
            }
        }
        let options = blocks
            .iter()
            .filter_map(|block| {
                let long = block.split_whitespace().find(|w| w.starts_with("--"))?.trim_end_matches(',');
                Some(HelpOption {
                    long: long.to_string(),
                    env: bracket_field(block, "env:").map(|v| v.split('=').next().unwrap_or_default().to_string()),
                    default: bracket_field(block, "default:"),
                })
            })
            .collect();
        Role { name: name.to_string(), options }
    }

    /// Every environment variable the role reads.
    pub fn env_names(&self) -> BTreeSet<String> {
        self.options.iter().filter_map(|o| o.env.clone()).collect()
    }

    fn option(&self, long: &str) -> &HelpOption {
        self.options
            .iter()
            .find(|o| o.long == long)
            .unwrap_or_else(|| panic!("shardgate {} --help has no {long}", self.name))
    }

    /// The addresses the role listens on, as the service's environment sets
    /// them or else by default, with the flag that sets each.
    pub fn listen_addrs(&self, env: &BTreeMap<String, String>) -> Vec<(&'static str, SocketAddr)> {
        let flags: &[&'static str] = match self.name.as_str() {
            "webapp" => &["--listen"],
            "master" | "coreapp" => &["--control-listen"],
            "upstream-sim" => &["--listen", "--http-listen"],
            other => panic!("{other} is not a server role"),
        };
        flags
            .iter()
            .map(|flag| {
                let option = self.option(flag);
                let from_env = option.env.as_ref().and_then(|name| env.get(name));
                let value = from_env.or(option.default.as_ref()).unwrap_or_else(|| {
                    panic!("shardgate {} {flag} has neither a value in the service nor a default", self.name)
                });
                let addr = value.parse().unwrap_or_else(|_| panic!("{flag} value {value:?} is not host:port"));
                (*flag, addr)
            })
            .collect()
    }

    /// The control API's port (masters and coreapps), by default.
    pub fn default_control_port(&self) -> u16 {
        let default = self.option("--control-listen").default.as_deref().expect("--control-listen has a default");
        default.parse::<SocketAddr>().expect("default control address").port()
    }
}

/// The text of a `[field value]` annotation in a help block, e.g. `[env: NAME=]`.
fn bracket_field(block: &str, field: &str) -> Option<String> {
    let start = block.find(&format!("[{field}"))? + field.len() + 1;
    let end = start + block[start..].find(']')?;
    Some(block[start..end].trim().to_string())
}

/// The four server roles a compose service may run.
pub fn roles() -> BTreeMap<String, Role> {
    ["webapp", "master", "coreapp", "upstream-sim"].into_iter().map(|r| (r.to_string(), Role::from_help(r))).collect()
}

// --- compose files ------------------------------------------------------------

fn compose_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("compose")
}

fn read(name: &str) -> String {
    let path = compose_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A compose file as the YAML document compose works on, before interpolation
/// (merge keys applied: `<<` may nest, and each pass resolves one level).
pub fn raw_compose(name: &str) -> Value {
    let mut doc: Value = serde_yaml::from_str(&read(name)).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"));
    for _ in 0..8 {
        let before = doc.clone();
        doc.apply_merge().unwrap_or_else(|e| panic!("{name}: bad merge key: {e}"));
        if doc == before {
            return doc;
        }
    }
    panic!("{name}: merge keys nest too deep")
}

/// One `${...}` (or `$NAME`) reference in a string.
#[derive(Debug, PartialEq)]
pub struct Interpolation {
    /// The variable.
    pub name: String,
    /// `:?` or `?`: compose refuses to run without it.
    pub required: bool,
}

/// A piece of a string compose interpolates.
enum Piece<'a> {
    Text(&'a str),
    /// A variable and what follows its name inside the braces (`:-default`, `:?message`, ...).
    Var {
        name: &'a str,
        op: &'a str,
    },
}

/// Splits `text` the way compose reads it: `$$`, `$NAME`, `${NAME}`, `${NAME:-default}`,
/// `${NAME-default}`, `${NAME:?message}` and `${NAME?message}`.
fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let name_len = |s: &str| s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        pieces.push(Piece::Text(&rest[..at]));
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            pieces.push(Piece::Text("$"));
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
            let (name, op) = body[..end].split_at(name_len(&body[..end]));
            pieces.push(Piece::Var { name, op });
            rest = &body[end + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                return Err(format!("a lone $ in {text:?}: write $$"));
            }
            pieces.push(Piece::Var { name: &after[..len], op: "" });
            rest = &after[len..];
        }
    }
    pieces.push(Piece::Text(rest));
    Ok(pieces)
}

/// Compose's interpolation of `text` with the variables `lookup` knows.
pub fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    for piece in pieces(text)? {
        let (name, op) = match piece {
            Piece::Text(t) => {
                out.push_str(t);
                continue;
            }
            Piece::Var { name, op } => (name, op),
        };
        let value = lookup(name);
        let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
        let resolved = if op.is_empty() {
            value.unwrap_or_default()
        } else if let Some(default) = op.strip_prefix(":-") {
            if set_nonempty {
                value.unwrap_or_default()
            } else {
                default.to_string()
            }
        } else if let Some(default) = op.strip_prefix('-') {
            value.unwrap_or_else(|| default.to_string())
        } else if let Some(message) = op.strip_prefix(":?") {
            value.filter(|v| !v.is_empty()).ok_or_else(|| format!("{name} is required: {message}"))?
        } else if let Some(message) = op.strip_prefix('?') {
            value.ok_or_else(|| format!("{name} is required: {message}"))?
        } else {
            return Err(format!("unsupported interpolation ${{{name}{op}}} in {text:?}"));
        };
        out.push_str(&resolved);
    }
    Ok(out)
}

/// Every variable `text` interpolates.
pub fn interpolations(text: &str) -> Vec<Interpolation> {
    pieces(text)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Var { name, op } => {
                Some(Interpolation { name: name.to_string(), required: op.starts_with(":?") || op.starts_with('?') })
            }
            Piece::Text(_) => None,
        })
        .collect()
}

/// Every string in `value`, keys excluded, where compose interpolates.
pub fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        Value::Mapping(map) => map.values().flat_map(strings).collect(),
        Value::Tagged(tagged) => strings(&tagged.value),
        _ => Vec::new(),
    }
}

/// `value` with every string interpolated from the operator's environment.
fn resolved(value: &Value, file: &str) -> Value {
    let lookup = |name: &str| OPERATOR_ENV.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string());
    match value {
        Value::String(s) => Value::String(interpolate(s, &lookup).unwrap_or_else(|e| panic!("{file}: {e}"))),
        Value::Sequence(items) => Value::Sequence(items.iter().map(|v| resolved(v, file)).collect()),
        Value::Mapping(map) => Value::Mapping(map.iter().map(|(k, v)| (k.clone(), resolved(v, file))).collect()),
        other => other.clone(),
    }
}

/// A scalar as compose passes it to a container.
pub fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// One published port: host port and container port.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published {
    /// On the host.
    pub host: u16,
    /// In the container.
    pub container: u16,
}

/// One service of a compose file, interpolated.
#[derive(Debug)]
pub struct Service {
    /// The compose file it is in.
    pub file: &'static str,
    /// The service name.
    pub name: String,
    /// As written, before interpolation.
    pub raw: Value,
    /// Interpolated.
    pub value: Value,
}

impl Service {
    pub fn label(&self) -> String {
        format!("{}: service {}", self.file, self.name)
    }

    pub fn image(&self) -> String {
        self.value.get("image").map(scalar).unwrap_or_default()
    }

    /// Whether it runs our image (the others are the database).
    pub fn is_shardgate(&self) -> bool {
        self.image().starts_with("shardgate:")
    }

    pub fn command(&self) -> Vec<String> {
        match self.value.get("command") {
            Some(Value::Sequence(items)) => items.iter().map(scalar).collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        }
    }

    /// The subcommand it runs.
    pub fn role(&self) -> String {
        self.command().get(1).cloned().unwrap_or_else(|| panic!("{} has no subcommand in its command", self.label()))
    }

    /// The environment its container gets: `env_file` first, then `environment`.
    pub fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let files = match self.value.get("env_file") {
            Some(Value::Sequence(items)) => items.iter().map(scalar).collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        for file in files {
            env.extend(env_file(&file));
        }
        match self.value.get("environment") {
            Some(Value::Mapping(map)) => {
                for (k, v) in map {
                    env.insert(scalar(k), scalar(v));
                }
            }
            Some(Value::Sequence(items)) => {
                for item in items {
                    let item = scalar(item);
                    let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                    env.insert(k.to_string(), v.to_string());
                }
            }
            _ => {}
        }
        env
    }

    /// The raw text of an `environment` entry, before interpolation.
    pub fn raw_environment(&self, name: &str) -> Option<String> {
        match self.raw.get("environment") {
            Some(Value::Mapping(map)) => map.get(name).map(scalar),
            _ => None,
        }
    }

    pub fn ports(&self) -> Vec<Published> {
        let Some(Value::Sequence(items)) = self.value.get("ports") else { return Vec::new() };
        items
            .iter()
            .map(|item| match item {
                Value::Mapping(long) => Published {
                    host: scalar(long.get("published").expect("published")).parse().expect("host port"),
                    container: scalar(long.get("target").expect("target")).parse().expect("container port"),
                },
                short => {
                    let spec = scalar(short);
                    let spec = spec.split('/').next().unwrap_or_default();
                    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
                    let port = |s: &str| {
                        s.parse::<u16>().unwrap_or_else(|_| panic!("{}: bad port {s:?} in {spec:?}", self.label()))
                    };
                    match parts.as_slice() {
                        [container] => Published { host: port(container), container: port(container) },
                        [container, host, ..] => Published { host: port(host), container: port(container) },
                        [] => unreachable!(),
                    }
                }
            })
            .collect()
    }

    /// The host port that reaches `container`, if published.
    pub fn host_port_of(&self, container: u16) -> Option<u16> {
        self.ports().iter().find(|p| p.container == container).map(|p| p.host)
    }

    /// (source, target) of each volume.
    pub fn volumes(&self) -> Vec<(String, String)> {
        let Some(Value::Sequence(items)) = self.value.get("volumes") else { return Vec::new() };
        items
            .iter()
            .map(|item| match item {
                Value::Mapping(long) => {
                    (long.get("source").map(scalar).unwrap_or_default(), scalar(long.get("target").expect("target")))
                }
                short => {
                    let spec = scalar(short);
                    let parts: Vec<&str> = spec.split(':').collect();
                    (parts[0].to_string(), parts.get(1).unwrap_or(&parts[0]).to_string())
                }
            })
            .collect()
    }

    pub fn healthcheck_text(&self) -> Option<String> {
        let test = self.value.get("healthcheck")?.get("test")?;
        Some(match test {
            Value::Sequence(items) => items.iter().map(scalar).collect::<Vec<_>>().join(" "),
            other => scalar(other),
        })
    }
}

/// The `KEY=VALUE` lines of an env file next to the compose files.
pub fn env_file(name: &str) -> BTreeMap<String, String> {
    read(name)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{name}: {l:?} is not KEY=VALUE"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

/// The services of `file`, interpolated with the operator's environment.
pub fn services(file: &'static str) -> Vec<Service> {
    let raw = raw_compose(file);
    let value = resolved(&raw, file);
    let Some(Value::Mapping(services)) = value.get("services") else { panic!("{file} has no services") };
    services
        .iter()
        .map(|(name, service)| {
            let name = scalar(name);
            Service { file, raw: raw["services"][name.as_str()].clone(), name, value: service.clone() }
        })
        .collect()
}

pub fn shardgate_services(file: &'static str) -> Vec<Service> {
    services(file).into_iter().filter(Service::is_shardgate).collect()
}

pub fn all_shardgate_services() -> Vec<Service> {
    COMPOSE_FILES.iter().flat_map(|f| shardgate_services(f)).collect()
}

// --- the Dockerfile -------------------------------------------------------------

/// What the compose files rely on in `compose/Dockerfile`.
#[derive(Debug)]
pub struct Dockerfile {
    /// Image of the first (builder) stage.
    pub builder_image: String,
    /// Image of the last (runtime) stage.
    pub runtime_image: String,
    /// The builder stages' `RUN` lines.
    pub build_commands: String,
    /// Where the runtime stage copies the binary to.
    pub binary_path: String,
    /// The runtime stage's last `USER`.
    pub user: Option<String>,
    /// The runtime stage's `VOLUME`s.
    pub volumes: Vec<String>,
    /// The runtime stage's `EXPOSE`d ports.
    pub exposed: Vec<u16>,
    /// The runtime stage's lines.
    pub runtime_text: String,
}

impl Dockerfile {
    pub fn read() -> Dockerfile {
        let text = read("Dockerfile").replace("\\\n", " ");
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        let froms: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].starts_with("FROM ")).collect();
        assert!(froms.len() >= 2, "compose/Dockerfile must be multi-stage (a builder and a runtime stage)");
        // `ARG NAME=default` before the first FROM may name a stage's image.
        let global_args: Vec<(String, String)> = lines[..froms[0]]
            .iter()
            .filter_map(|l| l.strip_prefix("ARG "))
            .filter_map(|a| a.split_once('='))
            .map(|(name, default)| (format!("${{{}}}", name.trim()), default.trim().to_string()))
            .collect();
        let image_of = |i: usize| {
            let image = lines[i].split_whitespace().nth(1).expect("FROM image");
            global_args.iter().fold(image.to_string(), |image, (name, default)| image.replace(name, default))
        };
        let last = *froms.last().unwrap();
        let build = &lines[froms[0]..last];
        let runtime = &lines[last..];
        let args = |prefix: &str| -> Vec<String> {
            runtime
                .iter()
                .filter_map(|l| l.strip_prefix(prefix))
                .flat_map(|rest| {
                    rest.trim()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .split([',', ' '])
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .map(|s| s.trim().trim_matches('"').to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let binary_path = runtime
            .iter()
            .filter(|l| l.starts_with("COPY --from="))
            .filter_map(|l| l.split_whitespace().last())
            .find(|dest| dest.ends_with("/shardgate"))
            .expect("the runtime stage copies the shardgate binary from the builder")
            .to_string();
        Dockerfile {
            builder_image: image_of(froms[0]),
            runtime_image: image_of(last),
            build_commands: build.iter().filter(|l| l.starts_with("RUN ")).cloned().collect::<Vec<_>>().join("\n"),
            binary_path,
            user: runtime.iter().filter_map(|l| l.strip_prefix("USER ")).next_back().map(|u| u.trim().to_string()),
            volumes: args("VOLUME "),
            exposed: args("EXPOSE ")
                .iter()
                .map(|p| p.split('/').next().unwrap().parse().expect("EXPOSE port"))
                .collect(),
            runtime_text: runtime.join("\n"),
        }
    }
}

// --- node logs -------------------------------------------------------------------

/// How many INFO lines of the log at `path` contain `needle`, waiting a little
/// for them: the log reaches its file a moment after the node prints it.
pub async fn info_lines(path: &Path, needle: &str) -> (usize, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = log_of(path);
        let lines = log.lines().filter(|l| l.contains("INFO") && l.contains(needle)).count();
        if lines > 0 || tokio::time::Instant::now() > deadline {
            return (lines, log);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The log at `path` so far; empty before the node created it.
pub fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

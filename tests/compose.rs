//! The deployment files under `compose/` agree with the binary they deploy.
//!
//! No Docker engine is needed. The compose files are read as YAML, with
//! compose's merge keys and `${...}` interpolation applied, and checked
//! against what the built binary says about itself in `shardgate <role>
//! --help`: its subcommands, the environment variables each role reads, and
//! the addresses it listens on by default. The last test starts each role as
//! a plain process with the environment its compose service gives it (on
//! SQLite instead of the file's MySQL) and checks the address it advertises.

mod compose_support;

use compose_support::{
    all_shardgate_services, env_file, info_lines, interpolate, interpolations, log_of, raw_compose, roles, scalar,
    services, shardgate_services, strings, subcommands, Dockerfile, Interpolation, Role, Service, COMPOSE_FILES,
    COREAPP_FILE, DEV_FILE, MASTER_FILE, WEBAPP_FILE,
};
use shardgate::supervisor::{start_node, LogSink, NodeSpec};
use shardgate_core::config::{DbEngine, IGNORED_OFFICIAL_ENV};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Where the official deployment, and so every node, mounts the shared media.
const MEDIA_DIR: &str = "/usr/local/wamedia";

/// The official coreapp and master container ports: messaging, contacts,
/// control, healthcheck. `COREAPP_EXTERNAL_PORTS` lists their host ports in
/// this order. Shardgate binds only the control port (its default is checked
/// against `--help`); publishing the other three keeps the official port plan.
const OFFICIAL_NODE_PORTS: [u16; 4] = [6250, 6251, 6252, 6253];

/// The control-plane secret every master, coreapp and webapp must be given.
const CLUSTER_SECRET_ENV: &str = "SHARDGATE_CLUSTER_SECRET";

// --- the static agreement ---------------------------------------------------------

#[test]
fn every_compose_file_has_the_roles_its_name_promises() {
    let roles_of = |file| -> Vec<String> { shardgate_services(file).iter().map(Service::role).collect() };
    assert_eq!(roles_of(WEBAPP_FILE), ["webapp"], "{WEBAPP_FILE} runs one webapp");
    assert_eq!(roles_of(MASTER_FILE), ["master"], "{MASTER_FILE} runs one master");
    assert_eq!(roles_of(COREAPP_FILE), ["coreapp"], "{COREAPP_FILE} runs one coreapp");
    let dev = roles_of(DEV_FILE);
    let count = |role: &str| dev.iter().filter(|r| *r == role).count();
    assert_eq!(count("webapp"), 1, "{DEV_FILE}: one webapp");
    assert_eq!(count("master"), 2, "{DEV_FILE}: two masters, one primary and one secondary");
    assert!((2..=3).contains(&count("coreapp")), "{DEV_FILE}: two or three coreapps");
    assert_eq!(count("upstream-sim"), 1, "{DEV_FILE}: the upstream simulator the coreapps connect to");
    let others: Vec<String> = services(DEV_FILE).iter().filter(|s| !s.is_shardgate()).map(|s| s.name.clone()).collect();
    assert_eq!(others, ["db"], "{DEV_FILE}: besides Shardgate, only the database");
}

#[test]
fn every_service_runs_a_real_server_subcommand_from_the_dockerfile_binary_path() {
    let subcommands = subcommands();
    let binary = Dockerfile::read().binary_path;
    let servers = roles();
    for service in all_shardgate_services() {
        let command = service.command();
        assert_eq!(
            command.first(),
            Some(&binary),
            "{}: the command must start with the image's binary {binary}",
            service.label()
        );
        let role = service.role();
        assert!(
            subcommands.contains(&role),
            "{}: `{role}` is not a subcommand of shardgate ({subcommands:?})",
            service.label()
        );
        assert!(servers.contains_key(&role), "{}: `{role}` is not a server role", service.label());
        assert_eq!(command.len(), 2, "{}: settings go through the environment, not extra arguments", service.label());
    }
}

#[test]
fn every_variable_a_service_sets_is_read_by_its_role_or_documented_as_ignored() {
    let roles = roles();
    for service in all_shardgate_services() {
        let role = &roles[&service.role()];
        let reads = role.env_names();
        for name in service.env().keys() {
            assert!(
                reads.contains(name) || IGNORED_OFFICIAL_ENV.contains(&name.as_str()),
                "{}: {name} is neither read by `shardgate {}` (its --help lists {reads:?}) nor in IGNORED_OFFICIAL_ENV",
                service.label(),
                role.name
            );
        }
    }
}

/// Variables the compose files read for what only Shardgate's development
/// file has (the simulator standing in for the network), none of them an
/// official name or one the binary reads; each is documented in compose/README.md.
const COMPOSE_ONLY_VARIABLES: [&str; 1] = ["EXTERNAL_SIM_PORT"];

#[test]
fn every_interpolated_variable_is_an_official_compose_variable_or_one_the_binary_reads() {
    let read_somewhere: BTreeSet<String> = roles().values().flat_map(Role::env_names).collect();
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("compose/README.md"))
        .expect("compose/README.md");
    for name in COMPOSE_ONLY_VARIABLES {
        assert!(readme.contains(&format!("`{name}`")), "compose/README.md documents {name}");
    }
    for file in COMPOSE_FILES {
        for text in strings(&raw_compose(file)) {
            for var in interpolations(&text) {
                assert!(
                    IGNORED_OFFICIAL_ENV.contains(&var.name.as_str())
                        || read_somewhere.contains(&var.name)
                        || COMPOSE_ONLY_VARIABLES.contains(&var.name.as_str()),
                    "{file}: ${{{}}} in {text:?} is neither an official compose variable nor one shardgate reads",
                    var.name
                );
            }
        }
    }
}

#[test]
fn every_image_is_tagged_with_the_required_wa_api_version() {
    for file in COMPOSE_FILES {
        let raw = raw_compose(file);
        for (name, service) in raw["services"].as_mapping().expect("services") {
            let image = scalar(&service["image"]);
            if !image.starts_with("shardgate:") {
                continue;
            }
            let vars = interpolations(&image);
            assert_eq!(
                vars,
                [Interpolation { name: "WA_API_VERSION".into(), required: true }],
                "{file}: service {}: the image tag must be ${{WA_API_VERSION:?...}}, as in the official files",
                scalar(name)
            );
        }
    }
}

#[test]
fn every_published_port_is_one_the_role_listens_on_and_every_listener_is_reachable_from_other_containers() {
    let roles = roles();
    for service in all_shardgate_services() {
        let role = &roles[&service.role()];
        let env = service.env();
        let listening = role.listen_addrs(&env);
        for (flag, addr) in &listening {
            assert!(
                addr.ip().is_unspecified(),
                "{}: `{} {flag}` is {addr}; in a container it must listen on 0.0.0.0 to be reachable",
                service.label(),
                role.name
            );
        }
        let mut allowed: Vec<u16> = listening.iter().map(|(_, a)| a.port()).collect();
        if matches!(role.name.as_str(), "master" | "coreapp") {
            allowed.extend(OFFICIAL_NODE_PORTS);
        }
        for published in service.ports() {
            assert!(
                allowed.contains(&published.container),
                "{}: publishes container port {} but `{}` listens on {listening:?}",
                service.label(),
                published.container,
                role.name
            );
        }
    }
    let mut host_ports = BTreeSet::new();
    for service in services(DEV_FILE) {
        for published in service.ports() {
            assert!(host_ports.insert(published.host), "{DEV_FILE}: host port {} is published twice", published.host);
        }
    }
}

#[test]
fn the_control_api_listens_on_the_official_control_port() {
    let roles = roles();
    for role in ["master", "coreapp"] {
        assert_eq!(
            roles[role].default_control_port(),
            OFFICIAL_NODE_PORTS[2],
            "shardgate {role} must bind the official control port by default: the compose files publish it"
        );
    }
    assert_eq!(roles["webapp"].listen_addrs(&BTreeMap::new())[0].1.port(), 9090, "the webapp serves on 9090");
}

#[test]
fn each_node_advertises_an_address_that_reaches_its_control_api() {
    let roles = roles();
    for file in COMPOSE_FILES {
        let services = shardgate_services(file);
        let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
        for service in services.iter().filter(|s| matches!(s.role().as_str(), "master" | "coreapp")) {
            let env = service.env();
            let control = roles[&service.role()].listen_addrs(&env)[0].1.port();
            let hostname = env.get("COREAPP_HOSTNAME").unwrap_or_else(|| {
                panic!("{}: set COREAPP_HOSTNAME, the name other nodes reach this one by", service.label())
            });
            match env.get("COREAPP_EXTERNAL_PORTS") {
                // One host per node: the operator names the host and the
                // published ports carry the traffic.
                Some(list) => {
                    let external = shardgate_core::node::parse_external_ports(list)
                        .unwrap_or_else(|e| panic!("{}: {e}", service.label()));
                    for (i, container) in OFFICIAL_NODE_PORTS.iter().enumerate() {
                        assert_eq!(
                            service.host_port_of(*container),
                            Some(external[i]),
                            "{}: COREAPP_EXTERNAL_PORTS[{i}] = {} must be the host port published for container port {container}",
                            service.label(),
                            external[i]
                        );
                    }
                    assert_eq!(service.host_port_of(control), Some(external[2]), "{}: the advertised control port (the third external port) must reach the control API on {control}", service.label());
                    let raw = service.raw_environment("COREAPP_HOSTNAME").unwrap_or_default();
                    assert!(
                        interpolations(&raw).iter().any(|v| v.required),
                        "{}: COREAPP_HOSTNAME must come from the operator (${{...:?...}}), not {raw:?}",
                        service.label()
                    );
                }
                // One compose network: the service name resolves, and the bound control port answers.
                None => assert!(
                    names.contains(hostname.as_str()),
                    "{}: COREAPP_HOSTNAME {hostname:?} is not a service of {file}, so other containers cannot resolve it",
                    service.label()
                ),
            }
        }
        for service in services.iter().filter(|s| s.role() == "webapp") {
            let listen = roles["webapp"].listen_addrs(&service.env())[0].1.port();
            if let Some(ports) = service.env().get("WEBAPP_EXTERNAL_PORTS") {
                assert_eq!(
                    service.host_port_of(listen).map(|p| p.to_string()),
                    Some(ports.clone()),
                    "{}: WEBAPP_EXTERNAL_PORTS must be the host port of the REST API",
                    service.label()
                );
            }
        }
        let ids: Vec<String> = services.iter().filter_map(|s| s.env().get("SHARDGATE_NODE_ID").cloned()).collect();
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(ids.len(), unique.len(), "{file}: two services share a SHARDGATE_NODE_ID: {ids:?}");
    }
}

#[test]
fn coreapps_reach_the_upstream_sim_of_the_dev_file_and_ask_the_operator_for_it_in_production() {
    let roles = roles();
    let dev = shardgate_services(DEV_FILE);
    let sim = dev.iter().find(|s| s.role() == "upstream-sim").expect("the dev file runs the sim");
    let sim_port = roles["upstream-sim"].listen_addrs(&sim.env())[0].1.port();
    for coreapp in dev.iter().filter(|s| s.role() == "coreapp") {
        let upstream = coreapp.env().get("SHARDGATE_UPSTREAM").cloned().unwrap_or_default();
        assert_eq!(
            upstream,
            format!("{}:{sim_port}", sim.name),
            "{}: SHARDGATE_UPSTREAM must be the sim's session address",
            coreapp.label()
        );
    }
    for coreapp in shardgate_services(COREAPP_FILE) {
        let raw = coreapp.raw_environment("SHARDGATE_UPSTREAM").unwrap_or_default();
        assert!(
            interpolations(&raw).iter().any(|v| v.name == "SHARDGATE_UPSTREAM" && v.required),
            "{}: the upstream has no sensible default in production; require SHARDGATE_UPSTREAM, not {raw:?}",
            coreapp.label()
        );
    }
}

#[test]
fn every_master_coreapp_and_webapp_gets_one_cluster_secret_and_production_asks_the_operator_for_it() {
    let roles = roles();
    for role in ["webapp", "master", "coreapp"] {
        assert!(
            roles[role].env_names().contains(CLUSTER_SECRET_ENV),
            "`shardgate {role}` must read {CLUSTER_SECRET_ENV}"
        );
    }
    for file in COMPOSE_FILES {
        let mut secrets = BTreeSet::new();
        for service in shardgate_services(file).iter().filter(|s| s.role() != "upstream-sim") {
            let secret = service.env().get(CLUSTER_SECRET_ENV).cloned().unwrap_or_else(|| {
                panic!("{}: set {CLUSTER_SECRET_ENV}, or the node refuses to start", service.label())
            });
            assert!(
                secret.len() >= shardgate_core::control_auth::MIN_SECRET_LEN,
                "{}: {CLUSTER_SECRET_ENV} is shorter than the node accepts",
                service.label()
            );
            secrets.insert(secret);
            if file != DEV_FILE {
                // A production secret must never be a value shipped in a public file.
                let raw = service.raw_environment(CLUSTER_SECRET_ENV).unwrap_or_default();
                assert!(
                    interpolations(&raw).iter().any(|v| v.name == CLUSTER_SECRET_ENV && v.required),
                    "{}: require {CLUSTER_SECRET_ENV} from the operator (${{...:?...}}), not {raw:?}",
                    service.label()
                );
            }
        }
        assert_eq!(secrets.len(), 1, "{file}: every node of one cluster must share one {CLUSTER_SECRET_ENV}");
    }
}

#[test]
fn masters_and_coreapps_set_their_control_bind_address_to_the_official_control_port_on_every_interface() {
    let roles = roles();
    for service in all_shardgate_services().iter().filter(|s| matches!(s.role().as_str(), "master" | "coreapp")) {
        let set = service.env().get("SHARDGATE_CONTROL_LISTEN").cloned().unwrap_or_else(|| {
            panic!("{}: state the control bind address (SHARDGATE_CONTROL_LISTEN) in the file", service.label())
        });
        let addr: SocketAddr = set.parse().unwrap_or_else(|_| panic!("{}: {set:?} is not host:port", service.label()));
        assert_eq!(
            addr.port(),
            roles[&service.role()].default_control_port(),
            "{}: the control API keeps the official port",
            service.label()
        );
    }
}

#[test]
fn official_role_variables_are_set_as_in_the_official_files() {
    for service in all_shardgate_services() {
        let env = service.env();
        let role = service.role();
        let is_master = env.get("WA_MASTER_NODE").map(String::as_str) == Some("1");
        assert_eq!(
            is_master,
            role == "master",
            "{}: WA_MASTER_NODE=1 is set on masters and only on masters",
            service.label()
        );
        if matches!(role.as_str(), "master" | "coreapp") {
            assert_eq!(
                env.get("WA_APP_MULTICONNECT").map(String::as_str),
                Some("1"),
                "{}: WA_APP_MULTICONNECT=1",
                service.label()
            );
        }
    }
}

#[test]
fn every_node_mounts_the_shared_media_volume_at_usr_local_wamedia() {
    let dockerfile = Dockerfile::read();
    assert!(
        dockerfile.volumes.is_empty(),
        "the image declares no VOLUME (each container not mounting it would leave an anonymous volume behind \
         every `down`); the files mount {MEDIA_DIR}"
    );
    for file in COMPOSE_FILES {
        let mut sources = BTreeSet::new();
        for service in shardgate_services(file).iter().filter(|s| s.role() != "upstream-sim") {
            let media: Vec<_> = service.volumes().into_iter().filter(|(_, target)| target == MEDIA_DIR).collect();
            assert_eq!(media.len(), 1, "{}: mount the media volume at {MEDIA_DIR}", service.label());
            sources.insert(media[0].0.clone());
        }
        assert_eq!(sources.len(), 1, "{file}: every node must share one media volume, not {sources:?}");
    }
}

#[test]
fn db_env_sets_only_database_variables_the_binary_reads_and_matches_the_dev_database() {
    let db_env = env_file("db.env");
    let roles = roles();
    for name in db_env.keys() {
        assert!(name.starts_with("WA_DB_"), "db.env sets {name}: only WA_DB_* belongs there");
        for role in ["webapp", "master", "coreapp"] {
            assert!(
                roles[role].env_names().contains(name),
                "db.env sets {name}, which `shardgate {role}` does not read"
            );
        }
    }
    let engine: DbEngine = db_env["WA_DB_ENGINE"].parse().expect("WA_DB_ENGINE parses");
    assert_eq!(engine, DbEngine::MySql, "db.env: the official files run MySQL");
    let services = services(DEV_FILE);
    let db = services.iter().find(|s| s.name == db_env["WA_DB_HOSTNAME"]).unwrap_or_else(|| {
        panic!("db.env: WA_DB_HOSTNAME={} is not a service of {DEV_FILE}", db_env["WA_DB_HOSTNAME"])
    });
    let image = db.image();
    assert!(
        image.starts_with("mariadb:") || image.starts_with("mysql:"),
        "{}: a MySQL engine, not {image}",
        db.label()
    );
    assert_eq!(db_env["WA_DB_PORT"], "3306", "db.env: the MariaDB and MySQL images listen on 3306");
    assert_eq!(db_env["WA_DB_USERNAME"], "root", "db.env: the image's root password is the one set");
    let env = db.env();
    let root_password = env.get("MARIADB_ROOT_PASSWORD").or(env.get("MYSQL_ROOT_PASSWORD"));
    assert_eq!(
        root_password,
        db_env.get("WA_DB_PASSWORD"),
        "{}: the root password must be db.env's WA_DB_PASSWORD",
        db.label()
    );
    for service in services.iter().filter(|s| s.is_shardgate() && s.role() != "upstream-sim") {
        let depends = service.value.get("depends_on").map(|d| serde_yaml::to_string(d).unwrap()).unwrap_or_default();
        assert!(depends.contains(&db.name), "{}: start after the database ({})", service.label(), db.name);
    }
}

#[test]
fn the_postgresql_db_env_sets_what_db_env_sets_for_pgsql() {
    let (mysql, postgres) = (env_file("db.env"), env_file("db.postgres.env"));
    assert_eq!(
        mysql.keys().collect::<Vec<_>>(),
        postgres.keys().collect::<Vec<_>>(),
        "db.postgres.env is db.env for PostgreSQL: the same variables"
    );
    let engine: DbEngine = postgres["WA_DB_ENGINE"].parse().expect("WA_DB_ENGINE parses");
    assert_eq!(engine, DbEngine::Postgres, "db.postgres.env: WA_DB_ENGINE names PostgreSQL");
    assert_eq!(postgres["WA_DB_PORT"], "5432", "db.postgres.env: PostgreSQL's port");
}

#[test]
fn healthchecks_probe_the_port_the_role_listens_on() {
    let roles = roles();
    for service in all_shardgate_services() {
        let text = service.healthcheck_text().unwrap_or_else(|| panic!("{} has no healthcheck", service.label()));
        let ports: Vec<u16> =
            roles[&service.role()].listen_addrs(&service.env()).iter().map(|(_, a)| a.port()).collect();
        let probed = text
            .split("/dev/tcp/127.0.0.1/")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().and_then(|p| p.parse::<u16>().ok()));
        assert!(
            probed.is_some_and(|p| ports.contains(&p)),
            "{}: the healthcheck {text:?} must probe a port the role listens on ({ports:?})",
            service.label()
        );
    }
}

#[test]
fn dockerfile_builds_the_locked_release_binary_into_a_slim_non_root_image() {
    let dockerfile = Dockerfile::read();
    let builder = dockerfile.builder_image.strip_prefix("rust:").expect("the builder is an official rust image");
    let builder_version: Vec<u32> =
        builder.split('-').next().unwrap().split('.').map(|n| n.parse().expect("rust image version")).collect();
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).expect("Cargo.toml");
    let msrv_line = manifest.lines().find(|l| l.trim_start().starts_with("rust-version")).expect("rust-version");
    let msrv: Vec<u32> =
        msrv_line.split('"').nth(1).expect("quoted rust-version").split('.').map(|n| n.parse().unwrap()).collect();
    assert!(builder_version >= msrv, "the builder rust:{builder} is older than rust-version {msrv:?}");
    assert!(
        dockerfile.build_commands.contains("cargo build --release --locked"),
        "the builder runs `cargo build --release --locked`:\n{}",
        dockerfile.build_commands
    );
    assert!(dockerfile.runtime_image.starts_with("debian:bookworm-slim"), "the runtime is debian:bookworm-slim");
    assert!(dockerfile.runtime_text.contains("ca-certificates"), "the runtime installs ca-certificates");
    let user = dockerfile.user.clone().expect("the runtime stage sets USER");
    assert!(user != "root" && user != "0", "the nodes must not run as root");
    for service in all_shardgate_services() {
        for published in service.ports() {
            assert!(
                dockerfile.exposed.contains(&published.container),
                "{}: container port {} is published but not EXPOSEd in the Dockerfile",
                service.label(),
                published.container
            );
        }
    }
}

#[test]
fn compose_files_are_interpolated_as_compose_interpolates_them() {
    let env = |name: &str| match name {
        "SET" => Some("v".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let cases = [
        ("a${SET}b", "avb"),
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        ("$$SET", "$SET"),
        ("$SET:1", "v:1"),
        ("${SET:?m}", "v"),
    ];
    for (text, want) in cases {
        assert_eq!(interpolate(text, &env).as_deref(), Ok(want), "{text}");
    }
    assert!(interpolate("${UNSET:?say why}", &env).unwrap_err().contains("say why"));
    assert!(interpolate("${EMPTY:?say why}", &env).is_err());
    assert_eq!(
        interpolations("${A:-1},${B:?m}"),
        [Interpolation { name: "A".into(), required: false }, Interpolation { name: "B".into(), required: true }]
    );
}

// --- the real binary with the files' environment ------------------------------------

/// Starts the master, the coreapp and the webapp of each compose layout with
/// the environment their services give them (db.env included), on SQLite in
/// a fresh directory and on ports the OS picks. Each must start, advertise the
/// address the file publishes, and acknowledge each official variable it
/// ignores with one info line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_starts_with_its_compose_environment_and_advertises_the_published_control_address() {
    let production = [MASTER_FILE, COREAPP_FILE, WEBAPP_FILE].iter().flat_map(|f| shardgate_services(f)).collect();
    // The two layouts are independent clusters; each spends most of its time
    // waiting for its master to create the cluster.
    tokio::join!(start_layout("production", production), start_layout("dev", shardgate_services(DEV_FILE)));
}

async fn start_layout(layout: &str, services: Vec<Service>) {
    let dir = std::env::temp_dir().join(format!("shardgate-compose-{layout}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut running = Vec::new();
    // The master creates the schema and the cluster, which the others wait for.
    for role in ["master", "coreapp", "webapp"] {
        let service = services.iter().find(|s| s.role() == role).expect("the layout has the role");
        let mut env = service.env();
        env.insert("WA_DB_ENGINE".into(), "SQLITE".into());
        env.insert("SHARDGATE_DATA_DIR".into(), dir.display().to_string());
        env.insert("SHARDGATE_LOG".into(), "info".into());
        let listen = if role == "webapp" { "WEBAPP_LISTEN" } else { "SHARDGATE_CONTROL_LISTEN" };
        env.insert(listen.into(), "127.0.0.1:0".into());
        let spec = NodeSpec {
            name: format!("{layout}-{}", service.name),
            args: vec![role.to_string()],
            env: env.clone().into_iter().collect(),
        };
        let sink = LogSink { file: dir.join(format!("{}.log", service.name)), echo: false };
        let node = start_node(env!("CARGO_BIN_EXE_shardgate").as_ref(), &spec, &sink, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| {
                panic!("{} does not start with its compose environment: {e:#}\n{}", service.label(), log_of(&sink.file))
            });
        if role != "webapp" {
            let advertised = node.ready_str("control_addr");
            let port = match env.get("COREAPP_EXTERNAL_PORTS") {
                Some(list) => shardgate_core::node::parse_external_ports(list).unwrap()[2].to_string(),
                None => advertised.rsplit(':').next().unwrap_or_default().to_string(),
            };
            assert_eq!(
                advertised,
                format!("{}:{port}", env["COREAPP_HOSTNAME"]),
                "{}: advertised control address",
                service.label()
            );
        }
        for name in env.keys().filter(|n| IGNORED_OFFICIAL_ENV.contains(&n.as_str())) {
            let (lines, log) = info_lines(&sink.file, &format!("{name} is set")).await;
            assert_eq!(lines, 1, "{}: {name} must be acknowledged by one info line:\n{log}", service.label());
        }
        running.push(node);
    }
    for mut node in running.into_iter().rev() {
        node.stop(Duration::from_secs(10)).await.expect("node stops");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

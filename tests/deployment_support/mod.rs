//! Docker plumbing of the deployment test: a ready engine, the images built
//! from the local base, and compose projects that clean up after themselves.
//!
//! Every command is the one a user types (`docker build`, `docker-compose -f
//! ... up -d`, `ps`, `logs`, `kill`, `down -v`), run as a child process; a
//! failing command fails the test with its output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The local base image every test image starts from (made by prepare-engine).
pub const BASE_IMAGE: &str = "shardgate-base:bookworm";

/// The MariaDB image standing in for the official `mariadb:10.11`.
pub const MARIADB_IMAGE: &str = "shardgate-test-mariadb:10.11";

/// The Docker client to build with: Debian's docker.io client builds with
/// BuildKit when asked (`DOCKER_BUILDKIT=1`), which the Dockerfile needs to
/// skip the stages it does not use; a newer client elsewhere on PATH may
/// need a buildx plugin this machine does not have.
fn docker() -> Command {
    let binary = if Path::new("/usr/bin/docker").exists() { "/usr/bin/docker" } else { "docker" };
    let mut command = Command::new(binary);
    command.env("DOCKER_BUILDKIT", "1");
    command
}

/// Runs `command`, failing the test with its output unless it succeeds.
pub fn run(mut command: Command, what: &str) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs a `docker` command and returns its standard output.
pub fn docker_out(args: &[&str]) -> String {
    let mut command = docker();
    command.args(args);
    String::from_utf8_lossy(&run(command, &format!("docker {}", args.join(" "))).stdout).into_owned()
}

/// Installs and starts what is missing and makes the base image; `false` when
/// the test cannot run here (not root) and was told it may skip.
pub fn prepare_engine() -> bool {
    if std::env::var("SHARDGATE_SKIP_DOCKER").as_deref() == Ok("1") {
        eprintln!("SHARDGATE_SKIP_DOCKER=1: the deployment test is skipped");
        return false;
    }
    let mut command = Command::new(repo().join("tests/deployment/prepare-engine"));
    command.env("SHARDGATE_BASE_IMAGE", BASE_IMAGE);
    let output = run(command, "tests/deployment/prepare-engine");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    true
}

/// The PostgreSQL image of the per-role test's database host.
pub const POSTGRES_IMAGE: &str = "shardgate-test-postgres:15";

/// Builds the MariaDB image from the base (cached by Docker after the first time).
pub fn build_mariadb_image() {
    build_local_image("tests/deployment/mariadb", MARIADB_IMAGE);
}

/// Builds the image `name` from the Dockerfile in `dir` (relative to the
/// repository) on the base image.
pub fn build_local_image(dir: &str, name: &str) {
    let mut command = docker();
    command.args(["build", "-q", "--build-arg", &format!("BASE_IMAGE={BASE_IMAGE}"), "-t", name]);
    command.arg(repo().join(dir));
    run(command, &format!("building {name}"));
}

/// The Shardgate image name for a tag, as the compose files spell it.
pub fn shardgate_image(tag: &str) -> String {
    format!("shardgate:{tag}")
}

/// Builds `shardgate:<tag>` with compose/Dockerfile's runtime stage from the
/// base image and the binary cargo built for this test, stripped of its
/// debug information (the image carries what runs, not what debugs).
pub fn build_shardgate_image(tag: &str) {
    let context = tempfile_dir("shardgate-image");
    let binary = context.join("shardgate");
    let mut strip = Command::new("objcopy");
    strip.args(["--strip-debug", env!("CARGO_BIN_EXE_shardgate")]).arg(&binary);
    run(strip, "stripping the shardgate binary");
    let mut command = docker();
    command.args(["build", "-q", "-f"]).arg(repo().join("compose/Dockerfile"));
    for arg in ["BINARY_FROM=prebuilt", &format!("RUNTIME_BASE={BASE_IMAGE}"), &format!("WA_API_VERSION={tag}")] {
        command.args(["--build-arg", arg]);
    }
    command.args(["--target", "runtime", "-t", &shardgate_image(tag)]).arg(&context);
    run(command, "building the shardgate image");
    let _ = std::fs::remove_dir_all(&context);
    // The image this tag named before is left untagged: remove it, so that
    // repeated runs do not fill the disk.
    docker_out(&["image", "prune", "-f", "--filter", "label=org.opencontainers.image.title=shardgate"]);
}

/// A fresh directory under the system temp directory.
pub fn tempfile_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A compose project: its name, files and variables. Dropping it runs
/// `down -v`, so no container, network or volume outlives the test.
pub struct Project {
    /// The project name (`-p`), unique per test run.
    pub name: String,
    files: Vec<PathBuf>,
    /// Where compose finds `env_file`s, when not next to the first file.
    directory: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl Project {
    /// A project of `files` (the first one's directory is compose's working
    /// directory, where `db.env` is found), with the variables `env`.
    pub fn new(name: &str, files: &[PathBuf], env: &[(&str, &str)]) -> Project {
        Project {
            name: format!("{name}{}", std::process::id()),
            files: files.to_vec(),
            directory: None,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    /// The project with compose's working directory at `dir` (`--project-directory`):
    /// its `db.env` is the one there.
    pub fn in_directory(mut self, dir: &Path) -> Project {
        self.directory = Some(dir.to_path_buf());
        self
    }

    /// The value of one of the project's variables; empty when unset.
    pub fn env_value(&self, key: &str) -> String {
        self.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    /// Sets (or replaces) a variable for the following commands.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// The `docker-compose` command with this project's name, files and variables.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker-compose");
        command.arg("-p").arg(&self.name);
        if let Some(dir) = &self.directory {
            command.arg("--project-directory").arg(dir);
        }
        for file in &self.files {
            command.arg("-f").arg(file);
        }
        command.args(args).envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs `docker-compose <args>`; its standard output.
    pub fn compose(&self, args: &[&str]) -> String {
        let output = run(self.command(args), &format!("docker-compose {}", args.join(" ")));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The ids of the project's containers (`ps -q`).
    pub fn container_ids(&self) -> Vec<String> {
        self.compose(&["ps", "-q"]).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
    }

    /// Each container's service, state and health (`none` without a healthcheck).
    pub fn states(&self) -> Vec<ContainerState> {
        self.container_ids()
            .iter()
            .map(|id| {
                let format = "{{index .Config.Labels \"com.docker.compose.service\"}} {{.State.Status}} \
                              {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.Config.Image}}";
                let line = docker_out(&["inspect", "--format", format, id]);
                let mut words = line.split_whitespace().map(String::from);
                let mut next = || words.next().unwrap_or_default();
                ContainerState { service: next(), status: next(), health: next(), image: next() }
            })
            .collect()
    }

    /// The named volumes the project owns.
    pub fn volumes(&self) -> Vec<String> {
        let filter = format!("label=com.docker.compose.project={}", self.name);
        docker_out(&["volume", "ls", "-q", "--filter", &filter]).lines().map(String::from).collect()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What happened, for the failure report, before it is removed.
            if let Ok(output) = self.command(&["logs", "--no-color", "--tail", "40"]).output() {
                eprintln!("--- last logs of {} ---\n{}", self.name, String::from_utf8_lossy(&output.stdout));
            }
        }
        let _ = self.command(&["down", "-v", "--remove-orphans", "-t", "5"]).output();
    }
}

/// A named volume made outside compose (`external: true` in the files), bound
/// to a directory of this machine; removed when dropped.
pub struct ExternalVolume(String);

impl ExternalVolume {
    /// `docker volume create` of `name` backed by `dir`.
    pub fn bind(name: &str, dir: &Path) -> ExternalVolume {
        let device = format!("device={}", dir.display());
        docker_out(&[
            "volume",
            "create",
            "--driver",
            "local",
            "--opt",
            "type=none",
            "--opt",
            "o=bind",
            "--opt",
            &device,
            name,
        ]);
        ExternalVolume(name.to_string())
    }
}

impl Drop for ExternalVolume {
    fn drop(&mut self) {
        let _ = docker().args(["volume", "rm", "-f", &self.0]).output();
    }
}

/// One container as `docker inspect` tells it.
#[derive(Debug, Clone)]
pub struct ContainerState {
    /// Its compose service.
    pub service: String,
    /// `running`, `exited`, ...
    pub status: String,
    /// `healthy`, `starting`, `unhealthy`, or `none` without a healthcheck.
    pub health: String,
    /// The image it runs.
    pub image: String,
}

impl ContainerState {
    /// Running and, where it has a healthcheck, healthy.
    pub fn is_up(&self) -> bool {
        self.status == "running" && (self.health == "healthy" || self.health == "none")
    }
}

/// A free TCP port on this machine, for a published port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

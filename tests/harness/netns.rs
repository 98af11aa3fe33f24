//! A network namespace of the test's own, joined to the host by a veth pair,
//! so that one node can lose its packets the way a real network loses them:
//! silently, FIN and RST included, while the rest of the cluster stays on the
//! host. Used for the lost-FIN `kill -9` and the primary cut off from the
//! upstream.
//!
//! Each namespace has a unique name (`shardgate-<pid>-<n>`) and a /30 of its
//! own in 198.18.0.0/15 (RFC 2544, reserved for network tests): the host side
//! of the veth pair gets `.1`, the namespace side `.2`. Dropping the
//! [`NetNs`] deletes the veth pair and the namespace, and with them every
//! rule added inside, also when the test panics; namespaces left behind by a
//! test process that was killed are removed by the next [`NetNs::create`].
//!
//! Needs root, `ip` (iproute2) and `iptables` (rules live in the namespace's
//! own tables, so the host's firewall is never touched).

use super::ClusterSpec;
use shardgate::supervisor::NodeSpec;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Prefix of every namespace this harness creates.
const PREFIX: &str = "shardgate-";

/// Namespaces created by this process so far.
static CREATED: AtomicU32 = AtomicU32::new(0);

/// A namespace with a veth pair to the host; deleted on drop.
pub struct NetNs {
    /// Namespace name, for `ip netns exec`.
    pub name: String,
    /// Host end of the veth pair.
    host_if: String,
    /// Address of the host end: where the namespace reaches the host.
    pub host_ip: Ipv4Addr,
    /// Address of the namespace end: where the host reaches the namespace.
    pub ns_ip: Ipv4Addr,
    /// `iptables` rules added inside, as the arguments after `-A`/`-D`.
    rules: Mutex<Vec<Vec<String>>>,
}

/// Runs a command and panics with its output when it fails.
fn run(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Runs a command, ignoring failure (cleanup paths).
fn run_quietly(program: &str, args: &[&str]) {
    let _ = Command::new(program).args(args).output();
}

/// Removes namespaces of ours whose test process is gone (killed before its drops ran).
fn remove_stale() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            run_quietly("ip", &["netns", "del", name]);
        }
    }
}

/// Whether some interface of the host already has `ip`.
fn address_in_use(ip: Ipv4Addr) -> bool {
    let Ok(output) = Command::new("ip").args(["-o", "-4", "addr", "show"]).output() else { return false };
    let needle = format!(" {ip}/");
    String::from_utf8_lossy(&output.stdout).contains(&needle)
}

impl NetNs {
    /// Creates a namespace with its veth pair, both ends up, loopback up.
    /// Panics (after cleaning up what it made) when it cannot.
    pub fn create() -> NetNs {
        remove_stale();
        let pid = std::process::id();
        let n = CREATED.fetch_add(1, Ordering::SeqCst);
        // 32768 /30 blocks in 198.18.0.0/15; start from a per-process spot and
        // skip blocks an interface already uses (another test process's).
        let start = (pid.wrapping_mul(31).wrapping_add(n.wrapping_mul(7919))) % 32768;
        let block = (0..64)
            .map(|step| (start + step) % 32768)
            .find(|block| !address_in_use(Self::addr(*block, 1)))
            .expect("a free /30 in 198.18.0.0/15");
        let name = format!("{PREFIX}{pid}-{n}");
        // Interface names are limited to 15 bytes; the block is unique among live namespaces.
        let host_if = format!("sgh{block:x}");
        let ns_if = format!("sgn{block:x}");
        run("ip", &["netns", "add", &name]);
        let ns = NetNs {
            name,
            host_if,
            host_ip: Self::addr(block, 1),
            ns_ip: Self::addr(block, 2),
            rules: Mutex::new(Vec::new()),
        };
        // From here on, a failure panics and the drop removes what exists.
        run("ip", &["link", "add", &ns.host_if, "type", "veth", "peer", "name", &ns_if]);
        run("ip", &["link", "set", &ns_if, "netns", &ns.name]);
        run("ip", &["addr", "add", &format!("{}/30", ns.host_ip), "dev", &ns.host_if]);
        run("ip", &["link", "set", &ns.host_if, "up"]);
        ns.exec(&["ip", "addr", "add", &format!("{}/30", ns.ns_ip), "dev", &ns_if]);
        ns.exec(&["ip", "link", "set", &ns_if, "up"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn addr(block: u32, host: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + block * 4 + host)
    }

    /// Runs a command inside the namespace; panics when it fails.
    pub fn exec(&self, command: &[&str]) {
        let mut args = vec!["netns", "exec", self.name.as_str()];
        args.extend_from_slice(command);
        run("ip", &args);
    }

    /// The executable and spec that start the node `spec` inside the namespace
    /// (`ip netns exec` execs the node itself, so the pid is the node's).
    pub fn wrap(&self, exe: &Path, mut spec: NodeSpec) -> (PathBuf, NodeSpec) {
        let mut args = vec!["netns".to_string(), "exec".into(), self.name.clone(), exe.display().to_string()];
        args.append(&mut spec.args);
        spec.args = args;
        (PathBuf::from("ip"), spec)
    }

    fn add_rule(&self, rule: Vec<String>) {
        let mut command = vec!["iptables", "-w", "-A"];
        command.extend(rule.iter().map(String::as_str));
        self.exec(&command);
        self.rules.lock().expect("rules").push(rule);
    }

    /// Silently drops every packet the namespace sends to `to` (TCP): data,
    /// acks, FIN and RST alike. Packets from `to` still arrive.
    pub fn drop_traffic_to(&self, to: SocketAddr) {
        let (ip, port) = (to.ip().to_string(), to.port().to_string());
        self.add_rule(["OUTPUT", "-p", "tcp", "-d", &ip, "--dport", &port, "-j", "DROP"].map(str::to_string).to_vec());
    }

    /// Silently drops the TCP traffic between the namespace and `peer`, both
    /// ways: a partition between one node and one service.
    pub fn cut_off_from(&self, peer: SocketAddr) {
        self.drop_traffic_to(peer);
        let (ip, port) = (peer.ip().to_string(), peer.port().to_string());
        self.add_rule(["INPUT", "-p", "tcp", "-s", &ip, "--sport", &port, "-j", "DROP"].map(str::to_string).to_vec());
    }

    /// Removes every rule added so far: traffic flows again.
    pub fn heal(&self) {
        let rules = std::mem::take(&mut *self.rules.lock().expect("rules"));
        for rule in rules.iter().rev() {
            let mut command = vec!["iptables", "-w", "-D"];
            command.extend(rule.iter().map(String::as_str));
            self.exec(&command);
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting one end deletes the pair at once; the namespace (and its
        // rules) goes when its last process has exited.
        run_quietly("ip", &["link", "del", &self.host_if]);
        run_quietly("ip", &["netns", "del", &self.name]);
    }
}

/// How the harness starts node `spec`: with the environment every node of
/// `cluster` gets, and inside `netns` for the coreapp that `cluster` puts there.
pub(super) fn place(
    exe: &Path,
    mut spec: NodeSpec,
    cluster: &ClusterSpec,
    netns: Option<&NetNs>,
) -> (PathBuf, NodeSpec) {
    if spec.name != "upstream-sim" {
        // The upstream's keepalive timeout is a fact of the deployment, which
        // every node is told and the API cannot lower.
        spec.env.push(("SHARDGATE_UPSTREAM_SESSION_TIMEOUT".into(), cluster.session_timeout.to_string()));
        spec.env.extend(cluster.node_env.iter().cloned());
        if let Some((_, rate)) = cluster.clock_rates.iter().find(|(node, _)| *node == spec.name) {
            spec.env.extend(super::clock_env(*rate));
        }
    }
    match netns {
        Some(ns) if spec.name == NETNS_COREAPP => ns.wrap(exe, spec),
        _ => (exe.to_path_buf(), spec),
    }
}

/// The coreapp that [`ClusterSpec::netns_coreapp`] puts in the namespace.
pub const NETNS_COREAPP: &str = "coreapp-1";

/// `--control-listen` of coreapp `name`: its namespace address when it runs there.
pub(super) fn control_listen(name: &str, netns: Option<&NetNs>) -> String {
    match netns {
        Some(ns) if name == NETNS_COREAPP => format!("{}:0", ns.ns_ip),
        _ => "127.0.0.1:0".to_string(),
    }
}

/// `--listen` of the sim: where the namespace can reach it too.
pub(super) fn sim_listen(netns: Option<&NetNs>) -> String {
    match netns {
        Some(ns) => format!("{}:0", ns.host_ip),
        None => "127.0.0.1:0".to_string(),
    }
}

/// Waits until [`NETNS_COREAPP`] holds every shard under a live lease, so
/// that the coreapps started after it stay secondary.
pub(super) async fn wait_netns_coreapp_primary(store: &shardgate_core::store::Store, shards: u32) {
    super::wait_for(
        &format!("{NETNS_COREAPP} (in its namespace) to hold every shard"),
        std::time::Duration::from_secs(30),
        || async {
            let map = store.shard_map().await.ok()?;
            let held = map.rows.len() == shards as usize
                && map.rows.iter().all(|r| r.owner == NETNS_COREAPP && r.lease_live(map.now));
            held.then_some(())
        },
    )
    .await;
}

//! What every node does at start: pick its identity, reach the database and
//! wait until the schema is one it knows.

use crate::store::nodes::NodeRecord;
use crate::store::{schema, Store, StoreError, StoreResult};
use std::net::SocketAddr;
use std::time::Duration;

/// Identity and control-API settings shared by masters and coreapps.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// Stable node id; defaults to the advertised control address (host:port).
    #[arg(long = "node-id", env = "SHARDGATE_NODE_ID")]
    pub node_id: Option<String>,
    /// Address the control API (heartbeats, status, wake-ups) listens on; port 0 picks one.
    #[arg(long = "control-listen", env = "SHARDGATE_CONTROL_LISTEN", default_value = "0.0.0.0:6252")]
    pub control_listen: SocketAddr,
    /// Host name other nodes reach this node by (falls back to EXTERNAL_HOSTNAME, then
    /// the listen address, then the machine's host name).
    #[arg(long = "hostname", env = "COREAPP_HOSTNAME")]
    pub node_hostname: Option<String>,
    /// The node's four external ports, comma-separated (messaging, contacts, control,
    /// healthcheck); the third is advertised for control. Defaults to the bound port.
    #[arg(long = "external-ports", env = "COREAPP_EXTERNAL_PORTS")]
    pub external_ports: Option<String>,
}

impl NodeArgs {
    /// Checks what can be checked before binding anything, so that a bad
    /// setting stops the node at once with one line naming it.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(list) = &self.external_ports {
            parse_external_ports(list)?;
        }
        Ok(())
    }

    /// The `host:port` other nodes use to reach the control API bound at `bound`.
    pub fn advertised_control_addr(&self, bound: SocketAddr) -> Result<String, String> {
        let port = match &self.external_ports {
            Some(list) => parse_external_ports(list)?[2],
            None => bound.port(),
        };
        // An empty variable (`COREAPP_HOSTNAME=` in an env file) means unset.
        let host = self
            .node_hostname
            .clone()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("EXTERNAL_HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| if bound.ip().is_unspecified() { machine_hostname() } else { bound.ip().to_string() });
        Ok(format!("{host}:{port}"))
    }
}

/// Parses `COREAPP_EXTERNAL_PORTS`: four comma-separated ports.
pub fn parse_external_ports(list: &str) -> Result<[u16; 4], String> {
    let ports: Vec<u16> = list
        .split(',')
        .map(|p| p.trim().parse::<u16>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("COREAPP_EXTERNAL_PORTS must be four comma-separated ports, not {list:?}"))?;
    ports.try_into().map_err(|_| format!("COREAPP_EXTERNAL_PORTS must be four comma-separated ports, not {list:?}"))
}

fn machine_hostname() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    }
}

/// Who this process is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Stable id: the configured name, or the host name.
    pub node_id: String,
    /// Random per process; a restart gets a new one.
    pub instance_id: String,
}

impl NodeIdentity {
    /// A fresh identity for this process. The default id is the address
    /// other nodes reach it at (`host:port`, as the on-prem health keys
    /// are): stable across restarts, unique per host and port.
    pub fn new(node_id: Option<String>, advertised_addr: &str) -> NodeIdentity {
        NodeIdentity {
            node_id: node_id.unwrap_or_else(|| advertised_addr.to_string()),
            instance_id: uuid::Uuid::new_v4().simple().to_string(),
        }
    }
}

impl NodeIdentity {
    /// This process's registration record (the store stamps the times).
    pub fn record(&self, role: &str, control_addr: &str) -> NodeRecord {
        NodeRecord {
            node_id: self.node_id.clone(),
            role: role.to_string(),
            instance_id: self.instance_id.clone(),
            control_addr: control_addr.to_string(),
            version: crate::VERSION.to_string(),
            pid: i64::from(std::process::id()),
            started_at: 0,
            last_seen: 0,
        }
    }

    /// Prints the readiness line of a node whose control API is at `control_addr`.
    pub fn announce_control(&self, role: &str, control_addr: &str) {
        crate::ready::announce(&serde_json::json!({
            "role": role,
            "node_id": self.node_id,
            "control_addr": control_addr,
            "pid": std::process::id(),
        }));
    }
}

/// `host:port` for a bound address: the machine's host name when bound to
/// all interfaces, the address itself otherwise.
pub fn reachable_addr(bound: SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        format!("{}:{}", machine_hostname(), bound.port())
    } else {
        bound.to_string()
    }
}

/// Waits until the primary master has brought the schema to this build's
/// version; fails at once if the database is newer than this build.
pub async fn wait_for_schema(store: &Store, role: &str) -> StoreResult<()> {
    let known = schema::latest_version();
    let mut logged = false;
    loop {
        match store.check_not_newer().await {
            Ok(found) if found == known => return Ok(()),
            Ok(found) => {
                if !logged {
                    tracing::info!(
                        "{role} waiting for the primary master to bring the schema from version \
                         {found} to {known}"
                    );
                    logged = true;
                }
            }
            Err(e @ StoreError::SchemaTooNew { .. }) => return Err(e),
            Err(e) => tracing::warn!("{role} cannot read the schema version yet: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ports_must_be_four_ports_and_the_error_names_the_variable() {
        assert_eq!(parse_external_ports("6250, 6251,6252,6253").unwrap(), [6250, 6251, 6252, 6253]);
        for bad in ["6250,6251", "a,b,c,d", "1,2,3,4,5"] {
            assert!(parse_external_ports(bad).unwrap_err().contains("COREAPP_EXTERNAL_PORTS"));
        }
    }

    #[test]
    fn advertised_address_uses_the_third_external_port_and_the_hostname() {
        let args = NodeArgs {
            node_id: None,
            control_listen: "0.0.0.0:0".parse().unwrap(),
            node_hostname: Some("core1".into()),
            external_ports: Some("7250,7251,7252,7253".into()),
        };
        assert_eq!(args.advertised_control_addr("0.0.0.0:4444".parse().unwrap()).unwrap(), "core1:7252");
        let local = NodeArgs { node_hostname: None, external_ports: None, ..args };
        assert_eq!(local.advertised_control_addr("127.0.0.1:4444".parse().unwrap()).unwrap(), "127.0.0.1:4444");
    }
}

//! What the masters' logs say they did, for the fault suite's check that no
//! two masters ever acted in one epoch window: which master won which epoch
//! of the master lease, and under which epoch each applied reassignment was
//! made. The masters write these lines themselves (`master::election` and
//! `master::cycle`).

use std::collections::BTreeMap;
use std::path::Path;

/// One thing a master logged doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterAct {
    /// `node` won the master lease under `epoch`.
    Won { node: String, epoch: i64 },
    /// `node`, as primary master under `epoch`, applied a reassignment;
    /// `at` is the line's timestamp (RFC 3339, UTC).
    Reassigned { at: String, node: String, epoch: i64, line: String },
}

/// Every win and applied reassignment in the `master-*.log` files of `dir`.
pub fn read(dir: &Path) -> Vec<MasterAct> {
    let mut acts = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return acts };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !(name.starts_with("master-") && name.ends_with(".log")) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        acts.extend(text.lines().filter_map(parse));
    }
    acts
}

/// A win or an applied reassignment, from one log line.
pub fn parse(line: &str) -> Option<MasterAct> {
    let at = line.split_whitespace().next()?.to_string();
    if let Some((node, rest)) = line.split_once(" won the master lease, epoch ").map(|(head, rest)| {
        let node = head.rsplit(' ').next().unwrap_or_default().to_string();
        (node, rest)
    }) {
        let epoch = rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
        return Some(MasterAct::Won { node, epoch });
    }
    let rest = line.split_once("primary master ")?.1;
    let (node, rest) = rest.split_once(", epoch ")?;
    let (epoch, decisions) = rest.split_once(": ")?;
    let applied = decisions.split("; ").any(|d| d.contains("promoting") && !d.contains("(not applied"));
    applied.then(|| MasterAct::Reassigned {
        at,
        node: node.to_string(),
        epoch: epoch.parse().unwrap_or(-1),
        line: decisions.to_string(),
    })
}

/// The violations of "one master per epoch": an epoch won by two masters,
/// or a reassignment made under an epoch by a master that did not win it.
/// (Whether an old primary's write landed after a newer epoch began is the
/// database's fence to refuse; the log cannot tell, since a reply held by a
/// partition makes the line later than the commit.)
pub fn violations(acts: &[MasterAct]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut winners: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for act in acts {
        if let MasterAct::Won { node, epoch, .. } = act {
            winners.entry(*epoch).or_default().push(node);
        }
    }
    for (epoch, nodes) in &winners {
        if nodes.len() > 1 {
            violations.push(format!("epoch {epoch} won by {nodes:?}"));
        }
    }
    for act in acts {
        if let MasterAct::Reassigned { at, node, epoch, line } = act {
            if !winners.get(epoch).is_some_and(|won| won.contains(&node.as_str())) {
                violations.push(format!("{at} {node} reassigned under epoch {epoch}, which it did not win: {line}"));
            }
        }
    }
    violations
}

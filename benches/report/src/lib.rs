//! What the three benchmarks (`benches/failover.rs`,
//! `gateway/benches/policy_path.rs`, `plugins/host/benches/policy_calls.rs`)
//! share to report their figures:
//! - [`criterion_dir`] and [`criterion_medians`]: where criterion writes, and
//!   the medians this run measured;
//! - [`median`]: the one median every figure uses;
//! - [`Machine`]: what the figures were measured on, probed at the start;
//! - [`provenance`]: the lines under each section's title saying how its
//!   figures were made (command, date, machine, toolchain);
//! - [`Section`]: one section of `BENCHMARKS.md`, between its
//!   `<!-- name:begin -->` and `<!-- name:end -->` markers: its opening, and
//!   its merging into the file ([`merge_section`]);
//! - [`fill`]: a Markdown template's `{placeholders}`, for the prose.
//!
//! No dependency but `serde_json` (for criterion's `estimates.json`), so that
//! every bench can use it without slowing its build.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The workspace root, where `BENCHMARKS.md` and (by default) `target/` are.
pub fn workspace_root() -> PathBuf {
    // This crate is `benches/report` in the workspace.
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("benches/report has two parents").to_path_buf()
}

/// Where criterion keeps its measurements: `criterion/` in the target directory.
pub fn criterion_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
        .join("criterion")
}

/// The median of each criterion benchmark `ids`, in ns per iteration, if every
/// one was measured by this run (its estimates written after `started`); `None`
/// if any was not, as when a filter ran only some.
pub fn criterion_medians<'a>(
    output: &Path,
    ids: impl IntoIterator<Item = &'a str>,
    started: SystemTime,
) -> Option<Vec<f64>> {
    ids.into_iter()
        .map(|id| {
            // Criterion names the folder after the id with `/` made `_`.
            let path = output.join(id.replace('/', "_")).join("new/estimates.json");
            let fresh = std::fs::metadata(&path).and_then(|m| m.modified()).ok()? >= started;
            let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            fresh.then(|| estimates["median"]["point_estimate"].as_f64()).flatten()
        })
        .collect()
}

/// The median (the mean of the middle two for an even count); `None` if there are no values.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (n > 0).then(|| (values[(n - 1) / 2] + values[n / 2]) / 2.0)
}

/// The `p`-quantile of `sorted` (ascending): the value at the rounded rank
/// `(len - 1) * p`; `None` if there are no values.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get(((last as f64) * p).round() as usize).copied()
}

/// The command that ran bench `bench`, as given (without the `--bench`
/// cargo adds), for its section of `BENCHMARKS.md`.
pub fn command_line(bench: &str) -> String {
    let given: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if given.is_empty() {
        format!("cargo bench --bench {bench}")
    } else {
        format!("cargo bench --bench {bench} -- {}", given.join(" "))
    }
}

/// What a run measured on: the figures depend on it, and the machine is shared.
#[derive(Debug, Clone)]
pub struct Machine {
    /// When the run started, UTC, to the minute.
    pub date: String,
    /// CPUs available to the process.
    pub nproc: usize,
    /// CPU model.
    pub cpu: String,
    /// Total RAM, e.g. `23.5 GiB`.
    pub ram: String,
    /// Kernel release.
    pub kernel: String,
    /// `rustc --version`.
    pub rustc: String,
    /// The 1, 5 and 15 minute load averages when the run started.
    pub load_at_start: String,
}

impl Machine {
    /// Reads it from `/proc`, `date` and `rustc`; what cannot be read is `unknown`.
    pub fn probe() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let ram = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or_else(|| "unknown".into(), |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0));
        Machine {
            date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            ram,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            rustc: command_output("rustc", &["--version"]),
            load_at_start: loadavg(),
        }
    }
}

/// The 1, 5 and 15 minute load averages now.
pub fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// What `program` prints, trimmed; `unknown` if it cannot run or fails.
fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The lines saying how the figures were made: `**Command**`, `**Date**`,
/// `**Machine**` (with the load average at the start and now), `**Toolchain**`
/// (rustc, then `toolchain`), then `more` (label, text), each a Markdown line
/// break apart; no newline after the last.
pub fn provenance(command: &str, machine: &Machine, toolchain: &str, more: &[(&str, String)]) -> String {
    let Machine { date, nproc, cpu, ram, kernel, rustc, load_at_start } = machine;
    let load = format!("load average (1, 5, 15 min) {load_at_start} at the start, {} at the end", loadavg());
    let lines = [
        ("Command", format!("`{command}`")),
        ("Date", date.clone()),
        ("Machine", format!("{nproc} CPUs (`nproc`), {cpu}, {ram} RAM, Linux {kernel}; {load} (a shared machine)")),
        ("Toolchain", format!("{rustc}; {toolchain}")),
    ];
    let lines: Vec<String> = lines.iter().chain(more).map(|(label, text)| format!("**{label}**: {text}")).collect();
    lines.join("  \n")
}

/// One section of `BENCHMARKS.md`, regenerated whole by one benchmark: its
/// Markdown is written with `write!` and merged into the file by [`Section::write`].
#[derive(Debug)]
pub struct Section {
    name: &'static str,
    text: String,
}

impl Section {
    /// Opens section `name`: its begin marker, its `##` title, and the line
    /// saying which bench (`source`, a path in the workspace) generates it.
    pub fn new(name: &'static str, title: &str, source: &str) -> Section {
        let text = format!(
            "{}\n## {title}\n\n_Generated by `{source}`; everything between the `{name}` markers is overwritten by the \
             next run._\n\n",
            begin_marker(name)
        );
        Section { name, text }
    }

    /// The whole section, markers included, without a trailing newline.
    pub fn finish(self) -> String {
        format!("{}\n{}", self.text.trim_end(), end_marker(self.name))
    }

    /// Rewrites this section of the workspace's `BENCHMARKS.md` in place (or
    /// appends it, or starts the file), and says so on stderr.
    pub fn write(self) {
        let name = self.name;
        let path = workspace_root().join("BENCHMARKS.md");
        let existing = std::fs::read_to_string(&path).ok();
        match std::fs::write(&path, merge_section(existing.as_deref(), name, &self.finish())) {
            Ok(()) => eprintln!("wrote the {name} section of {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    }
}

impl fmt::Write for Section {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.text.push_str(s);
        Ok(())
    }
}

fn begin_marker(name: &str) -> String {
    format!("<!-- {name}:begin -->")
}

fn end_marker(name: &str) -> String {
    format!("<!-- {name}:end -->")
}

/// `existing` (the text of `BENCHMARKS.md`, `None` if there is none) with
/// section `name` replaced by `section` (markers included): in place if both
/// markers are there in order, else appended; a missing file is started with
/// the header that explains the markers. What is outside the markers is kept.
pub fn merge_section(existing: Option<&str>, name: &str, section: &str) -> String {
    let (begin, end) = (begin_marker(name), end_marker(name));
    let section = section.trim_end();
    match existing {
        Some(text) => match (text.find(&begin), text.find(&end)) {
            (Some(b), Some(e)) if b < e => format!("{}{section}{}", &text[..b], &text[e + end.len()..]),
            _ => format!("{}\n\n{section}\n", text.trim_end()),
        },
        None => format!(
            "# Benchmarks\n\nMeasured figures of Shardgate. Each section is regenerated by the benchmark named in it: \
             the lines between its `<!-- name:begin -->` and `<!-- name:end -->` markers are overwritten on every \
             run, so notes belong outside them.\n\n{section}\n"
        ),
    }
}

/// `template` with each `{name}` replaced by its value in `values`. Braces
/// around anything but a name (lowercase letters, digits, `_`) are kept as they are.
///
/// # Panics
/// If the template names a placeholder `values` lacks: a bench's template and
/// its code are written together, so that is a bug to see at once.
pub fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name_len = after.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        match name_len {
            Some(n) if n > 0 && after[n..].starts_with('}') => {
                let name = &after[..n];
                let value =
                    values.iter().find(|(k, _)| *k == name).unwrap_or_else(|| panic!("no value for {{{name}}}"));
                out.push_str(&value.1);
                rest = &after[n + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# Benchmarks\n\nintro\n\n<!-- a:begin -->\nold a\n<!-- a:end -->\n\nnotes on a\n\
                        <!-- b:begin -->\nold b\n<!-- b:end -->\n";

    #[test]
    fn merging_replaces_only_the_named_section_in_place() {
        let merged = merge_section(Some(FILE), "a", "<!-- a:begin -->\nnew a\n<!-- a:end -->\n");
        assert_eq!(merged, FILE.replace("old a", "new a"));
        let merged = merge_section(Some(FILE), "b", "<!-- b:begin -->\nnew b\n<!-- b:end -->");
        assert_eq!(merged, FILE.replace("old b", "new b"));
    }

    #[test]
    fn merging_twice_is_the_same_as_merging_once() {
        let section = "<!-- a:begin -->\nnew a, longer than before\n<!-- a:end -->";
        let once = merge_section(Some(FILE), "a", section);
        assert_eq!(merge_section(Some(&once), "a", section), once);
    }

    #[test]
    fn a_section_without_its_markers_in_the_file_is_appended() {
        let merged = merge_section(Some(FILE), "c", "<!-- c:begin -->\nc\n<!-- c:end -->\n");
        assert_eq!(merged, format!("{}\n\n<!-- c:begin -->\nc\n<!-- c:end -->\n", FILE.trim_end()));
        // Markers in the wrong order are not a section.
        let reversed = "x\n<!-- c:end -->\n<!-- c:begin -->\n";
        assert!(merge_section(Some(reversed), "c", "<!-- c:begin -->\nc\n<!-- c:end -->").starts_with(reversed));
    }

    #[test]
    fn a_missing_file_is_started_with_the_header() {
        let merged = merge_section(None, "a", "<!-- a:begin -->\na\n<!-- a:end -->");
        assert!(merged.starts_with("# Benchmarks\n\n"));
        assert!(merged.ends_with("\n\n<!-- a:begin -->\na\n<!-- a:end -->\n"));
    }

    #[test]
    fn a_section_opens_and_closes_with_its_markers() {
        let mut section = Section::new("a", "Title", "benches/a.rs");
        fmt::Write::write_str(&mut section, "body\n").unwrap();
        let text = section.finish();
        assert!(text.starts_with("<!-- a:begin -->\n## Title\n\n_Generated by `benches/a.rs`; everything between"));
        assert!(text.ends_with("\nbody\n<!-- a:end -->"));
        assert_eq!(merge_section(Some(FILE), "a", &text).matches("<!-- a:").count(), 2);
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![7.0]), Some(7.0));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn criterion_medians_are_read_only_when_every_case_ran_this_time() {
        let dir = std::env::temp_dir().join(format!("bench-report-test-{}", std::process::id()));
        let write = |id: &str, median: f64| {
            let case = dir.join(id.replace('/', "_")).join("new");
            std::fs::create_dir_all(&case).unwrap();
            let estimates = format!(r#"{{"median":{{"point_estimate":{median}}},"mean":{{"point_estimate":1.0}}}}"#);
            std::fs::write(case.join("estimates.json"), estimates).unwrap();
        };
        let before = SystemTime::now() - std::time::Duration::from_secs(1);
        write("x/plugin", 465.5);
        write("x/native", 10.0);
        assert_eq!(criterion_medians(&dir, ["x/plugin", "x/native"], before), Some(vec![465.5, 10.0]));
        // A case this run did not measure (filtered out, or never written).
        assert_eq!(criterion_medians(&dir, ["x/plugin", "x/other"], before), None);
        let after = SystemTime::now() + std::time::Duration::from_secs(60);
        assert_eq!(criterion_medians(&dir, ["x/plugin"], after), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn fill_replaces_named_placeholders_and_keeps_other_braces() {
        let values = [("rate", "15".to_string()), ("engine_2", "SQLite".to_string())];
        assert_eq!(fill("{rate} msg/s on {engine_2}; {} {x y} {", &values), "15 msg/s on SQLite; {} {x y} {");
    }

    #[test]
    #[should_panic(expected = "no value for {missing}")]
    fn fill_refuses_a_placeholder_without_a_value() {
        fill("a {missing} b", &[]);
    }
}

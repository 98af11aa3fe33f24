//! The failover benchmark's report: the figures of each setting
//! ([`Summary`]), the table printed at the end, and the `failover` section of
//! `BENCHMARKS.md`, the template `section.md` filled with them.

use std::fmt::Write as _;
use std::time::Duration;

use bench_report::{fill, provenance, Machine, Section};
use shardgate_core::cluster::Settings;
use shardgate_core::config::DbEngine;

use crate::harness::ClusterSpec;
use crate::run::{failover_bound, Fault, RunResult, Scenario, DRAIN_TIMEOUT, RATE, RECIPIENTS, STEADY, TAIL};

/// The prose of the section; [`section`] fills in its `{names}`.
const TEMPLATE: &str = include_str!("section.md");

/// A duration in seconds, to the millisecond.
fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// One run in one line, for the terminal.
pub fn run_line(r: &RunResult) -> String {
    format!(
        "{}{} -> {}: acceptance gap {} (baseline {}), refused {}, unknown {}, session after {}, delivery gap {}, \
         acked {}, lost {}, resends {}, conflicts {}, bans {}, duplicates {}",
        r.kept_logs.as_ref().map_or(String::new(), |logs| format!(
            "STALLED (no failover while paused; figures include the wake-up; {logs}) "
        )),
        r.old_owner,
        r.new_owner,
        secs(r.acceptance_gap),
        secs(r.baseline_gap),
        r.refused,
        r.unknown,
        r.session_gap.map_or("none".into(), secs),
        r.delivery_gap.map_or("none".into(), secs),
        r.acked,
        r.lost,
        r.resends,
        r.conflicts,
        r.bans,
        r.duplicates
    )
}

/// Median (mean of the middle two for an even count) and max.
fn median_max(values: Vec<Duration>) -> Option<(Duration, Duration)> {
    let max = values.iter().max().copied()?;
    let median = bench_report::median(values.iter().map(Duration::as_secs_f64).collect())?;
    Some((Duration::from_secs_f64(median), max))
}

/// The figures of one setting.
pub struct Summary {
    name: &'static str,
    fault: Fault,
    spec: ClusterSpec,
    planned: usize,
    /// Runs that completed, stalled ones included: the totals count them.
    completed: usize,
    /// Completed runs that did not stall: the medians and maxima are theirs.
    measured: usize,
    /// Runs where a paused primary stalled the cluster until it was woken.
    stalled: usize,
    acceptance: Option<(Duration, Duration)>,
    baseline: Option<(Duration, Duration)>,
    delivery: Option<(Duration, Duration)>,
    session: Option<(Duration, Duration)>,
    /// Runs where no new primary delivered anything.
    no_delivery: usize,
    refused: usize,
    unknown: usize,
    acked: usize,
    conflicts: u64,
    bans: u64,
    duplicates: u64,
    lost: usize,
    resends: u64,
    failures: Vec<String>,
}

impl Summary {
    /// The figures of `scenario` from its runs.
    pub fn of(scenario: &Scenario, runs: &[Result<RunResult, String>]) -> Summary {
        let ok: Vec<&RunResult> = runs.iter().filter_map(|r| r.as_ref().ok()).collect();
        let measured: Vec<&RunResult> = ok.iter().copied().filter(|r| !r.stalled).collect();
        Summary {
            name: scenario.name,
            fault: scenario.fault,
            spec: scenario.spec.clone(),
            planned: scenario.runs,
            completed: ok.len(),
            measured: measured.len(),
            stalled: ok.len() - measured.len(),
            acceptance: median_max(measured.iter().map(|r| r.acceptance_gap).collect()),
            baseline: median_max(measured.iter().map(|r| r.baseline_gap).collect()),
            delivery: median_max(measured.iter().filter_map(|r| r.delivery_gap).collect()),
            session: median_max(measured.iter().filter_map(|r| r.session_gap).collect()),
            no_delivery: measured.iter().filter(|r| r.delivery_gap.is_none()).count(),
            refused: ok.iter().map(|r| r.refused).sum(),
            unknown: ok.iter().map(|r| r.unknown).sum(),
            acked: ok.iter().map(|r| r.acked).sum(),
            conflicts: ok.iter().map(|r| r.conflicts).sum(),
            bans: ok.iter().map(|r| r.bans).sum(),
            duplicates: ok.iter().map(|r| r.duplicates).sum(),
            lost: ok.iter().map(|r| r.lost).sum(),
            resends: ok.iter().map(|r| r.resends).sum(),
            failures: runs.iter().filter_map(|r| r.as_ref().err().cloned()).collect(),
        }
    }

    /// The database and timing, as the table lists them.
    fn settings(&self) -> String {
        format!(
            "{}, heartbeat {} s, unhealthy {} s, session timeout {} s",
            engine_name(self.spec.engine),
            self.spec.heartbeat_interval,
            self.spec.unhealthy_interval,
            self.spec.session_timeout
        )
    }

    /// The delivery gap beyond `unhealthy_interval`: the margin a paused primary costs.
    fn margin_over_unhealthy(&self) -> Option<(Duration, Duration)> {
        let unhealthy = Duration::from_secs_f64(self.spec.unhealthy_interval);
        self.delivery.map(|(median, max)| (median.saturating_sub(unhealthy), max.saturating_sub(unhealthy)))
    }
}

/// Median and max as text; `-` for none.
fn pair(p: Option<(Duration, Duration)>) -> (String, String) {
    p.map_or(("-".into(), "-".into()), |(median, max)| (secs(median), secs(max)))
}

/// The main table, in Markdown (it reads fine on a terminal too).
pub fn summary_table(summaries: &[Summary]) -> String {
    let mut t = String::new();
    t.push_str(
        "| Setting | Fault | Runs measured | Stalled | Acceptance gap median | max | Refused | Delivery gap median \
         | max | Conflicts | Bans | Lost | Resends |\n",
    );
    t.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for s in summaries.iter().filter(|s| s.planned > 0) {
        let (acc_med, acc_max) = pair(s.acceptance);
        let (del_med, del_max) = pair(s.delivery);
        let _ = writeln!(
            t,
            "| {} ({}) | {} | {}/{} | {} | {acc_med} | {acc_max} | {} | {del_med} | {del_max} | {} | {} | {} | {} |",
            s.name,
            s.settings(),
            s.fault.label(),
            s.measured,
            s.planned,
            s.stalled,
            s.refused,
            s.conflicts,
            s.bans,
            s.lost,
            s.resends
        );
    }
    t
}

/// The database as the text names it.
fn engine_name(engine: DbEngine) -> &'static str {
    match engine {
        DbEngine::Sqlite => "SQLite",
        DbEngine::Postgres => "PostgreSQL",
        DbEngine::MySql => "MySQL/MariaDB",
    }
}

/// `reference` over the measured median, as `6.5x`; `-` without a median.
fn ratio(reference: f64, measured: Option<(Duration, Duration)>) -> String {
    match measured {
        Some((median, _)) if median > Duration::ZERO => {
            let r = reference / median.as_secs_f64();
            if r < 10.0 {
                format!("{r:.1}x")
            } else {
                format!("{r:.0}x")
            }
        }
        _ => "-".into(),
    }
}

/// Promotion margin and renewal period under these settings, as the nodes
/// derive them: the text explains the paused path with them.
fn margin_and_renewal(spec: &ClusterSpec) -> (String, String) {
    let settings = Settings {
        heartbeat_interval: spec.heartbeat_interval,
        unhealthy_interval: spec.unhealthy_interval,
        upstream_session_timeout: spec.session_timeout,
        ..Settings::default()
    };
    settings.timing().map_or(("?".into(), "?".into()), |t| (secs(t.promotion_margin), secs(t.renew_every)))
}

/// The setting `name` with `fault`, if any of its runs was measured.
fn measured<'a>(summaries: &'a [Summary], name: &str, fault: Fault) -> Option<&'a Summary> {
    summaries.iter().find(|s| s.name == name && s.fault == fault && s.measured > 0)
}

/// The `failover` section of BENCHMARKS.md: `TEMPLATE` filled with this run's figures.
pub fn section(
    command: &str,
    machine: &Machine,
    results: &[(Scenario, Vec<Result<RunResult, String>>)],
    summaries: &[Summary],
    took: Duration,
) -> Section {
    let profile = if cfg!(debug_assertions) {
        "debug (debug assertions on: figures are not representative)"
    } else {
        "`bench` (inherits `release`: opt-level 3, no debug assertions), binary and bench alike"
    };
    let duration = [("Duration", format!("{:.0} s for the whole bench", took.as_secs_f64()))];
    let spec =
        |name: &str, fault| &summaries.iter().find(|s| s.name == name && s.fault == fault).expect("summarized").spec;
    let (fast, paused, defaults) =
        (spec("fast", Fault::Kill9), spec("fast", Fault::Pause), spec("defaults", Fault::Kill9));
    let settings = [("fast", fast), ("defaults", defaults)].map(|(name, spec)| {
        format!(
            "- {name}: heartbeat_interval {} s, unhealthy_interval {} s (also the shard lease TTL), sim \
             session_timeout {} s; derived promotion margin {}.",
            spec.heartbeat_interval,
            spec.unhealthy_interval,
            spec.session_timeout,
            margin_and_renewal(spec).0
        )
    });
    let runs =
        results.iter().flat_map(|(scenario, runs)| runs.iter().zip(1..).map(move |(r, n)| run_row(scenario, n, r)));
    let values = [
        ("kill_engine", engine_name(fast.engine).to_string()),
        ("pause_engine", engine_name(paused.engine).to_string()),
        ("recipients", RECIPIENTS.to_string()),
        ("rate", format!("{RATE:.0}")),
        ("steady", STEADY.to_string()),
        ("tail_ms", TAIL.as_millis().to_string()),
        ("drain_s", DRAIN_TIMEOUT.as_secs().to_string()),
        ("provenance", provenance(command, machine, &format!("build profile {profile}"), &duration)),
        ("settings", settings.join("\n")),
        ("results", summary_table(summaries).trim_end().to_string()),
        ("setting_notes", lines(summaries.iter().filter(|s| s.planned > 0).map(setting_note))),
        ("anchors", anchor_rows(summaries)),
        ("default_unhealthy", defaults.unhealthy_interval.to_string()),
        ("default_margin", margin_and_renewal(defaults).0),
        ("targets", targets(results, summaries)),
        ("runs", lines(runs)),
    ];
    let mut section = Section::new("failover", "Failover", "benches/failover.rs");
    let _ = section.write_str(&fill(TEMPLATE, &values));
    section
}

/// The items, one a line.
fn lines(lines: impl Iterator<Item = String>) -> String {
    lines.collect::<Vec<_>>().join("\n")
}

/// The line under the results table on one setting.
fn setting_note(s: &Summary) -> String {
    let ((ses_med, ses_max), (base_med, base_max)) = (pair(s.session), pair(s.baseline));
    let mut note = format!(
        "- {} {}: new primary's session opened after {ses_med} (median), {ses_max} (max); baseline acknowledgement \
         gap before the fault {base_med} (median), {base_max} (max); {} acknowledged, {} unanswered requests, {} \
         duplicate deliveries",
        s.name,
        s.fault.label(),
        s.acked,
        s.unknown,
        s.duplicates
    );
    if s.stalled > 0 {
        let _ = write!(
            note,
            "; **{} of {} completed run(s) stalled**: no other coreapp opened a session within {:.0} s of the \
             SIGSTOP, so the zombie was woken (SIGCONT) to see whether the cluster then recovers; their gaps are left \
             out of the medians and maxima, their refused, conflicts, lost and resends are in the totals",
            s.stalled,
            s.completed,
            failover_bound(&s.spec).as_secs_f64()
        );
    }
    if s.no_delivery > 0 {
        let _ = write!(note, "; {} run(s) without any delivery by the new primary", s.no_delivery);
    }
    if s.fault == Fault::Pause {
        let ((m_med, m_max), (margin, renewal)) = (pair(s.margin_over_unhealthy()), margin_and_renewal(&s.spec));
        let _ = write!(
            note,
            "; **observed margin over unhealthy_interval: {m_med} (median), {m_max} (max)**, counted from the pause: \
             the lease expires unhealthy_interval after its last renewal (which precedes the pause by up to one \
             renewal period, {renewal}), the master then waits the promotion margin ({margin}), and the new primary \
             claims, opens its session and resends"
        );
    }
    note.push('.');
    for f in &s.failures {
        let _ = write!(note, "\n  - failed run: {}", f.replace('\n', " "));
    }
    note
}

/// This run's median delivery gaps against the failover times the issue cites.
fn anchor_rows(summaries: &[Summary]) -> String {
    let rows = [
        ("Official on-prem, heartbeat monitoring (seed)", "≈30 s", 30.0, "defaults", Fault::Kill9),
        ("Official on-prem, heartbeat monitoring (seed)", "≈30 s", 30.0, "defaults", Fault::Pause),
        ("Official on-prem, DB-based monitoring (seed)", "≈2 min", 120.0, "defaults", Fault::Kill9),
        ("Patroni, default settings", "≈30-45 s", 30.0, "fast", Fault::Kill9),
        ("Kubernetes Lease leader election", "15-17 s", 15.0, "fast", Fault::Kill9),
        ("Kubernetes Lease leader election", "15-17 s", 15.0, "fast", Fault::Pause),
    ];
    let rows = rows.into_iter().filter_map(|(reference, time, seconds, name, fault)| {
        let summary = measured(summaries, name, fault);
        let delivery = summary.and_then(|s| s.delivery);
        let fault_name = if fault == Fault::Pause { "SIGSTOP" } else { "kill -9" };
        let this_run = delivery.map_or("not measured".into(), |(median, _)| {
            format!("{name} {fault_name}: median delivery gap {}", secs(median))
        });
        let row = format!("| {reference} | {time} | {this_run} | {} |", ratio(seconds, delivery));
        (summary.is_some() || fault == Fault::Kill9).then_some(row)
    });
    lines(rows)
}

/// The targets, each with this run's verdict.
fn targets(results: &[(Scenario, Vec<Result<RunResult, String>>)], summaries: &[Summary]) -> String {
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let mut targets = Vec::new();
    if let Some(s) = measured(summaries, "fast", Fault::Kill9) {
        let (median, max) = s.delivery.unwrap_or((Duration::MAX, Duration::MAX));
        targets.push(format!(
            "- kill -9 with heartbeat 0.2 s: median delivery gap under 1 s: **{}** (median {}, max {}).",
            verdict(median < Duration::from_secs(1)),
            secs(median),
            secs(max)
        ));
    }
    if let Some(s) = measured(summaries, "fast", Fault::Pause) {
        let ((m_med, m_max), (d_med, d_max)) = (pair(s.margin_over_unhealthy()), pair(s.delivery));
        let (margin, renewal) = margin_and_renewal(&s.spec);
        let overall = if s.stalled == 0 && s.measured == s.planned {
            "**met** in every run".to_string()
        } else {
            format!("**NOT met** in {} of {} runs (stalled or failed)", s.planned - s.measured, s.planned)
        };
        targets.push(format!(
            "- paused primary: within unhealthy_interval ({} s) plus a stated margin: delivery gap {d_med} median, \
             {d_max} max, i.e. a margin of {m_med} median, {m_max} max over unhealthy_interval (promotion margin \
             {margin} after the lease expiry, less up to one renewal period, {renewal}, plus claim and session); \
             {overall}.",
            s.spec.unhealthy_interval
        ));
    }
    let completed: Vec<&Summary> = summaries.iter().filter(|s| s.completed > 0).collect();
    let (refused, unknown) =
        (completed.iter().map(|s| s.refused).sum::<usize>(), completed.iter().map(|s| s.unknown).sum::<usize>());
    let acceptance: Vec<String> = completed
        .iter()
        .map(|s| {
            let (median, max) = pair(s.acceptance);
            format!("{} {}: {median} median, {max} max", s.name, s.fault.label())
        })
        .collect();
    let stalled = results.iter().flat_map(|(_, runs)| runs.iter().flatten().filter(|r| r.stalled));
    let stalled_note = match median_max(stalled.map(|r| r.acceptance_gap).collect()) {
        Some((_, max)) => {
            format!(
                "; in the stalled run(s), the API accepted nothing for up to {} (until the zombie was woken)",
                secs(max)
            )
        }
        None => String::new(),
    };
    targets.push(format!(
        "- acceptance gap ideally none: {refused} refused and {unknown} unanswered requests in all runs; longest gap \
         between acknowledgements {}{stalled_note}.",
        acceptance.join("; ")
    ));
    let conflicts: u64 = completed.iter().map(|s| s.conflicts + s.bans).sum();
    let lost: usize = completed.iter().map(|s| s.lost).sum();
    targets.push(format!(
        "- zero conflicts, zero bans, nothing lost: **{}** ({conflicts} conflicts+bans, {lost} lost).",
        verdict(conflicts == 0 && lost == 0)
    ));
    targets.join("\n")
}

/// Run `n` of `scenario` as a row of the "Every run" table.
fn run_row(scenario: &Scenario, n: usize, run: &Result<RunResult, String>) -> String {
    let (setting, fault) = (scenario.name, scenario.fault.label());
    let r = match run {
        Ok(r) => r,
        Err(e) => {
            return format!(
                "| {setting} | {fault} | {n} | failed: {} |||||||||||",
                e.replace('|', "/").replace('\n', " ")
            )
        }
    };
    let stalled = if r.stalled { " (stalled until woken)" } else { "" };
    format!(
        "| {setting} | {fault} | {n} | {} → {}{stalled} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r.old_owner,
        r.new_owner,
        secs(r.acceptance_gap),
        secs(r.baseline_gap),
        r.refused,
        r.unknown,
        r.session_gap.map_or("none".into(), secs),
        r.delivery_gap.map_or("none".into(), secs),
        r.acked,
        r.lost,
        r.resends,
        r.conflicts,
        r.bans
    )
}

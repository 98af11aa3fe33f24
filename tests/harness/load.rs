//! A steady send load: one sequential sender per recipient (so each
//! recipient's messages have a defined order), each pacing itself to a
//! fixed rate, recording every outcome and when it happened.

use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What became of one request.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Answered with this message id: the message is durable.
    Acked(String),
    /// Refused with a client error (4xx): not stored.
    Refused(String),
    /// No answer, or a server error: may or may not be stored.
    Unknown(String),
}

/// One request of the load.
#[derive(Debug, Clone)]
pub struct Record {
    /// Recipient.
    pub to: String,
    /// Text sent.
    pub body: String,
    /// When the request was sent, from the start of the load.
    pub sent_at: Duration,
    /// When it was answered, from the start of the load.
    pub answered_at: Duration,
    /// Result.
    pub outcome: Outcome,
}

/// Everything a load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Every request in the order they were answered.
    pub records: Vec<Record>,
    /// When the load started: the origin of the records' times.
    pub started: Option<Instant>,
}

impl LoadReport {
    /// One report of several loads run one after another against the same
    /// sim, their records' times moved to the first load's origin, so that
    /// the checks judge everything the sim holds.
    pub fn merged(reports: &[LoadReport]) -> LoadReport {
        let origin = reports.iter().filter_map(|r| r.started).min();
        let mut records: Vec<Record> = reports
            .iter()
            .flat_map(|report| {
                let shift = match (report.started, origin) {
                    (Some(started), Some(origin)) => started - origin,
                    _ => Duration::ZERO,
                };
                report.records.iter().map(move |r| Record {
                    sent_at: r.sent_at + shift,
                    answered_at: r.answered_at + shift,
                    ..r.clone()
                })
            })
            .collect();
        records.sort_by_key(|r| r.answered_at);
        LoadReport { records, started: origin }
    }

    /// Ids of acknowledged messages.
    pub fn acked_ids(&self) -> Vec<String> {
        self.records
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Acked(id) => Some(id.clone()),
                _ => None,
            })
            .collect()
    }

    /// Per recipient, acknowledged ids in acknowledgement order.
    pub fn acked_by_recipient(&self) -> Vec<(String, Vec<String>)> {
        let mut by: std::collections::BTreeMap<String, Vec<(Duration, String)>> = Default::default();
        for r in &self.records {
            if let Outcome::Acked(id) = &r.outcome {
                by.entry(r.to.clone()).or_default().push((r.answered_at, id.clone()));
            }
        }
        by.into_iter()
            .map(|(to, mut ids)| {
                ids.sort();
                (to, ids.into_iter().map(|(_, id)| id).collect())
            })
            .collect()
    }

    /// Requests whose outcome is unknown.
    pub fn unknown_outcomes(&self) -> usize {
        self.records.iter().filter(|r| matches!(r.outcome, Outcome::Unknown(_))).count()
    }

    /// Requests refused with an error answer.
    pub fn refused(&self) -> usize {
        self.records.iter().filter(|r| matches!(r.outcome, Outcome::Refused(_))).count()
    }

    /// The longest time between two consecutive acknowledgements: how long
    /// the API stopped accepting.
    pub fn longest_acceptance_gap(&self) -> Duration {
        let mut times: Vec<Duration> =
            self.records.iter().filter(|r| matches!(r.outcome, Outcome::Acked(_))).map(|r| r.answered_at).collect();
        times.sort();
        times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
    }
}

/// A running load.
pub struct Load {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Record>>>,
    /// When it started.
    pub started: Instant,
}

/// Starts `recipients` senders, each sending `per_second` messages a second.
pub fn start(http: reqwest::Client, api: String, token: String, recipients: usize, per_second: f64) -> Load {
    let (stop, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let period = Duration::from_secs_f64(1.0 / per_second);
    let tasks = (0..recipients)
        .map(|r| {
            let (http, api, token, stop_rx) = (http.clone(), api.clone(), token.clone(), stop_rx.clone());
            let to = format!("1555{:07}", 1000 + r);
            tokio::spawn(async move {
                let mut records = Vec::new();
                let mut next = Instant::now();
                for n in 0u32.. {
                    if *stop_rx.borrow() {
                        break;
                    }
                    let body = format!("load {to} #{n}");
                    let sent_at = started.elapsed();
                    let outcome = match super::send_text(&http, &api, &token, &to, &body).await {
                        Ok(id) => Outcome::Acked(id),
                        // A 5xx (say, the database cut off around the commit) or a
                        // lost answer leaves the outcome open; a 4xx is a refusal.
                        Err(e) if e.starts_with('4') => Outcome::Refused(e),
                        Err(e) => Outcome::Unknown(e),
                    };
                    records.push(Record { to: to.clone(), body, sent_at, answered_at: started.elapsed(), outcome });
                    next += period;
                    tokio::time::sleep_until(next.max(Instant::now())).await;
                }
                records
            })
        })
        .collect();
    Load { stop, tasks, started }
}

impl Load {
    /// Stops sending and returns what happened.
    pub async fn finish(self) -> LoadReport {
        let _ = self.stop.send(true);
        let mut records = Vec::new();
        for task in self.tasks {
            records.extend(task.await.expect("load task"));
        }
        records.sort_by_key(|r| r.answered_at);
        LoadReport { records, started: Some(self.started) }
    }
}

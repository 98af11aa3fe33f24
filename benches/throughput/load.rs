//! The built-in load generator: `POST /v1/messages` of a text message to a
//! pseudo-random recipient among [`RECIPIENTS`], either closed-loop (a fixed
//! number of connections, each sending its next request when the last one is
//! answered) or open-loop (requests started at a fixed rate whatever the
//! answers do, their latency counted from when they were due, so a stall is
//! not hidden by the generator waiting for it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Distinct recipients the load spreads over.
pub const RECIPIENTS: u64 = 1000;
/// Open-loop requests in flight at most; past it, requests due are counted as missed.
const OPEN_LOOP_IN_FLIGHT: usize = 2048;

/// Where and as whom the load sends.
#[derive(Clone)]
pub struct Target {
    pub http: reqwest::Client,
    /// `http://host:port/v1/messages`.
    pub url: String,
    /// Bearer token.
    pub token: String,
}

/// What one phase of load did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Latencies of the answered-with-success requests, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Requests answered with an error or not at all.
    pub errors: u64,
    /// Open-loop requests never started because too many were in flight.
    pub missed: u64,
    /// How long the phase sent.
    pub elapsed: Duration,
}

impl Outcome {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p`-quantile of the latencies, in milliseconds.
    pub fn quantile_ms(&mut self, p: f64) -> f64 {
        self.latencies_us.sort_unstable();
        bench_report::percentile(&self.latencies_us, p).map_or(f64::NAN, |us| us as f64 / 1000.0)
    }

    fn absorb(&mut self, other: Outcome) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        self.missed += other.missed;
    }
}

/// The body of request `n`: a text to a recipient picked by a multiplicative hash of `n`.
fn body(n: u64) -> String {
    let recipient = 15_550_000_000 + n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % RECIPIENTS;
    format!(r#"{{"to":"{recipient}","type":"text","text":{{"body":"throughput #{n}"}}}}"#)
}

/// Sends request `n`; whether it was answered with a success.
async fn send(target: &Target, n: u64) -> bool {
    let request = target
        .http
        .post(&target.url)
        .bearer_auth(&target.token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body(n));
    match request.send().await {
        Ok(response) => {
            let ok = response.status().is_success();
            // Read the body so the connection goes back to the pool.
            ok & response.bytes().await.is_ok()
        }
        Err(_) => false,
    }
}

/// `connections` senders, each sending back to back for `duration`.
pub async fn closed_loop(target: &Target, connections: usize, duration: Duration) -> Outcome {
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let senders: Vec<_> = (0..connections)
        .map(|_| {
            let (target, counter) = (target.clone(), counter.clone());
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    if send(&target, n).await {
                        outcome.latencies_us.push(sent.elapsed().as_micros() as u64);
                    } else {
                        outcome.errors += 1;
                    }
                }
                outcome
            })
        })
        .collect();
    let mut total = Outcome::default();
    for sender in senders {
        total.absorb(sender.await.expect("a load sender panicked"));
    }
    total.elapsed = started.elapsed();
    total
}

/// Requests due at `rate` a second for `duration`, each timed from when it was due.
pub async fn open_loop(target: &Target, rate: f64, duration: Duration) -> Outcome {
    let in_flight = Arc::new(Semaphore::new(OPEN_LOOP_IN_FLIGHT));
    let started = Instant::now();
    let total_requests = (rate * duration.as_secs_f64()) as u64;
    let mut tasks = Vec::with_capacity(total_requests as usize);
    let mut missed = 0;
    for n in 0..total_requests {
        let due = started + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            missed += 1;
            continue;
        };
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let ok = send(&target, n).await;
            drop(permit);
            ok.then(|| due.elapsed().as_micros() as u64)
        }));
    }
    let elapsed = started.elapsed();
    let mut outcome = Outcome { missed, elapsed, ..Outcome::default() };
    for task in tasks {
        match task.await.expect("a load request panicked") {
            Some(latency) => outcome.latencies_us.push(latency),
            None => outcome.errors += 1,
        }
    }
    outcome
}

//! The deadline of a call, and whose fault it is when a call reaches it.
//!
//! The deadline is counted in epoch ticks, which measure wall time: a call
//! whose thread the OS kept waiting for a CPU reaches it without the plugin
//! having done anything wrong. So at the deadline the host probes: it lets
//! the call run `PROBE_TICKS` more ticks and measures the thread's CPU time
//! over them.
//! - It ran for at least 1/`STARVED_BELOW` of the probe: the plugin is
//!   burning CPU past its deadline. It is interrupted and blamed (the
//!   failure counts towards unloading it). The caller waited the deadline
//!   plus `PROBE_TICKS` + 1 ticks.
//! - It barely ran: the host starved it. A call that is not looping
//!   finishes within microseconds once it gets a CPU, so it is given
//!   another probe, until one more deadline has passed; then it is
//!   interrupted and the failure is the host's. The caller waited at most
//!   twice the deadline plus `PROBE_TICKS` + 1 ticks.
//!
//! So a well-behaved plugin is never unloaded because its host was
//! overloaded. The check costs nothing on the normal path (one field reset
//! per call); the thread's CPU time is read only past the deadline.
//!
//! Each store's state (`state.rs`) holds one [`DeadlineCheck`]; wasmtime's
//! epoch callback (set in `engine.rs`) hands it each deadline reached.

use std::time::{Duration, Instant};

use wasmtime::UpdateDeadline;

/// Ticks of each CPU probe after the deadline.
pub(crate) const PROBE_TICKS: u64 = 2;

/// A call that ran less than 1/`STARVED_BELOW` of a probe was starved.
const STARVED_BELOW: u32 = 8;

/// What the host knows of a call that reached its deadline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Overrun {
    /// Probing: when the deadline was reached, and when this probe started
    /// (wall clock and the thread's CPU time).
    Probing { reached: Instant, wall: Instant, cpu: Duration },
    /// Interrupted; `share` is the part of the last probe the call ran.
    Interrupted { starved: bool, share: f64 },
}

/// The deadline check of one instance: kept in its store's state, and
/// consulted by the epoch callback each time the running call reaches the
/// armed epoch deadline.
#[derive(Debug)]
pub(crate) struct DeadlineCheck {
    /// The call deadline: how long a starved call is given past it.
    deadline: Duration,
    /// Set once the running call has reached its deadline.
    overrun: Option<Overrun>,
}

impl DeadlineCheck {
    /// A check for calls with this deadline.
    pub fn new(deadline: Duration) -> DeadlineCheck {
        DeadlineCheck { deadline, overrun: None }
    }

    /// Forgets the previous call's overrun: a new call starts.
    #[inline]
    pub fn start_call(&mut self) {
        self.overrun = None;
    }

    /// What the check found of the running (or last) call, if it reached its deadline.
    pub fn overrun(&self) -> Option<Overrun> {
        self.overrun
    }

    /// Called (through wasmtime's epoch callback) when a call or an
    /// instantiation reaches its deadline: probe on, or interrupt.
    pub fn reached(&mut self) -> UpdateDeadline {
        let (now, Some(cpu)) = (Instant::now(), thread_cpu_time()) else {
            return UpdateDeadline::Interrupt;
        };
        let reached = match self.overrun {
            Some(Overrun::Probing { reached, wall, cpu: cpu_then }) => {
                let ran = cpu.saturating_sub(cpu_then);
                let waited = now.saturating_duration_since(wall).max(Duration::from_nanos(1));
                let share = ran.as_secs_f64() / waited.as_secs_f64();
                let starved = ran * STARVED_BELOW < waited;
                if !starved || now.saturating_duration_since(reached) >= self.deadline {
                    self.overrun = Some(Overrun::Interrupted { starved, share });
                    return UpdateDeadline::Interrupt;
                }
                reached
            }
            _ => now,
        };
        self.overrun = Some(Overrun::Probing { reached, wall: now, cpu });
        UpdateDeadline::Continue(PROBE_TICKS)
    }
}

/// CPU time of the calling thread, where the platform tells it.
fn thread_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> DeadlineCheck {
        DeadlineCheck::new(Duration::from_millis(50))
    }

    /// Reaches the deadline, runs `meanwhile` as the probe, and says whether
    /// the call was interrupted then.
    fn probe(check: &mut DeadlineCheck, meanwhile: impl FnOnce()) -> bool {
        let first = check.reached();
        assert!(matches!(first, UpdateDeadline::Continue(PROBE_TICKS)), "the deadline first starts a probe");
        meanwhile();
        matches!(check.reached(), UpdateDeadline::Interrupt)
    }

    #[test]
    fn call_that_kept_the_cpu_busy_past_the_deadline_is_blamed_on_the_plugin() {
        let mut check = check();
        let spin = || {
            let until = Instant::now() + Duration::from_millis(20);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        };
        assert!(probe(&mut check, spin), "interrupted after one probe");
        assert!(matches!(check.overrun(), Some(Overrun::Interrupted { starved: false, .. })));
    }

    #[test]
    fn call_kept_off_the_cpu_past_the_deadline_is_blamed_on_the_host() {
        let mut check = check();
        let off_cpu = || std::thread::sleep(Duration::from_millis(20));
        assert!(!probe(&mut check, off_cpu), "a starved call gets another probe");
        std::thread::sleep(Duration::from_millis(40));
        // One deadline (50 ms) after reaching it, still starved: interrupted.
        let last = check.reached();
        assert!(matches!(last, UpdateDeadline::Interrupt));
        assert!(matches!(check.overrun(), Some(Overrun::Interrupted { starved: true, .. })));
    }

    #[test]
    fn a_new_call_forgets_the_last_overrun() {
        let mut check = check();
        check.reached();
        assert!(check.overrun().is_some());
        check.start_call();
        assert_eq!(check.overrun(), None);
    }
}

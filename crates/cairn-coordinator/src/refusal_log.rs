//! Rate-limited logging of refused activations. A crash-looping marble with a wrong measurement
//! retries many times a second (field case FR-35); logging each refusal would flood the log and
//! cost the Coordinator more than the refusal itself. The first refusals of each window are logged
//! in full, the rest are counted per marble type and reason and summarised once the window ends.
//! Metrics still count every refusal.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refusals logged in full per window.
pub const FULL_LINES_PER_WINDOW: u32 = 10;
/// Length of one window.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Counts refusals and decides which ones get a full log line.
#[derive(Debug)]
pub struct RefusalLog {
    full_lines: u32,
    window: Duration,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    logged: u32,
    /// (marble type, reason kind) → refusals not logged in full.
    suppressed: BTreeMap<(String, String), u64>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog::new(FULL_LINES_PER_WINDOW, WINDOW)
    }
}

impl RefusalLog {
    /// A log that writes `full_lines` refusals in full per `window`.
    pub fn new(full_lines: u32, window: Duration) -> Self {
        RefusalLog {
            full_lines,
            window,
            state: Mutex::new(Window {
                start: Instant::now(),
                logged: 0,
                suppressed: BTreeMap::new(),
            }),
        }
    }

    /// Records one refusal; returns whether it was logged in full.
    pub fn record(
        &self,
        marble_type: &str,
        kind: &str,
        remote: Option<SocketAddr>,
        error: &dyn std::fmt::Display,
    ) -> bool {
        let Ok(mut w) = self.state.lock() else {
            return false;
        };
        self.roll(&mut w, Instant::now());
        if w.logged < self.full_lines {
            w.logged += 1;
            tracing::warn!(
                marble_type = %marble_type,
                remote = ?remote,
                error = %error,
                "marble activation refused"
            );
            if w.logged == self.full_lines {
                tracing::warn!(
                    "further activation refusals in the next {}s are counted and summarised, not logged one by one",
                    self.window.as_secs()
                );
            }
            true
        } else {
            *w.suppressed
                .entry((marble_type.to_string(), kind.to_string()))
                .or_default() += 1;
            false
        }
    }

    /// Writes the summary of a finished window; call periodically so a burst's summary appears
    /// even when no refusal follows it.
    pub fn tick(&self) {
        if let Ok(mut w) = self.state.lock() {
            self.roll(&mut w, Instant::now());
        }
    }

    /// Refusals counted but not yet summarised.
    pub fn pending(&self) -> u64 {
        self.state
            .lock()
            .map(|w| w.suppressed.values().sum())
            .unwrap_or(0)
    }

    fn roll(&self, w: &mut Window, now: Instant) {
        if now.duration_since(w.start) < self.window {
            return;
        }
        if !w.suppressed.is_empty() {
            let total: u64 = w.suppressed.values().sum();
            let by_reason = w
                .suppressed
                .iter()
                .map(|((t, k), n)| format!("{t}/{k}: {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            tracing::warn!(
                refusals = total,
                by_type_and_reason = %by_reason,
                "activation refusals not logged one by one in the last {}s",
                now.duration_since(w.start).as_secs()
            );
            w.suppressed.clear();
        }
        w.start = now;
        w.logged = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_refusals_in_full_and_counts_the_rest() {
        let log = RefusalLog::new(3, Duration::from_secs(3600));
        let logged: Vec<bool> = (0..10)
            .map(|i| log.record("web", "PermissionDenied", None, &format!("refusal {i}")))
            .collect();
        assert_eq!(
            logged,
            [true, true, true, false, false, false, false, false, false, false]
        );
        assert_eq!(log.pending(), 7);
    }

    #[test]
    fn a_new_window_summarises_and_logs_in_full_again() {
        let log = RefusalLog::new(1, Duration::from_millis(20));
        assert!(log.record("web", "PermissionDenied", None, &"a"));
        assert!(!log.record("web", "PermissionDenied", None, &"b"));
        assert!(!log.record("db", "NotFound", None, &"c"));
        assert_eq!(log.pending(), 2);
        std::thread::sleep(Duration::from_millis(30));
        log.tick();
        assert_eq!(log.pending(), 0);
        assert!(log.record("web", "PermissionDenied", None, &"d"));
    }
}

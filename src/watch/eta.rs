//! When a run finishes: its step rate from the progress it recorded (each evaluation's
//! metrics row, the newest checkpoint), and the steps it has left at that rate; and, for
//! runs not started, their work at the rate measured on the others.
//!
//! Recorded times are training seconds over all of a run's sessions (`wall_s` of metrics
//! rows and checkpoints, evaluations and checkpoints included, the time between sessions
//! not), so a resumed run's rate is not diluted by the pause.

/// A point a run recorded: `step` reached after `train_s` seconds of training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressPoint {
    pub step: u64,
    pub train_s: f64,
}

/// The step rate is measured over the last [`RATE_WINDOW_SHARE`] of the training time
/// recorded, at most [`RATE_WINDOW_S`] (and at least the last interval between two
/// points): recent enough to follow a change of load or machine, long enough to average
/// over several evaluations of a small run.
pub const RATE_WINDOW_SHARE: f64 = 0.25;
/// See [`RATE_WINDOW_SHARE`].
pub const RATE_WINDOW_S: f64 = 600.0;

/// Where a run stands and when it finishes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Steps per second of training, evaluations and checkpoints included.
    pub steps_per_s: f64,
    /// The step reached by now: the last recorded one, plus the steps the rate gives the
    /// time since it was recorded when the run is training now (at most the last step).
    pub step: u64,
    /// Seconds until the last step.
    pub remaining_s: f64,
}

/// The estimate for a run of `total_steps` from its recorded `points` (in any order).
/// `since_last_s`: when the run is training now, the wall-clock seconds since its newest
/// point was recorded; `None` when no process trains it. `None` when the points give no
/// rate (nothing recorded yet).
pub fn estimate(
    points: &[ProgressPoint],
    total_steps: u64,
    since_last_s: Option<f64>,
) -> Option<Estimate> {
    let steps_per_s = step_rate(points)?;
    let last = points.iter().max_by_key(|p| p.step)?;
    let left = total_steps.saturating_sub(last.step) as f64 / steps_per_s;
    let since = since_last_s.unwrap_or(0.0).max(0.0);
    Some(Estimate {
        steps_per_s,
        step: (last.step + (since * steps_per_s) as u64).min(total_steps.max(last.step)),
        remaining_s: (left - since).max(0.0),
    })
}

/// Steps per second between the newest point and the oldest one within the window (see
/// [`RATE_WINDOW_SHARE`]) or, when none other is that recent, the one before; a run starts
/// at step 0 after 0 seconds.
pub fn step_rate(points: &[ProgressPoint]) -> Option<f64> {
    let mut sorted: Vec<ProgressPoint> = points.to_vec();
    sorted.push(ProgressPoint {
        step: 0,
        train_s: 0.0,
    });
    sorted.sort_by(|a, b| a.step.cmp(&b.step).then(a.train_s.total_cmp(&b.train_s)));
    // A checkpoint saved at an evaluation records the same step as its metrics row.
    sorted.dedup_by_key(|p| p.step);
    let last = *sorted.last()?;
    let earlier = &sorted[..sorted.len() - 1];
    let window = (RATE_WINDOW_SHARE * last.train_s).min(RATE_WINDOW_S);
    let in_window = earlier
        .iter()
        .position(|p| p.train_s >= last.train_s - window)
        .unwrap_or(earlier.len());
    let first = earlier.get(in_window.min(earlier.len().saturating_sub(1)))?;
    let (steps, seconds) = (
        last.step.checked_sub(first.step)? as f64,
        last.train_s - first.train_s,
    );
    (steps > 0.0 && seconds > 0.0).then_some(steps / seconds)
}

/// Seconds to train `macs` multiply-accumulates at the rate the `measured` runs reached:
/// (MACs trained, training seconds) of each, pooled. `None` without a measurement.
pub fn seconds_for_work(macs: f64, measured: &[(f64, f64)]) -> Option<f64> {
    let (done, seconds) = measured
        .iter()
        .fold((0.0, 0.0), |(m, s), (dm, ds)| (m + dm, s + ds));
    (done > 0.0 && seconds > 0.0).then(|| macs * seconds / done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(list: &[(u64, f64)]) -> Vec<ProgressPoint> {
        list.iter()
            .map(|&(step, train_s)| ProgressPoint { step, train_s })
            .collect()
    }

    #[test]
    fn a_steady_run_finishes_at_its_rate() {
        // 10 steps/s, evaluated every 100 steps.
        let p = points(&[(100, 10.0), (200, 20.0), (300, 30.0), (400, 40.0)]);
        let e = estimate(&p, 1200, None).unwrap();
        assert!((e.steps_per_s - 10.0).abs() < 1e-9);
        assert_eq!(e.step, 400);
        assert!((e.remaining_s - 80.0).abs() < 1e-9);
    }

    #[test]
    fn a_run_training_now_has_gone_on_since_its_last_point() {
        let p = points(&[(100, 10.0), (200, 20.0)]);
        let e = estimate(&p, 1200, Some(5.0)).unwrap();
        assert_eq!(e.step, 250);
        assert!((e.remaining_s - 95.0).abs() < 1e-9);
        // Past its end by the rate: finishing, not negative.
        let late = estimate(&p, 1200, Some(500.0)).unwrap();
        assert_eq!((late.step, late.remaining_s), (1200, 0.0));
    }

    #[test]
    fn the_rate_follows_the_recent_window() {
        // A short run that speeds up: its last quarter, 30 of 120 s, at 4 steps/s.
        let mut list: Vec<(u64, f64)> = (1..=9).map(|i| (i * 10, i as f64 * 10.0)).collect();
        list.extend((1..=3).map(|i| (90 + i * 40, 90.0 + i as f64 * 10.0)));
        let rate = step_rate(&points(&list)).unwrap();
        assert!((rate - 4.0).abs() < 1e-9, "{rate}");
        // A long one: 1 step/s for an hour, then 4 steps/s for the last 10 minutes.
        let mut list: Vec<(u64, f64)> = (1..=6).map(|i| (i * 600, i as f64 * 600.0)).collect();
        list.extend((1..=4).map(|i| (3600 + i * 600, 3600.0 + i as f64 * 150.0)));
        let rate = step_rate(&points(&list)).unwrap();
        assert!((rate - 4.0).abs() < 1e-9, "{rate}");
        // One long interval: the rate over it, from the start of the run.
        let rate = step_rate(&points(&[(5000, 2500.0)])).unwrap();
        assert!((rate - 2.0).abs() < 1e-9, "{rate}");
        // Evaluations far apart: the last interval.
        let rate = step_rate(&points(&[(1000, 1000.0), (3000, 2000.0)])).unwrap();
        assert!((rate - 2.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn nothing_recorded_gives_no_estimate() {
        assert_eq!(estimate(&[], 100, Some(3.0)), None);
        assert_eq!(step_rate(&points(&[(0, 0.0)])), None);
    }

    #[test]
    fn work_not_started_at_the_pooled_rate() {
        // 2e12 MACs in 100 s and 1e12 in 100 s: 1.5e10 MAC/s.
        let s = seconds_for_work(3e12, &[(2e12, 100.0), (1e12, 100.0)]).unwrap();
        assert!((s - 200.0).abs() < 1e-9, "{s}");
        assert_eq!(seconds_for_work(1e12, &[]), None);
    }
}

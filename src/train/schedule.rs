//! The learning-rate schedule: exponential decay by epochs, with optional linear warm-up.
//!
//! The paper: "learning rate of 0.045, decayed every two epochs using an exponential rate of
//! 0.94" (section 4). TF's `exponential_decay` with `staircase=True` is the step form.

use serde::{Deserialize, Serialize};

/// Errors of an invalid schedule; each names the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// A field that must be finite and positive is not.
    #[error("lr schedule: `{field}` must be finite and > 0, got {value}")]
    NotPositive { field: &'static str, value: f64 },
    /// `warmup_epochs` is negative or not finite.
    #[error("lr schedule: `warmup_epochs` must be finite and >= 0, got {0}")]
    BadWarmup(f64),
}

/// Learning rate as a function of the (fractional) epoch:
///
/// ```text
/// decayed(e) = base_lr · decay_factor^(e / decay_epochs)          (continuous)
///            = base_lr · decay_factor^floor(e / decay_epochs)     (staircase)
/// lr(e)      = decayed(e) · min(1, e / warmup_epochs)             (warm-up, if > 0)
/// ```
///
/// The decay clock starts at epoch 0, not at the end of warm-up, and the warm-up ramps
/// towards the decayed curve, so `lr` is continuous at the end of warm-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LrSchedule {
    /// Learning rate at epoch 0 (after warm-up): 0.045 in the paper.
    pub base_lr: f64,
    /// Multiplier applied per `decay_epochs`: 0.94 in the paper.
    pub decay_factor: f64,
    /// Epochs per decay: 2 in the paper.
    pub decay_epochs: f64,
    /// Decay in steps (`true`, as the paper's "every two epochs") or smoothly.
    pub staircase: bool,
    /// Length of the linear warm-up from 0, in epochs; 0 disables it (the paper has none).
    pub warmup_epochs: f64,
    /// The linear-scaling rule (Goyal et al., 2017): when set, `base_lr` is the rate for a
    /// global batch of this many images and is multiplied by `global batch / reference_batch`
    /// (e.g. 640 for the paper's 20 replicas x 32). Unset (the default): `base_lr` is used as
    /// is for the run's global batch. Left out of the hash when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_batch: Option<usize>,
}

impl Default for LrSchedule {
    fn default() -> Self {
        Self {
            base_lr: 0.045,
            decay_factor: 0.94,
            decay_epochs: 2.0,
            staircase: true,
            warmup_epochs: 0.0,
            reference_batch: None,
        }
    }
}

impl LrSchedule {
    /// Checks that every field is usable.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        for (field, value) in [
            ("base_lr", self.base_lr),
            ("decay_factor", self.decay_factor),
            ("decay_epochs", self.decay_epochs),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(ScheduleError::NotPositive { field, value });
            }
        }
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            return Err(ScheduleError::BadWarmup(self.warmup_epochs));
        }
        if self.reference_batch == Some(0) {
            return Err(ScheduleError::NotPositive {
                field: "reference_batch",
                value: 0.0,
            });
        }
        Ok(())
    }

    /// The factor `base_lr` is multiplied by for a global batch of `global_batch` images.
    pub fn batch_scale(&self, global_batch: usize) -> f64 {
        match self.reference_batch {
            Some(reference) => global_batch as f64 / reference as f64,
            None => 1.0,
        }
    }

    /// The learning rate at fractional epoch `epoch` (negative epochs count as 0).
    pub fn lr_at(&self, epoch: f64) -> f64 {
        let epoch = epoch.max(0.0);
        let periods = epoch / self.decay_epochs;
        let periods = if self.staircase {
            periods.floor()
        } else {
            periods
        };
        let decayed = self.base_lr * self.decay_factor.powf(periods);
        if self.warmup_epochs > 0.0 && epoch < self.warmup_epochs {
            decayed * epoch / self.warmup_epochs
        } else {
            decayed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-15
    }

    #[test]
    fn staircase_holds_then_drops_every_two_epochs() {
        let s = LrSchedule::default();
        assert!(close(s.lr_at(0.0), 0.045));
        assert!(close(s.lr_at(1.999), 0.045));
        assert!(close(s.lr_at(2.0), 0.045 * 0.94));
        assert!(close(s.lr_at(3.5), 0.045 * 0.94));
        assert!(close(s.lr_at(10.0), 0.045 * 0.94f64.powi(5)));
    }

    #[test]
    fn continuous_decays_between_steps() {
        let s = LrSchedule {
            staircase: false,
            ..LrSchedule::default()
        };
        assert!(close(s.lr_at(1.0), 0.045 * 0.94f64.sqrt()));
        assert!(close(s.lr_at(2.0), 0.045 * 0.94));
        assert!(close(s.lr_at(3.0), 0.045 * 0.94f64.powf(1.5)));
    }

    #[test]
    fn warmup_ramps_linearly_to_the_decayed_curve() {
        let s = LrSchedule {
            warmup_epochs: 4.0,
            ..LrSchedule::default()
        };
        assert!(close(s.lr_at(0.0), 0.0));
        assert!(close(s.lr_at(1.0), 0.045 * 0.25));
        // inside warm-up the staircase has already dropped once at epoch 2
        assert!(close(s.lr_at(3.0), 0.045 * 0.94 * 0.75));
        assert!(close(s.lr_at(4.0), 0.045 * 0.94 * 0.94));
        assert!(close(s.lr_at(-1.0), 0.0));
    }

    #[test]
    fn config_has_paper_defaults_and_rejects_unknown_keys() {
        let s: LrSchedule = serde_json::from_str(r#"{"warmup_epochs": 1.5}"#).unwrap();
        assert_eq!(
            s,
            LrSchedule {
                warmup_epochs: 1.5,
                ..LrSchedule::default()
            }
        );
        let err = serde_json::from_str::<LrSchedule>(r#"{"base_rate": 0.1}"#).unwrap_err();
        assert!(err.to_string().contains("base_rate"), "{err}");
    }

    #[test]
    fn validation_names_the_bad_field() {
        let s = LrSchedule {
            decay_epochs: 0.0,
            ..LrSchedule::default()
        };
        assert_eq!(
            s.validate(),
            Err(ScheduleError::NotPositive {
                field: "decay_epochs",
                value: 0.0
            })
        );
        assert!(LrSchedule::default().validate().is_ok());
    }

    #[test]
    fn the_linear_scaling_rule_multiplies_by_global_over_reference_batch() {
        let plain = LrSchedule::default();
        assert_eq!(plain.batch_scale(640), 1.0);
        let scaled = LrSchedule {
            reference_batch: Some(640),
            ..LrSchedule::default()
        };
        assert_eq!(scaled.batch_scale(64), 0.1);
        assert_eq!(scaled.batch_scale(1280), 2.0);
        let zero = LrSchedule {
            reference_batch: Some(0),
            ..LrSchedule::default()
        };
        assert!(zero.validate().is_err());
        // Unset, it is not written: existing runs keep their hashes.
        assert!(!serde_json::to_string(&plain)
            .unwrap()
            .contains("reference_batch"));
    }
}

//! Verdicts on the paper's claims from the data: each check is a pure function of stored
//! metrics or evaluations, states the claim, and says what the data shows and how strongly.

mod evaluation;
mod final_error;
mod training_speed;

pub use evaluation::{ensembles_lower_error, more_crops_lower_error, EnsembleRow, TableErrors};
pub use final_error::{residual_scaling_prevents_death, size_over_residual, Network};
pub use training_speed::residual_speeds_up_training;

/// Metrics rows with the given (epoch, top-1 error) points, for the checks' tests.
#[cfg(test)]
fn test_rows(points: &[(f64, f64)]) -> Vec<crate::store::MetricsRow> {
    points
        .iter()
        .map(|&(epoch, err)| crate::store::MetricsRow {
            epoch,
            step: 0,
            images_seen: 0,
            lr: 0.045,
            train_loss: 1.0,
            top1_err: Some(err),
            top5_err: None,
            eval_images: 100,
            images_per_s: 1.0,
            wall_s: 0.0,
            pre_pool_zero_frac: None,
            pre_pool_dead_channel_frac: None,
        })
        .collect()
}

//! Metrics rows for the claim checks' tests.

/// Metrics rows with the given (epoch, top-1 error) points.
pub(super) fn test_rows(points: &[(f64, f64)]) -> Vec<crate::store::MetricsRow> {
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

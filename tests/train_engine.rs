//! The training engine on generated data: it learns, it resumes exactly after a kill, and it
//! stops cleanly when the loss diverges.

mod common;

use repro::store::metrics::MetricsRow;
use repro::train::RunOutcome;

use common::tiny::{tiny_run, train};
use common::TempDir;

#[test]
fn a_tiny_network_learns_the_generated_classes() {
    let tmp = TempDir::new("learn");
    let run = tiny_run(
        &tmp.0,
        "inception_v3",
        "epochs: 20, eval_every_epochs: 5, lr: {base_lr: 0.045, decay_epochs: 10}",
    );
    let (outcome, rows) = train(&run, &tmp.0, "run", None);
    assert!(
        matches!(outcome, RunOutcome::Finished { steps: 120, .. }),
        "{outcome:?}"
    );
    assert_eq!(rows.len(), 4);
    let (first, last) = (&rows[0], &rows[3]);
    assert!(
        last.train_loss < first.train_loss,
        "loss did not fall: {} -> {}",
        first.train_loss,
        last.train_loss
    );
    for r in &rows {
        eprintln!(
            "epoch {} loss {:.4} top-1 {:?} top-5 {:?}",
            r.epoch, r.train_loss, r.top1_err, r.top5_err
        );
    }
    let top1 = last.top1_err.unwrap();
    assert!(
        top1 < 0.45,
        "top-1 error {top1} is not clearly below chance (0.75)"
    );
    assert_eq!(last.eval_images, 32);
    assert_eq!(last.images_seen, 120 * 16);
    // The learning rate follows the staircase: 0.045 * 0.94^floor(epoch / 10) at the last step
    // of epoch 10 (step 60 is taken at epoch 59/6 < 10) and of epoch 15.
    assert!((rows[1].lr - 0.045).abs() < 1e-12, "{}", rows[1].lr);
    assert!((rows[2].lr - 0.045 * 0.94).abs() < 1e-12, "{}", rows[2].lr);
}

#[test]
fn a_killed_run_resumes_to_the_same_metrics() {
    let tmp = TempDir::new("resume");
    let run = tiny_run(
        &tmp.0,
        "inception_v3",
        "epochs: 2, eval_every_epochs: 0.5, checkpoint_every_steps: 2, lr: {base_lr: 0.045}",
    );
    let (_, uninterrupted) = train(&run, &tmp.0, "a", None);
    // 6 steps per epoch, evaluations at steps 3, 6, 9, 12. Killed after step 5: the last
    // checkpoint is at step 4 and the evaluation of step 3 is on disk.
    let (stopped, partial) = train(&run, &tmp.0, "b", Some(5));
    assert_eq!(stopped, RunOutcome::Stopped { step: 5 });
    assert_eq!(partial.len(), 1);
    let (outcome, resumed) = train(&run, &tmp.0, "b", None);
    assert!(
        matches!(outcome, RunOutcome::Finished { steps: 12, .. }),
        "{outcome:?}"
    );
    assert_eq!(uninterrupted.len(), 4);
    let key = |r: &MetricsRow| {
        (
            r.epoch,
            r.step,
            r.images_seen,
            r.lr,
            r.train_loss,
            r.top1_err,
            r.top5_err,
            r.eval_images,
        )
    };
    let a: Vec<_> = uninterrupted.iter().map(key).collect();
    let b: Vec<_> = resumed.iter().map(key).collect();
    assert_eq!(a, b);
}

#[test]
fn a_diverging_loss_stops_the_run_and_keeps_its_metrics() {
    let tmp = TempDir::new("nan");
    // Without clipping, a learning rate of 1e38 overflows the weights up within a few steps.
    let run = tiny_run(
        &tmp.0,
        "inception_v4",
        "epochs: 4, eval_every_epochs: 1, clip_norm: 0, lr: {base_lr: 1.0e38}",
    );
    let (outcome, rows) = train(&run, &tmp.0, "run", None);
    let RunOutcome::Diverged { step, loss } = outcome else {
        panic!("expected divergence, got {outcome:?}")
    };
    assert!(!loss.is_finite());
    assert!(step <= 24);
    assert!(rows.iter().all(|r| r.step < step));
}

#[test]
fn an_accumulating_run_steps_once_per_micro_batches_and_resumes_to_the_same_metrics() {
    let tmp = TempDir::new("accumulate");
    // 96 images, batches of 16: 6 micro-batches per epoch, 3 updates of 2 x 16 images.
    let run = tiny_run(
        &tmp.0,
        "inception_resnet_v2",
        "epochs: 2, eval_every_epochs: 1, checkpoint_every_steps: 1, accumulate: 2, lr: {base_lr: 0.045, reference_batch: 64}",
    );
    let plain = tiny_run(
        &tmp.0,
        "inception_resnet_v2",
        "epochs: 2, eval_every_epochs: 1, checkpoint_every_steps: 1, lr: {base_lr: 0.045}",
    );
    assert_ne!(
        run.hash, plain.hash,
        "accumulate is part of the run's identity"
    );
    let (outcome, whole) = train(&run, &tmp.0, "a", None);
    assert!(
        matches!(outcome, RunOutcome::Finished { steps: 6, .. }),
        "{outcome:?}"
    );
    assert_eq!(
        whole
            .iter()
            .map(|r| (r.step, r.images_seen))
            .collect::<Vec<_>>(),
        vec![(3, 96), (6, 192)]
    );
    // The linear-scaling rule: 0.045 for 64 images, the global batch here is 2 x 16.
    assert!(
        whole.iter().all(|r| (r.lr - 0.0225).abs() < 1e-15),
        "{whole:?}"
    );
    let (stopped, _) = train(&run, &tmp.0, "b", Some(4));
    assert_eq!(stopped, RunOutcome::Stopped { step: 4 });
    let (_, resumed) = train(&run, &tmp.0, "b", None);
    let key = |r: &MetricsRow| (r.step, r.train_loss, r.top1_err, r.top5_err);
    assert_eq!(
        whole.iter().map(key).collect::<Vec<_>>(),
        resumed.iter().map(key).collect::<Vec<_>>()
    );
}

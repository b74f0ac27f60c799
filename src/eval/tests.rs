//! Tests of the eval module: crop geometry of the protocols against hand-computed boxes,
//! probability averaging, top-k ties, Parquet round trips, and whole evaluations of a tiny
//! network on synthetic images.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::*;
use crate::data::{
    write_synthetic_dataset, CropBox, CropProtocol, Dataset, EvalTransform, ImageSet, Preprocess,
};
use crate::models::import::save_timm_weights;
use crate::models::{Arch, ModelConfig, Network};
use crate::train::top_k_hits;

// ---------------------------------------------------------------- crop geometry

/// Asserts that the even-indexed (unmirrored) crops have the boxes `want`, given as
/// integer boxes in a resized frame with source pixels per frame pixel `(sx, sy)`, and
/// that each is followed by its mirror.
fn assert_crops(
    protocol: &CropProtocol,
    (w, h): (u32, u32),
    input: u32,
    (sx, sy): (f64, f64),
    want: &[[u32; 4]],
) {
    let crops = protocol.crops(w, h, input);
    assert_eq!(crops.len(), 2 * want.len(), "{protocol:?} on {w}x{h}");
    assert_eq!(crops.len(), protocol.num_crops());
    for (i, [x, y, bw, bh]) in want.iter().enumerate() {
        let (got, mirror) = (crops[2 * i], crops[2 * i + 1]);
        let expect = CropBox {
            x: *x as f64 * sx,
            y: *y as f64 * sy,
            w: *bw as f64 * sx,
            h: *bh as f64 * sy,
        };
        let close = [
            (got.bbox.x, expect.x),
            (got.bbox.y, expect.y),
            (got.bbox.w, expect.w),
            (got.bbox.h, expect.h),
        ]
        .iter()
        .all(|(a, b)| (a - b).abs() < 1e-9);
        assert!(
            close,
            "{protocol:?} {w}x{h} crop {i}: got {:?}, want {expect:?}",
            got.bbox
        );
        assert!(
            !got.mirror && mirror.mirror && mirror.bbox == got.bbox,
            "crop {i} and its mirror"
        );
    }
}

#[test]
fn ten_crops_at_299_landscape_portrait_square() {
    // 299 / 0.875 = 341.7 -> shorter side 342; corners of 299 in the resized frame.
    let p = protocol_for(10, 0.875, 299).unwrap();
    assert_eq!(p, CropProtocol::TenCrop { shorter: 342 });
    // 500x375 -> 456x342 (500 * 342 / 375 = 456): dx 157, dy 43, centre (78, 21).
    let s = (500.0 / 456.0, 375.0 / 342.0);
    let c = |x, y| [x, y, 299, 299];
    assert_crops(
        &p,
        (500, 375),
        299,
        s,
        &[c(0, 0), c(157, 0), c(0, 43), c(157, 43), c(78, 21)],
    );
    // 375x500 -> 342x456: dx 43, dy 157, centre (21, 78).
    let s = (375.0 / 342.0, 500.0 / 456.0);
    assert_crops(
        &p,
        (375, 500),
        299,
        s,
        &[c(0, 0), c(43, 0), c(0, 157), c(43, 157), c(21, 78)],
    );
    // 400x400 -> 342x342: dx = dy = 43, centre (21, 21).
    let s = (400.0 / 342.0, 400.0 / 342.0);
    assert_crops(
        &p,
        (400, 400),
        299,
        s,
        &[c(0, 0), c(43, 0), c(0, 43), c(43, 43), c(21, 21)],
    );
}

#[test]
fn twelve_crops_at_299_landscape_portrait_square() {
    // One scale (shorter side 384), centre square, 4 corners + centre of 299 + whole square.
    let p = protocol_for(12, 0.875, 299).unwrap();
    let c = |x, y| [x, y, 299, 299];
    // 500x375 -> 512x384: centre square at x 64; within it dx = dy = 85, centre 42.
    let s = (500.0 / 512.0, 375.0 / 384.0);
    let want = [
        c(64, 0),
        c(149, 0),
        c(64, 85),
        c(149, 85),
        c(106, 42),
        [64, 0, 384, 384],
    ];
    assert_crops(&p, (500, 375), 299, s, &want);
    // 375x500 -> 384x512: centre square at y 64.
    let s = (375.0 / 384.0, 500.0 / 512.0);
    let want = [
        c(0, 64),
        c(85, 64),
        c(0, 149),
        c(85, 149),
        c(42, 106),
        [0, 64, 384, 384],
    ];
    assert_crops(&p, (375, 500), 299, s, &want);
    // 300x300 -> 384x384: the square is the whole image.
    let s = (300.0 / 384.0, 300.0 / 384.0);
    let want = [
        c(0, 0),
        c(85, 0),
        c(0, 85),
        c(85, 85),
        c(42, 42),
        [0, 0, 384, 384],
    ];
    assert_crops(&p, (300, 300), 299, s, &want);
    let text = p.describe(299);
    assert!(
        text.starts_with("12 crops (shorter side 384") && text.contains("centre square"),
        "{text}"
    );
}

#[test]
fn crops_144_at_299_landscape_portrait_square() {
    let p = protocol_for(144, 0.875, 299).unwrap();
    let c = |x, y| [x, y, 299, 299];
    let square = |qx: u32, qy: u32, side: u32| {
        let d = side - 299;
        [
            c(qx, qy),
            c(qx + d, qy),
            c(qx, qy + d),
            c(qx + d, qy + d),
            c(qx + d / 2, qy + d / 2),
            [qx, qy, side, side],
        ]
    };
    // Scales 342, 384, 427, 470. Landscape 500x375 at 427: frame 569x427 (569.33),
    // squares at x 0, 71, 142.
    let crops = p.crops(500, 375, 299);
    assert_eq!(crops.len(), 144);
    let (sx, sy) = (500.0 / 569.0, 375.0 / 427.0);
    for (q, qx) in [0, 71, 142].into_iter().enumerate() {
        let start = 72 + 12 * q;
        let one = CropProtocol::Crops144.crops(500, 375, 299)[start..start + 12].to_vec();
        check_square(&one, (sx, sy), &square(qx, 0, 427));
    }
    // Portrait 375x500 at 342: frame 342x456, squares at y 0, 57, 114.
    let crops = p.crops(375, 500, 299);
    let (sx, sy) = (375.0 / 342.0, 500.0 / 456.0);
    for (q, qy) in [0, 57, 114].into_iter().enumerate() {
        check_square(&crops[12 * q..12 * q + 12], (sx, sy), &square(0, qy, 342));
    }
    // Square 470x470 at 470: no resize, the three squares coincide.
    let crops = p.crops(470, 470, 299);
    for q in 0..3 {
        let start = 108 + 12 * q;
        check_square(&crops[start..start + 12], (1.0, 1.0), &square(0, 0, 470));
    }
    assert_eq!(crops.iter().filter(|c| c.mirror).count(), 72);
}

/// Checks 12 crops of one square against `want` (integer frame boxes scaled by `s`).
fn check_square(crops: &[crate::data::Crop], (sx, sy): (f64, f64), want: &[[u32; 4]; 6]) {
    for (i, [x, y, w, h]) in want.iter().enumerate() {
        let b = crops[2 * i].bbox;
        let got = [b.x / sx, b.y / sy, b.w / sx, b.h / sy];
        let exp = [*x, *y, *w, *h].map(f64::from);
        assert!(
            got.iter().zip(exp).all(|(g, e)| (g - e).abs() < 1e-6),
            "crop {i}: {got:?} vs {exp:?}"
        );
        assert!(crops[2 * i + 1].mirror && crops[2 * i + 1].bbox == b);
    }
}

#[test]
fn protocol_choice_is_validated() {
    assert_eq!(
        protocol_for(1, 0.8975, 299).unwrap(),
        CropProtocol::Central { fraction: 0.8975 }
    );
    assert_eq!(
        protocol_for(144, 0.875, 299).unwrap(),
        CropProtocol::Crops144
    );
    assert!(protocol_for(5, 0.875, 299)
        .unwrap_err()
        .to_string()
        .contains("1, 10, 12 or 144"));
    assert!(protocol_for(1, 1.5, 299).is_err());
    assert!(protocol::check_protocol(&CropProtocol::TenCrop { shorter: 256 }, 299).is_err());
    assert!(protocol::check_protocol(&CropProtocol::Crops12 { scale_index: 4 }, 299).is_err());
}

// ---------------------------------------------------------------- scores

fn tensor(rows: &[&[f32]]) -> Tensor {
    let cols = rows[0].len();
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_vec(flat, (rows.len(), cols), &Device::Cpu).unwrap()
}

fn assert_rows(t: &Tensor, want: &[&[f32]]) {
    let got = t.to_vec2::<f32>().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!(
            g.iter().zip(w.iter()).all(|(a, b)| (a - b).abs() < 1e-6),
            "{got:?} vs {want:?}"
        );
    }
}

#[test]
fn probabilities_are_averaged_over_crops_then_models() {
    let ln = |x: f32| x.ln();
    // Image 0: crops [0, 0, 0] -> 1/3 each and [0, ln 2, 0] -> [1/4, 1/2, 1/4]:
    //   mean [7/24, 10/24, 7/24]. Image 1: [ln 3, 0, 0] -> [3/5, 1/5, 1/5] and
    //   [0, 0, ln 4] -> [1/6, 1/6, 2/3]: mean [23/60, 11/60, 26/60].
    let logits = tensor(&[
        &[0.0, 0.0, 0.0],
        &[0.0, ln(2.0), 0.0],
        &[ln(3.0), 0.0, 0.0],
        &[0.0, 0.0, ln(4.0)],
    ]);
    let a = scores::average_over_crops(&logits, 2).unwrap();
    assert_rows(
        &a,
        &[
            &[7.0 / 24.0, 10.0 / 24.0, 7.0 / 24.0],
            &[23.0 / 60.0, 11.0 / 60.0, 26.0 / 60.0],
        ],
    );
    assert!(scores::average_over_crops(&logits, 3).is_err());
    let b = tensor(&[&[1.0, 0.0, 0.0], &[0.0, 0.0, 1.0]]);
    let e = scores::average_over_models(&[a.clone(), b]).unwrap();
    assert_rows(
        &e,
        &[
            &[31.0 / 48.0, 10.0 / 48.0, 7.0 / 48.0],
            &[23.0 / 120.0, 11.0 / 120.0, 86.0 / 120.0],
        ],
    );
    // An ensemble of two copies is the model itself.
    assert_eq!(
        scores::average_over_models(&[a.clone(), a.clone()])
            .unwrap()
            .to_vec2::<f32>()
            .unwrap(),
        a.to_vec2::<f32>().unwrap()
    );
}

#[test]
fn top_k_lists_ties_by_class_and_ties_count_against_the_label() {
    let probs = [0.1, 0.3, 0.3, f32::NAN, 0.3];
    assert_eq!(scores::top_k(&probs, 3), vec![(1, 0.3), (2, 0.3), (4, 0.3)]);
    assert_eq!(scores::top_k(&probs, 5)[4].0, 3, "NaN ranks last");
    assert_eq!(scores::top_k(&[0.5, 0.5], 5).len(), 2);
    // The error counts a tie against the label: label 1 ties with classes 2 and 4, so it
    // is in the top 3 but not the top 2, although top_k lists it first.
    let t = tensor(&[&[0.1, 0.3, 0.3, 0.0, 0.3]]);
    let label = Tensor::new(&[1u32], &Device::Cpu).unwrap();
    let hit = |k| top_k_hits(&t, &label, k).unwrap().to_vec1::<f32>().unwrap()[0];
    assert_eq!((hit(1), hit(2), hit(3)), (0.0, 0.0, 1.0));
}

// ---------------------------------------------------------------- Parquet files

fn record(crops: u64, models: &[&str]) -> EvalRecord {
    EvalRecord {
        crops,
        crop_definition: CropProtocol::Crops144.describe(299),
        eval_set: ImageSet::IlsvrcValNonBlacklisted.as_str().into(),
        models: models.iter().map(|m| m.to_string()).collect(),
        images: 48_238,
        top1_err: 0.1967,
        top5_err: 0.0476,
        skipped: vec![],
    }
}

#[test]
fn eval_parquet_round_trips_and_rejects_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eval.parquet");
    let mut with_skipped = record(1, &["x:1", "y:2", "z:3"]);
    with_skipped.skipped = vec!["n01/a.JPEG".into(), "n02/b c.JPEG".into()];
    let rows = vec![record(144, &["inception_v4:a.safetensors"]), with_skipped];
    write_eval_parquet(&path, &rows).unwrap();
    assert_eq!(read_eval_parquet(&path).unwrap(), rows);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary files left"
    );
    // A predictions file is not an eval file: the error names the file and the column.
    let other = dir.path().join("other.parquet");
    write_predictions(&other, &report_with(vec![])).unwrap();
    let err = read_eval_parquet(&other).unwrap_err().to_string();
    assert!(
        err.contains("other.parquet") && err.contains("`crops`"),
        "{err}"
    );
    let err = read_eval_parquet(&dir.path().join("missing.parquet"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.parquet"), "{err}");
}

fn report_with(predictions: Vec<Prediction>) -> EvalReport {
    EvalReport {
        record: EvalRecord {
            top1_err: 0.5,
            top5_err: 0.0,
            images: predictions.len() as u64,
            crops: 12,
            crop_definition: protocol_for(12, 0.875, 299).unwrap().describe(299),
            eval_set: ImageSet::IlsvrcVal.as_str().to_string(),
            models: vec!["inception_v4:w.safetensors".into()],
            skipped: vec![],
        },
        predictions,
        probabilities: vec![],
        skipped: vec![],
    }
}

#[test]
fn predictions_round_trip_with_the_protocol_on_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pred.parquet");
    let predictions = vec![
        Prediction {
            path: "a/b.jpg".into(),
            label: 3,
            top5: vec![(3, 0.5), (1, 0.25), (0, 0.125), (2, 0.0625), (7, 0.03)],
        },
        Prediction {
            path: "c.png".into(),
            label: 0,
            top5: vec![(1, 0.75), (0, 0.25)],
        },
    ];
    let report = report_with(predictions.clone());
    write_predictions(&path, &report).unwrap();
    assert_eq!(read_predictions(&path).unwrap().predictions, predictions);
    use polars::prelude::*;
    let df = ParquetReader::new(std::fs::File::open(&path).unwrap())
        .finish()
        .unwrap();
    let defs: Vec<Option<&str>> = df
        .column("crop_definition")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(defs, vec![Some(report.record.crop_definition.as_str()); 2]);
    let sets: Vec<Option<&str>> = df
        .column("eval_set")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(sets, vec![Some("ilsvrc2012-val-all"); 2]);
}

// ---------------------------------------------------------------- whole evaluations

const INPUT: u32 = 75;

/// A tiny Inception-v4 for `classes` classes, with random weights saved under `dir`.
fn tiny_model(dir: &Path, classes: usize, name: &str) -> ModelWeights {
    let mut config = ModelConfig::new(Arch::InceptionV4);
    config.width = 0.125;
    config.image_size = INPUT as usize;
    config.blocks = Some([1, 1, 1]);
    config.num_classes = classes;
    let varmap = VarMap::new();
    Network::new(
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let weights = dir.join(name);
    save_timm_weights(&varmap, &weights, 0).unwrap();
    ModelWeights { config, weights }
}

fn synthetic(dir: &Path) -> Dataset {
    // 3 classes x 3 landscape images of 100x80.
    write_synthetic_dataset(&dir.join("data"), 3, 3, (100, 80), 7).unwrap()
}

fn request<'a>(
    models: Vec<ModelWeights>,
    dataset: &'a Dataset,
    protocol: CropProtocol,
    batch_size: usize,
) -> EvalRequest<'a> {
    EvalRequest {
        models,
        dataset,
        protocol,
        input_size: INPUT,
        batch_size,
        threads: 2,
        device: Device::Cpu,
        skip_bad_images: false,
        show_progress: false,
        keep_probabilities: true,
        stop: Default::default(),
    }
}

#[test]
fn single_crop_eval_equals_a_direct_forward_pass_on_central_crops() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path());
    let spec = tiny_model(dir.path(), 3, "w.safetensors");
    let report = evaluate(&request(
        vec![spec.clone()],
        &data,
        protocol_for(1, 0.875, INPUT).unwrap(),
        4,
    ))
    .unwrap();

    // Direct: the training pipeline's eval preprocessing, one forward, softmax.
    let pre = Preprocess::Eval(EvalTransform {
        image_size: INPUT,
        ..EvalTransform::default()
    });
    let per = 3 * (INPUT * INPUT) as usize;
    let mut pixels = vec![0f32; data.len() * per];
    for (s, out) in data.samples.iter().zip(pixels.chunks_mut(per)) {
        pre.apply(
            &crate::data::decode_image_file(&s.path).unwrap(),
            0,
            0,
            0,
            out,
        );
    }
    let x = Tensor::from_vec(
        pixels,
        (data.len(), 3, INPUT as usize, INPUT as usize),
        &Device::Cpu,
    )
    .unwrap();
    let varmap = VarMap::new();
    let net = Network::new(
        &spec.config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    crate::models::import::load_timm_weights(&varmap, &spec.weights).unwrap();
    let probs =
        candle_nn::ops::softmax_last_dim(&net.forward_t(&x, false).unwrap().logits).unwrap();
    let labels = Tensor::new(
        data.samples
            .iter()
            .map(|s| s.label)
            .collect::<Vec<_>>()
            .as_slice(),
        &Device::Cpu,
    )
    .unwrap();
    let err = |k| {
        1.0 - top_k_hits(&probs, &labels, k)
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };

    assert_eq!(report.record.images, 9);
    let (e1, e5) = (err(1), err(5));
    assert!(
        (report.record.top1_err - e1).abs() < 1e-6 && (report.record.top5_err - e5).abs() < 1e-6,
        "{report} vs {e1} {e5}"
    );
    assert_eq!(
        report.record.top5_err, 0.0,
        "3 classes are always within the top 5"
    );
    for (p, row) in report
        .predictions
        .iter()
        .zip(probs.to_vec2::<f32>().unwrap())
    {
        assert_eq!(p.top5.len(), 3);
        for &(class, prob) in &p.top5 {
            assert!(
                (prob - row[class as usize]).abs() < 1e-5,
                "{}: {prob} vs {}",
                p.path.display(),
                row[class as usize]
            );
        }
    }
    assert_eq!(
        report
            .predictions
            .iter()
            .map(|p| &p.path)
            .collect::<Vec<_>>(),
        data.samples.iter().map(|s| &s.path).collect::<Vec<_>>()
    );
    assert_eq!(report.record.eval_set, ImageSet::Folder.as_str());
    assert!(report
        .record
        .crop_definition
        .starts_with("1 central crop keeping 0.875"));
    assert_eq!(report.record.crops, 1);
    assert!(
        report.to_string().contains("protocol: 1 central crop"),
        "{report}"
    );
}

#[test]
fn an_ensemble_of_two_copies_equals_the_model_and_batching_does_not_matter() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path());
    let spec = tiny_model(dir.path(), 3, "w.safetensors");
    let p12 = protocol_for(12, 0.875, INPUT).unwrap();
    let one = evaluate(&request(vec![spec.clone()], &data, p12.clone(), 24)).unwrap();
    let two = evaluate(&request(
        vec![spec.clone(), spec.clone()],
        &data,
        p12.clone(),
        24,
    ))
    .unwrap();
    assert_eq!(
        (one.record.top1_err, one.record.top5_err),
        (two.record.top1_err, two.record.top5_err)
    );
    assert_eq!(one.predictions, two.predictions);
    assert_eq!(two.record.models.len(), 2);
    // Batches of 5 crops split images across forward passes; chunks of one image each.
    let small = evaluate(&request(vec![spec], &data, p12, 5)).unwrap();
    for (a, b) in one.predictions.iter().zip(&small.predictions) {
        assert!(
            a.top5
                .iter()
                .zip(&b.top5)
                .all(|(x, y)| (x.1 - y.1).abs() < 1e-5),
            "{a:?} vs {b:?}"
        );
    }
    assert!(
        one.record.crop_definition.contains("12 crops"),
        "{}",
        one.record.crop_definition
    );
}

#[test]
fn an_ensemble_averages_the_members_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path());
    let (a, b) = (
        tiny_model(dir.path(), 3, "a.safetensors"),
        tiny_model(dir.path(), 3, "b.safetensors"),
    );
    let p = protocol_for(10, 0.875, INPUT).unwrap();
    let ra = evaluate(&request(vec![a.clone()], &data, p.clone(), 30)).unwrap();
    let rb = evaluate(&request(vec![b.clone()], &data, p.clone(), 30)).unwrap();
    let rab = evaluate(&request(vec![a, b], &data, p, 30)).unwrap();
    let full = |pred: &Prediction| {
        let mut v = [0f32; 3];
        pred.top5.iter().for_each(|&(c, p)| v[c as usize] = p);
        v
    };
    for ((pa, pb), pab) in ra
        .predictions
        .iter()
        .zip(&rb.predictions)
        .zip(&rab.predictions)
    {
        let (va, vb, vab) = (full(pa), full(pb), full(pab));
        assert!(
            (0..3).all(|c| ((va[c] + vb[c]) / 2.0 - vab[c]).abs() < 1e-6),
            "{va:?} {vb:?} {vab:?}"
        );
    }
}

#[test]
fn an_ensemble_of_stored_members_equals_running_the_ensemble() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path());
    let (a, b) = (
        tiny_model(dir.path(), 3, "a.safetensors"),
        tiny_model(dir.path(), 3, "b.safetensors"),
    );
    let p = protocol_for(10, 0.875, INPUT).unwrap();
    let mut stored = Vec::new();
    for (m, stem) in [(&a, "pa"), (&b, "pb")] {
        let report = evaluate(&request(vec![m.clone()], &data, p.clone(), 30)).unwrap();
        assert_eq!(report.probabilities.len(), 9 * 3);
        write_probabilities(&dir.path().join(stem), &report).unwrap();
        stored.push(read_probabilities(&dir.path().join(stem)).unwrap().unwrap());
    }
    let run = evaluate(&request(vec![a, b], &data, p, 30)).unwrap();
    let reused = ensemble_of_stored(&stored, &data, 10).unwrap().unwrap();
    assert_eq!(reused.record.top1_err, run.record.top1_err);
    assert_eq!(reused.record.top5_err, run.record.top5_err);
    assert_eq!(reused.record.models, run.record.models);
    assert_eq!(reused.record.crop_definition, run.record.crop_definition);
    assert_eq!(reused.predictions.len(), run.predictions.len());
    for (x, y) in reused.probabilities.iter().zip(&run.probabilities) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
    for (x, y) in reused.predictions.iter().zip(&run.predictions) {
        assert_eq!((&x.path, x.label), (&y.path, y.label));
        assert_eq!(
            x.top5.iter().map(|t| t.0).collect::<Vec<_>>(),
            y.top5.iter().map(|t| t.0).collect::<Vec<_>>()
        );
    }
    // Members of another image list are not reused.
    let mut fewer = data.clone();
    fewer.samples.pop();
    assert!(ensemble_of_stored(&stored, &fewer, 10).unwrap().is_none());
    // Half a stored pair is no pair.
    std::fs::remove_file(dir.path().join("pb.json")).unwrap();
    assert!(read_probabilities(&dir.path().join("pb"))
        .unwrap()
        .is_none());
}

#[test]
fn crops_144_evaluate_every_image() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_synthetic_dataset(&dir.path().join("data"), 2, 1, (90, 120), 3).unwrap();
    let spec = tiny_model(dir.path(), 2, "w.safetensors");
    let report = evaluate(&request(vec![spec], &data, CropProtocol::Crops144, 64)).unwrap();
    assert_eq!(
        (
            report.record.images,
            report.record.crops,
            report.predictions.len()
        ),
        (2, 144, 2)
    );
    for p in &report.predictions {
        let total: f32 = p.top5.iter().map(|t| t.1).sum();
        assert!(
            (total - 1.0).abs() < 1e-5,
            "probabilities of all classes sum to 1: {total}"
        );
    }
    let path = dir.path().join("eval.parquet");
    write_eval_parquet(&path, &[report.record]).unwrap();
    let back = read_eval_parquet(&path).unwrap();
    assert!(
        back[0]
            .crop_definition
            .starts_with("144 crops (shorter sides [86, 96, 107, 118]"),
        "{}",
        back[0].crop_definition
    );
    assert_eq!(back[0].eval_set, "folder");
}

#[test]
fn bad_requests_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path());
    let spec = tiny_model(dir.path(), 3, "w.safetensors");
    let p = CropProtocol::default();
    let err = |models: Vec<ModelWeights>| {
        evaluate(&request(models, &data, p.clone(), 8))
            .unwrap_err()
            .to_string()
    };
    assert!(err(vec![]).contains("no model"));
    let missing = ModelWeights {
        weights: PathBuf::from("/nonexistent/final.safetensors"),
        ..spec.clone()
    };
    assert!(err(vec![missing]).contains("/nonexistent/final.safetensors"));
    let two_classes = tiny_model(dir.path(), 2, "two.safetensors");
    assert!(err(vec![two_classes.clone()]).contains("has label 2"));
    assert!(err(vec![spec.clone(), two_classes]).contains("disagree"));
    let wrong_size = ModelWeights {
        config: ModelConfig {
            image_size: 107,
            ..spec.config.clone()
        },
        ..spec.clone()
    };
    assert!(err(vec![wrong_size]).contains("107 px"));
    std::fs::write(&data.samples[4].path, b"not an image").unwrap();
    let e = err(vec![spec]);
    assert!(
        e.contains(&data.samples[4].path.display().to_string()),
        "{e}"
    );
}

// ---------------------------------------------------------------- unreadable images

#[test]
fn an_unreadable_image_fails_the_evaluation_naming_it_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path());
    let spec = tiny_model(dir.path(), 3, "w.safetensors");
    let bad = data.samples[4].clone();
    std::fs::write(&bad.path, b"\xff\xd8\xff not really a JPEG").unwrap();
    let protocol = || protocol_for(10, 0.875, INPUT).unwrap();

    let err = evaluate(&request(vec![spec.clone()], &data, protocol(), 20))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&bad.path.display().to_string()), "{err}");

    let mut skipping = request(vec![spec.clone()], &data, protocol(), 20);
    skipping.skip_bad_images = true;
    let report = evaluate(&skipping).unwrap();
    assert_eq!(report.record.images, data.len() as u64 - 1);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(
        (&report.skipped[0].path, report.skipped[0].label),
        (&bad.path, bad.label)
    );
    assert!(report.to_string().contains("skipped 1 unreadable image"));
    assert_eq!(report.record.skipped, vec![bad.path.display().to_string()]);

    // The errors are those of the readable images alone (forward batches are composed
    // differently, so probabilities agree to rounding, not bit for bit).
    let mut readable = data.clone();
    readable.samples.remove(4);
    let reference = evaluate(&request(vec![spec], &readable, protocol(), 20)).unwrap();
    assert_eq!(report.predictions.len(), reference.predictions.len());
    for (ours, want) in report.predictions.iter().zip(&reference.predictions) {
        assert_eq!((&ours.path, ours.label), (&want.path, want.label));
        for ((c, p), (wc, wp)) in ours.top5.iter().zip(&want.top5) {
            assert_eq!(c, wc, "{ours:?} vs {want:?}");
            assert!((p - wp).abs() < 1e-5, "{ours:?} vs {want:?}");
        }
    }
    assert_eq!(
        (report.record.top1_err, report.record.top5_err),
        (reference.record.top1_err, reference.record.top5_err)
    );

    // The predictions file lists the skipped image after the evaluated ones, with the reason.
    let path = dir.path().join("pred.parquet");
    write_predictions(&path, &report).unwrap();
    let file = read_predictions(&path).unwrap();
    assert_eq!(file.predictions, report.predictions);
    assert_eq!(file.skipped, report.skipped);
    assert!(
        file.skipped[0].reason.contains("JPEG"),
        "{:?}",
        file.skipped
    );
}

#[test]
fn an_evaluation_where_no_image_is_readable_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic(dir.path());
    let spec = tiny_model(dir.path(), 3, "w.safetensors");
    for s in &data.samples {
        std::fs::write(&s.path, b"garbage").unwrap();
    }
    let mut req = request(vec![spec], &data, protocol_for(1, 0.875, INPUT).unwrap(), 4);
    req.skip_bad_images = true;
    let err = evaluate(&req).unwrap_err().to_string();
    assert!(err.contains("none of the 9 images"), "{err}");
}

#[test]
fn eval_parquet_from_before_the_skipped_columns_reads_with_nothing_skipped() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eval.parquet");
    let r = record(12, &["inception_v3:a"]);
    let mut df = df!(
        "crops" => [r.crops],
        "crop_definition" => [r.crop_definition.clone()],
        "eval_set" => [r.eval_set.clone()],
        "models" => [r.models[0].clone()],
        "images" => [r.images],
        "top1_err" => [r.top1_err],
        "top5_err" => [r.top5_err],
    )
    .unwrap();
    ParquetWriter::new(std::fs::File::create(&path).unwrap())
        .finish(&mut df)
        .unwrap();
    assert_eq!(read_eval_parquet(&path).unwrap(), vec![r]);
}

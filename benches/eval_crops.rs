//! Crops evaluated per second on the CPU at 299 px (`cargo bench --bench eval_crops`), and
//! what that means for the 144-crop evaluation of the 50,000 ILSVRC-2012 validation images.
//!
//! Full-width Inception-v4 with random weights. Three measurements:
//! - render: decoding ImageNet-sized synthetic JPEGs (500x375) and rendering their 144
//!   crops, all threads;
//! - forward: the network on batches of rendered crops (one warm-up batch, then the
//!   timed ones);
//! - end to end: `repro::eval::evaluate` with the 12-crop protocol on a few images
//!   (weights written to and read from a temporary checkpoint).
//!
//! Environment: `REPRO_BENCH_BATCH` (crops per forward, default 8), `REPRO_BENCH_BATCHES`
//! (timed forward batches, default 3), `REPRO_BENCH_E2E_IMAGES` (default 2; 0 skips).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use repro::data::{write_synthetic_dataset, CropProtocol, Dataset};
use repro::eval::render::{crop_len, render_chunk};
use repro::eval::{evaluate, protocol_for, EvalRequest, ModelWeights};
use repro::models::import::save_timm_weights;
use repro::models::{Arch, ModelConfig, Network};

/// The `repro` binary's allocator, so that these timings are the binary's (huge pages).
#[global_allocator]
static HEAP: repro::models::fastops::HugePageHeap = repro::models::fastops::HugePageHeap;

const INPUT: u32 = 299;
/// Images of the ILSVRC-2012 validation set.
const VAL_IMAGES: f64 = 50_000.0;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Decode + render rate of the 144-crop protocol over `data`, in crops per second.
fn render_rate(data: &Dataset, threads: usize) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let start = Instant::now();
    let mut crops = 0;
    for chunk in data.samples.chunks(threads) {
        let rendered = pool
            .install(|| render_chunk(chunk, &CropProtocol::Crops144, INPUT, false))
            .expect("render");
        crops += rendered.pixels.len() / crop_len(INPUT);
    }
    crops as f64 / start.elapsed().as_secs_f64()
}

/// Forward rate of `net` on batches of `batch` crops, in crops per second.
fn forward_rate(net: &Network, batch: usize, batches: usize) -> f64 {
    let s = INPUT as usize;
    let x = Tensor::randn(0f32, 0.5, (batch, 3, s, s), &Device::Cpu).expect("input");
    let run = || {
        net.forward_t(&x, false)
            .and_then(|o| candle_nn::ops::softmax_last_dim(&o.logits))
            .and_then(|p| p.to_vec2::<f32>())
            .expect("forward")
    };
    run();
    let start = Instant::now();
    for _ in 0..batches {
        run();
    }
    (batch * batches) as f64 / start.elapsed().as_secs_f64()
}

fn hours_for_144_crops(crops_per_s: f64) -> f64 {
    VAL_IMAGES * 144.0 / crops_per_s / 3600.0
}

fn main() {
    repro::models::fastops::configure_cpu();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let batch = env_usize("REPRO_BENCH_BATCH", 8);
    let batches = env_usize("REPRO_BENCH_BATCHES", 3);
    let e2e_images = env_usize("REPRO_BENCH_E2E_IMAGES", 2);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = write_synthetic_dataset(&dir.path().join("data"), 4, 2, (500, 375), 1)
        .expect("synthetic images");

    let config = ModelConfig::new(Arch::InceptionV4);
    let varmap = VarMap::new();
    let net = Network::new(
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .expect("inception_v4");

    println!("eval_crops: inception_v4, {INPUT} px, CPU, {threads} threads");
    println!(
        "{:<44} {:>12} {:>26}",
        "measurement", "crops/s", "144 crops x 50,000 images"
    );
    let row = |what: &str, rate: f64| {
        println!(
            "{what:<44} {rate:>12.2} {:>24.1} h",
            hours_for_144_crops(rate)
        )
    };
    row(
        &format!("decode + render 144 crops ({} images)", data.len()),
        render_rate(&data, threads),
    );
    row(
        &format!("forward + softmax ({batches} batches of {batch})"),
        forward_rate(&net, batch, batches),
    );
    if e2e_images > 0 {
        let weights = dir.path().join("inception_v4.safetensors");
        save_timm_weights(&varmap, &weights, 0).expect("save weights");
        let mut subset = data.clone();
        subset.samples.truncate(e2e_images);
        let request = EvalRequest {
            models: vec![ModelWeights { config, weights }],
            dataset: &subset,
            protocol: protocol_for(12, 0.875, INPUT).expect("protocol"),
            input_size: INPUT,
            batch_size: 12,
            threads,
            device: Device::Cpu,
            skip_bad_images: false,
            show_progress: false,
            keep_probabilities: false,
            stop: Default::default(),
        };
        let start = Instant::now();
        let report = evaluate(&request).expect("evaluate");
        let crops = report.record.images as f64 * report.record.crops as f64;
        row(
            &format!("evaluate, 12 crops ({e2e_images} images, incl. loading)"),
            crops / start.elapsed().as_secs_f64(),
        );
    }
}

//! Throughput of decode + training augmentation to 299 px (`cargo bench --bench data_pipeline`).
//!
//! Data sets: ImageNet-sized synthetic JPEGs (500x375, written to a temp dir) and the
//! CIFAR-10 folder (`REPRO_CIFAR10`, default /work/shared/datasets/cifar10; skipped if
//! absent). For each: images/s with 1 thread and all threads, for the raw
//! decode+augment path and for the full loader (batches of 64 as tensors), and the same
//! files through Pillow + torchvision (`tools/bench_data_pipeline.py`; skipped if Python
//! or torch is missing), reported as a ratio.
//! Environment: `REPRO_BENCH_IMAGES` (default 512) sets the number of ImageNet-sized images.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::Device;
use rayon::prelude::*;
use repro::data::{
    decode_image_file, write_synthetic_dataset, ClassSelection, Dataset, Loader, LoaderConfig,
    Preprocess, Subset, TrainAugment,
};

const SIZE: u32 = 299;
/// Timed repetitions of every measurement; the best is reported.
const REPEATS: usize = 3;

/// Images per second of `work(index, path, output buffer)` over `files` on `threads` threads.
fn rate(files: &[PathBuf], threads: usize, work: impl Fn(usize, &Path, &mut [f32]) + Sync) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let per_image = (3 * SIZE * SIZE) as usize;
    let run = || {
        pool.install(|| {
            files.par_iter().enumerate().for_each_init(
                || vec![0f32; per_image],
                |out, (i, path)| work(i, path, out),
            )
        })
    };
    run(); // warm the page cache and the allocator
    best_of(REPEATS, || {
        let start = Instant::now();
        run();
        files.len() as f64 / start.elapsed().as_secs_f64()
    })
}

/// The best of `n` measurements (the machine may be shared; the best is the least disturbed).
fn best_of(n: usize, mut measure: impl FnMut() -> f64) -> f64 {
    (0..n).map(|_| measure()).fold(0.0, f64::max)
}

/// Images per second of decoding only.
fn decode_rate(files: &[PathBuf], threads: usize) -> f64 {
    rate(files, threads, |_, path, _| {
        decode_image_file(path).expect("decodable benchmark image");
    })
}

/// Images per second of decode + training augmentation.
fn augment_rate(files: &[PathBuf], threads: usize) -> f64 {
    let preprocess = Preprocess::Train(TrainAugment::default());
    rate(files, threads, |i, path, out| {
        let img = decode_image_file(path).expect("decodable benchmark image");
        preprocess.apply(&img, 0, 0, i as u64, out);
    })
}

/// Images per second through the loader (batches of 64 as CPU tensors).
fn loader_rate(dataset: &Dataset, threads: usize) -> f64 {
    let config = LoaderConfig {
        num_threads: threads,
        prefetch: 4,
        ..LoaderConfig::new(64, Preprocess::Train(TrainAugment::default()))
    };
    let loader = Loader::new(dataset, config, &Device::Cpu).expect("loader");
    best_of(REPEATS, || {
        let start = Instant::now();
        let images: usize = loader
            .iter_epoch(0, 0)
            .map(|b| b.expect("batch").indices.len())
            .sum();
        images as f64 / start.elapsed().as_secs_f64()
    })
}

/// Images per second of Pillow + torchvision on `processes` processes, if available.
fn python_rate(files: &[PathBuf], processes: usize, decode_only: bool) -> Result<f64, String> {
    let list = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let text: String = files.iter().map(|p| format!("{}\n", p.display())).collect();
    std::fs::write(list.path(), text).map_err(|e| e.to_string())?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/bench_data_pipeline.py");
    let output = Command::new("python3")
        .arg(&script)
        .args([
            "--size",
            &SIZE.to_string(),
            "--processes",
            &processes.to_string(),
            "--repeat",
            &REPEATS.to_string(),
            "--files",
        ])
        .arg(list.path())
        .args(decode_only.then_some("--decode-only"))
        .output()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "python benchmark failed: {}",
            err.lines().last().unwrap_or("")
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).map_err(|e| e.to_string())?;
    json["images_per_s"]
        .as_f64()
        .ok_or_else(|| "no images_per_s in python output".into())
}

fn bench(name: &str, dataset: &Dataset) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let files: Vec<PathBuf> = dataset.samples.iter().map(|s| s.path.clone()).collect();
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let avg_kib = bytes as f64 / files.len() as f64 / 1024.0;
    let count = files.len();
    println!("\n## {name}: {count} images ({avg_kib:.1} KiB avg) -> {SIZE}x{SIZE}, {cores} cores");
    let row = |label: &str, threads: usize, rate: f64, ratio: &str| {
        println!(
            "{label:<30} {threads:>8} {rate:>10.1} {:>14.1} {ratio:>10}",
            rate / threads as f64
        );
    };
    println!(
        "{:<30} {:>8} {:>10} {:>14} {:>10}",
        "pipeline", "threads", "images/s", "per core", "vs pillow"
    );
    for threads in [1, cores] {
        let versus = |rate: f64, python: &Result<f64, String>| match python {
            Ok(py) => format!("{:.2}x", rate / py),
            Err(_) => "-".to_string(),
        };
        let py_decode = python_rate(&files, threads, true);
        let decode = decode_rate(&files, threads);
        row(
            "rust decode only",
            threads,
            decode,
            &versus(decode, &py_decode),
        );
        let python = python_rate(&files, threads, false);
        let augment = augment_rate(&files, threads);
        row(
            "rust decode+augment",
            threads,
            augment,
            &versus(augment, &python),
        );
        let loader = loader_rate(dataset, threads);
        row(
            "rust loader (batches of 64)",
            threads,
            loader,
            &versus(loader, &python),
        );
        match (&py_decode, &python) {
            (Ok(decode), Ok(full)) => {
                row("pillow decode only", threads, *decode, "");
                row("pillow+torchvision", threads, *full, "");
            }
            (Err(why), _) | (_, Err(why)) => println!("pillow+torchvision skipped: {why}"),
        }
    }
}

fn main() {
    let images: u32 = std::env::var("REPRO_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let dir = tempfile::tempdir().expect("temp dir");
    let classes = 8;
    let imagenet_like =
        write_synthetic_dataset(dir.path(), classes, images.div_ceil(classes), (500, 375), 0)
            .expect("write benchmark images");
    bench("ImageNet-sized synthetic JPEGs (500x375)", &imagenet_like);

    let cifar = PathBuf::from(
        std::env::var("REPRO_CIFAR10").unwrap_or("/work/shared/datasets/cifar10".into()),
    );
    match Dataset::image_folder(&cifar.join("train")) {
        Ok(ds) => {
            let subset = Subset {
                classes: ClassSelection::All,
                max_per_class: Some(200),
                seed: 0,
            };
            bench(
                "CIFAR-10 train (200 per class, 32x32)",
                &ds.subset(&subset).expect("subset"),
            );
        }
        Err(e) => println!("\nCIFAR-10 skipped: {e}"),
    }
}

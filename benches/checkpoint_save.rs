//! Checkpoint save time of a full-width network (default Inception-ResNet-v2, the largest):
//! today's save (three tensor files, the training state, the metrics copy, a checksummed
//! manifest, the oldest checkpoint pruned) against the same files written without metrics
//! copy and manifest, as checkpoints were saved before they carried checksums. Both in this
//! process, alternating, each into a fresh folder of the same file system; medians printed.
//!
//! cargo bench --bench checkpoint_save -- [--model inception_resnet_v2] [--rounds 5] [--dir /tmp]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use repro::experiment::TrainConfig;
use repro::models::{Arch, ModelConfig};
use repro::store::checkpoint::{EMA_FILE, OPTIM_FILE, STATE_FILE, WEIGHTS_FILE};
use repro::store::{atomic, Checkpoint, Checkpoints, FileManifest, TrainingState};
use repro::train::{sorted_vars, TrainStep};

struct Options {
    model: Arch,
    rounds: usize,
    dir: PathBuf,
}

fn options() -> Options {
    let mut o = Options {
        model: Arch::InceptionResnetV2,
        rounds: 5,
        dir: std::env::temp_dir(),
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    for pair in args.chunks(2) {
        let v = pair.get(1).map(String::as_str).unwrap_or_default();
        match pair[0].as_str() {
            "--model" => o.model = Arch::from_name(v).expect("--model NAME"),
            "--rounds" => o.rounds = v.parse().expect("--rounds N"),
            "--dir" => o.dir = PathBuf::from(v),
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Checkpoints were saved like this before manifests: the files into a fresh folder, which
/// replaced the old one.
fn save_without_checksums(dir: &Path, c: &Checkpoint) {
    let incoming = dir.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    atomic::write_safetensors(&incoming.join(WEIGHTS_FILE), &c.weights).unwrap();
    atomic::write_safetensors(&incoming.join(EMA_FILE), &c.ema).unwrap();
    atomic::write_safetensors(&incoming.join(OPTIM_FILE), &c.optim).unwrap();
    atomic::write_json(&incoming.join(STATE_FILE), &c.state).unwrap();
    atomic::sync_dir(&incoming).unwrap();
    let slot = dir.join("latest");
    if slot.exists() {
        std::fs::rename(&slot, dir.join("previous")).unwrap();
    }
    std::fs::rename(&incoming, &slot).unwrap();
    atomic::sync_dir(dir).unwrap();
    let _ = std::fs::remove_dir_all(dir.join("previous"));
}

fn main() {
    let o = options();
    let mut model = ModelConfig::new(o.model);
    model.num_classes = 1000;
    let step = TrainStep::new(&model, &TrainConfig::default(), 0, &Device::Cpu).unwrap();
    let weights: HashMap<String, Tensor> = sorted_vars(&step.varmap)
        .into_iter()
        .map(|(k, v)| (k, v.as_tensor().clone()))
        .collect();
    let mut checkpoint = Checkpoint {
        state: TrainingState {
            format_version: repro::store::CHECKPOINT_FORMAT_VERSION,
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            images_seen: 0,
            rng_seed: 0,
            rng_state: vec![0; 4],
            ema_num_updates: 0,
            config_hash: "0".into(),
            loss_sum: 0.0,
            loss_count: 0,
            wall_s: 0.0,
        },
        weights,
        ema: step.ema.tensors(),
        optim: step.optimizer.state(),
        metrics: Some(Vec::new()),
    };
    let root = o
        .dir
        .join(format!("repro-bench-checkpoint-{}", std::process::id()));
    let (before_dir, now_dir) = (root.join("before"), root.join("now"));
    std::fs::create_dir_all(&before_dir).unwrap();
    let store = Checkpoints::new(&now_dir);
    let (mut before, mut now, mut sums) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=o.rounds {
        checkpoint.state.step = round as u64 + 1;
        let time_before = || {
            let t = Instant::now();
            save_without_checksums(&before_dir, &checkpoint);
            t.elapsed().as_secs_f64()
        };
        let time_now = || {
            let t = Instant::now();
            let saved = store.save(&checkpoint, 2).unwrap();
            (t.elapsed().as_secs_f64(), saved)
        };
        // Alternate which goes first: the disk may still be writing back the other's files.
        let (b, (n, saved)) = match round % 2 {
            0 => {
                let b = time_before();
                (b, time_now())
            }
            _ => {
                let n = time_now();
                (time_before(), n)
            }
        };
        let t = Instant::now();
        let names = [WEIGHTS_FILE, EMA_FILE, OPTIM_FILE, STATE_FILE];
        FileManifest::of_files(&saved, &names).unwrap();
        let s = t.elapsed().as_secs_f64();
        if round > 0 {
            // round 0 warms the page cache and the allocator
            before.push(b);
            now.push(n);
            sums.push(s);
        }
    }
    let bytes: u64 = std::fs::read_dir(before_dir.join("latest"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    std::fs::remove_dir_all(&root).unwrap();
    let (b, n, s) = (median(before), median(now), median(sums));
    println!(
        "{}: checkpoint of {:.0} MB in {}: without checksums {:.2} s, with checksums {:.2} s ({:.2}x; checksumming alone {:.2} s), median of {} rounds",
        o.model.name(),
        bytes as f64 / 1e6,
        o.dir.display(),
        b,
        n,
        n / b,
        s,
        o.rounds
    );
}

//! Speed of the CPU fast ops (`repro::models::fastops`) against stock candle and PyTorch, and of
//! whole networks (training step and inference) against PyTorch + timm, in one run.
//!
//! cargo bench --bench ops_speed -- [--ops-only | --nets-only] [--reps 5] [--steps 2]
//!     [--models inception_v4,...] [--sizes 107x16,299x8] [--stock-nets] [--ops-filter conv:8,32]
//!
//! Threads: rayon's global pool (set `RAYON_NUM_THREADS`); PyTorch is given the same count.
//! The PyTorch side is `tools/bench_torch_ops.py` (ops, inference) and `tools/bench_timm_train.py`
//! (training step), run with `$REPRO_PYTHON`, else `python3`; skipped with a message when
//! torch/timm are missing. Each network is timed on the PyTorch side right before repro's, so
//! that both sides of a ratio see the same machine load.
//! Stock-candle networks (`--stock-nets`) are slow: off by default.

use std::process::Command;
use std::time::Instant;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var};
use candle_nn::{BatchNormConfig, VarBuilder, VarMap};
use repro::bench::{eval_crops_per_s, train_images_per_s, BenchOptions};
use repro::models::fastops;
use repro::models::pool::{Pool2d, PoolKind};
use repro::models::Arch;

/// The `repro` binary's allocator, so that these timings are the binary's (huge pages).
#[global_allocator]
static HEAP: repro::models::fastops::HugePageHeap = repro::models::fastops::HugePageHeap;

struct Options {
    ops: bool,
    nets: bool,
    reps: usize,
    steps: usize,
    models: Vec<Arch>,
    sizes: Vec<(usize, usize)>,
    stock_nets: bool,
    /// Only the single ops whose spec contains this text.
    ops_filter: Option<String>,
}

fn options() -> Options {
    let mut o = Options {
        ops: true,
        nets: true,
        reps: 5,
        steps: 2,
        models: Arch::ALL.to_vec(),
        sizes: vec![(107, 16), (299, 8)],
        stock_nets: false,
        ops_filter: None,
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        let mut step = 2;
        match args[i].as_str() {
            "--ops-only" => (o.nets, step) = (false, 1),
            "--nets-only" => (o.ops, step) = (false, 1),
            "--stock-nets" => (o.stock_nets, step) = (true, 1),
            "--ops-filter" => o.ops_filter = Some(v),
            "--reps" => o.reps = v.parse().expect("--reps N"),
            "--steps" => o.steps = v.parse().expect("--steps N"),
            "--models" => {
                o.models = v
                    .split(',')
                    .map(|m| Arch::from_name(m).expect("known model"))
                    .collect()
            }
            "--sizes" => {
                o.sizes = v
                    .split(',')
                    .map(|s| {
                        let (a, b) = s.split_once('x').expect("--sizes SIZExBATCH,...");
                        (a.parse().unwrap(), b.parse().unwrap())
                    })
                    .collect()
            }
            other => panic!("unknown option {other}"),
        }
        i += step;
    }
    o
}

fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

/// `Σ y·r` as one op whose backward hands `r` straight back: the timed backward pass is then the
/// op's own, not candle's broadcast of a scalar gradient over a large tensor (a strided copy
/// that costs more than some of the ops). PyTorch runs `(y * r).sum().backward()`.
struct DotWith(Tensor);

impl CustomOp1 for DotWith {
    fn name(&self) -> &'static str {
        "dot-with"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, b) = l.contiguous_offsets().expect("contiguous output");
        let r = self.0.flatten_all()?.to_vec1::<f32>()?;
        let y = &s.as_slice::<f32>()?[a..b];
        let dot: f32 = y.iter().zip(&r).map(|(p, q)| p * q).sum();
        Ok((CpuStorage::F32(vec![dot]), Shape::from(())))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        _grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(self.0.clone()))
    }
}

fn backprop(y: &Tensor, r: &Tensor) {
    y.apply_op1(DotWith(r.clone())).unwrap().backward().unwrap();
}

/// One benchmarked op: its spec for the Python side and a runner on (fast?, with backward?).
struct OpCase {
    spec: String,
    run: Box<dyn Fn(bool)>,
}

fn conv_case(
    n: usize,
    c: usize,
    hw: usize,
    o: usize,
    k: (usize, usize),
    stride: usize,
    pad: (usize, usize),
) -> OpCase {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (n, c, hw, hw), &dev).unwrap()).unwrap();
    let w = Var::from_tensor(
        &(Tensor::randn(0f32, 1., (o, c, k.0, k.1), &dev).unwrap() * 0.05).unwrap(),
    )
    .unwrap();
    let y = fastops::conv2d(x.as_tensor(), w.as_tensor(), pad, stride).unwrap();
    let r = Tensor::randn(0f32, 1., y.shape(), &dev).unwrap();
    OpCase {
        spec: format!(
            "conv:{n},{c},{hw},{hw},{o},{},{},{stride},{},{}",
            k.0, k.1, pad.0, pad.1
        ),
        run: Box::new(move |bwd| {
            let y = if fastops::enabled() {
                fastops::conv2d(x.as_tensor(), w.as_tensor(), pad, stride).unwrap()
            } else {
                fastops::conv::stock_conv2d(x.as_tensor(), w.as_tensor(), pad, stride).unwrap()
            };
            if bwd {
                backprop(&y, &r);
            }
        }),
    }
}

fn bn_case(n: usize, c: usize, hw: usize) -> OpCase {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let bn = candle_nn::batch_norm(
        c,
        BatchNormConfig {
            eps: 1e-3,
            ..Default::default()
        },
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )
    .unwrap();
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (n, c, hw, hw), &dev).unwrap()).unwrap();
    let r = Tensor::randn(0f32, 1., (n, c, hw, hw), &dev).unwrap();
    OpCase {
        spec: format!("bnrelu:{n},{c},{hw},{hw}"),
        run: Box::new(move |bwd| {
            let y = fastops::bn_relu(x.as_tensor(), &bn, true).unwrap();
            if bwd {
                backprop(&y, &r);
            }
        }),
    }
}

fn pool_case(n: usize, c: usize, hw: usize, pool: Pool2d) -> OpCase {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (n, c, hw, hw), &dev).unwrap()).unwrap();
    let y = pool.forward(x.as_tensor()).unwrap();
    let r = Tensor::randn(0f32, 1., y.shape(), &dev).unwrap();
    let kind = if pool.kind == PoolKind::Max {
        "maxpool"
    } else {
        "avgpool"
    };
    OpCase {
        spec: format!("{kind}:{n},{c},{hw},{hw}"),
        run: Box::new(move |bwd| {
            let y = pool.forward(x.as_tensor()).unwrap();
            if bwd {
                backprop(&y, &r);
            }
        }),
    }
}

fn python(args: &[String]) -> Result<Vec<Vec<String>>, String> {
    let out = Command::new(python_command())
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python_command()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("failed")
            .to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

fn tool(name: &str) -> String {
    format!("{}/tools/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn ratio(a: f64, b: Option<f64>) -> String {
    b.map(|b| format!("{:.2}", a / b))
        .unwrap_or_else(|| "n/a".into())
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into())
}

fn bench_ops(o: &Options, threads: usize) {
    let b = 8;
    let cases = vec![
        conv_case(b, 192, 35, 64, (1, 1), 1, (0, 0)),
        conv_case(b, 64, 35, 96, (3, 3), 1, (1, 1)),
        conv_case(b, 128, 17, 128, (1, 7), 1, (0, 3)),
        conv_case(b, 128, 17, 192, (7, 1), 1, (3, 0)),
        conv_case(b, 384, 35, 384, (3, 3), 2, (0, 0)),
        conv_case(b, 32, 147, 32, (3, 3), 1, (0, 0)),
        bn_case(b, 192, 35),
        pool_case(b, 384, 35, Pool2d::max_3x3_s2()),
        pool_case(b, 384, 35, Pool2d::avg_3x3_same(PoolKind::AvgExcludePad)),
    ];
    let cases: Vec<OpCase> = cases
        .into_iter()
        .filter(|c| {
            o.ops_filter
                .as_ref()
                .is_none_or(|f| c.spec.contains(f.as_str()))
        })
        .collect();
    let mut args = vec![
        tool("bench_torch_ops.py"),
        "ops".into(),
        "--threads".into(),
        threads.to_string(),
        "--reps".into(),
        o.reps.to_string(),
    ];
    args.extend(cases.iter().map(|c| c.spec.clone()));
    let torch = python(&args);
    if let Err(why) = &torch {
        println!("PyTorch side skipped: {why}");
    }
    let torch_ms = |spec: &str, col: usize| -> Option<f64> {
        torch
            .as_ref()
            .ok()?
            .iter()
            .find(|r| r[0] == spec)?
            .get(col)?
            .parse()
            .ok()
    };
    println!(
        "\nsingle ops, batch {b}, ms (median of {}), {threads} threads",
        o.reps
    );
    println!(
        "{:<36} {:>5} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "op", "pass", "fast", "stock", "torch", "stock/f", "torch/f"
    );
    for case in &cases {
        for (pass, bwd) in [("fwd", false), ("f+b", true)] {
            fastops::set_enabled(true);
            let fast = median_ms(o.reps, || (case.run)(bwd));
            fastops::set_enabled(false);
            let stock = median_ms(o.reps.min(3), || (case.run)(bwd));
            fastops::set_enabled(true);
            let t = torch_ms(&case.spec, if bwd { 2 } else { 1 });
            println!(
                "{:<36} {:>5} {:>9.2} {:>9.2} {:>9} {:>8.2} {:>8}",
                case.spec,
                pass,
                fast,
                stock,
                opt(t),
                stock / fast,
                t.map(|t| format!("{:.2}", t / fast))
                    .unwrap_or("n/a".into())
            );
        }
    }
}

/// (training images/s, inference images/s) of the current op set at the median step time, measured
/// as `repro bench train|eval` does, after one warm-up step.
fn candle_rates(arch: Arch, size: usize, batch: usize, steps: usize) -> (f64, f64) {
    let o = BenchOptions {
        size,
        batch,
        steps,
        warmup: 1,
        ..BenchOptions::default()
    };
    let train = train_images_per_s(arch, &o, &repro::replicas::single())
        .expect("training step")
        .median_per_s;
    let infer = eval_crops_per_s(arch, &o).expect("inference").median_per_s;
    (train, infer)
}

/// PyTorch + timm's (training, inference) images/s of one network, measured right before
/// repro's: on a machine whose load drifts, the two sides of a ratio then see the same load.
/// `None` for a side that could not run (printed once per reason).
fn torch_rates(
    arch: Arch,
    size: usize,
    batch: usize,
    o: &Options,
    threads: usize,
    reported: &mut Vec<String>,
) -> (Option<f64>, Option<f64>) {
    if !arch.has_timm_weights() {
        return (None, None);
    }
    let mut rate = |script: &str| -> Option<f64> {
        let mut a = vec![tool(script)];
        if script == "bench_torch_ops.py" {
            a.push("infer".into());
        }
        for (flag, v) in [
            ("--threads", threads.to_string()),
            ("--size", size.to_string()),
            ("--batch", batch.to_string()),
            ("--steps", o.steps.to_string()),
            ("--models", arch.name().to_string()),
        ] {
            a.extend([flag.to_string(), v]);
        }
        match python(&a) {
            Ok(rows) => rows
                .iter()
                .find(|l| l[0] == arch.name())?
                .get(1)?
                .parse()
                .ok(),
            Err(why) => {
                let line = format!("PyTorch side ({script}) skipped: {why}");
                if !reported.contains(&line) {
                    println!("{line}");
                    reported.push(line);
                }
                None
            }
        }
    };
    (rate("bench_timm_train.py"), rate("bench_torch_ops.py"))
}

fn bench_nets(o: &Options, threads: usize) {
    let mut reported = Vec::new();
    for &(size, batch) in &o.sizes {
        println!(
            "\nnetworks, {size} px, batch {batch}, images/s over {} steps, {threads} threads",
            o.steps
        );
        println!(
            "{:<20} {:>9} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>7}",
            "model", "train", "stock", "torch", "/torch", "infer", "stock", "torch", "/torch"
        );
        for &arch in &o.models {
            let (tt, ti) = torch_rates(arch, size, batch, o, threads, &mut reported);
            fastops::set_enabled(true);
            let (train, infer) = candle_rates(arch, size, batch, o.steps);
            let (st, si) = if o.stock_nets {
                fastops::set_enabled(false);
                // The stock path is slow: one timed step is enough to show the gap.
                let r = candle_rates(arch, size, batch, 1);
                fastops::set_enabled(true);
                (Some(r.0), Some(r.1))
            } else {
                (None, None)
            };
            println!(
                "{:<20} {:>9.2} {:>9} {:>9} {:>7} {:>9.2} {:>9} {:>9} {:>7}",
                arch.name(),
                train,
                opt(st),
                opt(tt),
                ratio(train, tt),
                infer,
                opt(si),
                opt(ti),
                ratio(infer, ti)
            );
        }
    }
}

fn main() {
    repro::models::fastops::configure_cpu();
    let o = options();
    let threads = rayon::current_num_threads();
    println!(
        "ops_speed: {threads} rayon threads (RAYON_NUM_THREADS), fast ops {}",
        if fastops::enabled() {
            "on"
        } else {
            "off (REPRO_STOCK_OPS)"
        }
    );
    if o.ops {
        bench_ops(&o, threads);
    }
    if o.nets {
        bench_nets(&o, threads);
    }
}

/// The Python with torch and timm: `$REPRO_PYTHON`, else `python3`.
fn python_command() -> String {
    std::env::var("REPRO_PYTHON").unwrap_or_else(|_| "python3".into())
}

//! `repro bench compare`: training images/s (or evaluation crops/s, `--mode eval`) of repro and
//! of PyTorch + timm (f32, and bf16 autocast) on this machine in one command, the two sides
//! alternating round by round, for each network at each scale; the medians, their ratios and
//! each side's share of the CPU's f32 peak ([`super::peak`]).

use clap::Args;
use serde::Serialize;

use super::peak::{CpuInfo, Peak};
use super::torch_side::{TorchRequest, TorchSide, TorchVersion};
use super::{emit, eval_timing, median, model_config, train_timing, BenchOptions, Mode};
use crate::models::{summarize, Arch};

#[derive(Args, Debug, Clone)]
pub struct CompareOptions {
    /// What is timed: `train` (a training step) or `eval` (a forward pass in inference mode).
    #[arg(long, value_enum, default_value_t = Mode::Train)]
    pub mode: Mode,
    /// Comma-separated networks (default: the three timm builds).
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Comma-separated scales: `mini` (75 px, width 0.25, batch 32, 10 classes: the CIFAR-10
    /// runs), `107` (107 px, batch 16), `299` (299 px, batch 8), or SIZE:BATCH[:WIDTH[:CLASSES]].
    #[arg(long, value_delimiter = ',', default_value = "mini,107,299")]
    pub scales: Vec<String>,
    /// Timed steps of each side per round.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Untimed steps before each side's timed ones, every round (repro's first steps after
    /// building a network are slower while its memory is first touched).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Rounds: each times repro, then PyTorch in each precision; the medians are over all rounds.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// The Python with torch and timm (default: $REPRO_PYTHON, else python3).
    #[arg(long)]
    pub python: Option<String>,
    /// PyTorch's precisions: f32, bf16 (autocast: convolutions and matrix products in bf16).
    #[arg(long, value_delimiter = ',', default_value = "f32,bf16")]
    pub torch_precisions: Vec<String>,
    /// repro's precision: f32, or bf16 (convolutions with bf16 operands and f32 sums; on the
    /// CPU it needs AVX512-BF16).
    #[arg(long, default_value = "f32")]
    pub precision: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// One size of the comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scale {
    pub name: String,
    pub size: usize,
    pub batch: usize,
    pub width: f64,
    pub classes: usize,
}

impl Scale {
    /// `mini`, `107`, `299`, or SIZE:BATCH[:WIDTH[:CLASSES]].
    pub fn parse(s: &str) -> Result<Self, String> {
        let named = |size, batch, width, classes| Scale {
            name: s.to_string(),
            size,
            batch,
            width,
            classes,
        };
        match s {
            "mini" => return Ok(named(75, 32, 0.25, 10)),
            "107" => return Ok(named(107, 16, 1.0, 1000)),
            "299" => return Ok(named(299, 8, 1.0, 1000)),
            _ => {}
        }
        let bad =
            || format!("--scales: `{s}` is not mini, 107, 299 or SIZE:BATCH[:WIDTH[:CLASSES]]");
        let parts: Vec<&str> = s.split(':').collect();
        if !(2..=4).contains(&parts.len()) {
            return Err(bad());
        }
        let size = parts[0].parse().map_err(|_| bad())?;
        let batch = parts[1].parse().map_err(|_| bad())?;
        let width = parts
            .get(2)
            .map_or(Ok(1.0), |w| w.parse())
            .map_err(|_| bad())?;
        let classes = parts
            .get(3)
            .map_or(Ok(1000), |c| c.parse())
            .map_err(|_| bad())?;
        if batch == 0 || classes == 0 || width <= 0.0 {
            return Err(bad());
        }
        Ok(named(size, batch, width, classes))
    }

    /// For people: "75 px, width 0.25, batch 32, 10 classes".
    pub fn describe(&self) -> String {
        let width = match self.width == 1.0 {
            true => String::new(),
            false => format!(", width {}", self.width),
        };
        format!(
            "{} px{width}, batch {}, {} classes",
            self.size, self.batch, self.classes
        )
    }
}

/// One side's timing of one network at one scale.
#[derive(Clone, Debug, Serialize)]
pub struct Side {
    /// "repro" or "pytorch".
    pub side: &'static str,
    pub precision: String,
    /// Every timed step of every round, milliseconds.
    pub step_ms: Vec<f64>,
    /// Images/s at the median step (NaN when it failed).
    pub median_per_s: f64,
    /// Images/s at the median step of each round.
    pub round_median_per_s: Vec<f64>,
    /// GFLOP/s at that rate (training or evaluation FLOPs, as the comparison's mode).
    pub gflops: f64,
    /// Of the CPU's f32 peak (NaN when the peak is unknown).
    pub peak_share: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The comparison of one network at one scale: the summary line of `repro bench compare`.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub kind: &'static str,
    pub mode: Mode,
    pub model: String,
    pub scale: Scale,
    pub threads: usize,
    /// GFLOP per image: training, 3 × 2 × the forward MACs (forward, input gradient and weight
    /// gradient); evaluation, 2 × the forward MACs.
    pub gflop_per_image: f64,
    pub repro: Side,
    pub pytorch: Vec<Side>,
    /// repro's images/s ÷ PyTorch's, per PyTorch precision (NaN where a side failed).
    pub ratios: Vec<(String, f64)>,
}

/// The first line: the machine, the peak and how it is computed, the PyTorch side.
#[derive(Serialize)]
struct Header<'a> {
    kind: &'static str,
    mode: Mode,
    cpu: &'a str,
    threads: usize,
    peak: Option<&'a Peak>,
    flop_count: &'static str,
    pytorch: Option<&'a TorchVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pytorch_absent: Option<&'a str>,
}

/// A round of one side, printed as it ends.
#[derive(Serialize)]
struct Round<'a> {
    kind: &'static str,
    mode: Mode,
    model: &'a str,
    scale: &'a str,
    round: usize,
    side: &'static str,
    precision: &'a str,
    step_ms: &'a [f64],
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

fn archs(o: &CompareOptions) -> Result<Vec<Arch>, String> {
    match &o.models {
        None => Ok(Arch::ALL
            .into_iter()
            .filter(|a| a.has_timm_weights())
            .collect()),
        Some(names) => names
            .iter()
            .map(|n| Arch::from_name(n).ok_or_else(|| format!("--models: unknown network `{n}`")))
            .collect(),
    }
}

fn scales(o: &CompareOptions) -> Result<Vec<Scale>, String> {
    o.scales.iter().map(|s| Scale::parse(s)).collect()
}

/// Checks the options before anything runs.
pub fn validate(o: &CompareOptions) -> Result<(), String> {
    archs(o)?;
    scales(o)?;
    for p in &o.torch_precisions {
        if p != "f32" && p != "bf16" {
            return Err(format!("--torch-precisions: `{p}` is not f32 or bf16"));
        }
    }
    match o.precision.as_str() {
        "f32" => {}
        "bf16" => crate::device::check_precision(
            crate::device::Precision::Bf16,
            &candle_core::Device::Cpu,
        )
        .map_err(|e| format!("--precision: {e}"))?,
        other => return Err(format!("--precision: `{other}` is not f32 or bf16")),
    }
    match o.steps {
        0 => Err("--steps must be at least 1".into()),
        _ => Ok(()),
    }
}

fn side(name: &'static str, precision: &str, rounds: Vec<Vec<f64>>, s: &Scale, flop: f64) -> Side {
    let per_s = |ms: &[f64]| s.batch as f64 * 1e3 / median(ms);
    let round_median_per_s = rounds.iter().map(|r| per_s(r)).collect();
    let step_ms: Vec<f64> = rounds.concat();
    let per_s = per_s(&step_ms);
    Side {
        side: name,
        precision: precision.into(),
        step_ms,
        median_per_s: per_s,
        round_median_per_s,
        gflops: per_s * flop,
        peak_share: f64::NAN,
        error: None,
    }
}

fn failed(name: &'static str, precision: &str, error: String) -> Side {
    Side {
        side: name,
        precision: precision.into(),
        step_ms: Vec::new(),
        median_per_s: f64::NAN,
        round_median_per_s: Vec::new(),
        gflops: f64::NAN,
        peak_share: f64::NAN,
        error: Some(error),
    }
}

/// Runs the comparison: a JSON line per round and per (network, scale) on stdout, the table on
/// stderr. Fails when a repro measurement failed; PyTorch absent is not a failure.
pub fn run(o: &CompareOptions) -> Result<(), String> {
    validate(o)?;
    let threads = crate::models::fastops::threads();
    let cpu = CpuInfo::read();
    let peak = cpu
        .as_ref()
        .ok()
        .map(|c| c.peak_measured(threads, super::peak::measure_fma_peak(threads, 0.6)));
    let python = o
        .python
        .clone()
        .or_else(|| std::env::var("REPRO_PYTHON").ok())
        .unwrap_or_else(|| "python3".into());
    let mut torch = TorchSide::start(&python, threads);
    let cpu_name = match &cpu {
        Ok(c) => c.model_name.clone(),
        Err(e) => format!("unknown CPU ({e})"),
    };
    emit(&Header {
        kind: "compare_machine",
        mode: o.mode,
        cpu: &cpu_name,
        threads,
        peak: peak.as_ref(),
        flop_count: o.mode.flop_count(),
        pytorch: torch.as_ref().ok().map(|t| &t.version),
        pytorch_absent: torch.as_ref().err().map(|e| e.as_str()),
    });
    if let Err(why) = &torch {
        eprintln!("PyTorch side not measured: {why}; repro's side only");
    }
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for scale in scales(o)? {
        for arch in archs(o)? {
            let row = compare_one(arch, &scale, o, torch.as_mut().ok(), peak.as_ref());
            if row.repro.error.is_some() {
                failures.push(format!("{} at {}", arch.name(), scale.name));
            }
            emit(&row);
            rows.push(row);
        }
    }
    eprint!(
        "{}",
        table(
            &rows,
            &cpu_name,
            threads,
            peak.as_ref(),
            torch.as_ref().ok()
        )
    );
    match failures.is_empty() {
        true => Ok(()),
        false => Err(format!("bench compare failed for {}", failures.join(", "))),
    }
}

/// One side's timed steps (milliseconds), round by round, or why it failed.
type Rounds = Result<Vec<Vec<f64>>, String>;

fn compare_one(
    arch: Arch,
    scale: &Scale,
    o: &CompareOptions,
    mut torch: Option<&mut TorchSide>,
    peak: Option<&Peak>,
) -> Comparison {
    let bench = BenchOptions {
        models: Some(vec![arch.name().into()]),
        size: scale.size,
        batch: scale.batch,
        width: scale.width,
        classes: scale.classes,
        steps: o.steps,
        warmup: o.warmup,
        phase_steps: 0,
        seed: o.seed,
        precision: o.precision.clone(),
        ..BenchOptions::default()
    };
    let flop = summarize(&model_config(arch, &bench), scale.size)
        .map(|s| o.mode.flop_per_mac() * s.macs as f64 / 1e9)
        .unwrap_or(f64::NAN);
    // Each side's timed steps, round by round.
    let mut ours: Rounds = Ok(Vec::new());
    let mut theirs: Vec<(String, Rounds)> = o
        .torch_precisions
        .iter()
        .map(|p| (p.clone(), Ok(Vec::new())))
        .collect();
    let announce = |round, side, precision: &str, r: &Result<Vec<f64>, String>| {
        emit(&Round {
            kind: "compare_round",
            mode: o.mode,
            model: arch.name(),
            scale: &scale.name,
            round,
            side,
            precision,
            step_ms: r.as_deref().unwrap_or(&[]),
            error: r.as_ref().err().map(|e| e.as_str()),
        })
    };
    for round in 0..o.rounds.max(1) {
        if let Ok(all) = &mut ours {
            let r = match o.mode {
                Mode::Train => train_timing(arch, &bench, &crate::replicas::single(), &mut |_| {}),
                Mode::Eval => eval_timing(arch, &bench, &mut |_| {}),
            }
            .map(|t| t.step_ms);
            announce(round, "repro", &o.precision, &r);
            match r {
                Ok(ms) => all.push(ms),
                Err(e) => ours = Err(e),
            }
        }
        let Some(t) = torch.as_deref_mut() else {
            continue;
        };
        for (precision, result) in theirs.iter_mut() {
            let Ok(all) = result else { continue };
            let r = match arch.has_timm_weights() {
                true => t.measure(&TorchRequest {
                    mode: o.mode,
                    model: arch.name(),
                    size: scale.size,
                    batch: scale.batch,
                    width: scale.width,
                    classes: scale.classes,
                    steps: o.steps,
                    warmup: o.warmup,
                    precision,
                }),
                false => Err("timm has no such network".into()),
            };
            announce(round, "pytorch", precision, &r);
            match r {
                Ok(ms) => all.push(ms),
                Err(e) => *result = Err(e),
            }
        }
    }
    let with_share = |mut s: Side| {
        if let Some(p) = peak {
            s.peak_share = s.gflops / p.gflops;
        }
        s
    };
    let repro = with_share(match ours {
        Ok(ms) => side("repro", &o.precision, ms, scale, flop),
        Err(e) => failed("repro", &o.precision, e),
    });
    let pytorch: Vec<Side> = match torch {
        None => Vec::new(),
        Some(_) => theirs
            .into_iter()
            .map(|(p, r)| {
                with_share(match r {
                    Ok(ms) => side("pytorch", &p, ms, scale, flop),
                    Err(e) => failed("pytorch", &p, e),
                })
            })
            .collect(),
    };
    let ratios = pytorch
        .iter()
        .map(|t| (t.precision.clone(), repro.median_per_s / t.median_per_s))
        .collect();
    Comparison {
        kind: "compare",
        mode: o.mode,
        model: arch.name().into(),
        scale: scale.clone(),
        threads: crate::models::fastops::threads(),
        gflop_per_image: flop,
        repro,
        pytorch,
        ratios,
    }
}

fn cell(v: f64, digits: usize) -> String {
    match v.is_finite() {
        true => format!("{v:.digits$}"),
        false => "-".into(),
    }
}

fn percent(v: f64) -> String {
    match v.is_finite() {
        true => format!("{:.1} %", 100.0 * v),
        false => "-".into(),
    }
}

/// The comparison as a table for people.
pub fn table(
    rows: &[Comparison],
    cpu: &str,
    threads: usize,
    peak: Option<&Peak>,
    torch: Option<&TorchSide>,
) -> String {
    let mode = rows.first().map_or(Mode::Train, |r| r.mode);
    let what = match mode {
        Mode::Train => "Training images/s at the median step",
        Mode::Eval => "Evaluation crops/s (forward passes in inference mode) at the median pass",
    };
    let mut s = format!("\n{what} on {cpu}, {threads} threads");
    match torch {
        Some(t) => {
            s += &format!(
                ", repro vs PyTorch {} + timm {} ({} threads)\n",
                t.version.torch, t.version.timm, t.version.threads
            )
        }
        None => s += ", repro only (PyTorch not measured)\n",
    }
    match peak {
        Some(p) => s += &format!("{}\n", p.how),
        None => s += "f32 peak unknown: /proc/cpuinfo unreadable\n",
    }
    s += &format!("{}\n", mode.flop_count());
    let precisions: Vec<String> = rows
        .first()
        .map(|r| r.pytorch.iter().map(|p| p.precision.clone()).collect())
        .unwrap_or_default();
    let mut head = format!(
        "{:<20} {:<40} {:>9} {:>7}",
        "network", "scale", "repro/s", "%peak"
    );
    for p in &precisions {
        head += &format!(" {:>9} {:>7} {:>7}", format!("torch {p}"), "%peak", "ratio");
    }
    s += &head;
    s += "\n";
    for r in rows {
        let mut line = format!(
            "{:<20} {:<40} {:>9} {:>7}",
            r.model,
            r.scale.describe(),
            cell(r.repro.median_per_s, 1),
            percent(r.repro.peak_share)
        );
        for (t, (_, ratio)) in r.pytorch.iter().zip(&r.ratios) {
            line += &format!(
                " {:>9} {:>7} {:>7}",
                cell(t.median_per_s, 1),
                percent(t.peak_share),
                cell(*ratio, 2)
            );
        }
        s += &line;
        s += "\n";
        for e in [&r.repro]
            .into_iter()
            .chain(&r.pytorch)
            .filter_map(|x| x.error.as_ref().map(|e| (x, e)))
        {
            s += &format!("  {} {} failed: {}\n", e.0.side, e.0.precision, e.1);
        }
    }
    let ours = rows.first().map_or("f32", |r| r.repro.precision.as_str());
    s += &match mode {
        Mode::Train => format!(
            "ratio: repro's images/s ÷ PyTorch's in that precision (repro trains in {ours})\n"
        ),
        Mode::Eval => format!(
            "ratio: repro's crops/s ÷ PyTorch's in that precision (repro evaluates in {ours})\n"
        ),
    };
    for w in unsteady(rows) {
        s += &format!("{w}\n");
    }
    s
}

/// Rounds of one side further apart than this (fastest round's images/s ÷ slowest's) are
/// reported: on a quiet machine they stay within about 1.2.
const UNSTEADY: f64 = 1.4;

/// A warning for every side whose rounds ran at rates more than [`UNSTEADY`] apart: something
/// else took the machine during some of them, and the medians (and ratios) of that row are not
/// to be trusted.
fn unsteady(rows: &[Comparison]) -> Vec<String> {
    let mut out = Vec::new();
    for r in rows {
        for side in [&r.repro].into_iter().chain(&r.pytorch) {
            let rates = &side.round_median_per_s;
            let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = rates.iter().copied().fold(0.0, f64::max);
            if rates.len() >= 2 && lo > 0.0 && hi / lo > UNSTEADY {
                out.push(format!(
                    "warning: {} at {}: {}'s {} rounds ran at {:.1}–{:.1} {} ({:.1}x apart); \
                     the machine was busy during some of them, so rerun this row on an idle one",
                    r.model,
                    r.scale.name,
                    side.side,
                    side.precision,
                    lo,
                    hi,
                    r.mode.unit(),
                    hi / lo
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_parse_by_name_and_by_numbers() {
        let mini = Scale::parse("mini").unwrap();
        assert_eq!(
            (mini.size, mini.batch, mini.width, mini.classes),
            (75, 32, 0.25, 10)
        );
        assert_eq!(mini.describe(), "75 px, width 0.25, batch 32, 10 classes");
        assert_eq!(Scale::parse("299").unwrap().batch, 8);
        let custom = Scale::parse("139:4:0.5").unwrap();
        assert_eq!(
            (custom.size, custom.batch, custom.width, custom.classes),
            (139, 4, 0.5, 1000)
        );
        assert!(Scale::parse("139").is_err());
        assert!(Scale::parse("139:0").is_err());
        assert!(Scale::parse("huge").is_err());
    }

    #[test]
    fn without_pytorch_repro_is_measured_alone() {
        let mut o = CompareOptions {
            mode: Mode::Train,
            models: Some(vec!["inception_resnet_v2".into()]),
            scales: vec!["75:2:0.125:10".into()],
            steps: 1,
            warmup: 0,
            rounds: 2,
            python: Some("/nonexistent/python".into()),
            torch_precisions: vec!["f32".into(), "bf16".into()],
            precision: "f32".into(),
            seed: 0,
        };
        let err = TorchSide::start("/nonexistent/python", 1).err().unwrap();
        assert!(err.contains("cannot run `/nonexistent/python`"), "{err}");
        let scale = Scale::parse(&o.scales[0]).unwrap();
        let peak = CpuInfo::read().ok().map(|c| c.peak(1));
        let row = compare_one(Arch::InceptionResnetV2, &scale, &o, None, peak.as_ref());
        assert!(row.repro.error.is_none(), "{:?}", row.repro.error);
        // One timed step per round, both rounds kept.
        assert_eq!(row.repro.step_ms.len(), 2);
        assert!(row.repro.median_per_s > 0.0 && row.gflop_per_image > 0.0);
        assert!(row.pytorch.is_empty() && row.ratios.is_empty());
        let text = table(
            std::slice::from_ref(&row),
            "Test CPU",
            1,
            peak.as_ref(),
            None,
        );
        assert!(text.contains("repro only (PyTorch not measured)"), "{text}");
        assert!(text.contains("inception_resnet_v2"), "{text}");
        assert!(text.contains("Training images/s"), "{text}");
        // Evaluation: forward passes only, a third of a training step's FLOPs per image.
        o.mode = Mode::Eval;
        let eval = compare_one(Arch::InceptionResnetV2, &scale, &o, None, peak.as_ref());
        assert!(eval.repro.error.is_none(), "{:?}", eval.repro.error);
        assert_eq!((eval.mode, eval.repro.step_ms.len()), (Mode::Eval, 2));
        assert!((3.0 * eval.gflop_per_image - row.gflop_per_image).abs() < 1e-9);
        let text = table(&[eval], "Test CPU", 1, peak.as_ref(), None);
        assert!(text.contains("Evaluation crops/s"), "{text}");
        assert!(text.contains("repro evaluates in f32"), "{text}");
    }

    /// A side whose rounds ran at rates far apart gets a warning naming the row, the side and
    /// the range; steady rounds, and a single round, get none.
    #[test]
    fn rounds_far_apart_are_reported() {
        let scale = Scale::parse("mini").unwrap();
        let row = |repro: Vec<Vec<f64>>, torch: Vec<Vec<f64>>| Comparison {
            kind: "compare",
            mode: Mode::Train,
            model: "inception_v4".into(),
            scale: scale.clone(),
            threads: 2,
            gflop_per_image: 1.0,
            repro: side("repro", "f32", repro, &scale, 1.0),
            pytorch: vec![side("pytorch", "f32", torch, &scale, 1.0)],
            ratios: Vec::new(),
        };
        // 32 images in 100 ms is 320 images/s; in 200 ms, 160.
        let busy = row(
            vec![vec![100.0, 101.0, 99.0], vec![200.0, 199.0, 201.0]],
            vec![vec![160.0; 3]; 2],
        );
        assert_eq!(busy.repro.round_median_per_s, vec![320.0, 160.0]);
        let warnings = unsteady(std::slice::from_ref(&busy));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains(
                "inception_v4 at mini: repro's f32 rounds ran at 160.0–320.0 images/s (2.0x apart)"
            ),
            "{}",
            warnings[0]
        );
        assert!(table(&[busy], "Test CPU", 2, None, None).contains("warning: inception_v4"));
        let steady = row(
            vec![vec![100.0; 3], vec![110.0; 3]],
            vec![vec![160.0; 3], vec![150.0; 3]],
        );
        assert!(unsteady(&[steady]).is_empty());
        let one_round = row(vec![vec![100.0, 300.0, 100.0]], vec![vec![160.0; 3]]);
        assert!(unsteady(&[one_round]).is_empty());
    }

    #[test]
    fn bad_options_are_refused_before_running() {
        let mut o = CompareOptions {
            mode: Mode::Train,
            models: None,
            scales: vec!["mini".into()],
            steps: 1,
            warmup: 0,
            rounds: 1,
            python: None,
            torch_precisions: vec!["f16".into()],
            precision: "f32".into(),
            seed: 0,
        };
        assert!(validate(&o).unwrap_err().contains("f16"));
        o.torch_precisions = vec!["bf16".into()];
        assert!(validate(&o).is_ok());
        o.precision = "tf32".into();
        assert_eq!(
            validate(&o).unwrap_err(),
            "--precision: `tf32` is not f32 or bf16"
        );
        o.precision = "bf16".into();
        assert_eq!(
            validate(&o).err(),
            crate::models::fastops::bf16_missing_cpu_features()
                .map(|m| format!("--precision: bf16 on the CPU: {m}; use f32"))
        );
        assert_eq!(archs(&o).unwrap().len(), 3);
        o.models = Some(vec!["resnet".into()]);
        assert!(validate(&o).is_err());
    }
}

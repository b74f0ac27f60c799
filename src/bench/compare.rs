//! `repro bench compare`: training images/s (or evaluation crops/s, `--mode eval`) of repro and
//! of PyTorch + timm (f32, and bf16 autocast; timm's NCHW layout, and channels-last) on this
//! machine in one command, the two sides
//! alternating round by round, for each network at each scale; the medians, their ratios and
//! each side's share of the CPU's f32 peak ([`super::peak`]).

use clap::Args;
use serde::Serialize;

use super::peak::{CpuInfo, Peak};
use super::torch_side::{Layout, TorchRequest, TorchSide, TorchVariant, TorchVersion};
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
    /// Rounds: each times repro, then PyTorch in each precision and layout; the medians are over
    /// all rounds.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// The Python with torch and timm (default: $REPRO_PYTHON, else python3).
    #[arg(long)]
    pub python: Option<String>,
    /// PyTorch's precisions: f32, bf16 (autocast: convolutions and matrix products in bf16).
    #[arg(long, value_delimiter = ',', default_value = "f32,bf16")]
    pub torch_precisions: Vec<String>,
    /// PyTorch's memory layouts, each timed in each precision with a ratio of its own: nchw
    /// (timm's default), channels-last (`torch.channels_last`, in which oneDNN's convolutions
    /// need no conversion of their input and output).
    #[arg(long, value_delimiter = ',', default_value = "nchw")]
    pub torch_layouts: Vec<String>,
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
    /// PyTorch's layout (absent for repro's side).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
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

impl Side {
    /// "repro", or PyTorch's configuration as [`TorchVariant::label`] has it.
    fn label(&self) -> String {
        match self.layout {
            None => self.precision.clone(),
            Some(layout) => TorchVariant {
                precision: self.precision.clone(),
                layout,
            }
            .label(),
        }
    }
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
    /// repro's images/s ÷ PyTorch's, per PyTorch precision and layout (the label of
    /// [`TorchVariant::label`]; NaN where a side failed).
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
    #[serde(skip_serializing_if = "Option::is_none")]
    layout: Option<Layout>,
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

/// PyTorch's configurations: each precision in each layout, in the order given.
fn variants(o: &CompareOptions) -> Result<Vec<TorchVariant>, String> {
    let mut out = Vec::new();
    for p in &o.torch_precisions {
        if p != "f32" && p != "bf16" {
            return Err(format!("--torch-precisions: `{p}` is not f32 or bf16"));
        }
        for l in &o.torch_layouts {
            let layout = Layout::parse(l)
                .ok_or_else(|| format!("--torch-layouts: `{l}` is not nchw or channels-last"))?;
            out.push(TorchVariant {
                precision: p.clone(),
                layout,
            });
        }
    }
    Ok(out)
}

/// Checks the options before anything runs.
pub fn validate(o: &CompareOptions) -> Result<(), String> {
    archs(o)?;
    scales(o)?;
    variants(o)?;
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

/// Which configuration a side ran: repro's precision, or one of PyTorch's variants.
struct Ran<'a> {
    side: &'static str,
    precision: &'a str,
    layout: Option<Layout>,
}

impl<'a> Ran<'a> {
    fn repro(precision: &'a str) -> Self {
        Self {
            side: "repro",
            precision,
            layout: None,
        }
    }

    fn pytorch(v: &'a TorchVariant) -> Self {
        Self {
            side: "pytorch",
            precision: &v.precision,
            layout: Some(v.layout),
        }
    }
}

fn side(ran: Ran, rounds: Vec<Vec<f64>>, s: &Scale, flop: f64) -> Side {
    let per_s = |ms: &[f64]| s.batch as f64 * 1e3 / median(ms);
    let round_median_per_s = rounds.iter().map(|r| per_s(r)).collect();
    let step_ms: Vec<f64> = rounds.concat();
    let per_s = per_s(&step_ms);
    Side {
        side: ran.side,
        precision: ran.precision.into(),
        layout: ran.layout,
        step_ms,
        median_per_s: per_s,
        round_median_per_s,
        gflops: per_s * flop,
        peak_share: f64::NAN,
        error: None,
    }
}

fn failed(ran: Ran, error: String) -> Side {
    Side {
        side: ran.side,
        precision: ran.precision.into(),
        layout: ran.layout,
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
    let mut theirs: Vec<(TorchVariant, Rounds)> = variants(o)
        .unwrap_or_default()
        .into_iter()
        .map(|v| (v, Ok(Vec::new())))
        .collect();
    let announce = |round, ran: Ran, r: &Result<Vec<f64>, String>| {
        emit(&Round {
            kind: "compare_round",
            mode: o.mode,
            model: arch.name(),
            scale: &scale.name,
            round,
            side: ran.side,
            precision: ran.precision,
            layout: ran.layout,
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
            announce(round, Ran::repro(&o.precision), &r);
            match r {
                Ok(ms) => all.push(ms),
                Err(e) => ours = Err(e),
            }
        }
        let Some(t) = torch.as_deref_mut() else {
            continue;
        };
        for (variant, result) in theirs.iter_mut() {
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
                    precision: &variant.precision,
                    channels_last: variant.layout == Layout::ChannelsLast,
                }),
                false => Err("timm has no such network".into()),
            };
            announce(round, Ran::pytorch(variant), &r);
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
        Ok(ms) => side(Ran::repro(&o.precision), ms, scale, flop),
        Err(e) => failed(Ran::repro(&o.precision), e),
    });
    let pytorch: Vec<Side> = match torch {
        None => Vec::new(),
        Some(_) => theirs
            .iter()
            .map(|(v, r)| {
                with_share(match r {
                    Ok(ms) => side(Ran::pytorch(v), ms.clone(), scale, flop),
                    Err(e) => failed(Ran::pytorch(v), e.clone()),
                })
            })
            .collect(),
    };
    let ratios = pytorch
        .iter()
        .map(|t| (t.label(), repro.median_per_s / t.median_per_s))
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
    let columns: Vec<String> = rows
        .first()
        .map(|r| {
            r.pytorch
                .iter()
                .map(|p| format!("torch {}", p.label()))
                .collect()
        })
        .unwrap_or_default();
    let mut head = format!(
        "{:<20} {:<40} {:>9} {:>7}",
        "network", "scale", "repro/s", "%peak"
    );
    for c in &columns {
        head += &format!(" {c:>9} {:>7} {:>7}", "%peak", "ratio");
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
        for ((t, (_, ratio)), c) in r.pytorch.iter().zip(&r.ratios).zip(&columns) {
            line += &format!(
                " {:>w$} {:>7} {:>7}",
                cell(t.median_per_s, 1),
                percent(t.peak_share),
                cell(*ratio, 2),
                w = c.chars().count().max(9)
            );
        }
        s += &line;
        s += "\n";
        for e in [&r.repro]
            .into_iter()
            .chain(&r.pytorch)
            .filter_map(|x| x.error.as_ref().map(|e| (x, e)))
        {
            s += &format!("  {} {} failed: {}\n", e.0.side, e.0.label(), e.1);
        }
    }
    let ours = rows.first().map_or("f32", |r| r.repro.precision.as_str());
    s += &match mode {
        Mode::Train => format!(
            "ratio: repro's images/s ÷ PyTorch's in that precision and layout (repro trains in {ours})\n"
        ),
        Mode::Eval => format!(
            "ratio: repro's crops/s ÷ PyTorch's in that precision and layout (repro evaluates in {ours})\n"
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
                    side.label(),
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
            torch_layouts: vec!["nchw".into()],
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
        let f32 = TorchVariant {
            precision: "f32".into(),
            layout: Layout::Nchw,
        };
        let row = |repro: Vec<Vec<f64>>, torch: Vec<Vec<f64>>| Comparison {
            kind: "compare",
            mode: Mode::Train,
            model: "inception_v4".into(),
            scale: scale.clone(),
            threads: 2,
            gflop_per_image: 1.0,
            repro: side(Ran::repro("f32"), repro, &scale, 1.0),
            pytorch: vec![side(Ran::pytorch(&f32), torch, &scale, 1.0)],
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

    /// Each PyTorch precision is timed in each layout, in the order given; the table has a
    /// column and a ratio for each, and the JSON lines say the layout of PyTorch's sides only.
    #[test]
    fn pytorch_runs_each_precision_in_each_layout() {
        let o = CompareOptions {
            mode: Mode::Eval,
            models: None,
            scales: vec!["299".into()],
            steps: 1,
            warmup: 0,
            rounds: 1,
            python: None,
            torch_precisions: vec!["f32".into(), "bf16".into()],
            torch_layouts: vec!["nchw".into(), "channels-last".into()],
            precision: "f32".into(),
            seed: 0,
        };
        let labels: Vec<String> = variants(&o).unwrap().iter().map(|v| v.label()).collect();
        assert_eq!(
            labels,
            ["f32", "f32 channels-last", "bf16", "bf16 channels-last"]
        );
        let scale = Scale::parse("299").unwrap();
        let vs = variants(&o).unwrap();
        // 8 crops in 1,000 ms and in 500 ms: 8 and 16 crops/s.
        let pytorch = vec![
            side(Ran::pytorch(&vs[0]), vec![vec![1000.0]], &scale, 1.0),
            side(Ran::pytorch(&vs[1]), vec![vec![500.0]], &scale, 1.0),
        ];
        let repro = side(Ran::repro("f32"), vec![vec![800.0]], &scale, 1.0);
        let row = Comparison {
            kind: "compare",
            mode: Mode::Eval,
            model: "inception_v4".into(),
            scale: scale.clone(),
            threads: 2,
            gflop_per_image: 1.0,
            ratios: pytorch
                .iter()
                .map(|t| (t.label(), repro.median_per_s / t.median_per_s))
                .collect(),
            repro,
            pytorch,
        };
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["pytorch"][1]["layout"], "channels-last");
        assert_eq!(json["pytorch"][0]["layout"], "nchw");
        assert!(json["repro"].get("layout").is_none(), "{json}");
        assert_eq!(json["ratios"][1][0], "f32 channels-last");
        let text = table(std::slice::from_ref(&row), "Test CPU", 2, None, None);
        let head = text.lines().find(|l| l.starts_with("network")).unwrap();
        assert!(head.contains("torch f32 ") && head.contains("torch f32 channels-last"));
        // 10 crops/s against 8 and 16: 1.25 and 0.62 (0.625 rounded to even), in that order.
        let line = text
            .lines()
            .find(|l| l.starts_with("inception_v4"))
            .unwrap();
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            &cells[cells.len() - 6..],
            ["8.0", "-", "1.25", "16.0", "-", "0.62"]
        );
        assert!(text.contains("in that precision and layout"), "{text}");
    }

    /// With a Python that has torch and timm ($REPRO_PYTHON, else python3), the PyTorch side
    /// runs a forward pass in each layout and says it ran in the one asked; without one the
    /// test says so and passes.
    #[test]
    fn the_pytorch_side_runs_in_the_layout_asked() {
        let python = std::env::var("REPRO_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut torch = match TorchSide::start(&python, 1) {
            Ok(t) => t,
            Err(why) => {
                eprintln!("skipped: no PyTorch side ({why})");
                return;
            }
        };
        for channels_last in [false, true] {
            let ms = torch.measure(&TorchRequest {
                mode: Mode::Eval,
                model: "inception_v3",
                size: 75,
                batch: 2,
                width: 0.25,
                classes: 10,
                steps: 2,
                warmup: 0,
                precision: "f32",
                channels_last,
            });
            let ms = ms.unwrap_or_else(|e| panic!("channels_last {channels_last}: {e}"));
            assert!(ms.len() == 2 && ms.iter().all(|&t| t > 0.0), "{ms:?}");
        }
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
            torch_layouts: vec!["nchw".into()],
            precision: "f32".into(),
            seed: 0,
        };
        assert!(validate(&o).unwrap_err().contains("f16"));
        o.torch_precisions = vec!["bf16".into()];
        assert!(validate(&o).is_ok());
        o.torch_layouts = vec!["nchw".into(), "nhwc".into()];
        assert_eq!(
            validate(&o).unwrap_err(),
            "--torch-layouts: `nhwc` is not nchw or channels-last"
        );
        o.torch_layouts = vec!["nchw".into()];
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

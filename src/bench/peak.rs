//! The CPU's f32 peak, from what /proc/cpuinfo says of it: the yardstick `repro bench compare`
//! divides each side's arithmetic rate by.
//!
//! peak = threads used × clock × f32 lanes per vector × 2 (an FMA is two operations) × FMA
//! issues per cycle. The lanes come from the widest vector extension in the flags (AVX-512: 16,
//! AVX2 with FMA: 8, otherwise SSE: 4 and no FMA); the FMA issues per cycle from the vendor and
//! family, which the flags alone do not tell: AMD Zen 4 (family 25 with AVX-512) splits each
//! 512-bit FMA over its two 256-bit pipes (one per cycle), Zen 1 (family 23, before model 0x30)
//! has two 128-bit pipes (one 256-bit FMA per cycle); every other AVX2/AVX-512 CPU is counted
//! with two FMA units, as Intel's server parts and AMD Zen 2/3/5 have (some Intel parts have
//! one AVX-512 unit: then the share shown is half the true one). The clock is the nominal
//! one: cpufreq's maximum where the kernel exposes it, else `cpu MHz` of /proc/cpuinfo (under
//! a hypervisor, the host's nominal clock).
//!
//! The nominal clock is not the one the cores run at: under boost they run faster (the 2-core
//! AMD EPYC this was written on says 2.60 GHz and runs its FMAs at 3.66 GHz), so the peak
//! `repro bench compare` divides by is measured where it can be: [`measure_fma_peak`] runs
//! independent FMAs of the widest vectors the CPU has on every thread at once for a fraction
//! of a second. The formula stays beside it in the report.

use serde::Serialize;

/// What the peak is computed from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CpuInfo {
    pub model_name: String,
    pub vendor: String,
    pub family: u32,
    pub model: u32,
    pub flags: Vec<String>,
    pub mhz: f64,
    /// Where the clock was read.
    pub clock_source: String,
}

/// The f32 peak of `threads` cores and how it was computed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Peak {
    /// The yardstick: the measured peak where there is one, else the formula's.
    pub gflops: f64,
    /// What the formula gives (nominal clock).
    pub nominal_gflops: f64,
    /// What an FMA loop on `threads` threads reached, if measured.
    pub measured_gflops: Option<f64>,
    pub threads: usize,
    pub ghz: f64,
    pub lanes: usize,
    pub fma_per_cycle: usize,
    /// One sentence for people: the formula with its numbers.
    pub how: String,
}

impl CpuInfo {
    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// This machine's, from /proc/cpuinfo (first processor) and cpufreq.
    pub fn read() -> Result<Self, String> {
        let text = std::fs::read_to_string("/proc/cpuinfo")
            .map_err(|e| format!("cannot read /proc/cpuinfo: {e}"))?;
        let mut info = Self::parse(&text)?;
        let max_khz =
            std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
                .ok()
                .and_then(|s| s.trim().parse::<f64>().ok());
        if let Some(khz) = max_khz {
            info.mhz = khz / 1e3;
            info.clock_source = "cpufreq's maximum clock".into();
        }
        Ok(info)
    }

    /// The fields of the first processor in a /proc/cpuinfo text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let first = text.split("\n\n").next().unwrap_or("");
        let field = |name: &str| {
            first.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
        };
        let mhz = field("cpu MHz")
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or("/proc/cpuinfo has no `cpu MHz`")?;
        Ok(Self {
            model_name: field("model name").unwrap_or_else(|| "unknown CPU".into()),
            vendor: field("vendor_id").unwrap_or_default(),
            family: field("cpu family")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            model: field("model").and_then(|v| v.parse().ok()).unwrap_or(0),
            flags: field("flags")
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect(),
            mhz,
            clock_source: "`cpu MHz` of /proc/cpuinfo".into(),
        })
    }

    /// f32 lanes of the widest vector FMA the flags show, and FMA issues per cycle.
    fn vector_units(&self) -> (usize, usize) {
        let amd = self.vendor == "AuthenticAMD";
        if self.has("avx512f") {
            let zen4 = amd && self.family == 25;
            (16, if zen4 { 1 } else { 2 })
        } else if self.has("avx2") && self.has("fma") {
            let zen1 = amd && self.family == 23 && self.model < 0x30;
            (8, if zen1 { 1 } else { 2 })
        } else {
            // SSE: a multiply and an add per cycle, counted as one FMA-equivalent of 4 lanes.
            (4, 1)
        }
    }

    /// The f32 peak of `threads` of these cores.
    pub fn peak(&self, threads: usize) -> Peak {
        let (lanes, fma) = self.vector_units();
        let ghz = self.mhz / 1e3;
        let gflops = threads as f64 * ghz * (lanes * 2 * fma) as f64;
        Peak {
            gflops,
            nominal_gflops: gflops,
            measured_gflops: None,
            threads,
            ghz,
            lanes,
            fma_per_cycle: fma,
            how: format!(
                "f32 peak {gflops:.0} GFLOP/s = {threads} threads × {ghz:.2} GHz ({}) × {lanes} \
                 lanes × 2 (FMA) × {fma} FMA per cycle ({}; from the flags and the CPU family)",
                self.clock_source,
                self.vector_name()
            ),
        }
    }

    /// [`Self::peak`] with the measured one as the yardstick where there is one (`measured`,
    /// from [`measure_fma_peak`]), the formula's kept beside it.
    pub fn peak_measured(&self, threads: usize, measured: Option<f64>) -> Peak {
        let nominal = self.peak(threads);
        let Some(m) = measured else {
            return nominal;
        };
        let per_cycle = (nominal.lanes * 2 * nominal.fma_per_cycle * threads) as f64;
        Peak {
            gflops: m,
            measured_gflops: Some(m),
            how: format!(
                "f32 peak {m:.0} GFLOP/s measured (independent {} FMAs on {threads} threads at \
                 once: the cores at {:.2} GHz); the nominal formula gives {:.0} = {threads} \
                 threads × {:.2} GHz ({}) × {} lanes × 2 (FMA) × {} FMA per cycle",
                self.vector_name(),
                m / per_cycle,
                nominal.nominal_gflops,
                nominal.ghz,
                self.clock_source,
                nominal.lanes,
                nominal.fma_per_cycle,
            ),
            ..nominal
        }
    }

    fn vector_name(&self) -> &'static str {
        if self.has("avx512f") {
            "AVX-512"
        } else if self.has("avx2") && self.has("fma") {
            "AVX2 + FMA"
        } else {
            "SSE"
        }
    }
}

/// GFLOP/s of f32 FMAs on `threads` threads at once (AVX-512 or AVX2 + FMA, 12 independent
/// accumulators each so that the FMAs' latency is hidden), the fastest of three runs of about
/// `seconds / 3` each: the peak is what the cores can do, and a busy host (this VM's measured
/// 208–234 GFLOP/s from one run to the next) only ever lowers a run. `None` on a CPU without
/// either.
pub fn measure_fma_peak(threads: usize, seconds: f64) -> Option<f64> {
    let kernel = fma_kernel()?;
    // Iterations for a third of `seconds`, from a short calibration run on this thread.
    let probe = 200_000;
    let t = std::time::Instant::now();
    std::hint::black_box(kernel.run(probe));
    let per_iter = t.elapsed().as_secs_f64() / probe as f64;
    let iters = ((seconds / 3.0 / per_iter.max(1e-12)) as u64).max(probe);
    (0..3)
        .map(|_| fma_run(kernel, threads, iters))
        .reduce(f64::max)
}

/// One run of [`measure_fma_peak`]: `iters` rounds of the loop on each of `threads` threads.
fn fma_run(kernel: FmaKernel, threads: usize, iters: u64) -> f64 {
    let barrier = std::sync::Barrier::new(threads.max(1));
    let secs: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let t = std::time::Instant::now();
                    std::hint::black_box(kernel.run(iters));
                    t.elapsed().as_secs_f64()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("FMA loop"))
            .collect()
    });
    let flops = iters as f64 * (FMA_CHAINS * kernel.lanes() * 2) as f64;
    secs.iter().map(|s| flops / s / 1e9).sum()
}

/// Independent accumulators of the FMA loop.
const FMA_CHAINS: usize = 12;

#[derive(Clone, Copy)]
enum FmaKernel {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

fn fma_kernel() -> Option<FmaKernel> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Some(FmaKernel::Avx512);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Some(FmaKernel::Avx2);
        }
    }
    None
}

impl FmaKernel {
    fn lanes(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            FmaKernel::Avx512 => 16,
            #[cfg(target_arch = "x86_64")]
            FmaKernel::Avx2 => 8,
        }
    }

    /// `iters` rounds of one FMA on each accumulator; returns their sum (kept alive).
    fn run(self, iters: u64) -> f32 {
        match self {
            // SAFETY: chosen only where the CPU has the features.
            #[cfg(target_arch = "x86_64")]
            FmaKernel::Avx512 => unsafe { fma_loop_avx512(iters) },
            #[cfg(target_arch = "x86_64")]
            FmaKernel::Avx2 => unsafe { fma_loop_avx2(iters) },
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let (b, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); FMA_CHAINS];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, b, c);
        }
    }
    let sum = acc
        .iter()
        .fold(_mm512_setzero_ps(), |s, &a| _mm512_add_ps(s, a));
    _mm512_reduce_add_ps(sum)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let (b, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); FMA_CHAINS];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, b, c);
        }
    }
    let mut lanes = [0f32; 8];
    let sum = acc
        .iter()
        .fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    lanes.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(vendor: &str, family: u32, model: u32, flags: &str, mhz: f64) -> CpuInfo {
        let text = format!(
            "processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n\
             model name\t: Test CPU\ncpu MHz\t\t: {mhz}\nflags\t\t: {flags}\n\nprocessor\t: 1\n"
        );
        CpuInfo::parse(&text).unwrap()
    }

    #[test]
    fn parses_the_first_processor() {
        let c = cpu("AuthenticAMD", 25, 17, "fpu avx2 fma avx512f", 2596.1);
        assert_eq!(c.model_name, "Test CPU");
        assert_eq!((c.family, c.model), (25, 17));
        assert!(c.has("avx512f") && !c.has("avx512"));
        assert_eq!(c.mhz, 2596.1);
        assert!(CpuInfo::parse("processor : 0\n").is_err());
    }

    #[test]
    fn peak_follows_vector_width_and_fma_units() {
        // An Intel Xeon with AVX-512 at 2.1 GHz, 2 cores: 2 × 2.1 × 16 × 2 × 2 = 268.8.
        let xeon = cpu(
            "GenuineIntel",
            6,
            143,
            "avx2 fma avx512f avx512_bf16",
            2100.0,
        );
        assert!((xeon.peak(2).gflops - 268.8).abs() < 1e-9);
        // AMD Zen 4: one 512-bit FMA per cycle.
        let zen4 = cpu("AuthenticAMD", 25, 17, "avx2 fma avx512f", 2600.0);
        assert!((zen4.peak(2).gflops - 166.4).abs() < 1e-9);
        assert!(zen4.peak(2).how.contains("× 1 FMA per cycle (AVX-512"));
        // AVX2 only: 8 lanes, two units.
        let zen3 = cpu("AuthenticAMD", 25, 1, "avx2 fma", 3000.0);
        assert!((zen3.peak(1).gflops - 96.0).abs() < 1e-9);
        let old = cpu("GenuineIntel", 6, 15, "sse2", 2000.0);
        assert!((old.peak(1).gflops - 16.0).abs() < 1e-9);
    }

    /// The measured peak is the yardstick, the formula's beside it, the clock it implies said.
    #[test]
    fn measured_peak_is_the_yardstick() {
        let zen4 = cpu("AuthenticAMD", 25, 17, "avx2 fma avx512f", 2600.0);
        let p = zen4.peak_measured(2, Some(234.0));
        assert_eq!((p.gflops, p.nominal_gflops), (234.0, 166.4));
        assert!(p.how.contains("f32 peak 234 GFLOP/s measured"), "{}", p.how);
        assert!(p.how.contains("cores at 3.66 GHz"), "{}", p.how);
        assert!(p.how.contains("nominal formula gives 166"), "{}", p.how);
        assert_eq!(zen4.peak_measured(2, None), zen4.peak(2));
    }

    /// On a CPU with AVX2 or AVX-512 the FMA loop runs and reaches a plausible rate: at least a
    /// tenth of the formula's peak of one core (the machine may be busy), at most 4× it.
    #[test]
    fn fma_loop_measures_this_cpu() {
        let Some(m) = measure_fma_peak(1, 0.02) else {
            eprintln!("no AVX2/AVX-512 here: the peak stays the formula's");
            return;
        };
        let nominal = CpuInfo::read().map(|c| c.peak(1).gflops).unwrap_or(m);
        assert!(m > nominal / 10.0 && m < nominal * 4.0, "{m} vs {nominal}");
    }
}

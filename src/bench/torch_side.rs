//! The PyTorch + timm side of `repro bench compare`: one `tools/bench_timm_train.py --serve`
//! process for the whole comparison (torch is imported once), asked for one measurement at a
//! time so that its steps alternate with repro's.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde::{Deserialize, Serialize};

use super::Mode;

/// What the Python side said of itself when it started.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct TorchVersion {
    pub torch: String,
    pub timm: String,
    pub threads: usize,
    /// Whether oneDNN says the CPU runs bf16 (None: torch has no such probe).
    pub bf16: Option<bool>,
}

/// One measurement asked of the Python side.
#[derive(Clone, Debug, Serialize)]
pub struct TorchRequest<'a> {
    /// A training step, or a forward pass under `torch.inference_mode()` ("train", "eval").
    pub mode: Mode,
    pub model: &'a str,
    pub size: usize,
    pub batch: usize,
    pub width: f64,
    pub classes: usize,
    pub steps: usize,
    pub warmup: usize,
    /// "f32" or "bf16" (autocast).
    pub precision: &'a str,
    /// The model and its input in `torch.channels_last` instead of timm's NCHW.
    pub channels_last: bool,
}

/// One PyTorch configuration timed against repro: a precision in a memory layout.
#[derive(Clone, Debug, PartialEq)]
pub struct TorchVariant {
    /// "f32" or "bf16" (autocast).
    pub precision: String,
    pub layout: Layout,
}

/// PyTorch's memory layout of the model and its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// timm's default: PyTorch converts each oneDNN convolution's input and output.
    Nchw,
    /// `torch.channels_last`: oneDNN's convolutions read and write the tensors as they lie.
    ChannelsLast,
}

impl Layout {
    /// `nchw` or `channels-last`, as `--torch-layouts` takes them.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "nchw" => Some(Self::Nchw),
            "channels-last" => Some(Self::ChannelsLast),
            _ => None,
        }
    }
}

impl TorchVariant {
    /// For tables and JSON lines: "f32", "bf16", "f32 channels-last".
    pub fn label(&self) -> String {
        match self.layout {
            Layout::Nchw => self.precision.clone(),
            Layout::ChannelsLast => format!("{} channels-last", self.precision),
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    step_ms: Option<Vec<f64>>,
    /// The layout of the input it ran on ("nchw", "channels-last"), from its strides.
    layout: Option<String>,
    error: Option<String>,
}

/// A running `bench_timm_train.py --serve`.
pub struct TorchSide {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    pub version: TorchVersion,
}

/// The script, found from the working directory (a checkout) or the source tree built from.
fn script() -> PathBuf {
    let relative = Path::new("tools/bench_timm_train.py");
    match relative.exists() {
        true => relative.to_path_buf(),
        false => Path::new(env!("CARGO_MANIFEST_DIR")).join(relative),
    }
}

impl TorchSide {
    /// Starts the Python side with `threads` torch threads; `Err` says why it cannot run
    /// (no such interpreter, torch or timm missing, ...).
    pub fn start(python: &str, threads: usize) -> Result<Self, String> {
        let script = script();
        let mut child = Command::new(python)
            .arg(&script)
            .args(["--serve", "--threads", &threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run `{python}`: {e} (set --python or REPRO_PYTHON)"))?;
        let input = child.stdin.take().expect("piped stdin");
        let mut output = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        let _ = output.read_line(&mut first);
        match serde_json::from_str::<TorchVersion>(&first) {
            Ok(version) => Ok(Self {
                child,
                input,
                output,
                version,
            }),
            Err(_) => {
                let _ = child.kill();
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                let _ = child.wait();
                let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
                Err(format!(
                    "`{python} {}` did not start: {}",
                    script.display(),
                    last.unwrap_or("no output (it needs torch and timm)")
                ))
            }
        }
    }

    /// The milliseconds of each timed step of one measurement.
    pub fn measure(&mut self, request: &TorchRequest) -> Result<Vec<f64>, String> {
        let line = serde_json::to_string(request).map_err(|e| e.to_string())?;
        writeln!(self.input, "{line}")
            .and_then(|_| self.input.flush())
            .map_err(|e| format!("the PyTorch side stopped: {e}"))?;
        let mut answer = String::new();
        let n = self
            .output
            .read_line(&mut answer)
            .map_err(|e| format!("the PyTorch side stopped: {e}"))?;
        if n == 0 {
            return Err("the PyTorch side stopped without answering".into());
        }
        let a: Answer = serde_json::from_str(&answer)
            .map_err(|e| format!("unreadable answer from the PyTorch side ({e}): {answer}"))?;
        let asked = match request.channels_last {
            true => "channels-last",
            false => "nchw",
        };
        match (a.step_ms, a.error) {
            (Some(_), _) if a.layout.as_deref() != Some(asked) => Err(format!(
                "the PyTorch side ran in layout {}, not {asked} as asked \
                 (is tools/bench_timm_train.py older than this repro?)",
                a.layout.as_deref().unwrap_or("unknown")
            )),
            (Some(ms), _) if !ms.is_empty() => Ok(ms),
            (_, Some(e)) => Err(e),
            _ => Err("the PyTorch side timed no step".into()),
        }
    }
}

impl Drop for TorchSide {
    fn drop(&mut self) {
        // Closing stdin ends its loop; it exits on its own.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

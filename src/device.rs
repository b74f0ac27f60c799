//! `--device cpu|cuda[:N]`.

use candle_core::Device;

/// The device named on the command line, and its name for provenance.
pub fn parse_device(spec: &str) -> Result<(Device, String), String> {
    match spec {
        "cpu" => Ok((Device::Cpu, "cpu".into())),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n.parse::<usize>().map_err(|_| format!("--device {s}: expected cuda:N with N a GPU number"))?,
                None => 0,
            };
            cuda_device(ordinal).map(|d| (d, format!("cuda:{ordinal}")))
        }
        other => Err(format!("--device {other}: expected cpu, cuda or cuda:N")),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<Device, String> {
    Device::new_cuda(ordinal).map_err(|e| format!("--device cuda:{ordinal}: no usable GPU ({e})"))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(ordinal: usize) -> Result<Device, String> {
    Err(format!(
        "--device cuda:{ordinal}: this binary was built without CUDA support; rebuild with `cargo build --release --features cuda` (see README)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_parses_and_bad_names_say_what_is_expected() {
        assert_eq!(parse_device("cpu").unwrap().1, "cpu");
        assert!(parse_device("gpu").unwrap_err().contains("expected cpu, cuda or cuda:N"));
        assert!(parse_device("cuda:x").unwrap_err().contains("expected cuda:N"));
        #[cfg(not(feature = "cuda"))]
        assert!(parse_device("cuda:0").unwrap_err().contains("built without CUDA support"));
    }
}

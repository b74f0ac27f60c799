//! Where the time of a training step goes: forward, backward, the read-back, the exchange with
//! other replicas, clipping, the optimizer and the moving average. For benchmarks only: each
//! mark waits for the device to finish the phase's work, which a normal step never does.

use std::time::Instant;

use candle_core::Device;

/// The phases a step is split into, in order.
pub const PHASES: [&str; 7] = [
    "forward",
    "backward",
    "read",
    "exchange",
    "clip",
    "optimizer",
    "ema",
];

/// Accumulates the time of each phase of one step.
#[derive(Debug)]
pub struct PhaseClock {
    device: Device,
    last: Instant,
    ms: [f64; PHASES.len()],
}

impl PhaseClock {
    pub fn new(device: &Device) -> Self {
        Self {
            device: device.clone(),
            last: Instant::now(),
            ms: [0.0; PHASES.len()],
        }
    }

    /// Starts a step: the times so far are cleared.
    pub fn start(&mut self) {
        let _ = self.device.synchronize();
        self.ms = [0.0; PHASES.len()];
        self.last = Instant::now();
    }

    /// Ends the phase `name` (one of [`PHASES`]): its work is waited for and its time added.
    pub fn mark(&mut self, name: &str) {
        let _ = self.device.synchronize();
        let now = Instant::now();
        if let Some(i) = PHASES.iter().position(|p| *p == name) {
            self.ms[i] += (now - self.last).as_secs_f64() * 1e3;
        }
        self.last = now;
    }

    /// Milliseconds per phase of the step since [`PhaseClock::start`].
    pub fn milliseconds(&self) -> Vec<(&'static str, f64)> {
        PHASES.iter().copied().zip(self.ms).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_goes_to_the_phase_marked() {
        let mut c = PhaseClock::new(&Device::Cpu);
        c.start();
        std::thread::sleep(std::time::Duration::from_millis(20));
        c.mark("backward");
        c.mark("ema");
        let ms: std::collections::HashMap<_, _> = c.milliseconds().into_iter().collect();
        assert!(ms["backward"] >= 19.0, "{ms:?}");
        assert!(ms["ema"] < ms["backward"] && ms["forward"] == 0.0);
    }
}

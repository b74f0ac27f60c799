//! Ctrl-C, SIGTERM and SIGUSR1 (what Slurm sends ahead of a time limit with
//! `--signal=USR1@SECONDS`) while `repro run` trains or evaluates: the first signal asks the work
//! in progress to stop at its next safe point (the trainer saves a checkpoint at the end of
//! its step, an evaluation stops between chunks) and the command exits with status 3; a
//! second signal ends the process at once, as if no handler were installed.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the signal handler; read by the trainer and the evaluation between units of work.
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Whether a stop was asked for. Copyable, cheap to check; the default never stops.
#[derive(Clone, Copy, Debug, Default)]
pub struct StopSignal(Option<&'static AtomicBool>);

impl StopSignal {
    /// Stops when SIGINT, SIGTERM or SIGUSR1 arrives (installs the handlers; harmless to call
    /// twice).
    pub fn on_signals() -> Self {
        #[cfg(unix)]
        // SAFETY: the handler only stores to an atomic and resets the signal's action, both
        // async-signal-safe.
        unsafe {
            let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::signal(libc::SIGINT, handler);
            libc::signal(libc::SIGTERM, handler);
            libc::signal(libc::SIGUSR1, handler);
        }
        Self(Some(&REQUESTED))
    }

    /// Stops when `flag` is set: a library caller's own stop switch (and the tests').
    pub fn from_flag(flag: &'static AtomicBool) -> Self {
        Self(Some(flag))
    }

    /// Whether the work should stop now.
    pub fn requested(&self) -> bool {
        self.0.is_some_and(|f| f.load(Ordering::Relaxed))
    }
}

#[cfg(unix)]
extern "C" fn on_signal(signal: libc::c_int) {
    REQUESTED.store(true, Ordering::Relaxed);
    // SAFETY: resetting a signal's action is async-signal-safe.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_is_requested_only_once_its_flag_is_set() {
        static FLAG: AtomicBool = AtomicBool::new(false);
        let signal = StopSignal::from_flag(&FLAG);
        assert!(!signal.requested());
        assert!(!StopSignal::default().requested());
        FLAG.store(true, Ordering::Relaxed);
        assert!(signal.requested());
    }
}

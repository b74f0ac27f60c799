//! How a command ended, as the exit status classes every `repro` command shares.

use std::fmt;

/// Why a command did not succeed; each maps to one exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitClass {
    /// A run, evaluation or check failed or diverged (exit 1).
    Failed,
    /// Bad input: command line, experiment file, missing paths, unreadable data (exit 2).
    BadInput,
    /// Stopped by Ctrl-C, SIGTERM or SIGUSR1; the same command resumes (exit 3).
    Interrupted,
}

impl ExitClass {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            ExitClass::Failed => 1,
            ExitClass::BadInput => 2,
            ExitClass::Interrupted => 3,
        }
    }
}

/// An error a command stops with, and its class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandError {
    pub class: ExitClass,
    /// For users: what went wrong, naming the file, flag or setting.
    pub message: String,
}

impl CommandError {
    pub fn bad_input(message: impl ToString) -> Self {
        Self {
            class: ExitClass::BadInput,
            message: message.to_string(),
        }
    }

    pub fn failed(message: impl ToString) -> Self {
        Self {
            class: ExitClass::Failed,
            message: message.to_string(),
        }
    }

    pub fn interrupted(message: impl ToString) -> Self {
        Self {
            class: ExitClass::Interrupted,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CommandError {}

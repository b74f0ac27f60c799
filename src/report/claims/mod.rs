//! Verdicts on the paper's claims from the data: each check is a pure function of stored
//! metrics or evaluations, states the claim, and says what the data shows and how strongly.

mod evaluation;
mod final_error;
#[cfg(test)]
mod test_rows;
mod training_speed;

pub use evaluation::{ensembles_lower_error, more_crops_lower_error, EnsembleRow, TableErrors};
pub use final_error::{residual_scaling_prevents_death, size_over_residual, NetworkRuns};
pub use training_speed::residual_speeds_up_training;

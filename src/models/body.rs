//! The trunk every architecture file builds: six stages with the names they share.

use super::layers::Chain;

/// Names of the six stages every network has.
pub const STAGE_NAMES: [&str; 6] = [
    "stem",
    "stage_a",
    "reduction_a",
    "stage_b",
    "reduction_b",
    "stage_c",
];

/// The trunk of a network as the architecture files build it.
pub struct Body {
    pub(super) stages: Vec<Chain>,
}

impl Body {
    /// Stem, 35x35 blocks, Reduction-A, 17x17 blocks, Reduction-B, 8x8 blocks.
    pub fn standard(stages: [Chain; 6]) -> Self {
        Self {
            stages: stages.into(),
        }
    }
}

/// The letter of the i-th block of a stage in TF scope names (`Mixed_5b`, `Mixed_5c`, ...).
pub fn stage_letter(i: usize) -> char {
    (b'b' + i as u8) as char
}

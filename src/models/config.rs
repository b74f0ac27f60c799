//! What a network is built from: the architecture and the knobs of a scaled-down reproduction.

use serde::{Deserialize, Serialize};

use super::pool::PoolKind;

/// The four networks of the paper.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    InceptionV3,
    InceptionV4,
    InceptionResnetV1,
    InceptionResnetV2,
}

impl Arch {
    pub const ALL: [Arch; 4] = [
        Arch::InceptionV3,
        Arch::InceptionV4,
        Arch::InceptionResnetV1,
        Arch::InceptionResnetV2,
    ];

    /// The name used on the command line, in YAML and in timm.
    pub fn name(self) -> &'static str {
        match self {
            Arch::InceptionV3 => "inception_v3",
            Arch::InceptionV4 => "inception_v4",
            Arch::InceptionResnetV1 => "inception_resnet_v1",
            Arch::InceptionResnetV2 => "inception_resnet_v2",
        }
    }

    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == name.replace('-', "_"))
    }

    /// Blocks in the 35x35, 17x17 and 8x8 stages of the reference network.
    pub fn default_blocks(self) -> [usize; 3] {
        match self {
            Arch::InceptionV3 => [3, 4, 2],
            Arch::InceptionV4 => [4, 7, 3],
            Arch::InceptionResnetV1 => [5, 10, 5],
            // 9 scaled Block8 units plus the final unscaled one without ReLU.
            Arch::InceptionResnetV2 => [10, 20, 10],
        }
    }

    /// Residual scales of the three stages (IR-A, IR-B, IR-C); 1.0 for the plain networks.
    pub fn default_residual_scales(self) -> [f64; 3] {
        match self {
            Arch::InceptionResnetV1 | Arch::InceptionResnetV2 => [0.17, 0.10, 0.20],
            Arch::InceptionV3 | Arch::InceptionV4 => [1.0, 1.0, 1.0],
        }
    }

    /// Name of the final linear layer (the timm state-dict prefix).
    pub fn classifier_name(self) -> &'static str {
        match self {
            Arch::InceptionV3 => "fc",
            Arch::InceptionV4 => "last_linear",
            Arch::InceptionResnetV1 | Arch::InceptionResnetV2 => "classif",
        }
    }

    /// Evaluation preprocessing of the released weights (timm's pretrained configs): input
    /// size, central crop fraction. Mean and std are 0.5 for all four (inputs in [-1, 1]).
    pub fn eval_defaults(self) -> (usize, f64) {
        match self {
            Arch::InceptionResnetV2 => (299, 0.8975),
            _ => (299, 0.875),
        }
    }

    /// Whether timm publishes weights whose state-dict keys this network reproduces.
    pub fn has_timm_weights(self) -> bool {
        self != Arch::InceptionResnetV1
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Padding semantics of the 3x3 stride-1 average pools inside the Inception blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AvgPoolPadding {
    /// TensorFlow SAME: padded cells are not counted in the divisor. The networks were trained
    /// this way, and timm's v4 and IR-v2 evaluate this way.
    Exclude,
    /// PyTorch's default: padded zeros are averaged in. timm's inception_v3 (from
    /// torchvision) evaluates this way; use it to match timm's v3 logits exactly.
    Include,
}

impl AvgPoolPadding {
    pub fn pool_kind(self) -> PoolKind {
        match self {
            AvgPoolPadding::Exclude => PoolKind::AvgExcludePad,
            AvgPoolPadding::Include => PoolKind::AvgIncludePad,
        }
    }
}

/// Everything that determines a network's structure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub arch: Arch,
    #[serde(default = "defaults::num_classes")]
    pub num_classes: usize,
    /// Every filter count is multiplied by this and rounded (at least 1).
    #[serde(default = "defaults::width")]
    pub width: f64,
    /// Blocks in the 35x35, 17x17 and 8x8 stages; `None` means the reference counts.
    #[serde(default)]
    pub blocks: Option<[usize; 3]>,
    /// Residual scales of the three stages; `None` means 0.17/0.10/0.20. Set 1.0 for the
    /// unscaled residuals of the paper's section 3.3. Ignored by the plain networks.
    #[serde(default)]
    pub residual_scales: Option<[f64; 3]>,
    /// Drop probability before the classifier (the paper keeps 0.8).
    #[serde(default = "defaults::dropout")]
    pub dropout: f64,
    /// The auxiliary classifier on the last 17x17 block (weight 0.4 in training).
    #[serde(default)]
    pub aux_head: bool,
    /// Input height and width. Sizes 75, 107, 139, ..., 299 (H ≡ 11 mod 32) tile exactly.
    #[serde(default = "defaults::image_size")]
    pub image_size: usize,
    /// `None` means TF semantics (exclude).
    #[serde(default)]
    pub avg_pool_padding: Option<AvgPoolPadding>,
    #[serde(default = "defaults::bn_eps")]
    pub bn_eps: f64,
    /// Running-statistics update weight, PyTorch convention. TF-slim's decay 0.9997 is 0.0003.
    #[serde(default = "defaults::bn_momentum")]
    pub bn_momentum: f64,
    /// How the weights start: TF-slim's schemes (the paper's; default, left out of the
    /// hash) or PyTorch's, as timm's ports get them.
    #[serde(default, skip_serializing_if = "InitScheme::is_tf_slim")]
    pub init: InitScheme,
}

/// The initial weights' distributions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitScheme {
    /// TF-slim's: convolutions variance scaling (factor 2, fan-in, normal truncated at 2
    /// sigma), classifiers Glorot-uniform, biases 0.
    #[default]
    TfSlim,
    /// PyTorch's defaults as timm's models get them: convolutions and linear layers uniform
    /// in ±1/sqrt(fan-in) (`kaiming_uniform_(a=sqrt(5))`), their biases likewise; timm's
    /// Inception-v3 instead draws its convolution and linear weights from a normal of
    /// standard deviation 0.1 (0.01 for the auxiliary head's first convolution, 0.001 for its
    /// classifier).
    Pytorch,
}

impl InitScheme {
    pub fn is_tf_slim(&self) -> bool {
        *self == InitScheme::TfSlim
    }
}

mod defaults {
    pub fn num_classes() -> usize {
        1000
    }
    pub fn width() -> f64 {
        1.0
    }
    pub fn dropout() -> f64 {
        0.2
    }
    pub fn image_size() -> usize {
        299
    }
    pub fn bn_eps() -> f64 {
        1e-3
    }
    pub fn bn_momentum() -> f64 {
        0.0003
    }
}

/// The smallest input on which every network's last stage is still 1x1.
pub const MIN_IMAGE_SIZE: usize = 75;

impl ModelConfig {
    /// The reference network: 1000 classes, full width, 299 px, no aux head.
    pub fn new(arch: Arch) -> Self {
        Self {
            arch,
            num_classes: defaults::num_classes(),
            width: defaults::width(),
            blocks: None,
            residual_scales: None,
            dropout: defaults::dropout(),
            aux_head: false,
            image_size: defaults::image_size(),
            avg_pool_padding: None,
            bn_eps: defaults::bn_eps(),
            bn_momentum: defaults::bn_momentum(),
            init: InitScheme::TfSlim,
        }
    }

    pub fn blocks(&self) -> [usize; 3] {
        self.blocks.unwrap_or(self.arch.default_blocks())
    }

    pub fn residual_scales(&self) -> [f64; 3] {
        self.residual_scales
            .unwrap_or(self.arch.default_residual_scales())
    }

    pub fn avg_pool_padding(&self) -> AvgPoolPadding {
        self.avg_pool_padding.unwrap_or(AvgPoolPadding::Exclude)
    }

    /// Checks the knobs; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.num_classes == 0 {
            return Err("num_classes must be at least 1".into());
        }
        if !(self.width.is_finite() && self.width > 0.0) {
            return Err(format!(
                "width must be a positive number, got {}",
                self.width
            ));
        }
        if self.image_size < MIN_IMAGE_SIZE {
            return Err(format!(
                "image_size must be at least {MIN_IMAGE_SIZE} px, got {}",
                self.image_size
            ));
        }
        if self.blocks().contains(&0) {
            return Err(format!(
                "blocks must be at least 1 per stage, got {:?}",
                self.blocks()
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "dropout is a drop probability in [0, 1), got {}",
                self.dropout
            ));
        }
        if !(0.0..=1.0).contains(&self.bn_momentum) {
            return Err(format!(
                "bn_momentum must be in [0, 1], got {}",
                self.bn_momentum
            ));
        }
        if self.residual_scales().iter().any(|s| !s.is_finite()) {
            return Err("residual_scales must be finite".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for arch in Arch::ALL {
            assert_eq!(Arch::from_name(arch.name()), Some(arch));
        }
        assert_eq!(
            Arch::from_name("inception-resnet-v2"),
            Some(Arch::InceptionResnetV2)
        );
        assert_eq!(Arch::from_name("resnet50"), None);
    }

    #[test]
    fn unknown_yaml_keys_are_rejected() {
        let err = serde_json::from_str::<ModelConfig>(r#"{"arch":"inception_v4","widht":0.5}"#)
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `widht`"), "{err}");
        let ok: ModelConfig =
            serde_json::from_str(r#"{"arch":"inception_v4","width":0.5}"#).unwrap();
        assert_eq!(ok.width, 0.5);
        assert_eq!(ok.num_classes, 1000);
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = ModelConfig::new(Arch::InceptionV3);
        c.image_size = 64;
        assert!(c.validate().unwrap_err().contains("image_size"));
        c.image_size = 75;
        c.blocks = Some([1, 0, 1]);
        assert!(c.validate().unwrap_err().contains("blocks"));
    }
}

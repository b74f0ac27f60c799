//! The look of the figures: the paper's line style per network, the embedded font, sizes.

use std::sync::Once;

use plotters::style::{FontStyle, RGBColor};

use super::dash::{DashPattern, DASHED, DASH_DOT, SOLID};

/// DejaVu Sans (Bitstream Vera licence, see `DejaVuSans-LICENSE.txt`), so that text renders
/// the same on machines without system fonts.
const FONT: &[u8] = include_bytes!("DejaVuSans.ttf");

/// The family name the embedded font is registered under. SVG files carry it verbatim as
/// their CSS `font-family`, so a browser uses DejaVu Sans where installed (its widths are
/// the ones text was laid out with) and its own sans-serif font elsewhere.
pub const FONT_FAMILY: &str = "DejaVu Sans, sans-serif";

/// Pixel size of PNG and SVG figures.
pub const FIGURE_SIZE: (u32, u32) = (900, 600);

/// Registers the embedded font with plotters (once per process).
pub fn register_embedded_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_err() {
            panic!("the embedded DejaVu Sans font does not parse");
        }
    });
}

/// How one network is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineLook {
    /// Line colour.
    pub color: RGBColor,
    /// Dash pattern.
    pub pattern: DashPattern,
}

/// Colours for networks the paper did not plot, in order of appearance.
const OTHER_COLORS: [RGBColor; 4] = [
    RGBColor(230, 140, 0),
    RGBColor(140, 60, 170),
    RGBColor(0, 150, 160),
    RGBColor(120, 90, 50),
];

/// The paper's style for a network: Inception-v4 green dashed, Inception-ResNet-v2 red
/// solid, Inception-v3 blue solid, Inception-ResNet-v1 black dash-dot; `None` for networks
/// the paper did not plot.
pub fn paper_look(network: &str) -> Option<LineLook> {
    let (color, pattern) = match network {
        "inception_v4" => (RGBColor(0, 150, 0), DASHED),
        "inception_resnet_v2" => (RGBColor(220, 0, 0), SOLID),
        "inception_v3" => (RGBColor(0, 0, 230), SOLID),
        "inception_resnet_v1" => (RGBColor(0, 0, 0), DASH_DOT),
        _ => return None,
    };
    Some(LineLook { color, pattern })
}

/// The look of each of `networks`: the paper's style where it has one, else solid lines in
/// further colours, in order.
pub fn line_looks(networks: &[&str]) -> Vec<LineLook> {
    let mut others = OTHER_COLORS.iter().cycle();
    networks
        .iter()
        .enumerate()
        .map(|(i, network)| {
            // A network drawn twice (two variants) keeps its paper look only the first time.
            let first = !networks[..i].contains(network);
            first
                .then(|| paper_look(network))
                .flatten()
                .unwrap_or_else(|| LineLook {
                    color: *others.next().expect("cycle never ends"),
                    pattern: SOLID,
                })
        })
        .collect()
}

/// The usual written name of a network (`inception_resnet_v2` → `Inception-ResNet-v2`);
/// unknown names are returned as given.
pub fn network_name(network: &str) -> String {
    match network {
        "inception_v3" => "Inception-v3",
        "inception_v4" => "Inception-v4",
        "inception_resnet_v1" => "Inception-ResNet-v1",
        "inception_resnet_v2" => "Inception-ResNet-v2",
        "bn_inception" => "BN-Inception",
        "resnet_151" => "ResNet-151",
        other => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_networks_have_the_paper_styles() {
        let looks = line_looks(&["inception_v4", "x", "inception_resnet_v1", "y"]);
        assert_eq!(looks[0].pattern, DASHED);
        assert_eq!(looks[2].pattern, DASH_DOT);
        assert_ne!(looks[1].color, looks[3].color);
        assert_eq!(
            paper_look("inception_resnet_v2").unwrap().color,
            RGBColor(220, 0, 0)
        );
        assert_eq!(paper_look("resnet_151"), None);
        assert_eq!(network_name("inception_resnet_v2"), "Inception-ResNet-v2");
        assert_eq!(network_name("my_net"), "my_net");
    }
}

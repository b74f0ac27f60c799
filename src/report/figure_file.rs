//! Writes one drawing as `<stem>.png` and `<stem>.svg`, atomically, with the embedded font.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::{BitMapBackend, DrawingArea, DrawingBackend, IntoDrawingArea, SVGBackend};

use super::error::ReportError;
use super::style::{register_embedded_font, FIGURE_SIZE};
use crate::store::atomic;

/// Something that draws itself onto any plotters backend.
pub trait Drawing {
    /// Draws onto `root`; the error is a message for [`ReportError::Draw`].
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// The PNG and SVG written for one figure, as paths under the output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FigureFiles {
    /// The PNG file.
    pub png: PathBuf,
    /// The SVG file.
    pub svg: PathBuf,
}

/// Draws `drawing` into `<dir>/<stem>.png` and `<dir>/<stem>.svg`.
pub fn write_figure(
    dir: &Path,
    stem: &str,
    drawing: &impl Drawing,
) -> Result<FigureFiles, ReportError> {
    register_embedded_font();
    let draw_error = |message: String| ReportError::Draw {
        figure: stem.to_string(),
        message,
    };
    let (w, h) = FIGURE_SIZE;

    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, FIGURE_SIZE).into_drawing_area();
        drawing.draw(&root).map_err(draw_error)?;
        root.present().map_err(|e| draw_error(e.to_string()))?;
    }
    let png = dir.join(format!("{stem}.png"));
    let image = image::RgbImage::from_raw(w, h, rgb).expect("buffer matches the figure size");
    let mut bytes = Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|source| ReportError::Png {
            path: png.clone(),
            source,
        })?;
    atomic::write_bytes(&png, bytes.get_ref())?;

    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, FIGURE_SIZE).into_drawing_area();
        drawing.draw(&root).map_err(draw_error)?;
        root.present().map_err(|e| draw_error(e.to_string()))?;
    }
    let svg = dir.join(format!("{stem}.svg"));
    atomic::write_bytes(&svg, text.as_bytes())?;
    Ok(FigureFiles { png, svg })
}

//! Decoding a chunk of images once and rendering every crop of every image from it.

use rayon::prelude::*;

use crate::data::{decode_image_file, render_crop, CropProtocol, DataError, Interpolation, Sample};

/// Values of one rendered crop: 3 x `size` x `size`.
pub fn crop_len(size: u32) -> usize {
    3 * size as usize * size as usize
}

/// The crops of one chunk of images.
#[derive(Debug)]
pub struct RenderedChunk {
    /// `kept.len() * protocol.num_crops()` CHW crops, image-major, in the protocol's order.
    pub pixels: Vec<f32>,
    /// Positions in the chunk of the images that were rendered, ascending.
    pub kept: Vec<usize>,
    /// Positions in the chunk of the images that could not be read or decoded, with the
    /// reason (only when skipping was asked for), ascending.
    pub skipped: Vec<(usize, String)>,
}

/// Decodes `samples` (in parallel on the current rayon pool) and renders the crops of
/// `protocol` for a `size`-pixel network, bilinear, in [-1, 1]. The decoded images are
/// dropped before returning. An image that cannot be read or decoded is an error naming the
/// file, or, with `skip_bad_images`, left out and listed in [`RenderedChunk::skipped`].
pub fn render_chunk(
    samples: &[Sample],
    protocol: &CropProtocol,
    size: u32,
    skip_bad_images: bool,
) -> Result<RenderedChunk, DataError> {
    let decoded: Vec<_> = samples
        .par_iter()
        .map(|s| decode_image_file(&s.path))
        .collect();
    let (mut images, mut kept, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for (position, result) in decoded.into_iter().enumerate() {
        match result {
            Ok(img) => {
                images.push(img);
                kept.push(position);
            }
            Err(DataError::Decode { reason, .. }) if skip_bad_images => {
                skipped.push((position, reason))
            }
            Err(DataError::Io { source, .. }) if skip_bad_images => {
                skipped.push((position, source.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
    let jobs: Vec<_> = images
        .iter()
        .flat_map(|img| {
            let crops = protocol.crops(img.width, img.height, size);
            debug_assert_eq!(crops.len(), protocol.num_crops());
            crops.into_iter().map(move |crop| (img, crop))
        })
        .collect();
    let per_crop = crop_len(size);
    let mut pixels = vec![0f32; jobs.len() * per_crop];
    pixels
        .par_chunks_mut(per_crop)
        .zip(jobs.par_iter())
        .for_each(|(out, (img, crop))| render_crop(img, crop, size, Interpolation::Bilinear, out));
    Ok(RenderedChunk {
        pixels,
        kept,
        skipped,
    })
}

//! Decoding a chunk of images once and rendering every crop of every image from it.

use rayon::prelude::*;

use crate::data::{decode_image_file, render_crop, CropProtocol, DataError, Interpolation, Sample};

/// Values of one rendered crop: 3 x `size` x `size`.
pub fn crop_len(size: u32) -> usize {
    3 * size as usize * size as usize
}

/// Decodes `samples` (in parallel on the current rayon pool) and renders the crops of
/// `protocol` for a `size`-pixel network, bilinear, in [-1, 1]: `samples.len() *
/// protocol.num_crops()` CHW crops, image-major, in the protocol's crop order. The decoded
/// images are dropped before returning. Errors name the file that failed to decode.
pub fn render_chunk(
    samples: &[Sample],
    protocol: &CropProtocol,
    size: u32,
) -> Result<Vec<f32>, DataError> {
    let images = samples
        .par_iter()
        .map(|s| decode_image_file(&s.path))
        .collect::<Result<Vec<_>, _>>()?;
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
    Ok(pixels)
}

//! The parallel loader: per-epoch shuffle, parallel decode and preprocessing on a
//! private thread pool, a bounded prefetch queue, and NCHW `f32` batches on a device.
//!
//! Batch contents depend only on (dataset, config, epoch, batch position): the order is
//! a permutation drawn from (seed, epoch), and each image's augmentation from
//! (seed, epoch, dataset index), so any thread count gives identical batches and an
//! epoch can be resumed at any batch.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::augment::Preprocess;
use super::decode::decode_image_file;
use super::error::{DataError, Result};
use super::rng::{SampleRng, Stream};
use super::source::{Dataset, Sample};

/// Loader settings.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Training augmentation or evaluation transform.
    pub preprocess: Preprocess,
    /// Shuffle the order every epoch (from `seed` and the epoch).
    pub shuffle: bool,
    /// Drop the last partial batch instead of yielding it.
    pub drop_last: bool,
    /// Seed of the shuffle and of every augmentation choice.
    pub seed: u64,
    /// Decode threads; 0 uses every available core.
    pub num_threads: usize,
    /// Batches in preparation at once, ahead of the consumer (at least 1).
    pub prefetch: usize,
    /// Skip (and record) images that fail to decode instead of failing the epoch; the
    /// batch holding one is then that much smaller.
    pub skip_bad_images: bool,
    /// This process's shard (0-based) for data-parallel training.
    pub rank: usize,
    /// Number of shards. The epoch's order is cut into batches and shard `rank` takes
    /// batches `rank`, `rank + world_size`, ...: the i-th batch of shard r is global batch
    /// `i * world_size + r`, so the replicas of one update see the same images whatever the
    /// split between processes and accumulated micro-batches. Every shard gets as many
    /// batches; the remainder is left out.
    pub world_size: usize,
}

impl LoaderConfig {
    /// Defaults: shuffle, keep the last batch, seed 0, all cores, prefetch 2, fail on bad
    /// images, a single shard.
    pub fn new(batch_size: usize, preprocess: Preprocess) -> Self {
        LoaderConfig {
            batch_size,
            preprocess,
            shuffle: true,
            drop_last: false,
            seed: 0,
            num_threads: 0,
            prefetch: 2,
            skip_bad_images: false,
            rank: 0,
            world_size: 1,
        }
    }
}

/// An image left out because it could not be read or decoded: the loader's report, and
/// what a run's `provenance.json` lists (there with the path relative to the dataset root).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkippedImage {
    /// The file.
    pub path: PathBuf,
    /// What the reader or decoder said.
    pub reason: String,
}

/// One batch of images and labels.
#[derive(Debug)]
pub struct Batch {
    /// `[n, 3, size, size]` f32 in [-1, 1].
    pub images: Tensor,
    /// `[n]` u32 class indices.
    pub labels: Tensor,
    /// Dataset index of each row.
    pub indices: Vec<usize>,
    /// Position of this batch within its epoch.
    pub position: usize,
}

/// A batch still in host memory, built by the producer thread.
struct HostBatch {
    /// Side of the square images.
    size: usize,
    pixels: Vec<f32>,
    labels: Vec<u32>,
    indices: Vec<usize>,
    position: usize,
}

/// State shared with producer threads.
struct Shared {
    samples: Vec<Sample>,
    config: LoaderConfig,
    pool: rayon::ThreadPool,
    bad: Mutex<BTreeMap<PathBuf, String>>,
    /// Host batch buffers already copied to a non-CPU device, kept for reuse (fresh
    /// memory costs page faults; see [`advise_huge_pages`]).
    spare_buffers: Mutex<Vec<Vec<f32>>>,
}

/// Loads a dataset as batches; see the module documentation.
pub struct Loader {
    shared: Arc<Shared>,
    device: Device,
}

impl Loader {
    /// A loader over `dataset` producing tensors on `device`.
    pub fn new(dataset: &Dataset, config: LoaderConfig, device: &Device) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(DataError::Config("batch_size must be positive".into()));
        }
        if config.world_size == 0 || config.rank >= config.world_size {
            return Err(DataError::Config(format!(
                "rank {} outside world of {}",
                config.rank, config.world_size
            )));
        }
        if dataset.is_empty() {
            return Err(DataError::NoImages(dataset.root.clone()));
        }
        config.preprocess.validate()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.num_threads)
            .thread_name(|i| format!("data-{i}"))
            .build()
            .map_err(|e| DataError::Config(format!("cannot start decode threads: {e}")))?;
        let shared = Shared {
            samples: dataset.samples.clone(),
            config,
            pool,
            bad: Mutex::new(BTreeMap::new()),
            spare_buffers: Mutex::new(Vec::new()),
        };
        Ok(Loader {
            shared: Arc::new(shared),
            device: device.clone(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.shared.config
    }

    /// Images this shard sees per epoch.
    pub fn samples_per_epoch(&self) -> usize {
        let c = &self.shared.config;
        match c.world_size {
            1 => self.shared.samples.len(),
            w => self.shared.samples.len() / (c.batch_size * w) * c.batch_size,
        }
    }

    /// Batches per epoch (for progress bars).
    pub fn len(&self) -> usize {
        let (n, bs) = (self.samples_per_epoch(), self.shared.config.batch_size);
        if self.shared.config.drop_last {
            n / bs
        } else {
            n.div_ceil(bs)
        }
    }

    /// Whether an epoch yields no batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dataset indices this shard visits in `epoch`, in order.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let c = &self.shared.config;
        let mut order: Vec<usize> = (0..self.shared.samples.len()).collect();
        if c.shuffle {
            SampleRng::new(c.seed, Stream::Shuffle, epoch, 0).shuffle(&mut order);
        }
        if c.world_size == 1 {
            return order;
        }
        order
            .chunks(c.batch_size)
            .skip(c.rank)
            .step_by(c.world_size)
            .flatten()
            .copied()
            .take(self.samples_per_epoch())
            .collect()
    }

    /// Images skipped so far because they could not be decoded (with
    /// `skip_bad_images`), sorted by path.
    pub fn bad_images(&self) -> Vec<SkippedImage> {
        let bad = self.shared.bad.lock().expect("bad-image list poisoned");
        bad.iter()
            .map(|(path, reason)| SkippedImage {
                path: path.clone(),
                reason: reason.clone(),
            })
            .collect()
    }

    /// Iterates over the batches of `epoch` from batch `start_batch` on (to resume an
    /// epoch). Up to `prefetch` batches are prepared in the background at once, so the
    /// decode threads stay busy across batch boundaries; batches arrive in order.
    pub fn iter_epoch(&self, epoch: u64, start_batch: usize) -> EpochIter {
        let (tx, rx) = sync_channel(0);
        let stop = Arc::new(AtomicBool::new(false));
        let plan = EpochPlan {
            epoch,
            order: Arc::new(self.epoch_order(epoch)),
            start_batch,
            len: self.len(),
        };
        let (shared, producer_stop) = (self.shared.clone(), stop.clone());
        let handle = std::thread::spawn(move || shared.produce(plan, tx, producer_stop));
        EpochIter {
            shared: self.shared.clone(),
            receiver: Some(rx),
            producer: Some(handle),
            stop,
            device: self.device.clone(),
            remaining: self.len().saturating_sub(start_batch),
        }
    }
}

/// What one epoch iteration covers.
struct EpochPlan {
    epoch: u64,
    /// Dataset indices in visiting order.
    order: Arc<Vec<usize>>,
    start_batch: usize,
    /// Batches in the epoch.
    len: usize,
}

impl Shared {
    /// A buffer of `len` values: a spare one if any (contents are overwritten), else a
    /// new one backed by huge pages where possible.
    fn take_buffer(&self, len: usize) -> Vec<f32> {
        let spare = self
            .spare_buffers
            .lock()
            .expect("buffer list poisoned")
            .pop();
        match spare {
            Some(mut buf) => {
                buf.resize(len, 0.0);
                buf
            }
            None => {
                let mut buf = vec![0f32; len];
                advise_huge_pages(&mut buf);
                buf
            }
        }
    }

    /// Keeps a host buffer for reuse, up to one per batch in preparation plus one.
    fn return_buffer(&self, buf: Vec<f32>) {
        let mut spare = self.spare_buffers.lock().expect("buffer list poisoned");
        if spare.len() <= self.config.prefetch {
            spare.push(buf);
        }
    }

    /// Runs on the producer thread: keeps up to `prefetch` batches in preparation on the
    /// pool and hands finished ones to the consumer in order, stopping at the first
    /// error, when the consumer goes away, or when `stop` is set.
    fn produce(
        self: Arc<Self>,
        plan: EpochPlan,
        tx: SyncSender<Result<HostBatch>>,
        stop: Arc<AtomicBool>,
    ) {
        let window = self.config.prefetch.max(1);
        let bs = self.config.batch_size;
        let (done_tx, done_rx) = channel();
        let mut ready = BTreeMap::new();
        let (mut submitted, mut emitted) = (plan.start_batch, plan.start_batch);
        while emitted < plan.len && !stop.load(Ordering::Relaxed) {
            while submitted < plan.len && submitted < emitted + window {
                let (shared, order, done) = (self.clone(), plan.order.clone(), done_tx.clone());
                let (position, epoch) = (submitted, plan.epoch);
                self.pool.spawn(move || {
                    let rows = &order[position * bs..((position + 1) * bs).min(order.len())];
                    let _ = done.send((position, shared.build_batch(epoch, position, rows)));
                });
                submitted += 1;
            }
            let Ok((position, batch)) = done_rx.recv() else {
                return;
            };
            ready.insert(position, batch);
            while let Some(batch) = ready.remove(&emitted) {
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    return;
                }
                emitted += 1;
            }
        }
    }

    /// Decodes and preprocesses the images `rows` (dataset indices) in parallel.
    fn build_batch(&self, epoch: u64, position: usize, rows: &[usize]) -> Result<HostBatch> {
        let c = &self.config;
        let size = c.preprocess.image_size() as usize;
        let per_image = 3 * size * size;
        let mut pixels = self.take_buffer(rows.len() * per_image);
        let kept: Vec<bool> = self.pool.install(|| {
            pixels
                .par_chunks_mut(per_image)
                .zip(rows.par_iter())
                .map(|(out, &index)| {
                    let sample = &self.samples[index];
                    match decode_image_file(&sample.path) {
                        Ok(img) => {
                            c.preprocess.apply(&img, c.seed, epoch, index as u64, out);
                            Ok(true)
                        }
                        Err(DataError::Decode { path, reason }) if c.skip_bad_images => {
                            self.bad
                                .lock()
                                .expect("bad-image list poisoned")
                                .insert(path, reason);
                            Ok(false)
                        }
                        Err(e) => Err(e),
                    }
                })
                .collect::<Result<Vec<bool>>>()
        })?;
        let mut indices = Vec::with_capacity(rows.len());
        let mut labels = Vec::with_capacity(rows.len());
        for (slot, (&index, &ok)) in rows.iter().zip(&kept).enumerate() {
            if ok {
                let dst = indices.len();
                if dst != slot {
                    pixels.copy_within(slot * per_image..(slot + 1) * per_image, dst * per_image);
                }
                indices.push(index);
                labels.push(self.samples[index].label);
            }
        }
        pixels.truncate(indices.len() * per_image);
        Ok(HostBatch {
            size,
            pixels,
            labels,
            indices,
            position,
        })
    }
}

/// The batches of one epoch; dropping it stops the background work.
pub struct EpochIter {
    shared: Arc<Shared>,
    receiver: Option<Receiver<Result<HostBatch>>>,
    producer: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    device: Device,
    remaining: usize,
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        let host = match self.receiver.as_ref()?.recv() {
            Ok(Ok(host)) => host,
            Ok(Err(e)) => {
                self.remaining = 0;
                return Some(Err(e));
            }
            Err(_) => return None,
        };
        self.remaining = self.remaining.saturating_sub(1);
        let n = host.indices.len();
        let shape = (n, 3, host.size, host.size);
        let images = if self.device.is_cpu() {
            // The tensor takes the buffer without a copy.
            Tensor::from_vec(host.pixels, shape, &self.device)
        } else {
            let images = Tensor::from_slice(&host.pixels, shape, &self.device);
            self.shared.return_buffer(host.pixels);
            images
        };
        let labels = Tensor::from_vec(host.labels, n, &self.device);
        Some(match (images, labels) {
            (Ok(images), Ok(labels)) => Ok(Batch {
                images,
                labels,
                indices: host.indices,
                position: host.position,
            }),
            (Err(e), _) | (_, Err(e)) => Err(e.into()),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.receiver.take());
        if let Some(handle) = self.producer.take() {
            let _ = handle.join();
        }
    }
}

/// Asks Linux to back a fresh (untouched) batch buffer with transparent huge pages:
/// writing a new 70 MB batch otherwise takes a page fault per 4 KiB, which costs as
/// much as the preprocessing of small images. Only advice; a no-op elsewhere.
fn advise_huge_pages(buf: &mut [f32]) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = buf.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(buf);
        let first_page = start.next_multiple_of(PAGE);
        if end >= first_page + PAGE {
            let len = (end - first_page) / PAGE * PAGE;
            // SAFETY: [first_page, first_page + len) lies inside `buf`'s allocation, and
            // MADV_HUGEPAGE only changes how the kernel backs the pages, never their
            // contents; the return value is ignored because the advice is optional.
            unsafe {
                libc::madvise(first_page as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::augment::{EvalTransform, TrainAugment};
    use crate::data::synthetic::write_synthetic_dataset;

    fn config(threads: usize) -> LoaderConfig {
        let aug = TrainAugment {
            image_size: 32,
            ..TrainAugment::default()
        };
        LoaderConfig {
            num_threads: threads,
            seed: 11,
            ..LoaderConfig::new(5, Preprocess::Train(aug))
        }
    }

    fn collect(loader: &Loader, epoch: u64, start: usize) -> Vec<(Vec<f32>, Vec<u32>, Vec<usize>)> {
        loader
            .iter_epoch(epoch, start)
            .map(|b| {
                let b = b.unwrap();
                let images = b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (images, b.labels.to_vec1::<u32>().unwrap(), b.indices)
            })
            .collect()
    }

    #[test]
    fn batches_identical_across_thread_counts_and_resumable() {
        let dir = tempfile::tempdir().unwrap();
        let ds = write_synthetic_dataset(dir.path(), 3, 4, (48, 40), 2).unwrap();
        let one = Loader::new(&ds, config(1), &Device::Cpu).unwrap();
        let four = Loader::new(&ds, config(4), &Device::Cpu).unwrap();
        assert_eq!(one.len(), 3); // 12 images, batches of 5, last one kept
        let a = collect(&one, 1, 0);
        let b = collect(&four, 1, 0);
        assert_eq!(a.len(), 3);
        assert_eq!(a, b);
        assert_eq!(a[2].2.len(), 2);
        // Resuming at batch 1 gives the same batches 1 and 2.
        assert_eq!(collect(&four, 1, 1), a[1..].to_vec());
        // Every image once per epoch, labels match the dataset, order differs by epoch.
        let mut seen: Vec<usize> = a.iter().flat_map(|x| x.2.clone()).collect();
        for (labels, idx) in a.iter().flat_map(|x| x.1.iter().zip(&x.2)) {
            assert_eq!(*labels, ds.samples[*idx].label);
        }
        seen.sort();
        assert_eq!(seen, (0..12).collect::<Vec<_>>());
        assert_ne!(one.epoch_order(1), one.epoch_order(2));
        assert!(collect(&one, 1, 3).is_empty());
    }

    #[test]
    fn shapes_drop_last_and_eval_mode() {
        let dir = tempfile::tempdir().unwrap();
        let ds = write_synthetic_dataset(dir.path(), 2, 4, (30, 20), 0).unwrap();
        let eval = Preprocess::Eval(EvalTransform {
            image_size: 16,
            ..EvalTransform::default()
        });
        let cfg = LoaderConfig {
            shuffle: false,
            drop_last: true,
            ..LoaderConfig::new(3, eval)
        };
        let loader = Loader::new(&ds, cfg, &Device::Cpu).unwrap();
        assert_eq!(loader.len(), 2);
        let batches: Vec<Batch> = loader.iter_epoch(0, 0).map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].images.dims(), &[3, 3, 16, 16]);
        assert_eq!(batches[0].labels.dtype(), candle_core::DType::U32);
        assert_eq!(batches[1].indices, vec![3, 4, 5]);
        assert_eq!(batches[1].position, 1);
        // Early drop of the iterator stops the producer cleanly.
        let mut it = loader.iter_epoch(0, 0);
        assert!(it.next().is_some());
        drop(it);
    }

    #[test]
    fn shards_partition_the_order() {
        let dir = tempfile::tempdir().unwrap();
        let ds = write_synthetic_dataset(dir.path(), 1, 9, (16, 16), 0).unwrap();
        let shard = |rank| {
            let cfg = LoaderConfig {
                rank,
                world_size: 2,
                batch_size: 2,
                ..config(1)
            };
            Loader::new(&ds, cfg, &Device::Cpu).unwrap().epoch_order(3)
        };
        // Batches of 2 of the 9 images: shard 0 takes global batches 0 and 2, shard 1 takes
        // 1 and 3; the last image is left out.
        let (a, b) = (shard(0), shard(1));
        assert_eq!((a.len(), b.len()), (4, 4));
        assert!(a.iter().all(|i| !b.contains(i)));
        let whole = Loader::new(&ds, config(2), &Device::Cpu)
            .unwrap()
            .epoch_order(3);
        assert_eq!(a, [&whole[0..2], &whole[4..6]].concat());
        assert_eq!(b, [&whole[2..4], &whole[6..8]].concat());
        let bad = LoaderConfig {
            rank: 2,
            world_size: 2,
            ..config(1)
        };
        assert!(Loader::new(&ds, bad, &Device::Cpu).is_err());
    }

    #[test]
    fn bad_images_fail_or_are_skipped_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        write_synthetic_dataset(dir.path(), 2, 3, (24, 24), 0).unwrap();
        let bad_path = dir.path().join("class_001/img_00001.jpg");
        std::fs::write(&bad_path, b"\xFF\xD8\xFF garbage").unwrap();
        let ds = Dataset::image_folder(dir.path()).unwrap();
        let strict = Loader::new(
            &ds,
            LoaderConfig {
                batch_size: 6,
                ..config(2)
            },
            &Device::Cpu,
        )
        .unwrap();
        let err = strict
            .iter_epoch(0, 0)
            .find_map(|b| b.err())
            .expect("an error");
        assert!(err.to_string().contains("img_00001.jpg"), "{err}");
        let lenient = Loader::new(
            &ds,
            LoaderConfig {
                batch_size: 6,
                skip_bad_images: true,
                ..config(2)
            },
            &Device::Cpu,
        )
        .unwrap();
        let batches: Vec<Batch> = lenient.iter_epoch(0, 0).map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].images.dims()[0], 5);
        assert_eq!(batches[0].labels.dims(), &[5]);
        let bad = lenient.bad_images();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].path, bad_path);
    }
}

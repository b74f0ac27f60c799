//! Transforms of a network's weights kept from one inference pass to the next.
//!
//! Some convolutions run on a transform of their weights rather than on the weights (Winograd's
//! kernel points, packed for the products: for Inception-v4 at 299 px, batch 8, about a tenth of
//! an evaluation pass went into making them afresh each pass). Between two evaluation passes
//! the weights usually have not changed, but they can have, in place at the same address (an
//! optimizer step, a checkpoint or moving average loaded between two evaluations). So an entry
//! holds a copy of the weights it was made from and is used only while the weights are equal to
//! it bit for bit; otherwise it is made again. An entry is found by the weights' address, their
//! length and what the transform was made for (`shape`).
//!
//! A [`WeightCache`] belongs to one network ([`crate::models::Network`]): passes through
//! [`super::inference_keeping`] fill it, and the network empties it before any other pass, so a
//! training step never holds its memory.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most transforms kept: several times as many as a network has convolutions (a few hundred).
/// Weights at a new address every pass (a copy made per pass) would add an entry each time; past
/// this the cache starts over rather than grow without end.
const MAX_ENTRIES: usize = 1024;

/// Transforms of weights, each with the weights it was made from.
#[derive(Default)]
pub struct WeightCache {
    entries: Mutex<HashMap<Key, Entry>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    address: usize,
    len: usize,
    shape: Vec<usize>,
}

struct Entry {
    weights: Vec<u32>,
    value: Arc<dyn Any + Send + Sync>,
}

/// The bits of each weight: compared as bits, a NaN equals itself and −0 differs from +0.
fn bits(weights: &[f32]) -> &[u32] {
    // SAFETY: f32 and u32 have the same size and alignment, and every bit pattern is a u32.
    unsafe { std::slice::from_raw_parts(weights.as_ptr().cast(), weights.len()) }
}

impl WeightCache {
    /// The transform of `weights` made for `shape`: kept from an earlier call with the same
    /// weights (the same address, length, shape and bits), else `make()`, kept for later calls.
    pub(crate) fn get_or_make<V: Any + Send + Sync>(
        &self,
        weights: &[f32],
        shape: &[usize],
        make: impl FnOnce() -> V,
    ) -> Arc<V> {
        let key = Key {
            address: weights.as_ptr() as usize,
            len: weights.len(),
            shape: shape.to_vec(),
        };
        if let Some(entry) = self.lock().get(&key) {
            if entry.weights == bits(weights) {
                if let Ok(value) = entry.value.clone().downcast::<V>() {
                    return value;
                }
            }
        }
        let value = Arc::new(make());
        let entry = Entry {
            weights: bits(weights).to_vec(),
            value: value.clone(),
        };
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            *entries = HashMap::new();
        }
        entries.insert(key, entry);
        value
    }

    /// Drops every entry.
    pub fn clear(&self) {
        let mut entries = self.lock();
        if !entries.is_empty() {
            *entries = HashMap::new();
        }
    }

    /// How many transforms are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // A panic while the lock was held left at worst an entry out: the map is still whole.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The transform of `weights` for `shape`: from `cache` where the pass keeps its transforms
/// ([`WeightCache::get_or_make`]), else made for this pass alone.
pub(crate) fn kept_or_made<V: Any + Send + Sync>(
    cache: Option<&WeightCache>,
    weights: &[f32],
    shape: &[usize],
    make: impl FnOnce() -> V,
) -> Arc<V> {
    match cache {
        Some(cache) => cache.get_or_make(weights, shape, make),
        None => Arc::new(make()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An entry is used again only for the same weights, bit for bit, at the same address and
    /// for the same shape; changed weights, another shape or another type make it anew.
    #[test]
    fn a_transform_is_reused_only_for_the_same_weights() {
        let cache = WeightCache::default();
        let made = AtomicUsize::new(0);
        let sum = |w: &[f32]| {
            made.fetch_add(1, Ordering::Relaxed);
            w.iter().sum::<f32>()
        };
        let mut w = vec![1.0f32, 2.0, 3.0];
        assert_eq!(*cache.get_or_make(&w, &[3], || sum(&w)), 6.0);
        assert_eq!(*cache.get_or_make(&w, &[3], || sum(&w)), 6.0);
        assert_eq!(made.load(Ordering::Relaxed), 1);
        // Changed in place: same address and length, other bits.
        w[1] = 5.0;
        assert_eq!(*cache.get_or_make(&w, &[3], || sum(&w)), 9.0);
        assert_eq!(made.load(Ordering::Relaxed), 2);
        // −0 and +0 are equal floats but other weights.
        w[0] = 0.0;
        cache.get_or_make(&w, &[3], || sum(&w));
        w[0] = -0.0;
        cache.get_or_make(&w, &[3], || sum(&w));
        assert_eq!(made.load(Ordering::Relaxed), 4);
        // Another shape is another transform of the same weights.
        cache.get_or_make(&w, &[1, 3], || sum(&w));
        assert_eq!(made.load(Ordering::Relaxed), 5);
        assert_eq!(cache.len(), 2);
        // The same key asked for another type is made anew, not misread.
        assert_eq!(*cache.get_or_make(&w, &[3], || 7usize), 7);
        cache.clear();
        assert!(cache.is_empty());
        cache.get_or_make(&w, &[3], || sum(&w));
        assert_eq!(made.load(Ordering::Relaxed), 6);
        // Weights at ever new addresses: the cache starts over instead of growing.
        let copies: Vec<Vec<f32>> = (0..MAX_ENTRIES + 10).map(|_| w.clone()).collect();
        for copy in &copies {
            cache.get_or_make(copy, &[3], || sum(copy));
            assert!(cache.len() <= MAX_ENTRIES);
        }
        assert!(cache.len() < MAX_ENTRIES);
    }
}

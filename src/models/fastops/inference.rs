//! Inference passes: forward passes of which nothing will be differentiated, so that ops which
//! can work outside candle's autograd graph do: the fast ops' outputs are detached from it, so
//! that each activation is freed once the ops that read it are done instead of at the end of
//! the pass (the peak resident set of an evaluation at 299 px, batch 8: Inception-v4 890–899 →
//! 853 MB, Inception-ResNet-v2 1,419–1,424 → 1,011–1,017 MB), and the blocks' concatenations
//! copy in parallel ([`super::concat`]); where the caller gives a [`WeightCache`], the
//! transforms of the weights that some convolutions run on are kept for the next pass. Set by
//! the caller around a whole pass on the thread that runs it ([`crate::models::Network::infer`]);
//! an eval-mode pass that is differentiated (the finite-difference tests) runs without it.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use super::weight_cache::WeightCache;

thread_local! {
    static INFERRING: Cell<bool> = const { Cell::new(false) };
    static KEEPING: RefCell<Option<Arc<WeightCache>>> = const { RefCell::new(None) };
}

/// Runs `f` as an inference pass on this thread.
pub fn inference<R>(f: impl FnOnce() -> R) -> R {
    scope(None, f)
}

/// Runs `f` as an inference pass on this thread whose transforms of the weights are kept in
/// `cache` for the next passes ([`WeightCache`]).
pub fn inference_keeping<R>(cache: &Arc<WeightCache>, f: impl FnOnce() -> R) -> R {
    scope(Some(cache.clone()), f)
}

fn scope<R>(cache: Option<Arc<WeightCache>>, f: impl FnOnce() -> R) -> R {
    /// Puts the previous state back, also when `f` panics.
    struct Restore(bool, Option<Arc<WeightCache>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            INFERRING.with(|i| i.set(self.0));
            KEEPING.with(|k| *k.borrow_mut() = self.1.take());
        }
    }
    let _restore = Restore(
        INFERRING.with(|i| i.replace(true)),
        KEEPING.with(|k| k.replace(cache)),
    );
    f()
}

/// Whether this thread is inside [`inference`] or [`inference_keeping`].
pub(crate) fn inferring() -> bool {
    INFERRING.with(Cell::get)
}

/// Where this thread's inference pass keeps its transforms of the weights, if it does.
pub(crate) fn kept_weights() -> Option<Arc<WeightCache>> {
    KEEPING.with(|k| k.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flag holds inside the scope, nested scopes keep it, and it is off again after the
    /// scope, also when the pass inside panicked.
    #[test]
    fn the_scope_ends_with_its_pass_even_a_failed_one() {
        assert!(!inferring());
        assert!(inference(|| inferring() && inference(inferring)));
        assert!(!inferring());
        let failed = std::panic::catch_unwind(|| inference(|| panic!("a failed pass")));
        assert!(failed.is_err());
        assert!(!inferring());
    }

    /// The cache is there inside its scope only, not in a nested scope without one, and gone
    /// after the scope, also when the pass inside panicked.
    #[test]
    fn the_weights_are_kept_inside_their_scope_only() {
        let cache = Arc::new(WeightCache::default());
        let same = |k: Option<Arc<WeightCache>>| k.is_some_and(|k| Arc::ptr_eq(&k, &cache));
        assert!(kept_weights().is_none());
        assert!(inference_keeping(&cache, || same(kept_weights())
            && inferring()
            && inference(|| kept_weights().is_none())
            && same(kept_weights())));
        assert!(kept_weights().is_none());
        let failed =
            std::panic::catch_unwind(|| inference_keeping(&cache, || panic!("a failed pass")));
        assert!(failed.is_err());
        assert!(kept_weights().is_none() && !inferring());
    }
}

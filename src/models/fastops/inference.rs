//! Inference passes: forward passes of which nothing will be differentiated, so that ops which
//! can work outside candle's autograd graph do: the fast ops' outputs are detached from it, so
//! that each activation is freed once the ops that read it are done instead of at the end of
//! the pass (the peak resident set of an evaluation at 299 px, batch 8: Inception-v4 890–899 →
//! 853 MB, Inception-ResNet-v2 1,419–1,424 → 1,011–1,017 MB), and the blocks' concatenations
//! copy in parallel ([`super::concat`]). Set by the caller around a whole pass on the thread
//! that runs it ([`crate::models::Network::infer`]); an eval-mode pass that is differentiated
//! (the finite-difference tests) runs without it.

use std::cell::Cell;

thread_local! {
    static INFERRING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` as an inference pass on this thread.
pub fn inference<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the previous state back, also when `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            INFERRING.with(|i| i.set(self.0));
        }
    }
    let _restore = Restore(INFERRING.with(|i| i.replace(true)));
    f()
}

/// Whether this thread is inside [`inference`].
pub(crate) fn inferring() -> bool {
    INFERRING.with(Cell::get)
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
}

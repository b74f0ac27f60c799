//! The stages of a network as single nodes of candle's graph in training.
//!
//! candle's backward pass gives every tensor that receives a gradient an entry of its own: a
//! tensor of zeros its size, then one addition per gradient it receives, and a slice's gradient
//! padded with zeros to its parent's size first. Inside an Inception stage that is almost every
//! edge: each branch's intermediate outputs, the inputs of each concatenation, the slices of the
//! merged 1x1 heads, every block's output (two or three gradients each).
//!
//! While a stage runs under [`fused`], the fast ops record themselves on a tape instead of in
//! candle's graph (computed on detached inputs), and the stage becomes one node whose backward
//! replays the tape in reverse: a tensor's first gradient is kept as it comes, later ones are
//! added to it, a concatenation hands its inputs views of its gradient, and the gradients of a
//! tensor's slices are concatenated back. The arithmetic of each op is the same; only the order
//! in which a tensor's gradients are summed can differ from candle's.
//!
//! The parameters' gradients leave the node through the [`StageGrads`] collector that the
//! trainer installs around its forward and backward passes, and join candle's gradient store
//! when it calls [`StageGrads::merge_into`]. Without a collector (evaluation, and callers that
//! take candle's gradients themselves) nothing is fused. `REPRO_FUSED_STAGES=0` turns fusion off
//! (for comparison).
//!
//! Every op inside a fused stage must go through this tape ([`apply1`]–[`apply3`], [`cat`],
//! [`narrow`], [`same`]): an argument that is neither recorded, nor the stage's input, nor a
//! variable means an op ran outside it, and the stage fails with an error rather than losing
//! gradients silently.

use std::cell::RefCell;
use std::collections::hash_map::Entry as Slot;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::models::handover::HandedOver;
use candle_core::backprop::GradStore;
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, TensorId,
};

type Op1 = Arc<Box<dyn CustomOp1 + Send + Sync>>;
type Op2 = Arc<Box<dyn CustomOp2 + Send + Sync>>;
type Op3 = Arc<Box<dyn CustomOp3 + Send + Sync>>;

/// One recorded operation; its arguments are the tensors the caller passed (variables keep
/// their identity), its output the tensor it produced.
pub(super) enum Step {
    One(Op1, Tensor),
    Two(Op2, [Tensor; 2]),
    Three(Op3, [Tensor; 3]),
    Cat(Vec<Tensor>, usize),
    /// A slice of the source along `dim`, from `start`.
    Narrow(Tensor, usize, usize),
    /// A copy with another layout (`contiguous`), which passes its gradient on unchanged.
    Alias(Tensor),
}

struct Recorded {
    step: Step,
    /// The output; `None` for the stage's own output once its node holds it (the node's
    /// result stands for it in the backward pass, so the stage's output is not kept twice).
    out: Option<Tensor>,
    id: TensorId,
}

/// The tape of the stage being recorded on this thread.
struct Tape {
    steps: Vec<Recorded>,
    input: TensorId,
    produced: HashSet<TensorId>,
    /// The variables the stage's ops read, in order of first use.
    variables: Vec<Tensor>,
}

thread_local! {
    static TAPE: RefCell<Option<Tape>> = const { RefCell::new(None) };
    static COLLECTOR: RefCell<Option<StageGrads>> = const { RefCell::new(None) };
}

pub(super) fn recording() -> bool {
    TAPE.with(|t| t.borrow().is_some())
}

/// Whether stages are fused at all: `REPRO_FUSED_STAGES` unset or anything but `0`.
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("REPRO_FUSED_STAGES").map_or(true, |v| v != "0"))
}

/// Checks that every argument is the stage's input, recorded, or a variable (noting the new
/// variables).
pub(super) fn check(args: &[&Tensor]) -> Result<()> {
    TAPE.with(|t| {
        let mut t = t.borrow_mut();
        let tape = t.as_mut().expect("recording");
        for a in args {
            let id = a.id();
            if id == tape.input || tape.produced.contains(&id) {
                continue;
            }
            if !a.is_variable() {
                bail!(
                    "internal error: an operation inside a fused stage ran outside its tape \
                     (set REPRO_FUSED_STAGES=0 to train without fusion)"
                )
            }
            if !tape.variables.iter().any(|v| v.id() == id) {
                tape.variables.push((*a).clone());
            }
        }
        Ok(())
    })
}

pub(super) fn push(step: Step, out: &Tensor) {
    TAPE.with(|t| {
        let mut t = t.borrow_mut();
        let tape = t.as_mut().expect("recording");
        tape.produced.insert(out.id());
        tape.steps.push(Recorded {
            step,
            out: Some(out.clone()),
            id: out.id(),
        });
    })
}

/// An op's output outside a fused stage: in an inference pass detached from candle's graph, so
/// that it does not hold its inputs (the whole pass before it) alive until the pass ends.
fn untracked_in_inference(out: Tensor) -> Tensor {
    match super::inference::inferring() {
        true => out.detach(),
        false => out,
    }
}

/// `x.apply_op1(op)`, recorded inside a fused stage.
pub(crate) fn apply1(x: &Tensor, op: impl CustomOp1 + Send + Sync + 'static) -> Result<Tensor> {
    let op: Op1 = Arc::new(Box::new(op));
    if !recording() {
        return x.apply_op1_arc(op).map(untracked_in_inference);
    }
    check(&[x])?;
    let out = x.detach().apply_op1_arc(op.clone())?;
    push(Step::One(op, x.clone()), &out);
    Ok(out)
}

/// `a.apply_op2(b, op)`, recorded inside a fused stage.
pub(crate) fn apply2(
    a: &Tensor,
    b: &Tensor,
    op: impl CustomOp2 + Send + Sync + 'static,
) -> Result<Tensor> {
    let op: Op2 = Arc::new(Box::new(op));
    if !recording() {
        return a.apply_op2_arc(b, op).map(untracked_in_inference);
    }
    check(&[a, b])?;
    let out = a.detach().apply_op2_arc(&b.detach(), op.clone())?;
    push(Step::Two(op, [a.clone(), b.clone()]), &out);
    Ok(out)
}

/// `a.apply_op3(b, c, op)`, recorded inside a fused stage.
pub(crate) fn apply3(
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    op: impl CustomOp3 + Send + Sync + 'static,
) -> Result<Tensor> {
    let op: Op3 = Arc::new(Box::new(op));
    if !recording() {
        return a.apply_op3_arc(b, c, op).map(untracked_in_inference);
    }
    check(&[a, b, c])?;
    let out = a
        .detach()
        .apply_op3_arc(&b.detach(), &c.detach(), op.clone())?;
    push(Step::Three(op, [a.clone(), b.clone(), c.clone()]), &out);
    Ok(out)
}

/// `t.narrow(dim, start, len)`, recorded inside a fused stage.
pub fn narrow(t: &Tensor, dim: usize, start: usize, len: usize) -> Result<Tensor> {
    if !recording() || (start == 0 && len == t.dim(dim)?) {
        return t.narrow(dim, start, len);
    }
    check(&[t])?;
    let out = t.detach().narrow(dim, start, len)?;
    push(Step::Narrow(t.clone(), dim, start), &out);
    Ok(out)
}

/// `copy`, a copy of `orig` in another layout (`contiguous`), recorded inside a fused stage so
/// that its gradient reaches `orig`.
pub(crate) fn same(orig: &Tensor, copy: Tensor) -> Result<Tensor> {
    if recording() && copy.id() != orig.id() {
        check(&[orig])?;
        let copy = copy.detach();
        push(Step::Alias(orig.clone()), &copy);
        return Ok(copy);
    }
    Ok(copy)
}

/// Collects the parameters' gradients of the fused stages of one forward and backward pass.
#[derive(Clone, Default)]
pub struct StageGrads(Arc<Mutex<Vec<(Tensor, Tensor)>>>);

/// Keeps a [`StageGrads`] installed on this thread while it lives.
pub struct Installed(Option<StageGrads>);

impl Drop for Installed {
    fn drop(&mut self) {
        COLLECTOR.with(|c| *c.borrow_mut() = self.0.take());
    }
}

impl StageGrads {
    pub fn new() -> Self {
        Self::default()
    }

    /// Fuses the stages that training forward passes run on this thread (and on the workers
    /// they hand the network to) until the guard drops.
    pub fn install(&self) -> Installed {
        Installed(COLLECTOR.with(|c| c.borrow_mut().replace(self.clone())))
    }

    /// Whether no fused stage has sent gradients since the last merge.
    pub fn is_empty(&self) -> bool {
        self.0.lock().expect("not poisoned").is_empty()
    }

    /// Adds the collected gradients to `grads` (to what a variable already has there) and
    /// empties the collector.
    pub fn merge_into(&self, grads: &mut GradStore) -> Result<()> {
        let collected = std::mem::take(&mut *self.0.lock().expect("not poisoned"));
        for (var, g) in collected {
            let sum = match grads.get(&var) {
                Some(prev) => (prev + &g)?,
                None => g,
            };
            grads.insert(&var, sum);
        }
        Ok(())
    }
}

/// The collector installed on this thread.
pub(crate) fn current() -> Option<StageGrads> {
    COLLECTOR.with(|c| c.borrow().clone())
}

/// Runs `f`, a caller's job handed to a pool worker, with `collector` installed and no tape
/// recording on this thread for its duration. A rayon worker waiting inside one job's op may run
/// another job (work stealing), of another training or an evaluation in the same process: that
/// job must not see the first one's tape or collector.
pub(crate) fn isolated<R>(collector: Option<StageGrads>, f: impl FnOnce() -> R) -> R {
    let _installed =
        Installed(COLLECTOR.with(|c| std::mem::replace(&mut *c.borrow_mut(), collector)));
    let _paused = Paused(TAPE.with(|t| t.borrow_mut().take()));
    f()
}

/// A tape set aside while another job runs on this thread; put back on drop.
struct Paused(Option<Tape>);

impl Drop for Paused {
    fn drop(&mut self) {
        TAPE.with(|t| *t.borrow_mut() = self.0.take());
    }
}

/// `f(x)`, a stage of the network, as one node of candle's graph when training with a
/// collector installed on the fast path (see the module's comment); else `f(x)` itself.
pub fn fused(x: &Tensor, train: bool, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let sink = match current() {
        Some(s) if train && enabled() && super::usable(x) && !recording() => s,
        _ => return f(x),
    };
    let input = x.detach();
    TAPE.with(|t| {
        *t.borrow_mut() = Some(Tape {
            steps: Vec::new(),
            input: input.id(),
            produced: HashSet::new(),
            variables: Vec::new(),
        })
    });
    let out = f(&input);
    let tape = TAPE.with(|t| t.borrow_mut().take()).expect("set above");
    let out = out?;
    if out.id() == input.id() {
        return Ok(x.clone());
    }
    if !tape.produced.contains(&out.id()) {
        bail!("internal error: a fused stage's output was not computed on its tape")
    }
    let anchor = tape.variables.first().cloned().unwrap_or_else(|| x.clone());
    let mut steps = tape.steps;
    if let Some(last) = steps.last_mut().filter(|r| r.id == out.id()) {
        last.out = None;
    }
    let node = StageOp {
        steps,
        input: input.id(),
        out_id: out.id(),
        out: HandedOver::new("fast-stage", out),
        variables: tape.variables,
        sink,
    };
    // The anchor (a variable of the stage) makes the node part of the graph even where the
    // stage's input is not (the images): the parameters' gradients still need the backward.
    x.apply_op2_arc(&anchor, Arc::new(Box::new(node)))
}

/// The node of a fused stage on (input, anchor): its forward hands over the output computed
/// while recording, its backward replays the tape.
struct StageOp {
    steps: Vec<Recorded>,
    input: TensorId,
    out_id: TensorId,
    /// The stage's output, handed to the node's forward.
    out: HandedOver,
    variables: Vec<Tensor>,
    sink: StageGrads,
}

/// The gradients met while replaying: whole ones by tensor, and slices' ones by their source.
#[derive(Default)]
struct Grads {
    whole: HashMap<TensorId, Tensor>,
    slices: HashMap<TensorId, Vec<(usize, usize, Tensor)>>,
}

impl Grads {
    fn add(&mut self, t: &Tensor, g: Option<Tensor>) -> Result<()> {
        let Some(g) = g else { return Ok(()) };
        match self.whole.entry(t.id()) {
            Slot::Vacant(v) => {
                v.insert(g);
            }
            Slot::Occupied(mut o) => {
                let sum = (o.get() + &g)?;
                o.insert(sum);
            }
        }
        Ok(())
    }

    /// The whole gradient of the tensor `id` (whose shape `t` has), its slices' gradients put
    /// together, if it received any.
    fn take_id(&mut self, id: TensorId, t: &Tensor) -> Result<Option<Tensor>> {
        let whole = self.whole.remove(&id);
        let Some(mut slices) = self.slices.remove(&id) else {
            return Ok(whole);
        };
        slices.sort_by_key(|s| s.1);
        let dim = slices[0].0;
        let mut next = 0;
        let tiled = slices.iter().all(|(d, start, g)| {
            let ok = *d == dim && *start == next;
            next += g.dim(*d).unwrap_or(0);
            ok
        }) && next == t.dim(dim)?;
        let joined = if tiled {
            let parts: Vec<&Tensor> = slices.iter().map(|s| &s.2).collect();
            Tensor::cat(&parts, dim)?
        } else {
            let mut sum = t.zeros_like()?;
            for (d, start, g) in &slices {
                let len = g.dim(*d)?;
                let mut ranges: Vec<std::ops::Range<usize>> =
                    t.dims().iter().map(|&n| 0..n).collect();
                ranges[*d] = *start..start + len;
                let part = (sum.narrow(*d, *start, len)? + g)?;
                sum = sum.slice_assign(&ranges, &part)?;
            }
            sum
        };
        Ok(Some(match whole {
            Some(w) => (w + joined)?,
            None => joined,
        }))
    }
}

impl StageOp {
    /// The gradient of the input `x` from the output's (`res`, the node's result, standing for
    /// the stage's output), the parameters' sent to the collector.
    fn replay(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let mut grads = Grads::default();
        grads.whole.insert(self.out_id, grad.clone());
        for r in self.steps.iter().rev() {
            let out = r.out.as_ref().unwrap_or(res);
            let Some(g) = grads.take_id(r.id, out)? else {
                continue;
            };
            match &r.step {
                Step::One(op, a) => grads.add(a, op.bwd(a, out, &g)?)?,
                Step::Two(op, [a, b]) => {
                    let (ga, gb) = op.bwd(a, b, out, &g)?;
                    grads.add(a, ga)?;
                    grads.add(b, gb)?;
                }
                Step::Three(op, [a, b, c]) => {
                    let (ga, gb, gc) = op.bwd(a, b, c, out, &g)?;
                    grads.add(a, ga)?;
                    grads.add(b, gb)?;
                    grads.add(c, gc)?;
                }
                Step::Cat(args, dim) => {
                    let mut start = 0;
                    for a in args {
                        let len = a.dim(*dim)?;
                        grads.add(a, Some(g.narrow(*dim, start, len)?))?;
                        start += len;
                    }
                }
                Step::Narrow(src, dim, start) => grads
                    .slices
                    .entry(src.id())
                    .or_default()
                    .push((*dim, *start, g)),
                Step::Alias(src) => grads.add(src, Some(g))?,
            }
        }
        let mut collected = Vec::with_capacity(self.variables.len());
        for v in &self.variables {
            if let Some(g) = grads.take_id(v.id(), v)? {
                collected.push((v.clone(), g.contiguous()?));
            }
        }
        self.sink.0.lock().expect("not poisoned").extend(collected);
        grads.take_id(self.input, x)
    }
}

impl CustomOp2 for StageOp {
    fn name(&self) -> &'static str {
        "fast-stage"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.out.cpu()
    }

    fn bwd(
        &self,
        x: &Tensor,
        _anchor: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((self.replay(x, res, grad)?, None))
    }
}

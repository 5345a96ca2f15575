//! The CPU backend, in f32 or in emulated mixed precision: the same pipeline, asking its
//! [`Recipe`] at each rounding site of [`crate::recipe`] what to do with the tensor there.
//!
//! Parallelism: the convolutional trunk (conv1, pool, relu, conv2, pool, relu and their
//! backward) runs on groups of [`CHUNK`] images, one rayon task per group, each with its own
//! preallocated buffers; the fully connected head runs on the whole batch. Weight gradients of
//! the trunk are summed over groups in group order. The grouping does not depend on the number
//! of threads, so results are bit-identical on any machine with the same CPU features.
//! Recipes that quantize nothing run each group's whole trunk in one task, on buffers its
//! thread lends (`Transients`); the FP8 recipes run it stage by stage over all groups.
//!
//! Nothing is allocated per step: every buffer is sized for the batch capacity at construction
//! (a thread's transient buffers on its first group).

use crate::adam::{self, AdamConfig, AdamState};
use crate::aligned::AlignedVec;
use crate::backend::{Backend, Batch, EvalStats};
use crate::conv2d::{ColOffsets, Conv2d};
use crate::dataset::{CLASSES, IMAGE_PIXELS};
use crate::error::{Result, SimError};
use crate::loss;
use crate::model::Layer;
use crate::model::{ParamViews, Params, CONV1, CONV2, FC1, FC2, FLAT, POOL1_SIDE, POOL2_SIDE};
use crate::quantize::{self, Axis, QuantStats};
use crate::recipe::{Cast, Quantization, Recipe, RecipeKind, RecipeState, Role, Site};
use crate::state_dict::{Placed, SimpleCnnAdam, Slot, StateDict};
use crate::{pool, relu};
use halfscale_core::scaler::{unscale_and_check, NonFiniteReport};
use rayon::prelude::*;
use std::cell::RefCell;

/// Images per parallel group of the convolutional trunk: the weight-gradient groups of
/// [`crate::conv2d::WEIGHT_GRAD_GROUP`].
pub const CHUNK: usize = crate::conv2d::WEIGHT_GRAD_GROUP;

const P1_PLANE: usize = POOL1_SIDE * POOL1_SIDE;
const P2_PLANE: usize = POOL2_SIDE * POOL2_SIDE;

/// Buffers of one group of images: activations kept for the backward pass, gradients, and the
/// group's partial weight gradients; for the FP8 recipes, the quantized copies of its GEMM
/// operands (sized on first use).
#[derive(Clone, Debug)]
pub struct ChunkBuffers {
    n: usize,
    x: AlignedVec,
    col1: AlignedVec,
    a1: AlignedVec,
    p1: AlignedVec,
    arg1: Vec<u8>,
    col2: AlignedVec,
    a2: AlignedVec,
    p2: AlignedVec,
    arg2: Vec<u8>,
    dp2: AlignedVec,
    da2: AlignedVec,
    dp1: AlignedVec,
    da1: AlignedVec,
    dw1: AlignedVec,
    db1: Vec<f32>,
    dw2: AlignedVec,
    db2: Vec<f32>,
    /// conv2's input quantized (per-tensor FP8; relu's backward keeps reading `p1`).
    p1q: Vec<f32>,
    /// The im2col matrices quantized for the forward GEMM (MX: blocks along the filter taps;
    /// `col1`/`col2` then hold the weight-gradient copy, blocks along the positions).
    col1f: Vec<f32>,
    col2f: Vec<f32>,
    /// The output gradients quantized for the weight-gradient GEMM (and, per tensor, for the
    /// input-gradient GEMM too); `da2d` is conv2's MX copy for the input gradient.
    da2q: Vec<f32>,
    da2d: Vec<f32>,
    da1q: Vec<f32>,
    /// conv1's and conv2's im2col matrices as offsets into `x` and `p1`, for the fused
    /// backward's weight gradients (built for the group's image count on first use).
    col1_offsets: ColOffsets,
    col2_offsets: ColOffsets,
}

impl ChunkBuffers {
    /// Buffers for up to [`CHUNK`] images.
    pub fn new() -> Self {
        let c = CHUNK;
        Self {
            n: 0,
            x: AlignedVec::zeroed(c * IMAGE_PIXELS),
            col1: AlignedVec::zeroed(CONV1.col_len(c)),
            a1: AlignedVec::zeroed(CONV1.output_len(c)),
            p1: AlignedVec::zeroed(CONV1.out_channels * c * P1_PLANE),
            arg1: vec![0; CONV1.out_channels * c * P1_PLANE],
            col2: AlignedVec::zeroed(CONV2.col_len(c)),
            a2: AlignedVec::zeroed(CONV2.output_len(c)),
            p2: AlignedVec::zeroed(CONV2.out_channels * c * P2_PLANE),
            arg2: vec![0; CONV2.out_channels * c * P2_PLANE],
            dp2: AlignedVec::zeroed(CONV2.out_channels * c * P2_PLANE),
            da2: AlignedVec::zeroed(CONV2.output_len(c)),
            dp1: AlignedVec::zeroed(CONV2.input_len(c)),
            da1: AlignedVec::zeroed(CONV1.output_len(c)),
            dw1: AlignedVec::zeroed(CONV1.weight_len()),
            db1: vec![0.0; CONV1.out_channels],
            dw2: AlignedVec::zeroed(CONV2.weight_len()),
            db2: vec![0.0; CONV2.out_channels],
            p1q: Vec::new(),
            col1f: Vec::new(),
            col2f: Vec::new(),
            da2q: Vec::new(),
            da2d: Vec::new(),
            da1q: Vec::new(),
            col1_offsets: ColOffsets::default(),
            col2_offsets: ColOffsets::default(),
        }
    }

    /// Forward, first stage: the group's images (`n <= CHUNK`), rounded at conv1's input site.
    fn load_images(&mut self, r: &Recipe, images: &[f32]) {
        let n = images.len() / IMAGE_PIXELS;
        debug_assert!(n <= CHUNK);
        self.n = n;
        let x = &mut self.x[..n * IMAGE_PIXELS];
        x.copy_from_slice(images);
        r.round(Site::new(Layer::Conv1, Role::Input), x);
    }

    /// Forward: conv1's im2col matrix (from the images, quantized already where the recipe
    /// quantizes them per tensor), and for MX its forward copy.
    fn im2col1(&mut self, r: &Recipe) {
        let n = self.n;
        CONV1.im2col(n, &self.x, &mut self.col1);
        mx_forward_copy(
            r,
            Site::new(Layer::Conv1, Role::Input),
            &self.col1[..CONV1.col_len(n)],
            &mut self.col1f,
        );
    }

    /// Forward: conv1, pool, relu; keeps a copy of conv2's input to quantize when the recipe
    /// quantizes it per tensor.
    fn forward_conv1(&mut self, r: &Recipe, w: &ParamViews<'_>) {
        let n = self.n;
        let col: &[f32] = match r.cast(Site::new(Layer::Conv1, Role::Input)) {
            Cast::Quantize(Quantization::Mx(..)) => &self.col1f,
            _ => &self.col1,
        };
        CONV1.forward(n, col, w.conv1_w, w.conv1_b, &mut self.a1);
        r.round(
            Site::new(Layer::Conv1, Role::Output),
            &mut self.a1[..CONV1.output_len(n)],
        );
        let planes1 = CONV1.out_channels * n;
        pool::forward(
            planes1,
            CONV1.out_height(),
            CONV1.out_width(),
            &self.a1,
            &mut self.p1,
            &mut self.arg1,
        );
        relu::forward(&mut self.p1[..planes1 * P1_PLANE]);
        if is_per_tensor(r, Site::new(Layer::Conv2, Role::Input)) {
            copy_into(&mut self.p1q, &self.p1[..planes1 * P1_PLANE]);
        }
    }

    /// Forward: conv2's im2col matrix (from the quantized copy of its input where the recipe
    /// quantizes per tensor), and for MX its forward copy.
    fn im2col2(&mut self, r: &Recipe) {
        let n = self.n;
        let site = Site::new(Layer::Conv2, Role::Input);
        let input: &[f32] = if is_per_tensor(r, site) {
            &self.p1q
        } else {
            &self.p1
        };
        CONV2.im2col(n, input, &mut self.col2);
        mx_forward_copy(r, site, &self.col2[..CONV2.col_len(n)], &mut self.col2f);
    }

    /// Forward, last stage: conv2, pool, relu, writing the flattened features (`[n][1024]`,
    /// PyTorch's `flatten` order `c*16 + y*4 + x`) into `flat`.
    ///
    /// `Col::Matrix`: from `col2` (or its MX copy) built by [`Self::im2col2`]; `Col::FromInput`
    /// (the fused trunk, which quantizes nothing): from `p1`, the im2col matrix built a block
    /// of taps at a time into `col2`'s buffer (`Conv2d::forward_by_tap_blocks`, the same bits).
    fn forward_conv2(&mut self, r: &Recipe, w: &ParamViews<'_>, flat: &mut [f32], col: Col) {
        let n = self.n;
        match col {
            Col::Matrix => {
                let col: &[f32] = match r.cast(Site::new(Layer::Conv2, Role::Input)) {
                    Cast::Quantize(Quantization::Mx(..)) => &self.col2f,
                    _ => &self.col2,
                };
                CONV2.forward(n, col, w.conv2_w, w.conv2_b, &mut self.a2);
            }
            Col::FromInput => {
                debug_assert!(!is_per_tensor(r, Site::new(Layer::Conv2, Role::Input)));
                CONV2.forward_by_tap_blocks(
                    n,
                    &self.p1,
                    w.conv2_w,
                    w.conv2_b,
                    &mut self.col2,
                    &mut self.a2,
                );
            }
        }
        r.round(
            Site::new(Layer::Conv2, Role::Output),
            &mut self.a2[..CONV2.output_len(n)],
        );
        let planes2 = CONV2.out_channels * n;
        pool::forward(
            planes2,
            CONV2.out_height(),
            CONV2.out_width(),
            &self.a2,
            &mut self.p2,
            &mut self.arg2,
        );
        relu::forward(&mut self.p2[..planes2 * P2_PLANE]);
        for c in 0..CONV2.out_channels {
            for img in 0..n {
                let src = &self.p2[(c * n + img) * P2_PLANE..(c * n + img + 1) * P2_PLANE];
                flat[img * FLAT + c * P2_PLANE..img * FLAT + (c + 1) * P2_PLANE]
                    .copy_from_slice(src);
            }
        }
    }

    /// Backward, first stage: from the gradient of the flattened features (`[n][1024]`) to
    /// conv2's output gradient; copies it for quantization where the recipe quantizes it.
    fn backward_to_conv2(&mut self, r: &Recipe, dflat: &[f32]) {
        let n = self.n;
        for c in 0..CONV2.out_channels {
            for img in 0..n {
                let src = &dflat[img * FLAT + c * P2_PLANE..img * FLAT + (c + 1) * P2_PLANE];
                self.dp2[(c * n + img) * P2_PLANE..(c * n + img + 1) * P2_PLANE]
                    .copy_from_slice(src);
            }
        }
        let planes2 = CONV2.out_channels * n;
        relu::backward(
            &self.p2[..planes2 * P2_PLANE],
            &mut self.dp2[..planes2 * P2_PLANE],
        );
        pool::backward(
            planes2,
            CONV2.out_height(),
            CONV2.out_width(),
            &self.dp2,
            &self.arg2,
            &mut self.da2,
        );
        let da2 = &self.da2[..CONV2.output_len(n)];
        match r.cast(Site::new(Layer::Conv2, Role::OutputGrad)) {
            Cast::Quantize(Quantization::PerTensor(_)) => copy_into(&mut self.da2q, da2),
            Cast::Quantize(Quantization::Mx(..)) => {
                copy_into(&mut self.da2q, da2);
                copy_into(&mut self.da2d, da2);
            }
            _ => {}
        }
    }

    /// Backward, second stage: conv2's weight, bias and input gradients, then back through
    /// relu and pool to conv1's output gradient (copied for quantization where needed).
    ///
    /// `Col::FromInput` (the fused trunk, which quantizes nothing): dW reads conv2's im2col
    /// matrix from `p1` through offset tables, so the backward need not rebuild it; `Col::Matrix`:
    /// from `col2`.
    fn backward_conv2(&mut self, r: &Recipe, wd: &ParamViews<'_>, col: Col) {
        let n = self.n;
        let cast = r.cast(Site::new(Layer::Conv2, Role::OutputGrad));
        let (dy_w, dy_d): (&[f32], &[f32]) = match cast {
            Cast::Quantize(Quantization::PerTensor(_)) => (&self.da2q, &self.da2q),
            Cast::Quantize(Quantization::Mx(..)) => (&self.da2q, &self.da2d),
            _ => (&self.da2, &self.da2),
        };
        match col {
            Col::Matrix => {
                CONV2.backward_params(n, dy_w, &self.col2, &mut self.dw2, &mut self.db2, false)
            }
            Col::FromInput => {
                debug_assert!(!is_per_tensor(r, Site::new(Layer::Conv2, Role::Input)));
                CONV2.backward_params_gathered(
                    n,
                    dy_w,
                    &self.p1,
                    offsets_for(&mut self.col2_offsets, &CONV2, n),
                    &mut self.dw2,
                    &mut self.db2,
                    false,
                );
            }
        }
        // The im2col matrix is not needed again: `col2`'s buffer takes dcol.
        CONV2.backward_input(n, dy_d, wd.conv2_w, &mut self.col2, &mut self.dp1);
        if matches!(cast, Cast::Quantize(_)) {
            bias_grad_from(
                &self.da2[..CONV2.output_len(n)],
                CONV2.out_channels,
                &mut self.db2,
            );
        }
        r.round(
            Site::new(Layer::Conv2, Role::InputGrad),
            &mut self.dp1[..CONV2.input_len(n)],
        );
        let planes1 = CONV1.out_channels * n;
        relu::backward(
            &self.p1[..planes1 * P1_PLANE],
            &mut self.dp1[..planes1 * P1_PLANE],
        );
        pool::backward(
            planes1,
            CONV1.out_height(),
            CONV1.out_width(),
            &self.dp1,
            &self.arg1,
            &mut self.da1,
        );
        if let Cast::Quantize(_) = r.cast(Site::new(Layer::Conv1, Role::OutputGrad)) {
            copy_into(&mut self.da1q, &self.da1[..CONV1.output_len(n)]);
        }
    }

    /// Backward, last stage: conv1's weight and bias gradients into the group's partials.
    /// `col` as [`Self::backward_conv2`]'s (gathered from the kept images `x`).
    fn backward_conv1(&mut self, r: &Recipe, col: Col) {
        let n = self.n;
        let quantized = matches!(
            r.cast(Site::new(Layer::Conv1, Role::OutputGrad)),
            Cast::Quantize(_)
        );
        let dy: &[f32] = if quantized { &self.da1q } else { &self.da1 };
        match col {
            Col::Matrix => {
                CONV1.backward_params(n, dy, &self.col1, &mut self.dw1, &mut self.db1, false)
            }
            Col::FromInput => {
                CONV1.backward_params_gathered(
                    n,
                    dy,
                    &self.x,
                    offsets_for(&mut self.col1_offsets, &CONV1, n),
                    &mut self.dw1,
                    &mut self.db1,
                    false,
                );
            }
        }
        if quantized {
            bias_grad_from(
                &self.da1[..CONV1.output_len(n)],
                CONV1.out_channels,
                &mut self.db1,
            );
        }
    }
}

/// The buffers of a group that live only within one pass over it (the im2col matrices, the
/// convolutions' outputs and the trunk's gradients, about 1.8 MB): where the trunk runs group
/// by group, each thread lends its own set to every group it runs, so they stay in that
/// core's L2 instead of each group's set coming from L3 (measured: the conv2 GEMMs 35-60 %
/// slower on per-group buffers). The backward pass does not need the im2col matrices again:
/// the weight gradients read them from the group's kept images and pooled activations through
/// offset tables (`Conv2d::backward_params_gathered`); `col2`'s buffer takes conv2's `dcol`.
#[derive(Debug)]
struct Transients {
    col1: AlignedVec,
    a1: AlignedVec,
    col2: AlignedVec,
    a2: AlignedVec,
    dp2: AlignedVec,
    da2: AlignedVec,
    dp1: AlignedVec,
    da1: AlignedVec,
}

impl Transients {
    fn new() -> Self {
        let c = CHUNK;
        Self {
            col1: AlignedVec::zeroed(CONV1.col_len(c)),
            a1: AlignedVec::zeroed(CONV1.output_len(c)),
            col2: AlignedVec::zeroed(CONV2.col_len(c)),
            a2: AlignedVec::zeroed(CONV2.output_len(c)),
            dp2: AlignedVec::zeroed(CONV2.out_channels * c * P2_PLANE),
            da2: AlignedVec::zeroed(CONV2.output_len(c)),
            dp1: AlignedVec::zeroed(CONV2.input_len(c)),
            da1: AlignedVec::zeroed(CONV1.output_len(c)),
        }
    }

    /// Exchanges these buffers with the group's (pointers only).
    fn swap(&mut self, chunk: &mut ChunkBuffers) {
        std::mem::swap(&mut self.col1, &mut chunk.col1);
        std::mem::swap(&mut self.a1, &mut chunk.a1);
        std::mem::swap(&mut self.col2, &mut chunk.col2);
        std::mem::swap(&mut self.a2, &mut chunk.a2);
        std::mem::swap(&mut self.dp2, &mut chunk.dp2);
        std::mem::swap(&mut self.da2, &mut chunk.da2);
        std::mem::swap(&mut self.dp1, &mut chunk.dp1);
        std::mem::swap(&mut self.da1, &mut chunk.da1);
    }
}

thread_local! {
    static TRANSIENTS: RefCell<Transients> = RefCell::new(Transients::new());
}

impl ChunkBuffers {
    /// Runs `pass` on this group with the calling thread's [`Transients`] in place of its own.
    /// `pass` must not wait on rayon work (no join or parallel iterator inside): a group stolen
    /// onto this thread meanwhile would find the buffers lent out (a `RefCell` panic, not a
    /// silent share). The trunk's stages call none.
    fn with_thread_transients(&mut self, pass: impl FnOnce(&mut Self)) {
        TRANSIENTS.with_borrow_mut(|t| {
            t.swap(self);
            pass(self);
            t.swap(self);
        });
    }

    /// The whole trunk forward for this group: conv1, pool, relu, conv2, pool, relu.
    fn forward_fused(&mut self, r: &Recipe, w: &ParamViews<'_>, images: &[f32], flat: &mut [f32]) {
        self.with_thread_transients(|c| {
            c.load_images(r, images);
            c.im2col1(r);
            c.forward_conv1(r, w);
            c.forward_conv2(r, w, flat, Col::FromInput);
        });
    }

    /// The whole trunk backward for this group: the weight gradients read the im2col matrices
    /// from the kept inputs (`p1`, the images) through offsets instead of rebuilding them (the
    /// same values).
    fn backward_fused(&mut self, r: &Recipe, wd: &ParamViews<'_>, dflat: &[f32]) {
        self.with_thread_transients(|c| {
            c.backward_to_conv2(r, dflat);
            c.backward_conv2(r, wd, Col::FromInput);
            c.backward_conv1(r, Col::FromInput);
        });
    }
}

/// `cache`, rebuilt first as `conv`'s im2col offsets for `n` images when it holds another count
/// (each group keeps one per layer: the tables depend only on the layer and `n`).
fn offsets_for<'a>(cache: &'a mut ColOffsets, conv: &Conv2d, n: usize) -> &'a ColOffsets {
    if cache.n != n || cache.taps.is_empty() {
        *cache = conv.col_offsets(n);
    }
    cache
}

/// Where a convolution's GEMM takes its im2col matrix from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    /// The whole matrix, built beforehand (`col1`/`col2`, or their quantized copies): the
    /// staged trunk of the FP8 recipes.
    Matrix,
    /// The layer's kept input: read through offset tables (weight gradients) or built a block
    /// of taps at a time (conv2's forward); the fused trunk.
    FromInput,
}

impl Default for ChunkBuffers {
    fn default() -> Self {
        Self::new()
    }
}

/// `dst` resized to `src`'s length (allocating on first use only) and overwritten with it.
fn copy_into(dst: &mut Vec<f32>, src: &[f32]) {
    dst.resize(src.len(), 0.0);
    dst.copy_from_slice(src);
}

/// Whether the recipe quantizes `site` with one scale for the whole tensor.
/// Whether the recipe quantizes GEMM operands as whole tensors (the FP8 recipes), which makes
/// the trunk run stage by stage instead of group by group.
fn quantizes_operands(r: &Recipe) -> bool {
    matches!(r.kind(), RecipeKind::Fp8 | RecipeKind::Mxfp8)
}

fn is_per_tensor(r: &Recipe, site: Site) -> bool {
    matches!(r.cast(site), Cast::Quantize(Quantization::PerTensor(_)))
}

/// For an MX recipe, copies a conv input's im2col matrix `col` (`[taps][positions]`) into
/// `copy`, the forward GEMM's operand, to be quantized in blocks along the taps (the forward
/// reduction); `col` itself is then quantized along the positions (the weight gradient's
/// reduction). Nothing for other recipes.
fn mx_forward_copy(r: &Recipe, site: Site, col: &[f32], copy: &mut Vec<f32>) {
    if let Cast::Quantize(Quantization::Mx(..)) = r.cast(site) {
        copy_into(copy, col);
    }
}

/// A bias gradient from the unquantized output gradient (`[channels][positions]`), in the
/// `sum_lanes` order of `Conv2d::backward_params`: TE's fused `cast_transpose_dbias` sums the
/// high-precision gradient, not its FP8 copy.
fn bias_grad_from(dy: &[f32], channels: usize, db: &mut [f32]) {
    let per = dy.len() / channels;
    let dy = &dy[..dy.len().min(db.len() * per)];
    crate::gemm::sum_lanes_rows(dy, per, |row, s| db[row] = s);
}

/// Merges the counts of parallel parts.
fn merged(a: QuantStats, b: QuantStats) -> QuantStats {
    let mut a = a;
    a.merge(&b);
    a
}

/// Quantizes a GEMM operand held in parts (one per group of images, or a single one) as the
/// recipe says: per tensor, the amax over every part, the recipe's scale for it, the cast of
/// each part; MX, each part as the row-major matrix `shape(part)` returns, in blocks along
/// `axis`. Records the amax and the cast's counts in the recipe (when `training`; evaluation
/// casts with the scales as they stand and records nothing). Nothing for other recipes.
fn quantize_parts<C: Send>(
    recipe: &mut Recipe,
    site: Site,
    training: bool,
    parts: &mut [C],
    axis: Axis,
    part: impl Fn(&mut C) -> (&mut [f32], usize) + Sync + Send,
) {
    let amax = parts
        .par_iter_mut()
        .map(|c| quantize::amax(part(c).0))
        .reduce(|| 0.0, f32::max);
    let stats = match recipe.cast(site) {
        Cast::Quantize(Quantization::PerTensor(elem)) => {
            let (scale, scale_inv) = if training {
                recipe.tensor_scale(site, amax)
            } else {
                recipe.peek_scale(site, amax)
            }
            .expect("a per-tensor site has a scale");
            parts
                .par_iter_mut()
                .map(|c| quantize::quantize_tensor(part(c).0, elem, scale, scale_inv))
                .reduce(QuantStats::default, merged)
        }
        Cast::Quantize(Quantization::Mx(elem, mode)) => parts
            .par_iter_mut()
            .map(|c| {
                let (values, cols) = part(c);
                let rows = values.len() / cols;
                quantize::quantize_mx(values, rows, cols, axis, elem, mode)
            })
            .reduce(QuantStats::default, merged),
        _ => return,
    };
    if training {
        recipe.record_stats(site, Some(amax), stats);
    }
}

/// The CPU backend.
#[derive(Clone, Debug)]
pub struct CpuBackend {
    recipe: Recipe,
    capacity: usize,
    params: Params,
    /// The weights as the layers see them: a copy of the master weights, rounded in the
    /// autocast modes (autocast's per-step weight cast), quantized for the forward GEMMs in
    /// the FP8 modes.
    cast: Params,
    /// MXFP8: the weights quantized for the input-gradient GEMMs (blocks along the output
    /// channels); empty otherwise.
    cast_d: Params,
    grads: Params,
    adam: AdamState,
    chunks: Vec<ChunkBuffers>,
    n: usize,
    labels: Vec<u8>,
    flat: Vec<f32>,
    h1: Vec<f32>,
    logits: Vec<f32>,
    logp: Vec<f32>,
    dlogits: Vec<f32>,
    dh1: Vec<f32>,
    dflat: Vec<f32>,
    /// FP8 copies: fc1's forward input (MX), fc2's input for its forward (`h1q`) and weight
    /// gradient (`h1w`, MX), the output gradients of fc2 and fc1 for the weight gradient
    /// (and per tensor the input gradient) and, MX, for the input gradient (`*_d`).
    flat_f: Vec<f32>,
    h1q: Vec<f32>,
    h1w: Vec<f32>,
    dlogits_q: Vec<f32>,
    dlogits_d: Vec<f32>,
    dh1q: Vec<f32>,
    dh1d: Vec<f32>,
}

impl CpuBackend {
    /// A backend for batches of up to `capacity` examples, with zero weights (load some with
    /// [`Backend::import_state`]).
    pub fn new(recipe: Recipe, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let groups = capacity.div_ceil(CHUNK);
        Self {
            recipe,
            capacity,
            params: Params::zeros(),
            cast: Params::zeros(),
            cast_d: Params { data: Vec::new() },
            grads: Params::zeros(),
            adam: AdamState::new(crate::model::PARAM_COUNT),
            chunks: (0..groups).map(|_| ChunkBuffers::new()).collect(),
            n: 0,
            labels: Vec::with_capacity(capacity),
            flat: vec![0.0; capacity * FLAT],
            h1: vec![0.0; capacity * FC1.out_features],
            logits: vec![0.0; capacity * CLASSES],
            logp: vec![0.0; capacity * CLASSES],
            dlogits: vec![0.0; capacity * CLASSES],
            dh1: vec![0.0; capacity * FC1.out_features],
            dflat: vec![0.0; capacity * FLAT],
            flat_f: Vec::new(),
            h1q: Vec::new(),
            h1w: Vec::new(),
            dlogits_q: Vec::new(),
            dlogits_d: Vec::new(),
            dh1q: Vec::new(),
            dh1d: Vec::new(),
        }
    }

    /// The largest batch this backend accepts.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The master weights.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The gradients of the last backward pass.
    pub fn grads(&self) -> &Params {
        &self.grads
    }

    /// The weights the last forward pass used (rounded or quantized as the recipe says).
    pub fn cast_params(&self) -> &Params {
        &self.cast
    }

    /// The log-softmax output of the last forward pass (`[n][10]`).
    pub fn log_probs(&self) -> &[f32] {
        &self.logp[..self.n * CLASSES]
    }

    /// `dL/dlogits` (times the loss scale, rounded in the autocast modes) of the last backward.
    pub fn logit_grads(&self) -> &[f32] {
        &self.dlogits[..self.n * CLASSES]
    }

    /// The features fc1 multiplied in the last forward pass (`[n][1024]`, quantized as the
    /// recipe says).
    pub fn fc1_input(&self) -> &[f32] {
        let n = self.n * FLAT;
        if self.recipe.kind() == RecipeKind::Mxfp8 {
            &self.flat_f[..n]
        } else {
            &self.flat[..n]
        }
    }

    fn check_batch(&self, batch: &Batch<'_>) -> Result<()> {
        let n = batch.len();
        if n == 0 || n > self.capacity || batch.images.len() != n * IMAGE_PIXELS {
            return Err(SimError::InvalidBatch(format!(
                "{n} labels and {} pixels for a backend of capacity {}",
                batch.images.len(),
                self.capacity
            )));
        }
        if let Some(&l) = batch.labels.iter().find(|&&l| usize::from(l) >= CLASSES) {
            return Err(SimError::InvalidBatch(format!("label {l} outside 0..=9")));
        }
        Ok(())
    }

    /// Autocast's per-step weight cast: each layer's weight and bias at their own sites; the
    /// FP8 recipes quantize each weight as a GEMM operand.
    fn cast_weights(&mut self, training: bool) {
        let r = &self.recipe;
        for layer in Layer::ALL {
            let range = layer.range();
            let (w, _, _) = layer.sizes();
            let (cast, master) = (&mut self.cast.data[range.clone()], &self.params.data[range]);
            let (cast_w, cast_b) = cast.split_at_mut(w);
            let (master_w, master_b) = master.split_at(w);
            for (site, c, m) in [
                (Site::new(layer, Role::Weight), cast_w, master_w),
                (Site::new(layer, Role::Bias), cast_b, master_b),
            ] {
                c.par_chunks_mut(1 << 14)
                    .zip(m.par_chunks(1 << 14))
                    .for_each(|(c, m)| {
                        c.copy_from_slice(m);
                        r.round(site, c);
                    });
            }
        }
        if !self.recipe.is_fp8() {
            return;
        }
        let mx = self.recipe.kind() == RecipeKind::Mxfp8;
        if mx {
            self.cast_d.data.clone_from(&self.cast.data);
        }
        for layer in Layer::ALL {
            let site = Site::new(layer, Role::Weight);
            let (w, _, _) = layer.sizes();
            let cols = layer_reduction(layer);
            let at = layer.range().start;
            let weight = &mut self.cast.data[at..at + w];
            // Each row of a weight is one output channel's filter, along which the forward
            // GEMM reduces: blocks along the rows.
            quantize_parts(
                &mut self.recipe,
                site,
                training,
                &mut [weight],
                Axis::Rows,
                |c| (&mut **c, cols),
            );
            if mx {
                // The input gradient reduces over the output channels: blocks down the
                // columns. Its counts are the forward copy's (recorded above).
                let weight_d = &mut self.cast_d.data[at..at + w];
                mx_in_place(&self.recipe, site, weight_d, cols, Axis::Cols);
            }
        }
    }

    /// Forward pass: logits and log-probabilities of `batch`; returns the mean loss. Training
    /// passes record the FP8 recipes' amaxes; evaluation does not. The convolutional trunk
    /// runs in stages over the groups, with the whole-tensor quantizations between them.
    fn forward_pass(&mut self, batch: Batch<'_>, training: bool) -> Result<f32> {
        self.check_batch(&batch)?;
        let n = batch.len();
        self.n = n;
        self.labels.clear();
        self.labels.extend_from_slice(batch.labels);
        self.cast_weights(training);
        let groups = n.div_ceil(CHUNK);
        if !quantizes_operands(&self.recipe) {
            // Nothing crosses groups between the stages: each group runs the whole trunk
            // while its buffers are in its core's cache.
            let r = &self.recipe;
            let w = self.cast.views();
            self.chunks[..groups]
                .par_iter_mut()
                .zip(batch.images.par_chunks(CHUNK * IMAGE_PIXELS))
                .zip(self.flat[..n * FLAT].par_chunks_mut(CHUNK * FLAT))
                .for_each(|((chunk, images), flat)| chunk.forward_fused(r, &w, images, flat));
        } else {
            self.forward_trunk_staged(&batch, training, groups);
        }
        self.forward_head(training)
    }

    /// The convolutional trunk stage by stage over all groups, for the FP8 recipes: between
    /// the stages, each operand is quantized as a whole tensor (its amax spans the groups).
    fn forward_trunk_staged(&mut self, batch: &Batch<'_>, training: bool, groups: usize) {
        let n = batch.len();
        let conv1_in = Site::new(Layer::Conv1, Role::Input);
        let conv2_in = Site::new(Layer::Conv2, Role::Input);
        {
            let r = &self.recipe;
            self.chunks[..groups]
                .par_iter_mut()
                .zip(batch.images.par_chunks(CHUNK * IMAGE_PIXELS))
                .for_each(|(chunk, images)| chunk.load_images(r, images));
        }
        if is_per_tensor(&self.recipe, conv1_in) {
            quantize_parts(
                &mut self.recipe,
                conv1_in,
                training,
                &mut self.chunks[..groups],
                Axis::Rows,
                |c| (&mut c.x[..c.n * IMAGE_PIXELS], IMAGE_PIXELS),
            );
        }
        {
            let r = &self.recipe;
            self.chunks[..groups]
                .par_iter_mut()
                .for_each(|chunk| chunk.im2col1(r));
        }
        self.quantize_conv_inputs(Layer::Conv1, training, groups);
        {
            let r = &self.recipe;
            let w = self.cast.views();
            self.chunks[..groups]
                .par_iter_mut()
                .for_each(|chunk| chunk.forward_conv1(r, &w));
        }
        if is_per_tensor(&self.recipe, conv2_in) {
            quantize_parts(
                &mut self.recipe,
                conv2_in,
                training,
                &mut self.chunks[..groups],
                Axis::Rows,
                |c| {
                    let len = CONV1.out_channels * c.n * P1_PLANE;
                    (&mut c.p1q[..len], len)
                },
            );
        }
        {
            let r = &self.recipe;
            self.chunks[..groups]
                .par_iter_mut()
                .for_each(|chunk| chunk.im2col2(r));
        }
        self.quantize_conv_inputs(Layer::Conv2, training, groups);
        {
            let r = &self.recipe;
            let w = self.cast.views();
            self.chunks[..groups]
                .par_iter_mut()
                .zip(self.flat[..n * FLAT].par_chunks_mut(CHUNK * FLAT))
                .for_each(|(chunk, flat)| chunk.forward_conv2(r, &w, flat, Col::Matrix));
        }
    }

    /// The fully connected head on the whole batch, from `flat`: fc1, relu, fc2, the
    /// log-softmax; returns the mean loss.
    fn forward_head(&mut self, training: bool) -> Result<f32> {
        let n = self.n;
        // fc1's input: quantized in place per tensor (nothing else reads it); MX, a forward
        // copy in blocks along the features and `flat` in blocks along the batch for dW.
        let fc1_in = Site::new(Layer::Fc1, Role::Input);
        let mx = self.recipe.kind() == RecipeKind::Mxfp8;
        if mx {
            copy_into(&mut self.flat_f, &self.flat[..n * FLAT]);
            quantize_parts(
                &mut self.recipe,
                fc1_in,
                training,
                &mut [&mut self.flat_f[..]],
                Axis::Rows,
                |c| (&mut **c, FLAT),
            );
            mx_in_place(
                &self.recipe,
                fc1_in,
                &mut self.flat[..n * FLAT],
                FLAT,
                Axis::Cols,
            );
        } else {
            quantize_parts(
                &mut self.recipe,
                fc1_in,
                training,
                &mut [&mut self.flat[..n * FLAT]],
                Axis::Rows,
                |c| (&mut **c, FLAT),
            );
        }
        {
            let w = self.cast.views();
            let fc1_x = if mx { &self.flat_f } else { &self.flat };
            let h1 = &mut self.h1[..n * FC1.out_features];
            // Two halves of the batch on two threads (a fixed split: results do not depend on
            // the thread count).
            let half = n.div_ceil(2);
            let (h_a, h_b) = h1.split_at_mut(half * FC1.out_features);
            let (f_a, f_b) = fc1_x[..n * FLAT].split_at(half * FLAT);
            rayon::join(
                || FC1.forward(half, f_a, w.fc1_w, w.fc1_b, h_a),
                || FC1.forward(n - half, f_b, w.fc1_w, w.fc1_b, h_b),
            );
            self.recipe.round(Site::new(Layer::Fc1, Role::Output), h1);
            relu::forward(h1);
        }
        // fc2's input: relu's backward reads h1, so the GEMMs get quantized copies.
        let fc2_in = Site::new(Layer::Fc2, Role::Input);
        let hidden = FC1.out_features;
        let fc2_cast = self.recipe.cast(fc2_in);
        if let Cast::Quantize(q) = fc2_cast {
            let h1 = &self.h1[..n * hidden];
            copy_into(&mut self.h1q, h1);
            if let Quantization::Mx(..) = q {
                copy_into(&mut self.h1w, h1);
                mx_in_place(&self.recipe, fc2_in, &mut self.h1w, hidden, Axis::Cols);
            }
            quantize_parts(
                &mut self.recipe,
                fc2_in,
                training,
                &mut [&mut self.h1q[..]],
                Axis::Rows,
                |c| (&mut **c, hidden),
            );
        }
        let fc2_x: &[f32] = match fc2_cast {
            Cast::Quantize(_) => &self.h1q,
            _ => &self.h1[..n * hidden],
        };
        let w = self.cast.views();
        let logits = &mut self.logits[..n * CLASSES];
        FC2.forward(n, fc2_x, w.fc2_w, w.fc2_b, logits);
        self.recipe
            .round(Site::new(Layer::Fc2, Role::Output), logits);
        loss::log_softmax(n, CLASSES, logits, &mut self.logp);
        Ok(loss::nll_loss(n, CLASSES, &self.logp, &self.labels))
    }

    /// MX only: a conv input's im2col matrices, the forward copy in blocks along the taps
    /// (recorded) and the weight-gradient copy along the positions.
    fn quantize_conv_inputs(&mut self, layer: Layer, training: bool, groups: usize) {
        let site = Site::new(layer, Role::Input);
        let Cast::Quantize(Quantization::Mx(elem, mode)) = self.recipe.cast(site) else {
            return;
        };
        let conv = if layer == Layer::Conv1 { CONV1 } else { CONV2 };
        let chunks = &mut self.chunks[..groups];
        quantize_parts(
            &mut self.recipe,
            site,
            training,
            chunks,
            Axis::Cols,
            move |c| {
                let np = c.n * conv.out_plane();
                let len = conv.col_len(c.n);
                let f = if layer == Layer::Conv1 {
                    &mut c.col1f
                } else {
                    &mut c.col2f
                };
                (&mut f[..len], np)
            },
        );
        chunks.par_iter_mut().for_each(|c| {
            let np = c.n * conv.out_plane();
            let len = conv.col_len(c.n);
            let col = if layer == Layer::Conv1 {
                &mut c.col1
            } else {
                &mut c.col2
            };
            quantize::quantize_mx(&mut col[..len], conv.col_rows(), np, Axis::Rows, elem, mode);
        });
    }

    /// Forward pass of a training step: logits and log-probabilities of `batch`; returns the
    /// mean loss.
    pub fn forward(&mut self, batch: Batch<'_>) -> Result<f32> {
        self.forward_pass(batch, true)
    }

    /// Backward pass of the last forward with upstream gradient `loss_scale`; then, for
    /// delayed FP8 scaling, the scale update of every tensor ([`Recipe::end_step`]).
    pub fn backward(&mut self, loss_scale: f32) {
        let n = self.n;
        loss::backward(
            n,
            CLASSES,
            &self.logp,
            &self.labels,
            loss_scale,
            &mut self.dlogits[..n * CLASSES],
        );
        let fc2_dy = Site::new(Layer::Fc2, Role::OutputGrad);
        self.recipe.round(fc2_dy, &mut self.dlogits[..n * CLASSES]);
        self.quantize_output_grad(fc2_dy);
        let r = &self.recipe;
        let wd = if r.kind() == RecipeKind::Mxfp8 {
            self.cast_d.views()
        } else {
            self.cast.views()
        };
        let fc2_cast = r.cast(fc2_dy);
        let (dy_w, dy_d) = grad_operands(
            fc2_cast,
            &self.dlogits,
            &self.dlogits_q,
            &self.dlogits_d,
            n * CLASSES,
        );
        let fc2_x: &[f32] = match r.cast(Site::new(Layer::Fc2, Role::Input)) {
            Cast::Quantize(Quantization::Mx(..)) => &self.h1w,
            Cast::Quantize(_) => &self.h1q,
            _ => &self.h1[..n * FC1.out_features],
        };
        let g = self.grads.views_mut();
        FC2.backward_params(n, dy_w, fc2_x, g.fc2_w, g.fc2_b);
        if matches!(fc2_cast, Cast::Quantize(_)) {
            FC2.backward_bias(n, &self.dlogits, g.fc2_b);
        }
        r.round(Site::new(Layer::Fc2, Role::WeightGrad), g.fc2_w);
        r.round(Site::new(Layer::Fc2, Role::BiasGrad), g.fc2_b);
        let dh1 = &mut self.dh1[..n * FC1.out_features];
        FC2.backward_input(n, dy_d, wd.fc2_w, dh1);
        r.round(Site::new(Layer::Fc2, Role::InputGrad), dh1);
        relu::backward(&self.h1[..n * FC1.out_features], dh1);
        let fc1_dy = Site::new(Layer::Fc1, Role::OutputGrad);
        self.quantize_output_grad(fc1_dy);
        let r = &self.recipe;
        let wd = if r.kind() == RecipeKind::Mxfp8 {
            self.cast_d.views()
        } else {
            self.cast.views()
        };
        let g = self.grads.views_mut();
        let hidden = n * FC1.out_features;
        let fc1_cast = r.cast(fc1_dy);
        let (dy_w, dy_d) = grad_operands(fc1_cast, &self.dh1, &self.dh1q, &self.dh1d, hidden);
        let dflat = &mut self.dflat[..n * FLAT];
        {
            // dW1 by halves of its rows and dX1 by halves of the batch, four tasks.
            let flat = &self.flat[..n * FLAT];
            let rows = FC1.out_features / 2;
            let (dw_a, dw_b) = g.fc1_w.split_at_mut(rows * FC1.in_features);
            let half = n.div_ceil(2);
            let (dx_a, dx_b) = dflat.split_at_mut(half * FLAT);
            let (dh_a, dh_b) = dy_d.split_at(half * FC1.out_features);
            rayon::join(
                || {
                    rayon::join(
                        || FC1.backward_weight_rows(n, dy_w, flat, 0..rows, dw_a),
                        || FC1.backward_weight_rows(n, dy_w, flat, rows..FC1.out_features, dw_b),
                    )
                },
                || {
                    rayon::join(
                        || FC1.backward_input(half, dh_a, wd.fc1_w, dx_a),
                        || FC1.backward_input(n - half, dh_b, wd.fc1_w, dx_b),
                    )
                },
            );
            // The bias from the unquantized gradient.
            FC1.backward_bias(n, &self.dh1[..hidden], g.fc1_b);
        }
        r.round(Site::new(Layer::Fc1, Role::WeightGrad), g.fc1_w);
        r.round(Site::new(Layer::Fc1, Role::BiasGrad), g.fc1_b);
        r.round(Site::new(Layer::Fc1, Role::InputGrad), dflat);
        let groups = n.div_ceil(CHUNK);
        if !quantizes_operands(r) {
            // As in the forward pass: each group runs the whole trunk backward at once.
            let wd = self.cast.views();
            self.chunks[..groups]
                .par_iter_mut()
                .zip(self.dflat[..n * FLAT].par_chunks(CHUNK * FLAT))
                .for_each(|(chunk, dflat)| chunk.backward_fused(r, &wd, dflat));
        } else {
            self.backward_trunk_staged(groups);
        }
        self.sum_trunk_grads(groups);
        self.recipe.end_step();
    }

    /// The convolutional trunk backward stage by stage, for the FP8 recipes: each output
    /// gradient is quantized as a whole tensor between the stages.
    fn backward_trunk_staged(&mut self, groups: usize) {
        let n = self.n;
        {
            let r = &self.recipe;
            self.chunks[..groups]
                .par_iter_mut()
                .zip(self.dflat[..n * FLAT].par_chunks(CHUNK * FLAT))
                .for_each(|(chunk, dflat)| chunk.backward_to_conv2(r, dflat));
        }
        self.quantize_chunk_grad(Layer::Conv2, groups);
        {
            let r = &self.recipe;
            let wd = if r.kind() == RecipeKind::Mxfp8 {
                self.cast_d.views()
            } else {
                self.cast.views()
            };
            self.chunks[..groups]
                .par_iter_mut()
                .for_each(|chunk| chunk.backward_conv2(r, &wd, Col::Matrix));
        }
        self.quantize_chunk_grad(Layer::Conv1, groups);
        {
            let r = &self.recipe;
            self.chunks[..groups]
                .par_iter_mut()
                .for_each(|chunk| chunk.backward_conv1(r, Col::Matrix));
        }
    }

    /// The trunk's weight and bias gradients: the groups' partials summed in group order (f32),
    /// then rounded once at their sites.
    fn sum_trunk_grads(&mut self, groups: usize) {
        // Sum the groups' partial conv gradients in group order (f32), then round once.
        // Blocks of elements in parallel; each element's sum runs over the groups in order.
        let r = &self.recipe;
        let g = self.grads.views_mut();
        let chunks: &[ChunkBuffers] = &self.chunks[..groups];
        let sum = |site: Site, dst: &mut [f32], part: fn(&ChunkBuffers) -> &[f32]| {
            const BLOCK: usize = 4096;
            dst.par_chunks_mut(BLOCK).enumerate().for_each(|(b, d)| {
                let at = b * BLOCK;
                d.copy_from_slice(&part(&chunks[0])[at..at + d.len()]);
                for c in &chunks[1..] {
                    for (x, s) in d.iter_mut().zip(&part(c)[at..]) {
                        *x += s;
                    }
                }
                r.round(site, d);
            });
        };
        let grad = |layer, role| Site::new(layer, role);
        sum(grad(Layer::Conv1, Role::WeightGrad), g.conv1_w, |c| &c.dw1);
        sum(grad(Layer::Conv1, Role::BiasGrad), g.conv1_b, |c| &c.db1);
        sum(grad(Layer::Conv2, Role::WeightGrad), g.conv2_w, |c| &c.dw2);
        sum(grad(Layer::Conv2, Role::BiasGrad), g.conv2_b, |c| &c.db2);
    }

    /// A linear layer's output gradient (`dlogits` for fc2, `dh1` for fc1), quantized into its
    /// GEMM copies as the recipe says: per tensor one copy for both backward GEMMs; MX a
    /// weight-gradient copy (blocks along the batch, recorded) and an input-gradient copy
    /// (blocks along the outputs).
    fn quantize_output_grad(&mut self, site: Site) {
        let Cast::Quantize(q) = self.recipe.cast(site) else {
            return;
        };
        let n = self.n;
        let (src, width, copy_w, copy_d) = if site.layer == Layer::Fc2 {
            (
                &self.dlogits[..n * CLASSES],
                CLASSES,
                &mut self.dlogits_q,
                &mut self.dlogits_d,
            )
        } else {
            (
                &self.dh1[..n * FC1.out_features],
                FC1.out_features,
                &mut self.dh1q,
                &mut self.dh1d,
            )
        };
        copy_into(copy_w, src);
        if let Quantization::Mx(..) = q {
            copy_into(copy_d, src);
            mx_in_place(&self.recipe, site, copy_d, width, Axis::Rows);
        }
        quantize_parts(
            &mut self.recipe,
            site,
            true,
            &mut [&mut copy_w[..]],
            Axis::Cols,
            |c| (&mut **c, width),
        );
    }

    /// A conv layer's output gradient in every group (copied by the first backward stages),
    /// quantized: per tensor one copy; MX the weight-gradient copy in blocks along the
    /// positions (recorded) and the input-gradient copy along the channels.
    fn quantize_chunk_grad(&mut self, layer: Layer, groups: usize) {
        let site = Site::new(layer, Role::OutputGrad);
        let Cast::Quantize(q) = self.recipe.cast(site) else {
            return;
        };
        let conv = if layer == Layer::Conv1 { CONV1 } else { CONV2 };
        quantize_parts(
            &mut self.recipe,
            site,
            true,
            &mut self.chunks[..groups],
            Axis::Rows,
            move |c| {
                let np = c.n * conv.out_plane();
                let v = if layer == Layer::Conv1 {
                    &mut c.da1q
                } else {
                    &mut c.da2q
                };
                (&mut v[..conv.output_len(c.n)], np)
            },
        );
        if let (Quantization::Mx(elem, mode), Layer::Conv2) = (q, layer) {
            self.chunks[..groups].par_iter_mut().for_each(|c| {
                let np = c.n * conv.out_plane();
                let len = conv.output_len(c.n);
                quantize::quantize_mx(
                    &mut c.da2d[..len],
                    conv.out_channels,
                    np,
                    Axis::Cols,
                    elem,
                    mode,
                );
            });
        }
    }
}

/// The reduction length of a layer's forward GEMM: a filter's taps or the input features.
fn layer_reduction(layer: Layer) -> usize {
    match layer {
        Layer::Conv1 => CONV1.col_rows(),
        Layer::Conv2 => CONV2.col_rows(),
        Layer::Fc1 => FC1.in_features,
        Layer::Fc2 => FC2.in_features,
    }
}

/// MX quantization of a `[rows][width]` copy in place, along `axis`, not recorded (the
/// second copy of an operand whose first copy's counts the recipe keeps).
fn mx_in_place(r: &Recipe, site: Site, values: &mut [f32], width: usize, axis: Axis) {
    if let Cast::Quantize(Quantization::Mx(elem, mode)) = r.cast(site) {
        let rows = values.len() / width;
        quantize::quantize_mx(values, rows, width, axis, elem, mode);
    }
}

/// The output-gradient operands of a layer's weight-gradient and input-gradient GEMMs: the
/// gradient itself, its one per-tensor copy, or its two MX copies.
fn grad_operands<'a>(
    cast: Cast,
    plain: &'a [f32],
    copy_w: &'a [f32],
    copy_d: &'a [f32],
    len: usize,
) -> (&'a [f32], &'a [f32]) {
    match cast {
        Cast::Quantize(Quantization::PerTensor(_)) => (&copy_w[..len], &copy_w[..len]),
        Cast::Quantize(Quantization::Mx(..)) => (&copy_w[..len], &copy_d[..len]),
        _ => (&plain[..len], &plain[..len]),
    }
}

impl Backend for CpuBackend {
    fn describe(&self) -> String {
        format!(
            "cpu, {}, {} thread(s)",
            self.recipe.name(),
            rayon::current_num_threads()
        )
    }

    fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    fn export_state(&self) -> Result<StateDict> {
        Ok(SimpleCnnAdam::export(
            &self.params.data,
            &self.adam.exp_avg,
            &self.adam.exp_avg_sq,
            self.adam.step,
        ))
    }

    fn export_weights(&self) -> Result<StateDict> {
        StateDict::from_params(&self.params)
    }

    fn import_state(&mut self, state: &StateDict) -> Result<()> {
        for placed in SimpleCnnAdam::check(state)? {
            match placed {
                Placed::Flat(slot, range, values) => {
                    let flat = match slot {
                        Slot::Weights => &mut self.params.data,
                        Slot::ExpAvg => &mut self.adam.exp_avg,
                        Slot::ExpAvgSq => &mut self.adam.exp_avg_sq,
                    };
                    flat[range].copy_from_slice(values);
                }
                Placed::AdamStep(step) => self.adam.step = step,
            }
        }
        Ok(())
    }

    fn load_recipe_state(&mut self, state: &RecipeState) -> Result<()> {
        self.recipe.load_state(state)
    }

    fn forward_backward(&mut self, batch: Batch<'_>, loss_scale: f32) -> Result<f32> {
        let loss = self.forward(batch)?;
        self.backward(loss_scale);
        Ok(loss)
    }

    fn read_logits(&self, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        out.extend_from_slice(&self.logits[..self.n * CLASSES]);
        Ok(())
    }

    fn read_grads(&self, out: &mut Params) -> Result<()> {
        out.data.clone_from(&self.grads.data);
        Ok(())
    }

    fn unscale_and_check(&mut self, inv_scale: f32) -> Result<NonFiniteReport> {
        Ok(unscale_and_check(&mut self.grads.data, inv_scale))
    }

    fn adam_step(&mut self, config: &AdamConfig) -> Result<()> {
        adam::step(
            config,
            &mut self.adam,
            &mut self.params.data,
            &self.grads.data,
        );
        Ok(())
    }

    fn evaluate(&mut self, batch: Batch<'_>) -> Result<EvalStats> {
        self.forward_pass(batch, false)?;
        let n = batch.len();
        let logp = &self.logp[..n * CLASSES];
        let correct = logp
            .chunks_exact(CLASSES)
            .zip(batch.labels)
            .filter(|(row, &l)| loss::argmax_row(row) == usize::from(l))
            .count();
        Ok(EvalStats {
            loss_sum: loss::nll_loss_sum(n, CLASSES, logp, batch.labels),
            correct,
            count: n,
        })
    }
}

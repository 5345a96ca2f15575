//! The CPU backend, in f32 or in emulated mixed precision: the same pipeline, asking its
//! [`Recipe`] at each rounding site of [`crate::recipe`] what to do with the tensor there.
//!
//! Parallelism: the convolutional trunk (conv1, pool, relu, conv2, pool, relu and their
//! backward) runs on groups of [`CHUNK`] images, one rayon task per group, each with its own
//! preallocated buffers; the fully connected head runs on the whole batch. Weight gradients of
//! the trunk are summed over groups in group order. The grouping does not depend on the number
//! of threads, so results are bit-identical on any machine with the same CPU features.
//!
//! Nothing is allocated per step: every buffer is sized for the batch capacity at construction.

use crate::adam::{self, AdamConfig, AdamState};
use crate::backend::{Backend, Batch, EvalStats};
use crate::dataset::{CLASSES, IMAGE_PIXELS};
use crate::error::{Result, SimError};
use crate::loss;
use crate::model::Layer;
use crate::model::{ParamViews, Params, CONV1, CONV2, FC1, FC2, FLAT, POOL1_SIDE, POOL2_SIDE};
use crate::recipe::{Recipe, Role, Site};
use crate::state_dict::{Placed, SimpleCnnAdam, Slot, StateDict};
use crate::{pool, relu};
use halfscale_core::scaler::{unscale_and_check, NonFiniteReport};
use rayon::prelude::*;

/// Images per parallel group of the convolutional trunk: the weight-gradient groups of
/// [`crate::conv2d::WEIGHT_GRAD_GROUP`].
pub const CHUNK: usize = crate::conv2d::WEIGHT_GRAD_GROUP;

const P1_PLANE: usize = POOL1_SIDE * POOL1_SIDE;
const P2_PLANE: usize = POOL2_SIDE * POOL2_SIDE;

/// Buffers of one group of images: activations kept for the backward pass, gradients, and the
/// group's partial weight gradients.
#[derive(Clone, Debug)]
pub struct ChunkBuffers {
    n: usize,
    x: Vec<f32>,
    col1: Vec<f32>,
    a1: Vec<f32>,
    p1: Vec<f32>,
    arg1: Vec<u8>,
    col2: Vec<f32>,
    a2: Vec<f32>,
    p2: Vec<f32>,
    arg2: Vec<u8>,
    dp2: Vec<f32>,
    da2: Vec<f32>,
    dcol2: Vec<f32>,
    dp1: Vec<f32>,
    da1: Vec<f32>,
    dw1: Vec<f32>,
    db1: Vec<f32>,
    dw2: Vec<f32>,
    db2: Vec<f32>,
}

impl ChunkBuffers {
    /// Buffers for up to [`CHUNK`] images.
    pub fn new() -> Self {
        let c = CHUNK;
        Self {
            n: 0,
            x: vec![0.0; c * IMAGE_PIXELS],
            col1: vec![0.0; CONV1.col_len(c)],
            a1: vec![0.0; CONV1.output_len(c)],
            p1: vec![0.0; CONV1.out_channels * c * P1_PLANE],
            arg1: vec![0; CONV1.out_channels * c * P1_PLANE],
            col2: vec![0.0; CONV2.col_len(c)],
            a2: vec![0.0; CONV2.output_len(c)],
            p2: vec![0.0; CONV2.out_channels * c * P2_PLANE],
            arg2: vec![0; CONV2.out_channels * c * P2_PLANE],
            dp2: vec![0.0; CONV2.out_channels * c * P2_PLANE],
            da2: vec![0.0; CONV2.output_len(c)],
            dcol2: vec![0.0; CONV2.col_len(c)],
            dp1: vec![0.0; CONV2.input_len(c)],
            da1: vec![0.0; CONV1.output_len(c)],
            dw1: vec![0.0; CONV1.weight_len()],
            db1: vec![0.0; CONV1.out_channels],
            dw2: vec![0.0; CONV2.weight_len()],
            db2: vec![0.0; CONV2.out_channels],
        }
    }

    /// Forward of the trunk on `images` (`n <= CHUNK` images), writing the flattened features
    /// (`[n][1024]`, PyTorch's `flatten` order `c*16 + y*4 + x`) into `flat`.
    pub fn forward(&mut self, r: &Recipe, w: &ParamViews<'_>, images: &[f32], flat: &mut [f32]) {
        let n = images.len() / IMAGE_PIXELS;
        debug_assert!(n <= CHUNK);
        self.n = n;
        let x = &mut self.x[..n * IMAGE_PIXELS];
        x.copy_from_slice(images);
        r.round(Site::new(Layer::Conv1, Role::Input), x);
        CONV1.im2col(n, x, &mut self.col1);
        CONV1.forward(n, &self.col1, w.conv1_w, w.conv1_b, &mut self.a1);
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
        CONV2.im2col(n, &self.p1, &mut self.col2);
        CONV2.forward(n, &self.col2, w.conv2_w, w.conv2_b, &mut self.a2);
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

    /// Backward of the trunk from the gradient of the flattened features (`[n][1024]`), leaving
    /// the group's conv weight and bias gradients in its partial buffers.
    pub fn backward(&mut self, r: &Recipe, w: &ParamViews<'_>, dflat: &[f32]) {
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
        CONV2.backward_params(
            n,
            &self.da2,
            &self.col2,
            &mut self.dw2,
            &mut self.db2,
            false,
        );
        CONV2.backward_input(n, &self.da2, w.conv2_w, &mut self.dcol2, &mut self.dp1);
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
        CONV1.backward_params(
            n,
            &self.da1,
            &self.col1,
            &mut self.dw1,
            &mut self.db1,
            false,
        );
    }
}

impl Default for ChunkBuffers {
    fn default() -> Self {
        Self::new()
    }
}

/// The CPU backend.
#[derive(Clone, Debug)]
pub struct CpuBackend {
    recipe: Recipe,
    capacity: usize,
    params: Params,
    /// The weights as the layers see them: a copy of the master weights, rounded in the
    /// autocast modes (autocast's per-step weight cast).
    cast: Params,
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

    /// The log-softmax output of the last forward pass (`[n][10]`).
    pub fn log_probs(&self) -> &[f32] {
        &self.logp[..self.n * CLASSES]
    }

    /// `dL/dlogits` (times the loss scale, rounded in the autocast modes) of the last backward.
    pub fn logit_grads(&self) -> &[f32] {
        &self.dlogits[..self.n * CLASSES]
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

    /// Forward pass: logits and log-probabilities of `batch`; returns the mean loss.
    pub fn forward(&mut self, batch: Batch<'_>) -> Result<f32> {
        self.check_batch(&batch)?;
        let r = &self.recipe;
        let n = batch.len();
        self.n = n;
        self.labels.clear();
        self.labels.extend_from_slice(batch.labels);
        // Autocast's per-step weight cast: each layer's weight and bias at their own sites.
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
        let w = self.cast.views();
        let groups = n.div_ceil(CHUNK);
        self.chunks[..groups]
            .par_iter_mut()
            .zip(batch.images.par_chunks(CHUNK * IMAGE_PIXELS))
            .zip(self.flat[..n * FLAT].par_chunks_mut(CHUNK * FLAT))
            .for_each(|((chunk, images), flat)| chunk.forward(r, &w, images, flat));
        let (h1, logits) = (
            &mut self.h1[..n * FC1.out_features],
            &mut self.logits[..n * CLASSES],
        );
        {
            // Two halves of the batch on two threads (a fixed split: results do not depend on
            // the thread count).
            let half = n.div_ceil(2);
            let (h_a, h_b) = h1.split_at_mut(half * FC1.out_features);
            let (f_a, f_b) = self.flat[..n * FLAT].split_at(half * FLAT);
            rayon::join(
                || FC1.forward(half, f_a, w.fc1_w, w.fc1_b, h_a),
                || FC1.forward(n - half, f_b, w.fc1_w, w.fc1_b, h_b),
            );
        }
        r.round(Site::new(Layer::Fc1, Role::Output), h1);
        relu::forward(h1);
        FC2.forward(n, h1, w.fc2_w, w.fc2_b, logits);
        r.round(Site::new(Layer::Fc2, Role::Output), logits);
        loss::log_softmax(n, CLASSES, logits, &mut self.logp);
        Ok(loss::nll_loss(n, CLASSES, &self.logp, &self.labels))
    }

    /// Backward pass of the last forward with upstream gradient `loss_scale`.
    pub fn backward(&mut self, loss_scale: f32) {
        let r = &self.recipe;
        let n = self.n;
        let w = self.cast.views();
        let dlogits = &mut self.dlogits[..n * CLASSES];
        loss::backward(n, CLASSES, &self.logp, &self.labels, loss_scale, dlogits);
        r.round(Site::new(Layer::Fc2, Role::OutputGrad), dlogits);
        let g = self.grads.views_mut();
        let h1 = &self.h1[..n * FC1.out_features];
        FC2.backward_params(n, dlogits, h1, g.fc2_w, g.fc2_b);
        r.round(Site::new(Layer::Fc2, Role::WeightGrad), g.fc2_w);
        r.round(Site::new(Layer::Fc2, Role::BiasGrad), g.fc2_b);
        let dh1 = &mut self.dh1[..n * FC1.out_features];
        FC2.backward_input(n, dlogits, w.fc2_w, dh1);
        r.round(Site::new(Layer::Fc2, Role::InputGrad), dh1);
        relu::backward(h1, dh1);
        let dflat = &mut self.dflat[..n * FLAT];
        {
            // dW1 by halves of its rows and dX1 by halves of the batch, four tasks.
            let flat = &self.flat[..n * FLAT];
            let dh1: &[f32] = dh1;
            let rows = FC1.out_features / 2;
            let (dw_a, dw_b) = g.fc1_w.split_at_mut(rows * FC1.in_features);
            let half = n.div_ceil(2);
            let (dx_a, dx_b) = dflat.split_at_mut(half * FLAT);
            let (dh_a, dh_b) = dh1.split_at(half * FC1.out_features);
            rayon::join(
                || {
                    rayon::join(
                        || FC1.backward_weight_rows(n, dh1, flat, 0..rows, dw_a),
                        || FC1.backward_weight_rows(n, dh1, flat, rows..FC1.out_features, dw_b),
                    )
                },
                || {
                    rayon::join(
                        || FC1.backward_input(half, dh_a, w.fc1_w, dx_a),
                        || FC1.backward_input(n - half, dh_b, w.fc1_w, dx_b),
                    )
                },
            );
            FC1.backward_bias(n, dh1, g.fc1_b);
        }
        r.round(Site::new(Layer::Fc1, Role::WeightGrad), g.fc1_w);
        r.round(Site::new(Layer::Fc1, Role::BiasGrad), g.fc1_b);
        r.round(Site::new(Layer::Fc1, Role::InputGrad), dflat);
        let groups = n.div_ceil(CHUNK);
        let chunks = &mut self.chunks[..groups];
        chunks
            .par_iter_mut()
            .zip(self.dflat[..n * FLAT].par_chunks(CHUNK * FLAT))
            .for_each(|(chunk, dflat)| chunk.backward(r, &w, dflat));
        // Sum the groups' partial conv gradients in group order (f32), then round once.
        // Blocks of elements in parallel; each element's sum runs over the groups in order.
        let chunks: &[ChunkBuffers] = chunks;
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
        self.forward(batch)?;
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

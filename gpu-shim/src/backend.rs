//! The CUDA backend: the simulator's [`Backend`] on the GPU, plus the sync-free device-scaled
//! step. Layouts: activations `[n][C][H][W]` binary16 (bits in `u16`), parameters, gradients and
//! Adam moments f32 in the simulator's flat order, an f16 copy of the parameters for the layers.

use crate::driver::{Arg, DBuf, Gpu, NULL};
use crate::error::{GpuError, Result};
use crate::types::{DeviceInfo, DeviceScaler};
use halfscale_core::scaler::{NonFiniteReport, ScalerConfig};
use halfscale_sim::adam::AdamConfig;
use halfscale_sim::backend::{Backend, Batch, EvalStats, QueuedSteps, StepOutcome};
use halfscale_sim::conv2d::{Conv2d, WEIGHT_GRAD_GROUP};
use halfscale_sim::dataset::Split;
use halfscale_sim::dataset::{CLASSES, IMAGE_PIXELS};
use halfscale_sim::error::DeviceError;
use halfscale_sim::model::{
    Layer, Params, CONV1, CONV2, FC1, FC2, FLAT, PARAM_COUNT, POOL1_SIDE, POOL2_SIDE,
};
use halfscale_sim::recipe::{LowFormat, Recipe};
use halfscale_sim::state_dict::{Placed, SimpleCnnAdam, Slot, StateDict};

/// Per image and channel: conv1's output, its pooled output, conv2's output, its pooled output.
const A1: usize = CONV1.out_plane();
const P1: usize = POOL1_SIDE * POOL1_SIDE;
const A2: usize = CONV2.out_plane();
const P2: usize = POOL2_SIDE * POOL2_SIDE;
/// conv2's output channels computed per thread block of `conv2d_fwd` (a block holds one
/// image's input planes in shared memory and reuses them for this many output channels).
const CONV2_CHANNELS_PER_BLOCK: usize = 16;
const _: () = assert!(CONV2.out_channels.is_multiple_of(CONV2_CHANNELS_PER_BLOCK));
/// Adam's per-step scalars in the device table (`AdamConfig::scalars`: lerp weight, beta2,
/// 1 - beta2, bias correction, eps, step size).
const ADAM_SCALARS: usize = 6;
/// Device-side step records kept before a drain.
const RECORDS: usize = 1024;
/// Counters reset value: no NaN, no inf, no first index.
const COUNTERS_RESET: [u32; 4] = [0, 0, u32::MAX, u32::MAX];

fn i(v: usize) -> Arg {
    Arg::I32(i32::try_from(v).expect("size fits in i32"))
}

/// A training set resident on the device: images rounded to f16 once, labels.
#[derive(Debug)]
struct Resident {
    images: DBuf<u16>,
    labels: DBuf<u8>,
    len: usize,
}

/// The GPU backend (autocast fp16).
#[derive(Debug)]
pub struct GpuBackend {
    recipe: Recipe,
    capacity: usize,
    n: usize,
    params: DBuf<f32>,
    params16: DBuf<u16>,
    grads: DBuf<f32>,
    exp_avg: DBuf<f32>,
    exp_avg_sq: DBuf<f32>,
    adam_step: DBuf<u64>,
    /// Adam's per-step scalars for steps `0..table_steps` (entry 0 unused).
    table: DBuf<f32>,
    table_steps: u64,
    table_config: Option<AdamConfig>,
    /// An upper bound of the device's Adam step count (the loaded step plus steps launched).
    step_bound: u64,
    x32: DBuf<f32>,
    x: DBuf<u16>,
    labels: DBuf<u8>,
    a1: DBuf<u16>,
    p1: DBuf<u16>,
    arg1: DBuf<u8>,
    a2: DBuf<u16>,
    p2: DBuf<u16>,
    arg2: DBuf<u8>,
    h1: DBuf<u16>,
    logits: DBuf<u16>,
    logp: DBuf<f32>,
    loss: DBuf<f32>,
    dlogits: DBuf<u16>,
    dh1: DBuf<u16>,
    dp2: DBuf<u16>,
    da2: DBuf<u16>,
    dp1: DBuf<u16>,
    da1: DBuf<u16>,
    part: DBuf<f32>,
    counters: DBuf<u32>,
    /// The device-side loss scale and growth tracker (device-scaled path).
    scale: DBuf<f32>,
    tracker: DBuf<i32>,
    /// The loss scale of a `Backend::forward_backward` call.
    host_scale: DBuf<f32>,
    eval_sum: DBuf<f64>,
    eval_correct: DBuf<u32>,
    records: DBuf<u32>,
    records_used: usize,
    drained: Vec<StepOutcome>,
    scaler: DeviceScaler,
    resident: Option<Resident>,
    order: Option<DBuf<u32>>,
    gpu: Gpu,
}

impl GpuBackend {
    /// A backend for batches of up to `capacity` images under `recipe`, on device 0. The
    /// kernels run one low-precision type, binary16: a recipe that rounds every site to fp16
    /// (autocast fp16, [`Recipe::mixed_fp16`]) runs, any other is refused.
    pub fn new(recipe: Recipe, capacity: usize) -> Result<Self> {
        if !Self::runs(&recipe) {
            return Err(GpuError::Unsupported(format!(
                "the CUDA backend runs {} only, not {}",
                Recipe::mixed_fp16().name(),
                recipe.name()
            )));
        }
        if capacity == 0 || capacity > 65535 {
            return Err(GpuError::Unsupported(format!(
                "batch capacity {capacity} (1..=65535)"
            )));
        }
        let gpu = Gpu::new()?;
        let c = capacity;
        let groups = c.div_ceil(WEIGHT_GRAD_GROUP);
        let part_len = groups
            * (CONV2.weight_len() + CONV2.out_channels)
                .max(CONV1.weight_len() + CONV1.out_channels);
        let mut b = Self {
            recipe,
            capacity,
            n: 0,
            params: gpu.alloc(PARAM_COUNT)?,
            params16: gpu.alloc(PARAM_COUNT)?,
            grads: gpu.alloc(PARAM_COUNT)?,
            exp_avg: gpu.alloc(PARAM_COUNT)?,
            exp_avg_sq: gpu.alloc(PARAM_COUNT)?,
            adam_step: gpu.alloc(1)?,
            table: gpu.alloc(ADAM_SCALARS)?,
            table_steps: 0,
            table_config: None,
            step_bound: 0,
            x32: gpu.alloc(c * IMAGE_PIXELS)?,
            x: gpu.alloc(c * IMAGE_PIXELS)?,
            labels: gpu.alloc(c)?,
            a1: gpu.alloc(c * CONV1.out_channels * A1)?,
            p1: gpu.alloc(c * CONV1.out_channels * P1)?,
            arg1: gpu.alloc(c * CONV1.out_channels * P1)?,
            a2: gpu.alloc(c * CONV2.out_channels * A2)?,
            p2: gpu.alloc(c * FLAT)?,
            arg2: gpu.alloc(c * FLAT)?,
            h1: gpu.alloc(c * FC1.out_features)?,
            logits: gpu.alloc(c * CLASSES)?,
            logp: gpu.alloc(c * CLASSES)?,
            loss: gpu.alloc(1)?,
            dlogits: gpu.alloc(c * CLASSES)?,
            dh1: gpu.alloc(c * FC1.out_features)?,
            dp2: gpu.alloc(c * FLAT)?,
            da2: gpu.alloc(c * CONV2.out_channels * A2)?,
            dp1: gpu.alloc(c * CONV1.out_channels * P1)?,
            da1: gpu.alloc(c * CONV1.out_channels * A1)?,
            part: gpu.alloc(part_len)?,
            counters: gpu.upload(&COUNTERS_RESET)?,
            scale: gpu.upload(&[DeviceScaler::default().init_scale])?,
            tracker: gpu.alloc(1)?,
            host_scale: gpu.alloc(1)?,
            eval_sum: gpu.alloc(1)?,
            eval_correct: gpu.alloc(1)?,
            records: gpu.alloc(RECORDS * Self::RECORD_WORDS)?,
            records_used: 0,
            drained: Vec::new(),
            scaler: DeviceScaler::default(),
            resident: None,
            order: None,
            gpu,
        };
        b.cast_params()?;
        Ok(b)
    }

    /// Whether the kernels run `recipe`: every site rounded to binary16.
    pub fn runs(recipe: &Recipe) -> bool {
        recipe.uniform_format() == Some(LowFormat::F16)
    }

    /// The device.
    pub fn device(&self) -> &DeviceInfo {
        self.gpu.info()
    }

    /// The largest batch accepted.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The driver layer (kernel-level tests).
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    fn cast_params(&mut self) -> Result<()> {
        self.gpu.launch_1d(
            "cast_f32_f16",
            PARAM_COUNT,
            &[self.params.ptr(), self.params16.ptr(), i(PARAM_COUNT)],
        )
    }

    fn w16(&self, layer: Layer) -> (Arg, Arg) {
        let (w, _, _) = layer.sizes();
        (
            self.params16.at(layer.offset()),
            self.params16.at(layer.offset() + w),
        )
    }

    /// Uploads a batch given on the host (images f32, rounded to f16 on the device).
    fn upload_batch(&mut self, batch: &Batch<'_>) -> Result<()> {
        let n = batch.len();
        if n == 0 || n > self.capacity || batch.images.len() != n * IMAGE_PIXELS {
            return Err(GpuError::Invalid(format!(
                "{n} labels and {} pixels for a backend of capacity {}",
                batch.images.len(),
                self.capacity
            )));
        }
        if let Some(&l) = batch.labels.iter().find(|&&l| usize::from(l) >= CLASSES) {
            return Err(GpuError::Invalid(format!("label {l} outside 0..=9")));
        }
        self.x32.write(batch.images)?;
        self.labels.write(batch.labels)?;
        self.gpu.launch_1d(
            "cast_f32_f16",
            n * IMAGE_PIXELS,
            &[self.x32.ptr(), self.x.ptr(), i(n * IMAGE_PIXELS)],
        )?;
        self.n = n;
        Ok(())
    }

    /// The forward pass of the batch in `x`/`labels` (n images): logits, log-probabilities and
    /// the mean loss in `loss`, all on the device. 7 launches.
    fn forward(&self) -> Result<()> {
        let (g, n) = (&self.gpu, self.n);
        let (w1, b1) = self.w16(Layer::Conv1);
        let (w2, b2) = self.w16(Layer::Conv2);
        let (w3, b3) = self.w16(Layer::Fc1);
        let (w4, b4) = self.w16(Layer::Fc2);
        let (c1, c2) = (CONV1, CONV2);
        g.launch(
            "conv2d_fwd",
            (c1.out_channels as u32, n as u32),
            A1 as u32,
            (c1.in_channels * c1.in_plane() * 4) as u32,
            &[
                self.x.ptr(),
                w1,
                b1,
                self.a1.ptr(),
                i(c1.in_channels),
                i(c1.in_height),
                i(c1.in_width),
                i(c1.out_channels),
                i(c1.kernel),
                i(1),
            ],
        )?;
        let planes1 = n * c1.out_channels;
        g.launch_1d(
            "maxpool2_relu_fwd",
            planes1 * P1,
            &[
                self.a1.ptr(),
                self.p1.ptr(),
                self.arg1.ptr(),
                i(planes1),
                i(c1.out_height()),
                i(c1.out_width()),
            ],
        )?;
        let cpb = CONV2_CHANNELS_PER_BLOCK;
        g.launch(
            "conv2d_fwd",
            ((c2.out_channels / cpb) as u32, n as u32),
            (A2 * cpb) as u32,
            (c2.in_channels * c2.in_plane() * 4) as u32,
            &[
                self.p1.ptr(),
                w2,
                b2,
                self.a2.ptr(),
                i(c2.in_channels),
                i(c2.in_height),
                i(c2.in_width),
                i(c2.out_channels),
                i(c2.kernel),
                i(cpb),
            ],
        )?;
        let planes2 = n * c2.out_channels;
        g.launch_1d(
            "maxpool2_relu_fwd",
            planes2 * P2,
            &[
                self.a2.ptr(),
                self.p2.ptr(),
                self.arg2.ptr(),
                i(planes2),
                i(c2.out_height()),
                i(c2.out_width()),
            ],
        )?;
        g.launch_1d(
            "linear_fwd",
            n * FC1.out_features,
            &[
                self.p2.ptr(),
                w3,
                b3,
                self.h1.ptr(),
                i(n),
                i(FLAT),
                i(FC1.out_features),
                i(1),
            ],
        )?;
        g.launch_1d(
            "linear_fwd",
            n * FC2.out_features,
            &[
                self.h1.ptr(),
                w4,
                b4,
                self.logits.ptr(),
                i(n),
                i(FC2.in_features),
                i(FC2.out_features),
                i(0),
            ],
        )?;
        g.launch(
            "log_softmax_nll",
            (1, 1),
            n.next_multiple_of(32).min(256) as u32,
            0,
            &[
                self.logits.ptr(),
                self.labels.ptr(),
                self.logp.ptr(),
                self.loss.ptr(),
                i(n),
                i(CLASSES),
            ],
        )
    }

    /// The backward pass with the loss scale at `scale` (a device scalar): the f32 master
    /// gradients, rounded through f16, in `grads`. 12 launches.
    fn backward(&self, scale: Arg) -> Result<()> {
        let (g, n) = (&self.gpu, self.n);
        let (w2, _) = self.w16(Layer::Conv2);
        let (w3, _) = self.w16(Layer::Fc1);
        let (w4, _) = self.w16(Layer::Fc2);
        let (c1, c2) = (CONV1, CONV2);
        g.launch_1d(
            "log_softmax_nll_bwd",
            n * CLASSES,
            &[
                self.logp.ptr(),
                self.labels.ptr(),
                scale,
                self.dlogits.ptr(),
                i(n),
                i(CLASSES),
            ],
        )?;
        let (h, o) = (FC2.in_features, FC2.out_features);
        g.launch_1d(
            "linear_bwd_params",
            h * o + o,
            &[
                self.dlogits.ptr(),
                self.h1.ptr(),
                self.grads.at(Layer::Fc2.offset()),
                i(n),
                i(h),
                i(o),
            ],
        )?;
        g.launch_1d(
            "linear_bwd_input",
            n * h,
            &[
                self.dlogits.ptr(),
                w4,
                self.h1.ptr(),
                self.dh1.ptr(),
                i(n),
                i(h),
                i(o),
            ],
        )?;
        let (f, h) = (FLAT, FC1.out_features);
        g.launch_1d(
            "linear_bwd_params",
            f * h + h,
            &[
                self.dh1.ptr(),
                self.p2.ptr(),
                self.grads.at(Layer::Fc1.offset()),
                i(n),
                i(f),
                i(h),
            ],
        )?;
        g.launch_1d(
            "linear_bwd_input",
            n * f,
            &[
                self.dh1.ptr(),
                w3,
                self.p2.ptr(),
                self.dp2.ptr(),
                i(n),
                i(f),
                i(h),
            ],
        )?;
        let planes2 = n * c2.out_channels;
        g.launch_1d(
            "maxpool2_bwd",
            planes2 * A2,
            &[
                self.dp2.ptr(),
                self.arg2.ptr(),
                self.da2.ptr(),
                i(planes2),
                i(c2.out_height()),
                i(c2.out_width()),
            ],
        )?;
        self.conv_params(c2, self.da2.ptr(), self.p1.ptr(), Layer::Conv2)?;
        g.launch_1d(
            "conv2d_bwd_input",
            n * c2.in_channels * P1,
            &[
                self.da2.ptr(),
                w2,
                self.p1.ptr(),
                self.dp1.ptr(),
                i(n),
                i(c2.in_channels),
                i(c2.in_height),
                i(c2.in_width),
                i(c2.out_channels),
                i(c2.kernel),
            ],
        )?;
        let planes1 = n * c1.out_channels;
        g.launch_1d(
            "maxpool2_bwd",
            planes1 * A1,
            &[
                self.dp1.ptr(),
                self.arg1.ptr(),
                self.da1.ptr(),
                i(planes1),
                i(c1.out_height()),
                i(c1.out_width()),
            ],
        )?;
        self.conv_params(c1, self.da1.ptr(), self.x.ptr(), Layer::Conv1)
    }

    fn conv_params(&self, c: Conv2d, dy: Arg, x: Arg, layer: Layer) -> Result<()> {
        let n = self.n;
        let groups = n.div_ceil(WEIGHT_GRAD_GROUP);
        let len = c.weight_len() + c.out_channels;
        self.gpu.launch(
            "conv2d_bwd_params_part",
            (len.div_ceil(256) as u32, groups as u32),
            256,
            0,
            &[
                dy,
                x,
                self.part.ptr(),
                i(n),
                i(WEIGHT_GRAD_GROUP),
                i(c.in_channels),
                i(c.in_height),
                i(c.in_width),
                i(c.out_channels),
                i(c.kernel),
            ],
        )?;
        self.gpu.launch_1d(
            "sum_groups_round",
            len,
            &[
                self.part.ptr(),
                i(groups),
                i(len),
                self.grads.at(layer.offset()),
            ],
        )
    }

    /// Makes the Adam scalar table cover step `need` for `config` (waits for the GPU when the
    /// table must be replaced; geometric growth keeps that rare).
    fn ensure_table(&mut self, config: &AdamConfig, need: u64) -> Result<()> {
        if self.table_config.as_ref() == Some(config) && need < self.table_steps {
            return Ok(());
        }
        let steps = (need + 1).max(4096).max(self.table_steps * 2);
        let mut t = vec![0f32; ADAM_SCALARS * steps as usize];
        for s in 1..steps {
            let k = config.scalars(s);
            let at = ADAM_SCALARS * s as usize;
            t[at..at + ADAM_SCALARS].copy_from_slice(&[
                k.lerp_weight,
                k.beta2,
                k.one_minus_beta2,
                k.bias_correction2_sqrt,
                k.eps,
                k.neg_step_size,
            ]);
        }
        self.gpu.synchronize()?;
        self.table = self.gpu.upload(&t)?;
        self.table_steps = steps;
        self.table_config = Some(*config);
        Ok(())
    }

    fn adam_launch(&self, counters: Arg) -> Result<()> {
        self.gpu.launch_1d(
            "adam_step",
            PARAM_COUNT,
            &[
                self.params.ptr(),
                self.grads.ptr(),
                self.exp_avg.ptr(),
                self.exp_avg_sq.ptr(),
                self.params16.ptr(),
                i(PARAM_COUNT),
                self.table.ptr(),
                self.adam_step.ptr(),
                counters,
            ],
        )
    }

    fn finish_launch(&self, record: Option<usize>, device_scaled: bool) -> Result<()> {
        let s = self.scaler;
        self.gpu.launch(
            "step_finish",
            (1, 1),
            32,
            0,
            &[
                self.counters.ptr(),
                self.loss.ptr(),
                self.scale.ptr(),
                self.tracker.ptr(),
                self.adam_step.ptr(),
                Arg::F64(s.growth_factor),
                Arg::F64(s.backoff_factor),
                Arg::I32(s.growth_interval.min(i32::MAX as u32) as i32),
                record.map_or(NULL, |_| self.records.ptr()),
                i(record.unwrap_or(0)),
                Arg::I32(i32::from(device_scaled)),
                Arg::I32(i32::from(device_scaled)),
            ],
        )
    }

    // --- The device-scaled path ----------------------------------------------------------

    /// Uploads a training set once (images rounded to f16 on the device).
    pub fn upload_train_set(&mut self, images: &[f32], labels: &[u8]) -> Result<()> {
        let len = labels.len();
        if images.len() != len * IMAGE_PIXELS || labels.iter().any(|&l| usize::from(l) >= CLASSES) {
            return Err(GpuError::Invalid(
                "training set: images/labels disagree or a label is outside 0..=9".into(),
            ));
        }
        let staged = self.gpu.upload(images)?;
        let half: DBuf<u16> = self.gpu.alloc(images.len())?;
        self.gpu.launch_1d(
            "cast_f32_f16",
            images.len(),
            &[staged.ptr(), half.ptr(), i(images.len())],
        )?;
        self.gpu.synchronize()?;
        self.resident = Some(Resident {
            images: half,
            labels: self.gpu.upload(labels)?,
            len,
        });
        Ok(())
    }

    /// Sets the order of the examples for the following steps (an epoch's permutation; batch
    /// `k` of size `b` is `order[k*b..]`). Waits for earlier steps.
    pub fn set_order(&mut self, order: &[u32]) -> Result<()> {
        let len = self.resident.as_ref().map_or(0, |r| r.len);
        if order.iter().any(|&o| o as usize >= len) {
            return Err(GpuError::Invalid(
                "order refers past the uploaded training set".into(),
            ));
        }
        self.gpu.synchronize()?;
        self.order = Some(self.gpu.upload(order)?);
        Ok(())
    }

    /// Sets the device-side scaler (waits for earlier steps): scale, tracker reset.
    pub fn set_device_scaler(&mut self, scaler: DeviceScaler) -> Result<()> {
        self.scaler = scaler;
        self.load_device_scale(scaler.init_scale, 0)
    }

    /// Replaces the device-side scale and growth tracker (waits for earlier steps), e.g. with a
    /// host scaler's after steps it drove.
    pub fn load_device_scale(&mut self, scale: f32, growth_tracker: u32) -> Result<()> {
        let tracker = i32::try_from(growth_tracker).map_err(|_| {
            GpuError::Invalid(format!("growth tracker {growth_tracker} > i32::MAX"))
        })?;
        self.scale.write(&[scale])?;
        self.tracker.write(&[tracker])?;
        self.counters.write(&COUNTERS_RESET)
    }

    /// One full GradScaler step on examples `order[start..start + n]`, with no host
    /// synchronisation: gather, forward, backward scaled by the device scale, fused unscale and
    /// non-finite check, Adam (skips itself on found_inf), Adam's step count and the scale update
    /// on the device, a record of the step. 23 launches.
    pub fn step_device_scaled(&mut self, start: usize, n: usize, adam: &AdamConfig) -> Result<()> {
        let (Some(res), Some(order)) = (self.resident.as_ref(), self.order.as_ref()) else {
            return Err(GpuError::Invalid(
                "step_device_scaled needs upload_train_set and set_order first".into(),
            ));
        };
        if n == 0 || n > self.capacity || start + n > order.len() {
            return Err(GpuError::Invalid(format!(
                "batch {start}..{} of an order of {}",
                start + n,
                order.len()
            )));
        }
        self.gpu.launch_1d(
            "gather_rows",
            n * IMAGE_PIXELS,
            &[
                res.images.ptr(),
                res.labels.ptr(),
                order.at(start),
                i(n),
                i(IMAGE_PIXELS),
                self.x.ptr(),
                self.labels.ptr(),
            ],
        )?;
        self.ensure_table(adam, self.step_bound + 1)?;
        self.n = n;
        self.forward()?;
        self.backward(self.scale.ptr())?;
        self.gpu.launch_1d(
            "unscale_check",
            PARAM_COUNT,
            &[
                self.grads.ptr(),
                i(PARAM_COUNT),
                self.scale.ptr(),
                Arg::F32(1.0),
                self.counters.ptr(),
            ],
        )?;
        self.adam_launch(self.counters.ptr())?;
        self.finish_launch(Some(self.records_used), true)?;
        self.records_used += 1;
        self.step_bound += 1;
        if self.records_used == RECORDS {
            self.drain_to_host()?;
        }
        Ok(())
    }

    /// Words per step in the device's record ring (`step_finish` in `kernels/step.cu`).
    pub const RECORD_WORDS: usize = 10;

    /// Decodes the [`Self::RECORD_WORDS`] words `step_finish` writes for one step: loss, scale
    /// (f32 bits), NaN and inf counts, skipped, the updated scale (f32 bits), the growth
    /// tracker, Adam's step count (low 32 bits, not part of the outcome: the state's
    /// `optimizer.step` carries it), and the flat indices of the first NaN and first inf
    /// (`u32::MAX` for none). Public for the kernel tests, which launch `step_finish` alone.
    pub fn decode_record(w: &[u32; Self::RECORD_WORDS]) -> StepOutcome {
        let index = |v: u32| (v != u32::MAX).then_some(v as usize);
        StepOutcome {
            loss: f32::from_bits(w[0]),
            scale: f32::from_bits(w[1]),
            report: NonFiniteReport {
                len: PARAM_COUNT,
                nan: w[2] as usize,
                inf: w[3] as usize,
                first_nan: index(w[8]),
                first_inf: index(w[9]),
            },
            skipped: w[4] != 0,
            next_scale: f32::from_bits(w[5]),
            growth_tracker: w[6],
        }
    }

    fn drain_to_host(&mut self) -> Result<()> {
        let words = self
            .records
            .to_vec(self.records_used * Self::RECORD_WORDS)?;
        self.drained.extend(
            words
                .as_chunks::<{ Self::RECORD_WORDS }>()
                .0
                .iter()
                .map(Self::decode_record),
        );
        self.records_used = 0;
        Ok(())
    }

    /// The outcomes of the device-scaled steps since the last drain (waits for them).
    pub fn drain_records(&mut self) -> Result<Vec<StepOutcome>> {
        self.drain_to_host()?;
        Ok(std::mem::take(&mut self.drained))
    }

    /// The device-side scale and growth tracker (waits).
    pub fn device_scale(&self) -> Result<(f32, u32)> {
        let s = self.scale.to_vec(1)?;
        let t = self.tracker.to_vec(1)?;
        Ok((s[0], t[0] as u32))
    }

    /// Waits for everything launched.
    pub fn synchronize(&self) -> Result<()> {
        self.gpu.synchronize()
    }

    /// Device-scaled steps launched or read back but not yet handed out by a drain.
    fn undrained(&self) -> usize {
        self.records_used + self.drained.len()
    }

    /// The queued-step contract of [`Backend::export_state`] and [`Backend::import_state`].
    fn refuse_undrained(&self) -> halfscale_sim::Result<()> {
        match self.undrained() {
            0 => Ok(()),
            pending => Err(DeviceError::Undrained {
                backend: self.describe(),
                pending,
            }
            .into()),
        }
    }
}

/// binary16 bits to f32, exact.
fn f16_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

impl Backend for GpuBackend {
    fn describe(&self) -> String {
        format!("cuda, {}, {}", self.recipe.name(), self.gpu.info())
    }

    fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    /// Waits for the launched steps and copies the weights, the moments and Adam's step count
    /// out; refused while device-scaled steps are not drained (their records belong to the
    /// host's scaler first).
    fn export_state(&self) -> halfscale_sim::Result<StateDict> {
        self.refuse_undrained()?;
        let mut params = vec![0f32; PARAM_COUNT];
        let mut exp_avg = vec![0f32; PARAM_COUNT];
        let mut exp_avg_sq = vec![0f32; PARAM_COUNT];
        self.params.read(&mut params)?;
        self.exp_avg.read(&mut exp_avg)?;
        self.exp_avg_sq.read(&mut exp_avg_sq)?;
        let step = self.adam_step.to_vec(1)?[0];
        Ok(SimpleCnnAdam::export(&params, &exp_avg, &exp_avg_sq, step))
    }

    /// Writes each named tensor into its range of the device buffers (all checked first), and
    /// re-casts the f16 copy of the weights when weights changed.
    fn import_state(&mut self, state: &StateDict) -> halfscale_sim::Result<()> {
        self.refuse_undrained()?;
        let mut weights = false;
        for placed in SimpleCnnAdam::check(state)? {
            match placed {
                Placed::Flat(slot, range, values) => {
                    let buf = match slot {
                        Slot::Weights => {
                            weights = true;
                            &mut self.params
                        }
                        Slot::ExpAvg => &mut self.exp_avg,
                        Slot::ExpAvgSq => &mut self.exp_avg_sq,
                    };
                    buf.write_at(range.start, values)?;
                }
                Placed::AdamStep(step) => {
                    self.adam_step.write(&[step])?;
                    self.step_bound = step;
                }
            }
        }
        if weights {
            self.cast_params()?;
        }
        Ok(())
    }

    fn forward_backward(
        &mut self,
        batch: Batch<'_>,
        loss_scale: f32,
    ) -> halfscale_sim::Result<f32> {
        self.upload_batch(&batch)?;
        self.host_scale.write(&[loss_scale])?;
        self.forward()?;
        self.backward(self.host_scale.ptr())?;
        Ok(self.loss.to_vec(1)?[0])
    }

    fn read_logits(&self, out: &mut Vec<f32>) -> halfscale_sim::Result<()> {
        let bits = self.logits.to_vec(self.n * CLASSES)?;
        out.clear();
        out.extend(bits.into_iter().map(f16_to_f32));
        Ok(())
    }

    fn read_grads(&self, out: &mut Params) -> halfscale_sim::Result<()> {
        out.data.resize(PARAM_COUNT, 0.0);
        Ok(self.grads.read(&mut out.data)?)
    }

    fn unscale_and_check(&mut self, inv_scale: f32) -> halfscale_sim::Result<NonFiniteReport> {
        self.counters.write(&COUNTERS_RESET)?;
        self.gpu.launch_1d(
            "unscale_check",
            PARAM_COUNT,
            &[
                self.grads.ptr(),
                i(PARAM_COUNT),
                NULL,
                Arg::F32(inv_scale),
                self.counters.ptr(),
            ],
        )?;
        let c = self.counters.to_vec(4)?;
        self.counters.write(&COUNTERS_RESET)?;
        let idx = |v: u32| (v != u32::MAX).then_some(v as usize);
        Ok(NonFiniteReport {
            len: PARAM_COUNT,
            nan: c[0] as usize,
            inf: c[1] as usize,
            first_nan: idx(c[2]),
            first_inf: idx(c[3]),
        })
    }

    fn adam_step(&mut self, config: &AdamConfig) -> halfscale_sim::Result<()> {
        self.ensure_table(config, self.step_bound + 1)?;
        self.adam_launch(NULL)?;
        self.finish_launch(None, false)?;
        self.step_bound += 1;
        Ok(())
    }

    fn evaluate(&mut self, batch: Batch<'_>) -> halfscale_sim::Result<EvalStats> {
        self.upload_batch(&batch)?;
        self.forward()?;
        self.gpu.launch(
            "eval_stats",
            (1, 1),
            32,
            0,
            &[
                self.logp.ptr(),
                self.labels.ptr(),
                i(self.n),
                i(CLASSES),
                self.eval_sum.ptr(),
                self.eval_correct.ptr(),
            ],
        )?;
        Ok(EvalStats {
            loss_sum: self.eval_sum.to_vec(1)?[0],
            correct: self.eval_correct.to_vec(1)?[0] as usize,
            count: self.n,
        })
    }

    fn queued_steps(&mut self) -> Option<&mut dyn QueuedSteps> {
        Some(self)
    }
}

/// The sync-free device-scaled step as the simulator's queued-step extension.
impl QueuedSteps for GpuBackend {
    /// Accepts PyTorch's rule ([`DeviceScaler::from_config`]) and uploads `train` once.
    fn start(&mut self, train: &Split, scaler: &ScalerConfig) -> halfscale_sim::Result<bool> {
        let Some(device) = DeviceScaler::from_config(scaler) else {
            return Ok(false);
        };
        self.upload_train_set(&train.images, &train.labels)?;
        self.scaler = device;
        Ok(true)
    }

    fn load_scale(&mut self, scale: f32, growth_tracker: u32) -> halfscale_sim::Result<()> {
        Ok(self.load_device_scale(scale, growth_tracker)?)
    }

    fn set_order(&mut self, order: &[u32]) -> halfscale_sim::Result<()> {
        Ok(GpuBackend::set_order(self, order)?)
    }

    /// [`GpuBackend::step_device_scaled`]: no host synchronisation.
    fn queue_step(
        &mut self,
        start: usize,
        n: usize,
        adam: &AdamConfig,
    ) -> halfscale_sim::Result<()> {
        Ok(self.step_device_scaled(start, n, adam)?)
    }

    fn drain(&mut self) -> halfscale_sim::Result<Vec<StepOutcome>> {
        Ok(self.drain_records()?)
    }
}

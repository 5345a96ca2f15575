//! The seed's `SimpleCNN` and its parameters:
//!
//! ```text
//! conv1 1->32 k5 (28x28 -> 24x24), max_pool 2 (12x12), relu
//! conv2 32->64 k5 (12x12 -> 8x8),  max_pool 2 (4x4),   relu
//! flatten 1024, fc1 1024->128, relu, fc2 128->10, log_softmax
//! ```
//!
//! All parameters live in one flat f32 vector in PyTorch's `named_parameters()` order
//! (`conv1.weight, conv1.bias, conv2.weight, ..., fc2.bias`), so the optimizer, the scaler and
//! the cross-check each run over one slice, and per-tensor views are ranges of it.
//!
//! Initialisation is PyTorch's default (`reset_parameters` of `nn.Conv2d`/`nn.Linear`):
//! weight `kaiming_uniform_(a=sqrt(5))`, i.e. bound `gain * sqrt(3 / fan_in)` with
//! `gain = sqrt(2 / (1 + 5))`, which is `1 / sqrt(fan_in)`; bias `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.
//! Drawn from [`SeededRng`] in parameter order, weight before bias.

use crate::conv2d::Conv2d;
use crate::linear::Linear;
use crate::rng::SeededRng;

/// conv1: 1 -> 32 channels, 5x5, on 28x28.
pub const CONV1: Conv2d = Conv2d {
    in_channels: 1,
    out_channels: 32,
    kernel: 5,
    in_height: 28,
    in_width: 28,
};
/// conv2: 32 -> 64 channels, 5x5, on 12x12.
pub const CONV2: Conv2d = Conv2d {
    in_channels: 32,
    out_channels: 64,
    kernel: 5,
    in_height: 12,
    in_width: 12,
};
/// fc1: 1024 -> 128.
pub const FC1: Linear = Linear {
    in_features: 1024,
    out_features: 128,
};
/// fc2: 128 -> 10.
pub const FC2: Linear = Linear {
    in_features: 128,
    out_features: 10,
};
/// Side of conv1's pooled output.
pub const POOL1_SIDE: usize = 12;
/// Side of conv2's pooled output.
pub const POOL2_SIDE: usize = 4;
/// Flattened features into fc1 (`64 * 4 * 4`).
pub const FLAT: usize = 1024;

/// The four layers with parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Conv1,
    Conv2,
    Fc1,
    Fc2,
}

impl Layer {
    /// All layers, input to output.
    pub const ALL: [Layer; 4] = [Layer::Conv1, Layer::Conv2, Layer::Fc1, Layer::Fc2];

    /// PyTorch's module name.
    pub const fn name(self) -> &'static str {
        match self {
            Layer::Conv1 => "conv1",
            Layer::Conv2 => "conv2",
            Layer::Fc1 => "fc1",
            Layer::Fc2 => "fc2",
        }
    }

    /// `(weight_len, bias_len, fan_in)`.
    pub const fn sizes(self) -> (usize, usize, usize) {
        match self {
            Layer::Conv1 => (CONV1.weight_len(), CONV1.out_channels, CONV1.col_rows()),
            Layer::Conv2 => (CONV2.weight_len(), CONV2.out_channels, CONV2.col_rows()),
            Layer::Fc1 => (FC1.weight_len(), FC1.out_features, FC1.in_features),
            Layer::Fc2 => (FC2.weight_len(), FC2.out_features, FC2.in_features),
        }
    }

    /// Offset of the layer's weight in the flat vector (its bias follows the weight).
    pub const fn offset(self) -> usize {
        let mut off = 0;
        let mut i = 0;
        while i < 4 {
            let l = Layer::ALL[i];
            if l as usize == self as usize {
                return off;
            }
            let (w, b, _) = l.sizes();
            off += w + b;
            i += 1;
        }
        off
    }

    /// The layer owning flat parameter `index` (e.g. a first NaN's position), if any.
    pub fn of_index(index: usize) -> Option<Layer> {
        Layer::ALL.into_iter().find(|l| l.range().contains(&index))
    }

    /// The range of the layer's weight and bias together in the flat vector.
    pub const fn range(self) -> std::ops::Range<usize> {
        let (w, b, _) = self.sizes();
        self.offset()..self.offset() + w + b
    }
}

/// Total number of parameters (184,586).
pub const PARAM_COUNT: usize = {
    let (a, b, _) = Layer::Conv1.sizes();
    let (c, d, _) = Layer::Conv2.sizes();
    let (e, f, _) = Layer::Fc1.sizes();
    let (g, h, _) = Layer::Fc2.sizes();
    a + b + c + d + e + f + g + h
};

/// The model's parameters (or anything shaped like them: gradients, moments), flat.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Params {
    #[serde(with = "crate::state::f32_bits")]
    pub data: Vec<f32>,
}

/// Borrowed views of the eight tensors.
#[derive(Debug)]
pub struct ParamViews<'a> {
    pub conv1_w: &'a [f32],
    pub conv1_b: &'a [f32],
    pub conv2_w: &'a [f32],
    pub conv2_b: &'a [f32],
    pub fc1_w: &'a [f32],
    pub fc1_b: &'a [f32],
    pub fc2_w: &'a [f32],
    pub fc2_b: &'a [f32],
}

/// Mutable views of the eight tensors.
#[derive(Debug)]
pub struct ParamViewsMut<'a> {
    pub conv1_w: &'a mut [f32],
    pub conv1_b: &'a mut [f32],
    pub conv2_w: &'a mut [f32],
    pub conv2_b: &'a mut [f32],
    pub fc1_w: &'a mut [f32],
    pub fc1_b: &'a mut [f32],
    pub fc2_w: &'a mut [f32],
    pub fc2_b: &'a mut [f32],
}

impl Default for Params {
    fn default() -> Self {
        Self::zeros()
    }
}

impl Params {
    /// All zeros.
    pub fn zeros() -> Self {
        Self {
            data: vec![0.0; PARAM_COUNT],
        }
    }

    /// PyTorch's default initialisation, drawn from `seed`.
    pub fn init(seed: u64) -> Self {
        let mut rng = SeededRng::new(seed);
        let mut data = Vec::with_capacity(PARAM_COUNT);
        for layer in Layer::ALL {
            let (w, b, fan_in) = layer.sizes();
            // kaiming_uniform_(a=sqrt(5)): gain = sqrt(2 / (1 + a^2)), bound = gain * sqrt(3 / fan_in).
            let gain = (2.0f64 / (1.0 + 5.0)).sqrt();
            let w_bound = gain * (3.0 / fan_in as f64).sqrt();
            let b_bound = 1.0 / (fan_in as f64).sqrt();
            data.extend((0..w).map(|_| rng.uniform(-w_bound, w_bound)));
            data.extend((0..b).map(|_| rng.uniform(-b_bound, b_bound)));
        }
        Self { data }
    }

    /// Weight and bias of `layer`.
    pub fn layer(&self, layer: Layer) -> (&[f32], &[f32]) {
        let (w, _, _) = layer.sizes();
        self.data[layer.range()].split_at(w)
    }

    /// Weight and bias of `layer`, mutable.
    pub fn layer_mut(&mut self, layer: Layer) -> (&mut [f32], &mut [f32]) {
        let (w, _, _) = layer.sizes();
        self.data[layer.range()].split_at_mut(w)
    }

    /// All eight tensors.
    pub fn views(&self) -> ParamViews<'_> {
        let (conv1_w, conv1_b) = self.layer(Layer::Conv1);
        let (conv2_w, conv2_b) = self.layer(Layer::Conv2);
        let (fc1_w, fc1_b) = self.layer(Layer::Fc1);
        let (fc2_w, fc2_b) = self.layer(Layer::Fc2);
        ParamViews {
            conv1_w,
            conv1_b,
            conv2_w,
            conv2_b,
            fc1_w,
            fc1_b,
            fc2_w,
            fc2_b,
        }
    }

    /// All eight tensors, mutable.
    pub fn views_mut(&mut self) -> ParamViewsMut<'_> {
        let (c1, rest) = self.data.split_at_mut(Layer::Conv1.range().len());
        let (c2, rest) = rest.split_at_mut(Layer::Conv2.range().len());
        let (f1, f2) = rest.split_at_mut(Layer::Fc1.range().len());
        let (conv1_w, conv1_b) = c1.split_at_mut(Layer::Conv1.sizes().0);
        let (conv2_w, conv2_b) = c2.split_at_mut(Layer::Conv2.sizes().0);
        let (fc1_w, fc1_b) = f1.split_at_mut(Layer::Fc1.sizes().0);
        let (fc2_w, fc2_b) = f2.split_at_mut(Layer::Fc2.sizes().0);
        ParamViewsMut {
            conv1_w,
            conv1_b,
            conv2_w,
            conv2_b,
            fc1_w,
            fc1_b,
            fc2_w,
            fc2_b,
        }
    }
}

//! A verification kit for runtime authors: check *your* f16 kernels and *your* loss scaler
//! against this crate, with the tools you already use.
//!
//! - Feature `proptest` (implies `std`): [`values`] draws edge-biased f16/bf16 values (zeros,
//!   subnormals, the smallest normal, the overflow edge, infinities, quiet and signalling NaNs
//!   with payloads) and f32 values that sit exactly halfway between two neighbours (ties);
//!   [`grads`] draws gradient values and slices whose `x * scale` meets a chosen
//!   [`Fate`](crate::Fate) in f16 or bf16; [`scaler`] draws scaler configurations and event
//!   sequences, and holds the ready property [`scaler::check_scale_update`], which runs someone
//!   else's scale update step by step against [`LossScaler`](crate::LossScaler).
//!   Guide: [`scaler`] ("check your own scaler against halfscale").
//! - Feature `arbitrary`: `arbitrary::Arbitrary` for the public value and configuration types
//!   ([`FpEnv`](crate::FpEnv), [`Flags`](crate::Flags), [`RoundingMode`](crate::RoundingMode),
//!   [`ScalerConfig`](crate::ScalerConfig), [`ScalerState`](crate::scaler::ScalerState),
//!   [`Found`](crate::scaler::Found), ...; `half::f16`/`bf16` through `half`'s own feature),
//!   for cargo-fuzz targets. Guide: [`fuzzing`] ("fuzz your own f16 kernel against halfscale").

#[cfg(feature = "arbitrary")]
pub mod fuzzing;
#[cfg(feature = "proptest")]
pub mod grads;
#[cfg(feature = "proptest")]
pub mod scaler;
#[cfg(feature = "proptest")]
pub mod values;

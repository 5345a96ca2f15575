//! Without the `cuda` feature the backend is a stand-in that says how to rebuild.
#![cfg(not(any(feature = "cuda", feature = "emulate")))]

use halfscale_gpu::{probe, GpuBackend, GpuError, BUILT_WITH_CUDA};
use halfscale_sim::Recipe;

#[test]
fn the_stand_in_returns_not_built_with_the_rebuild_command() {
    const { assert!(!BUILT_WITH_CUDA) };
    let err = GpuBackend::new(Recipe::mixed_fp16(), 64).unwrap_err();
    assert_eq!(err, GpuError::NotBuilt);
    assert_eq!(probe().unwrap_err(), GpuError::NotBuilt);
    let msg = err.to_string();
    assert!(msg.contains("built without CUDA"), "{msg}");
    assert!(
        msg.contains("cargo build --release --features cuda"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");
}

#[test]
fn a_gpu_error_reaches_the_simulator_as_a_device_error_with_the_gpu_error_as_its_source() {
    let err = halfscale_sim::SimError::from(GpuError::NotBuilt);
    assert!(
        matches!(
            &err,
            halfscale_sim::SimError::Device(halfscale_sim::error::DeviceError::Backend { .. })
        ),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with("cuda backend: this binary was built without CUDA"));
    let source = std::error::Error::source(&err).expect("a source");
    assert_eq!(source.downcast_ref::<GpuError>(), Some(&GpuError::NotBuilt));
}

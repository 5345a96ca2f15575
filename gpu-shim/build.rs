//! With the `emulate` feature (and not `cuda`): compiles the kernels as C++ for the host
//! emulation (emulator/runtime.cpp includes kernels/*.cu). Nothing to do otherwise.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "emulate")]
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        for dir in ["emulator", "kernels"] {
            println!("cargo:rerun-if-changed={dir}");
        }
        let mut build = cc::Build::new();
        // fmaf as one instruction (as on the GPU) rather than glibc's software fma, 10x slower;
        // the test binaries run where they are built.
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("fma") {
            build.flag("-mfma");
        }
        // binary16 conversions as instructions, not libgcc calls (a third of the time).
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("f16c") {
            build.flag("-mf16c");
        }
        build
            .cpp(true)
            .file("emulator/runtime.cpp")
            .std("c++17")
            // As nvcc -fmad=false: a multiply and an add are never contracted.
            .flag("-ffp-contract=off")
            // getcontext "returns twice" in the launcher's view; it never does there.
            .flag("-Wno-clobbered")
            .opt_level(2)
            .warnings(true)
            .compile("halfscale_gpu_emulation");
    }
}

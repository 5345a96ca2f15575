//! binary16 and bfloat16 arithmetic on bit patterns, with an explicit environment: each call is
//! halfscale-core's operation (bit-exact with Berkeley SoftFloat in every mode, flags included).
//! Values travel as `uint16_t` bit patterns (C has no portable 16-bit float type).

use halfscale_core::format::Format;
use halfscale_core::half::{bf16, f16};
use halfscale_core::{add, div, fma, mul, sqrt, sub, FpEnv};

use crate::env::HsEnv;
use crate::guard::{guarded, write};
use crate::status::HsStatus;

type Binary<F> = fn(F, F, &mut FpEnv) -> F;

/// Reads the environment, runs `op` on the operands, writes the result and the flags.
///
/// # Safety
/// `env` and `out` must each be NULL or valid for reads and writes.
unsafe fn run<F: Format>(
    env: *mut HsEnv,
    out: *mut u16,
    op: impl FnOnce(&mut FpEnv) -> F,
) -> HsStatus {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (env, out) = unsafe { (write(env)?, write(out)?) };
        let mut core = env.to_core()?;
        let r = op(&mut core);
        *out = r.to_bits() as u16;
        env.absorb(&core);
        Ok(())
    })
}

unsafe fn binary<F: Format>(
    env: *mut HsEnv,
    a: u16,
    b: u16,
    out: *mut u16,
    op: Binary<F>,
) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe {
        run(env, out, |e| {
            op(F::from_bits(a.into()), F::from_bits(b.into()), e)
        })
    }
}

/// `*out = a + b` in binary16 under `*env` (flags added to `env->flags`).
///
/// # Safety
/// `env` and `out` must be NULL (an error) or valid, writable pointers.
#[no_mangle]
pub unsafe extern "C" fn hs_f16_add(env: *mut HsEnv, a: u16, b: u16, out: *mut u16) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe { binary::<f16>(env, a, b, out, add) }
}

/// `*out = a - b` in binary16.
///
/// # Safety
/// As [`hs_f16_add`].
#[no_mangle]
pub unsafe extern "C" fn hs_f16_sub(env: *mut HsEnv, a: u16, b: u16, out: *mut u16) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe { binary::<f16>(env, a, b, out, sub) }
}

/// `*out = a * b` in binary16.
///
/// # Safety
/// As [`hs_f16_add`].
#[no_mangle]
pub unsafe extern "C" fn hs_f16_mul(env: *mut HsEnv, a: u16, b: u16, out: *mut u16) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe { binary::<f16>(env, a, b, out, mul) }
}

/// `*out = a / b` in binary16.
///
/// # Safety
/// As [`hs_f16_add`].
#[no_mangle]
pub unsafe extern "C" fn hs_f16_div(env: *mut HsEnv, a: u16, b: u16, out: *mut u16) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe { binary::<f16>(env, a, b, out, div) }
}

/// `*out = sqrt(a)` in binary16.
///
/// # Safety
/// As [`hs_f16_add`].
#[no_mangle]
pub unsafe extern "C" fn hs_f16_sqrt(env: *mut HsEnv, a: u16, out: *mut u16) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe { run(env, out, |e| sqrt(f16::from_bits(a), e)) }
}

/// `*out = a * b + c` in binary16, one rounding (IEEE 754 fusedMultiplyAdd).
///
/// # Safety
/// As [`hs_f16_add`].
#[no_mangle]
pub unsafe extern "C" fn hs_f16_fma(
    env: *mut HsEnv,
    a: u16,
    b: u16,
    c: u16,
    out: *mut u16,
) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe {
        run(env, out, |e| {
            fma(f16::from_bits(a), f16::from_bits(b), f16::from_bits(c), e)
        })
    }
}

/// `*out = a + b` in bfloat16.
///
/// # Safety
/// As [`hs_f16_add`].
#[no_mangle]
pub unsafe extern "C" fn hs_bf16_add(env: *mut HsEnv, a: u16, b: u16, out: *mut u16) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe { binary::<bf16>(env, a, b, out, add) }
}

/// `*out = a - b` in bfloat16.
///
/// # Safety
/// As [`hs_f16_add`].
#[no_mangle]
pub unsafe extern "C" fn hs_bf16_sub(env: *mut HsEnv, a: u16, b: u16, out: *mut u16) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe { binary::<bf16>(env, a, b, out, sub) }
}

/// `*out = a * b` in bfloat16.
///
/// # Safety
/// As [`hs_f16_add`].
#[no_mangle]
pub unsafe extern "C" fn hs_bf16_mul(env: *mut HsEnv, a: u16, b: u16, out: *mut u16) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe { binary::<bf16>(env, a, b, out, mul) }
}

/// `*out = a / b` in bfloat16.
///
/// # Safety
/// As [`hs_f16_add`].
#[no_mangle]
pub unsafe extern "C" fn hs_bf16_div(env: *mut HsEnv, a: u16, b: u16, out: *mut u16) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe { binary::<bf16>(env, a, b, out, div) }
}

/// `*out = sqrt(a)` in bfloat16.
///
/// # Safety
/// As [`hs_f16_add`].
#[no_mangle]
pub unsafe extern "C" fn hs_bf16_sqrt(env: *mut HsEnv, a: u16, out: *mut u16) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe { run(env, out, |e| sqrt(bf16::from_bits(a), e)) }
}

/// `*out = a * b + c` in bfloat16, one rounding.
///
/// # Safety
/// As [`hs_f16_add`].
#[no_mangle]
pub unsafe extern "C" fn hs_bf16_fma(
    env: *mut HsEnv,
    a: u16,
    b: u16,
    c: u16,
    out: *mut u16,
) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe {
        run(env, out, |e| {
            fma(
                bf16::from_bits(a),
                bf16::from_bits(b),
                bf16::from_bits(c),
                e,
            )
        })
    }
}

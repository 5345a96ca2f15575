//! The floating-point environment a caller owns: rounding mode, tininess rule, NaN style and the
//! sticky IEEE 754 exception flags (clause 7). No global state: every operation that can round or
//! raise takes `&mut FpEnv`.

/// The five IEEE 754 rounding-direction attributes (clause 4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum RoundingMode {
    /// roundTiesToEven, the default everywhere (SoftFloat `near_even`).
    #[default]
    NearestEven,
    /// roundTowardZero (SoftFloat `minMag`).
    TowardZero,
    /// roundTowardNegative (SoftFloat `min`).
    TowardNegative,
    /// roundTowardPositive (SoftFloat `max`).
    TowardPositive,
    /// roundTiesToAway (SoftFloat `near_maxMag`).
    NearestAway,
}

impl RoundingMode {
    /// All five modes, in SoftFloat's order.
    pub const ALL: [RoundingMode; 5] = [
        RoundingMode::NearestEven,
        RoundingMode::TowardZero,
        RoundingMode::TowardNegative,
        RoundingMode::TowardPositive,
        RoundingMode::NearestAway,
    ];

    /// Berkeley SoftFloat / TestFloat name of the mode (`near_even`, `minMag`, ...).
    pub const fn softfloat_name(self) -> &'static str {
        match self {
            RoundingMode::NearestEven => "near_even",
            RoundingMode::TowardZero => "minMag",
            RoundingMode::TowardNegative => "min",
            RoundingMode::TowardPositive => "max",
            RoundingMode::NearestAway => "near_maxMag",
        }
    }

    /// Parses a SoftFloat name or a friendly alias (`nearest`, `zero`, `down`, `up`, `away`).
    pub fn parse(name: &str) -> Option<RoundingMode> {
        Some(match name {
            "near_even" | "nearest" | "even" | "rne" => RoundingMode::NearestEven,
            "minMag" | "zero" | "trunc" | "rtz" => RoundingMode::TowardZero,
            "min" | "down" | "floor" | "rtn" => RoundingMode::TowardNegative,
            "max" | "up" | "ceil" | "rtp" => RoundingMode::TowardPositive,
            "near_maxMag" | "away" | "rna" => RoundingMode::NearestAway,
            _ => return None,
        })
    }
}

/// When a result is "tiny" for the underflow flag (IEEE 754 clause 7.5 allows both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Tininess {
    /// Tiny when the result rounded to the format's precision with unbounded exponent is below the
    /// smallest normal (x86 SSE, Berkeley SoftFloat's default for 8086-SSE).
    #[default]
    AfterRounding,
    /// Tiny when the exact result is below the smallest normal (ARM, PowerPC).
    BeforeRounding,
}

/// Which NaN an operation returns when its result is NaN. Every NaN result is quiet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum NanStyle {
    /// x86 SSE, exactly as Berkeley SoftFloat's `8086-SSE` specialisation: a NaN operand is
    /// propagated quieted (the first NaN operand, a signalling one first), and an invalid operation
    /// on non-NaN operands returns the default NaN, sign set and quiet bit set
    /// (`0xFE00` for binary16, `0xFFC0` for bfloat16). Conversions keep sign and payload.
    #[default]
    X86Sse,
    /// CUDA's half intrinsics (`__hadd`, `__hmul`, `__hfma`, `__float2half`): every NaN result is the
    /// canonical `0x7FFF`, whatever the operands were.
    Cuda,
    /// ARM "default NaN" mode and RISC-V: every NaN result is the positive canonical quiet NaN
    /// (`0x7E00` for binary16, `0x7FC0` for bfloat16).
    Canonical,
}

/// The sticky IEEE 754 exception flags, in Berkeley SoftFloat's bit layout (TestFloat prints them
/// as two hex digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    pub const NONE: Flags = Flags(0);
    /// The rounded result differs from the exact one.
    pub const INEXACT: Flags = Flags(0x01);
    /// Tiny and inexact (see [`Tininess`]).
    pub const UNDERFLOW: Flags = Flags(0x02);
    /// The rounded result's magnitude exceeded the largest finite number.
    pub const OVERFLOW: Flags = Flags(0x04);
    /// An exact infinite result from finite operands (division by zero); SoftFloat's "infinite".
    pub const DIV_BY_ZERO: Flags = Flags(0x08);
    /// Invalid operation: the result is NaN from non-NaN operands, or a signalling NaN was touched.
    pub const INVALID: Flags = Flags(0x10);

    /// The flags from SoftFloat's bit layout (bits above 0x1F are dropped).
    pub const fn from_bits(bits: u8) -> Flags {
        Flags(bits & 0x1F)
    }
    pub const fn bits(self) -> u8 {
        self.0
    }
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
    /// Names of the raised flags, in SoftFloat's bit order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        const NAMES: [&str; 5] = [
            "inexact",
            "underflow",
            "overflow",
            "divide-by-zero",
            "invalid",
        ];
        (0..5)
            .filter(move |i| self.0 >> i & 1 == 1)
            .map(|i| NAMES[i])
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.union(rhs)
    }
}

impl core::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

/// Rounding attributes plus the flags raised so far. Cheap to copy; the caller owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct FpEnv {
    pub rounding: RoundingMode,
    pub tininess: Tininess,
    pub nan: NanStyle,
    /// Sticky: operations only ever add flags; clear them with [`FpEnv::take_flags`].
    pub flags: Flags,
}

impl FpEnv {
    /// IEEE defaults with the given rounding mode: tininess after rounding, x86 NaNs, no flags.
    pub const fn new(rounding: RoundingMode) -> FpEnv {
        FpEnv {
            rounding,
            tininess: Tininess::AfterRounding,
            nan: NanStyle::X86Sse,
            flags: Flags::NONE,
        }
    }

    /// The environment of a CUDA GPU's half arithmetic: nearest-even, canonical NaN `0x7FFF`.
    pub const fn cuda() -> FpEnv {
        FpEnv {
            rounding: RoundingMode::NearestEven,
            tininess: Tininess::AfterRounding,
            nan: NanStyle::Cuda,
            flags: Flags::NONE,
        }
    }

    /// Returns the raised flags and clears them.
    pub fn take_flags(&mut self) -> Flags {
        core::mem::take(&mut self.flags)
    }

    pub(crate) fn raise(&mut self, flags: Flags) {
        self.flags |= flags;
    }
}

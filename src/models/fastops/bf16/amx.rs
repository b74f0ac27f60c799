//! The AMX kernel: `tdpbf16ps` on Intel's tile registers (Sapphire Rapids and later). One
//! instruction multiplies a 16 × 32 bf16 tile of lhs by a 32 × 16 bf16 tile of rhs into a
//! 16 × 16 f32 tile: 8,192 multiply-adds where `vdpbf16ps` does 32.
//!
//! The micro-kernel keeps a 32 × 32 tile of dst in four tile registers (tmm0–3), and per step
//! of 16 k-pairs loads two lhs tiles (tmm4, tmm5: 16 lines each, their pairs contiguous, so
//! lhs is packed one line per strip) and two rhs tiles (tmm6, tmm7: 16 k-pairs of 16 columns,
//! rows 32 columns apart in the broadcast scheme's rhs strips). The tile registers are used by
//! this module alone: nothing else in the process configures or touches them, so each thread
//! configures them once ([`configure`]) and the kernel's assembly blocks own them.
//!
//! Linux hands out the tiles' 8 KiB of register state only to processes that ask
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); [`available`] asks once.

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::Cell;
use std::sync::OnceLock;

use super::scheme::{DstTile, Scheme};

/// dst rows and columns of one micro-kernel call: two tiles of 16 on each side.
const SIDE: usize = 32;
/// k-pairs per tile (64 bytes a tile row).
const PAIRS: usize = 16;

pub(super) static TILES: Scheme = Scheme {
    tile_rows: SIDE,
    tile_cols: SIDE,
    lhs_width: 1,
    rhs_width: SIDE,
    pair_align: PAIRS,
    kc_max: 1024,
    mc_max: 256,
    nc_max: 1024,
    simd_pack: true,
    tile,
};

/// Whether this CPU has AMX-TILE and AMX-BF16 (CPUID leaf 7, EDX bits 24 and 22) and Linux lets
/// this process use them; asks for the permission on the first call.
pub(super) fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let edx = __cpuid_count(7, 0).edx;
        let (tile, bf16) = (edx >> 24 & 1 == 1, edx >> 22 & 1 == 1);
        tile && bf16 && request_permission()
    })
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: true when granted.
fn request_permission() -> bool {
    #[cfg(target_os = "linux")]
    {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: the request only changes which register state the kernel saves for us.
        unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            ) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// The tile configuration (palette 1): tiles 0–7 all 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

static CONFIG: TileConfig = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64; // bytes per row, little-endian u16
        c[48 + t] = 16; // rows
        t += 1;
    }
    TileConfig(c)
};

thread_local! {
    static CONFIGURED: Cell<bool> = const { Cell::new(false) };
}

/// Loads [`CONFIG`] into this thread's tile registers, once per thread.
///
/// # Safety
/// [`available`] returned true.
unsafe fn configure() {
    if !CONFIGURED.get() {
        asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly));
        CONFIGURED.set(true);
    }
}

/// The micro-kernel ([`super::scheme::TileFn`]): `kp` (a multiple of 16) pairs of 32 packed lhs
/// lines (`a`, each line's pairs contiguous) and of 32 rhs columns (`b`, pair `p` of column
/// `j` at `p·32 + j`).
///
/// # Safety
/// As for [`super::scheme::TileFn`]; [`available`] returned true.
unsafe fn tile(kp: usize, a: &[u32], b: &[u32], out: &DstTile) {
    assert!(kp > 0 && kp.is_multiple_of(PAIRS) && a.len() >= SIDE * kp && b.len() >= SIDE * kp);
    configure();
    // A whole tile of a dst with unit column stride is loaded and stored where it lies (rows
    // `rs` apart). Through `c`, the vector loads that read the tile back wait for the tile
    // stores to drain: 2–20 % slower products (single thread, 64 to 1152 rows).
    let direct = out.cs == 1 && out.rows == SIDE && out.cols == SIDE;
    let mut c = std::mem::MaybeUninit::<[[f32; SIDE]; SIDE]>::uninit();
    let (c0, sc) = if direct {
        (out.ptr, out.rs * 4)
    } else {
        (c.as_mut_ptr().cast::<f32>(), SIDE * 4)
    };
    let quarters = [
        c0,
        c0.add(16),
        c0.add(16 * sc / 4),
        c0.add(16 * sc / 4 + 16),
    ];
    if direct && out.accumulate {
        // SAFETY: the four quarters of the tile's 32 rows (sc bytes apart) are in dst.
        asm!(
            "tileloadd tmm0, [{c00} + {sc}*1]",
            "tileloadd tmm1, [{c01} + {sc}*1]",
            "tileloadd tmm2, [{c10} + {sc}*1]",
            "tileloadd tmm3, [{c11} + {sc}*1]",
            c00 = in(reg) quarters[0],
            c01 = in(reg) quarters[1],
            c10 = in(reg) quarters[2],
            c11 = in(reg) quarters[3],
            sc = in(reg) sc,
            options(nostack, readonly),
        );
    } else {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nomem, nostack)
        );
    }
    let (a, b) = (a.as_ptr(), b.as_ptr());
    // SAFETY: each step reads 16 rows of 64 bytes of each operand inside `a` and `b` (lines
    // 0–15 and 16–31 of a, kp·4 bytes apart; 16 pair rows of b, 128 bytes apart); the stores
    // write the four 16 × 16 quarters of the tile, in dst or in `c`.
    asm!(
        "2:",
        "tileloadd tmm4, [{a0} + {sa}*1]",
        "tileloadd tmm5, [{a1} + {sa}*1]",
        "tileloadd tmm6, [{b0} + {sb}*1]",
        "tileloadd tmm7, [{b1} + {sb}*1]",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tdpbf16ps tmm3, tmm5, tmm7",
        "add {a0}, 64",
        "add {a1}, 64",
        "add {b0}, {bstep}",
        "add {b1}, {bstep}",
        "dec {steps}",
        "jnz 2b",
        "tilestored [{c00} + {sc}*1], tmm0",
        "tilestored [{c01} + {sc}*1], tmm1",
        "tilestored [{c10} + {sc}*1], tmm2",
        "tilestored [{c11} + {sc}*1], tmm3",
        a0 = inout(reg) a => _,
        a1 = inout(reg) a.add(16 * kp) => _,
        b0 = inout(reg) b => _,
        b1 = inout(reg) b.add(16) => _,
        steps = inout(reg) kp / PAIRS => _,
        sa = in(reg) kp * 4,
        sb = in(reg) SIDE * 4,
        bstep = in(reg) PAIRS * SIDE * 4,
        c00 = in(reg) quarters[0],
        c01 = in(reg) quarters[1],
        c10 = in(reg) quarters[2],
        c11 = in(reg) quarters[3],
        sc = in(reg) sc,
        options(nostack),
    );
    if direct {
        return;
    }
    // SAFETY: the four tile stores wrote all of `c`; a row of 32 floats is two zmm.
    let rows = std::mem::transmute::<[[f32; SIDE]; SIDE], [[__m512; 2]; SIDE]>(c.assume_init());
    super::x86::store_tile(&rows, out)
}

//! Dot products for search, with run-time CPU dispatch.
//!
//! x86_64 uses AVX2+FMA when the CPU has them (`is_x86_feature_detected!`, checked once per call of
//! a block kernel, not per element); aarch64 uses NEON (always present there); anything else uses
//! a portable loop with four independent sums (which the compiler vectorises for the baseline
//! target). AVX-512 is not used: its intrinsics need Rust 1.89, above this crate's MSRV, and
//! exact search over many rows is bound by memory bandwidth, where AVX2 already saturates it.
//!
//! The kernels compare one or two queries against four rows at once, so that each query lane is
//! loaded once for four rows (blocked matrix product). Rows are either float32 or int8 (see
//! `vectors`); int8 rows are converted to float in registers and the caller applies the row scale.

/// Dot product of two equally long float vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: the CPU supports AVX2 and FMA (checked above); slices have equal length.
            return unsafe { x86::dot1_f32(a, b) };
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: NEON is part of the aarch64 baseline.
        return unsafe { neon::dot1_f32(a, b) };
    }
    #[allow(unreachable_code)]
    scalar_dot(a, b)
}

/// `q` against four float rows (each at least `q.len()` long).
pub fn dot_f32_x4(q: &[f32], r: [&[f32]; 4]) -> [f32; 4] {
    let n = q.len();
    let r = [&r[0][..n], &r[1][..n], &r[2][..n], &r[3][..n]];
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: AVX2+FMA checked; every row was cut to `n`.
            return unsafe { x86::dot4_f32(q, r) };
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: NEON is baseline on aarch64; every row was cut to `n`.
        return unsafe { neon::dot4_f32(q, r) };
    }
    #[allow(unreachable_code)]
    [scalar_dot(q, r[0]), scalar_dot(q, r[1]), scalar_dot(q, r[2]), scalar_dot(q, r[3])]
}

/// Two queries against four float rows: `out[j][i]` = `q[j]`·`r[i]`.
pub fn dot_f32_2x4(q: [&[f32]; 2], r: [&[f32]; 4]) -> [[f32; 4]; 2] {
    let n = q[0].len().min(q[1].len());
    let q = [&q[0][..n], &q[1][..n]];
    let r = [&r[0][..n], &r[1][..n], &r[2][..n], &r[3][..n]];
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: AVX2+FMA checked; all slices cut to `n`.
            return unsafe { x86::dot2x4_f32(q, r) };
        }
    }
    [dot_f32_x4(q[0], r), dot_f32_x4(q[1], r)]
}

/// `q` against four int8 rows (unscaled: the caller multiplies by each row's scale).
pub fn dot_i8_x4(q: &[f32], r: [&[i8]; 4]) -> [f32; 4] {
    let n = q.len();
    let r = [&r[0][..n], &r[1][..n], &r[2][..n], &r[3][..n]];
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: AVX2+FMA checked; every row was cut to `n`.
            return unsafe { x86::dot4_i8(q, r) };
        }
    }
    let mut out = [0f32; 4];
    for (o, row) in out.iter_mut().zip(r) {
        *o = q.iter().zip(row).map(|(a, &b)| a * b as f32).sum();
    }
    out
}

/// Asks the CPU to start loading the cache line at `p` (a hint: no effect on results, nothing on
/// targets without a prefetch instruction here).
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address; SSE is baseline on x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Converts int8 values to float (for a block of rows reused by many queries).
pub fn widen_i8(src: &[i8], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s as f32;
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    // std caches the CPUID result in an atomic, so this is two relaxed loads
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

fn scalar_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut s = [0f32; 4];
    let chunks = a.len() / 4;
    for i in 0..chunks {
        for j in 0..4 {
            s[j] += a[4 * i + j] * b[4 * i + j];
        }
    }
    let mut t = (s[0] + s[1]) + (s[2] + s[3]);
    for i in chunks * 4..a.len() {
        t += a[i] * b[i];
    }
    t
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// SAFETY: needs AVX2.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
        _mm_cvtss_f32(s)
    }

    /// SAFETY: needs AVX2+FMA; `a` and `b` have equal length.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot1_f32(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                acc1,
            );
            i += 16;
        }
        while i + 8 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            i += 8;
        }
        let mut s = hsum(_mm256_add_ps(acc0, acc1));
        while i < n {
            s += a[i] * b[i];
            i += 1;
        }
        s
    }

    /// SAFETY: needs AVX2+FMA; every row has `q.len()` values.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4_f32(q: &[f32], r: [&[f32]; 4]) -> [f32; 4] {
        let n = q.len();
        let pq = q.as_ptr();
        let p = [r[0].as_ptr(), r[1].as_ptr(), r[2].as_ptr(), r[3].as_ptr()];
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 8 <= n {
            let qv = _mm256_loadu_ps(pq.add(i));
            for j in 0..4 {
                acc[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(p[j].add(i)), acc[j]);
            }
            i += 8;
        }
        let mut out = [hsum(acc[0]), hsum(acc[1]), hsum(acc[2]), hsum(acc[3])];
        while i < n {
            for j in 0..4 {
                out[j] += q[i] * r[j][i];
            }
            i += 1;
        }
        out
    }

    /// SAFETY: needs AVX2+FMA; both queries and every row have the same length.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot2x4_f32(q: [&[f32]; 2], r: [&[f32]; 4]) -> [[f32; 4]; 2] {
        let n = q[0].len();
        let (q0, q1) = (q[0].as_ptr(), q[1].as_ptr());
        let p = [r[0].as_ptr(), r[1].as_ptr(), r[2].as_ptr(), r[3].as_ptr()];
        let mut a0 = [_mm256_setzero_ps(); 4];
        let mut a1 = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 8 <= n {
            let x0 = _mm256_loadu_ps(q0.add(i));
            let x1 = _mm256_loadu_ps(q1.add(i));
            for j in 0..4 {
                let rv = _mm256_loadu_ps(p[j].add(i));
                a0[j] = _mm256_fmadd_ps(x0, rv, a0[j]);
                a1[j] = _mm256_fmadd_ps(x1, rv, a1[j]);
            }
            i += 8;
        }
        let mut out = [[0f32; 4]; 2];
        for j in 0..4 {
            out[0][j] = hsum(a0[j]);
            out[1][j] = hsum(a1[j]);
        }
        while i < n {
            for j in 0..4 {
                out[0][j] += q[0][i] * r[j][i];
                out[1][j] += q[1][i] * r[j][i];
            }
            i += 1;
        }
        out
    }

    /// SAFETY: needs AVX2+FMA; every row has `q.len()` values.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4_i8(q: &[f32], r: [&[i8]; 4]) -> [f32; 4] {
        let n = q.len();
        let pq = q.as_ptr();
        let p = [r[0].as_ptr(), r[1].as_ptr(), r[2].as_ptr(), r[3].as_ptr()];
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 8 <= n {
            let qv = _mm256_loadu_ps(pq.add(i));
            for j in 0..4 {
                let b = _mm_loadl_epi64(p[j].add(i) as *const __m128i);
                let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
                acc[j] = _mm256_fmadd_ps(qv, f, acc[j]);
            }
            i += 8;
        }
        let mut out = [hsum(acc[0]), hsum(acc[1]), hsum(acc[2]), hsum(acc[3])];
        while i < n {
            for j in 0..4 {
                out[j] += q[i] * r[j][i] as f32;
            }
            i += 1;
        }
        out
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    /// SAFETY: `a` and `b` have equal length.
    pub unsafe fn dot1_f32(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let mut acc0 = vdupq_n_f32(0.0);
        let mut acc1 = vdupq_n_f32(0.0);
        let mut i = 0;
        while i + 8 <= n {
            acc0 = vfmaq_f32(acc0, vld1q_f32(a.as_ptr().add(i)), vld1q_f32(b.as_ptr().add(i)));
            acc1 =
                vfmaq_f32(acc1, vld1q_f32(a.as_ptr().add(i + 4)), vld1q_f32(b.as_ptr().add(i + 4)));
            i += 8;
        }
        let mut s = vaddvq_f32(vaddq_f32(acc0, acc1));
        while i < n {
            s += a[i] * b[i];
            i += 1;
        }
        s
    }

    /// SAFETY: every row has `q.len()` values.
    pub unsafe fn dot4_f32(q: &[f32], r: [&[f32]; 4]) -> [f32; 4] {
        let n = q.len();
        let mut acc = [vdupq_n_f32(0.0); 4];
        let mut i = 0;
        while i + 4 <= n {
            let qv = vld1q_f32(q.as_ptr().add(i));
            for j in 0..4 {
                acc[j] = vfmaq_f32(acc[j], qv, vld1q_f32(r[j].as_ptr().add(i)));
            }
            i += 4;
        }
        let mut out =
            [vaddvq_f32(acc[0]), vaddvq_f32(acc[1]), vaddvq_f32(acc[2]), vaddvq_f32(acc[3])];
        while i < n {
            for j in 0..4 {
                out[j] += q[i] * r[j][i];
            }
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 16) % 1000) as f32
                    / 1000.0
                    - 0.5
            })
            .collect()
    }

    /// The exact dot product (in f64) and how far a float32 sum in any order may be from it:
    /// n · ε · Σ|aᵢbᵢ| (the classic bound for recursive summation; the SIMD kernels sum in lanes,
    /// which is no worse).
    fn exact(q: &[f32], row: impl Iterator<Item = f32>) -> (f32, f32) {
        let (mut sum, mut abs) = (0f64, 0f64);
        for (a, b) in q.iter().zip(row) {
            sum += *a as f64 * b as f64;
            abs += (*a as f64 * b as f64).abs();
        }
        let tol = (q.len() as f64 + 1.0) * f32::EPSILON as f64 * abs + 1e-30;
        (sum as f32, tol as f32)
    }

    #[test]
    fn kernels_agree_with_scalar() {
        for n in [0usize, 1, 7, 8, 9, 15, 16, 17, 33, 512, 515] {
            let q = vals(n, 1);
            let q2 = vals(n, 9);
            let rows: Vec<Vec<f32>> = (0..4).map(|s| vals(n, 100 + s)).collect();
            let r = [&rows[0][..], &rows[1][..], &rows[2][..], &rows[3][..]];
            let close = |got: f32, q: &[f32], row: &[f32], what: &str| {
                let (e, tol) = exact(q, row.iter().copied());
                assert!((got - e).abs() <= tol, "{what}, n={n}: {got} vs {e} (tolerance {tol})");
            };
            close(dot(&q, &rows[0]), &q, &rows[0], "dot");
            close(scalar_dot(&q, &rows[0]), &q, &rows[0], "scalar_dot");
            let x4 = dot_f32_x4(&q, r);
            let x24 = dot_f32_2x4([&q, &q2], r);
            for j in 0..4 {
                close(x4[j], &q, &rows[j], "dot_f32_x4");
                close(x24[0][j], &q, &rows[j], "dot_f32_2x4, first query");
                close(x24[1][j], &q2, &rows[j], "dot_f32_2x4, second query");
            }
            let ints: Vec<Vec<i8>> =
                rows.iter().map(|row| row.iter().map(|v| (v * 200.0) as i8).collect()).collect();
            let ri = [&ints[0][..], &ints[1][..], &ints[2][..], &ints[3][..]];
            let i4 = dot_i8_x4(&q, ri);
            for j in 0..4 {
                let (e, tol) = exact(&q, ints[j].iter().map(|&b| b as f32));
                assert!(
                    (i4[j] - e).abs() <= tol,
                    "dot_i8_x4, n={n} j={j}: {} vs {e} (tolerance {tol})",
                    i4[j]
                );
            }
        }
    }
}

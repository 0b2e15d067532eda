//! Matching ORB descriptors by Hamming distance, with a ratio test and one query point per
//! reference point; AVX-512 VPOPCNTDQ when the CPU has it, else portable code.

use super::orb::Features;

#[inline(always)]
pub(super) fn hamming(a: &[u64; 4], b: &[u64; 4]) -> u32 {
    (a[0] ^ b[0]).count_ones()
        + (a[1] ^ b[1]).count_ones()
        + (a[2] ^ b[2]).count_ones()
        + (a[3] ^ b[3]).count_ones()
}

/// Descriptor pairs (query index, reference index): each query point's nearest reference point
/// when it is clearly nearer than the second nearest (ratio 0.8) and within 64 bits, keeping one
/// query point per reference point.
pub(super) fn match_descriptors(q: &Features, r: &Features) -> Vec<(usize, usize)> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
        {
            // SAFETY: the CPU has AVX-512F and VPOPCNTDQ (checked just above).
            return unsafe { avx512::match_descriptors(q, r) };
        }
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has POPCNT (checked just above).
            return unsafe { match_descriptors_popcnt(q, r) };
        }
    }
    match_descriptors_portable(q, r)
}

/// `match_descriptors` compiled with the POPCNT instruction (4x faster than the portable bit
/// count on x86_64 builds without it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
pub(super) unsafe fn match_descriptors_popcnt(q: &Features, r: &Features) -> Vec<(usize, usize)> {
    match_descriptors_portable(q, r)
}

/// Matching eight reference descriptors at a time: the reference descriptors are laid out as
/// four planes of eight 64-bit words, so one XOR and one population count per plane give eight
/// Hamming distances; each lane keeps its own best two, merged at the end.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::{hamming, keep_one_per_reference, Features};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub(in crate::vision::verify) unsafe fn match_descriptors(
        q: &Features,
        r: &Features,
    ) -> Vec<(usize, usize)> {
        let blocks = r.len() / 8;
        // planes[b][k][lane] = word k of reference descriptor 8b + lane
        let mut planes = vec![[[0u64; 8]; 4]; blocks];
        for (b, plane) in planes.iter_mut().enumerate() {
            for (lane, d) in r.descriptors[8 * b..8 * b + 8].iter().enumerate() {
                for (k, &word) in d.iter().enumerate() {
                    plane[k][lane] = word;
                }
            }
        }
        let lanes = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
        let mut best = Vec::with_capacity(q.len());
        for qd in &q.descriptors {
            let qw = [
                _mm512_set1_epi64(qd[0] as i64),
                _mm512_set1_epi64(qd[1] as i64),
                _mm512_set1_epi64(qd[2] as i64),
                _mm512_set1_epi64(qd[3] as i64),
            ];
            let mut b1 = _mm512_set1_epi64(i64::MAX);
            let mut b2 = _mm512_set1_epi64(i64::MAX);
            let mut i1 = _mm512_setzero_si512();
            for (b, plane) in planes.iter().enumerate() {
                let mut d = _mm512_setzero_si512();
                for k in 0..4 {
                    // SAFETY: plane[k] is 8 contiguous u64 (64 bytes); unaligned load.
                    let w = unsafe { _mm512_loadu_si512(plane[k].as_ptr().cast()) };
                    d = _mm512_add_epi64(d, _mm512_popcnt_epi64(_mm512_xor_si512(w, qw[k])));
                }
                let idx = _mm512_add_epi64(lanes, _mm512_set1_epi64(8 * b as i64));
                let lt1 = _mm512_cmplt_epi64_mask(d, b1);
                let lt2 = _mm512_cmplt_epi64_mask(d, b2);
                b2 = _mm512_mask_blend_epi64(lt1, _mm512_mask_blend_epi64(lt2, b2, d), b1);
                b1 = _mm512_mask_blend_epi64(lt1, b1, d);
                i1 = _mm512_mask_blend_epi64(lt1, i1, idx);
            }
            let (mut v1, mut v2, mut vi) = ([0i64; 8], [0i64; 8], [0i64; 8]);
            // SAFETY: each array is 64 bytes; unaligned stores.
            unsafe {
                _mm512_storeu_si512(v1.as_mut_ptr().cast(), b1);
                _mm512_storeu_si512(v2.as_mut_ptr().cast(), b2);
                _mm512_storeu_si512(vi.as_mut_ptr().cast(), i1);
            }
            let (mut d1, mut d2, mut j1) = (u32::MAX, u32::MAX, 0usize);
            let mut offer = |d: u32, j: usize| {
                if d < d2 {
                    if d < d1 || (d == d1 && j < j1) {
                        d2 = d1;
                        d1 = d;
                        j1 = j;
                    } else {
                        d2 = d;
                    }
                }
            };
            for lane in 0..8 {
                if v1[lane] != i64::MAX {
                    offer(v1[lane] as u32, vi[lane] as usize);
                }
            }
            for &v in &v2 {
                if v != i64::MAX {
                    offer(v as u32, usize::MAX);
                }
            }
            for (j, rd) in r.descriptors.iter().enumerate().skip(8 * blocks) {
                offer(hamming(qd, rd), j);
            }
            best.push((d1, d2, j1));
        }
        keep_one_per_reference(&best, r.len())
    }
}

/// From each query point's (nearest distance, second nearest, nearest reference index): the pairs
/// that pass the ratio test (0.8) within 64 bits, one query point per reference point.
pub(super) fn keep_one_per_reference(
    best: &[(u32, u32, usize)],
    n_ref: usize,
) -> Vec<(usize, usize)> {
    let mut best_for_ref: Vec<Option<(u32, usize)>> = vec![None; n_ref];
    for (qi, &(d1, d2, j1)) in best.iter().enumerate() {
        if d1 <= 64 && (d1 as f32) < 0.8 * d2 as f32 && j1 < n_ref {
            let slot = &mut best_for_ref[j1];
            if slot.is_none_or(|(d, _)| d1 < d) {
                *slot = Some((d1, qi));
            }
        }
    }
    best_for_ref.iter().enumerate().filter_map(|(j, s)| s.map(|(_, qi)| (qi, j))).collect()
}

#[inline(always)]
pub(super) fn match_descriptors_portable(q: &Features, r: &Features) -> Vec<(usize, usize)> {
    let mut best = Vec::with_capacity(q.len());
    for qd in &q.descriptors {
        let (mut d1, mut d2, mut j1) = (u32::MAX, u32::MAX, 0);
        for (j, rd) in r.descriptors.iter().enumerate() {
            let d = hamming(qd, rd);
            if d < d2 {
                if d < d1 {
                    d2 = d1;
                    d1 = d;
                    j1 = j;
                } else {
                    d2 = d;
                }
            }
        }
        best.push((d1, d2, j1));
    }
    keep_one_per_reference(&best, r.len())
}

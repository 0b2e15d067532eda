//! Photos, before any model sees them: fetching (`source`, with `netguard` choosing which
//! addresses a download may reach), decoding (`decode`), per-photo analysis — the regions searched
//! besides the whole photo (`regions`, with `inset` for a photo shown inside a photo and `tilt`
//! for one turned inside its frame), the perceptual hash (`phash`), colours (`colour`) — and local
//! features for geometric verification (`verify`: ORB, matching, homography with RANSAC, pose).

pub mod colour;
pub mod decode;
pub mod inset;
pub mod netguard;
pub mod phash;
pub mod regions;
pub mod source;
pub mod tilt;
pub mod verify;

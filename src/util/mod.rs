//! Small helpers every layer may use: atomic file writes (`fsutil`), untrusted text made safe to
//! show (`display`) and a seeded random generator (`rng`). This folder imports nothing else of the
//! crate.

pub mod display;
pub mod fsutil;
pub mod rng;

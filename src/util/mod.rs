//! Small helpers every layer may use: atomic file writes (`fsutil`), untrusted text made safe to
//! show (`display`), a seeded random generator (`rng`) and stages that overlap (`pipeline`). This folder imports nothing else of the
//! crate.

pub mod display;
pub mod fsutil;
pub mod pipeline;
pub mod rng;

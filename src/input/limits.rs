//! Limits against hostile or broken input (`[limits]`): image sizes, line lengths, photos per
//! record, download time-outs.

use serde::{Deserialize, Serialize};

/// Limits against hostile or broken input.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest image file accepted, in bytes (local or downloaded).
    pub max_image_bytes: u64,
    /// Largest width or height accepted, in pixels.
    pub max_image_side: u32,
    /// Largest pixel count accepted (decompression bombs are refused from their header).
    pub max_image_pixels: u64,
    /// Longest line accepted in a JSON Lines or CSV input, in bytes.
    pub max_line_bytes: usize,
    /// Most images one listing or product may name.
    pub max_images_per_record: usize,
    /// Seconds to wait for an HTTP connection.
    pub http_connect_timeout_secs: u64,
    /// Seconds a whole HTTP download may take.
    pub http_timeout_secs: u64,
    /// Most HTTP downloads in flight at once.
    pub http_max_in_flight: usize,
    /// Seconds the photos of one listing (or catalog product) may take together to fetch; a photo
    /// not fetched by then is an error of that listing.
    pub listing_fetch_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_image_bytes: 30 * 1024 * 1024,
            max_image_side: 20_000,
            max_image_pixels: 100_000_000,
            max_line_bytes: 1024 * 1024,
            max_images_per_record: 20,
            http_connect_timeout_secs: 5,
            http_timeout_secs: 20,
            http_max_in_flight: 8,
            listing_fetch_secs: 20,
        }
    }
}

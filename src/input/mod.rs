//! The data's way in: input records (catalog products, listings) read from JSON Lines or CSV
//! (`records`) and the limits on what the tool accepts from users (`limits`).

pub mod fields;
pub mod limits;
pub mod records;

//! Slope's loop metrics engine.
//!
//! This crate depends on no web crate. It holds the statistics behind loop metrics; today that is
//! customer lifetime value ([`ltv`]). Event ingestion and the polars metric pipeline are not built yet.

pub mod ltv;
pub mod optimize;
pub mod special;

//! Slope's loop metrics engine.
//!
//! This crate depends on no web crate. It reads interaction events from files ([`events`]), computes
//! the character acceptance rate with polars ([`acceptance`]) and fits customer lifetime value models
//! ([`ltv`]). Ingestion into stored segments, A/B analysis and drift are not built yet.

pub mod acceptance;
pub mod drift;
pub mod events;
pub mod ltv;
pub mod optimize;
pub mod special;

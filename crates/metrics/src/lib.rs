//! Slope's loop metrics engine.
//!
//! This crate depends on no web crate. It reads interaction events from files ([`events`]), computes
//! the character acceptance rate with polars ([`acceptance`]), compares it between an A/B test's arms
//! ([`ab`]), computes weekly cohort retention ([`retention`]) and fits customer lifetime value models
//! ([`ltv`]) to customer summaries, which [`transactions`] builds from transaction files. Ingestion into
//! stored segments and drift alerts are not built yet.

pub mod ab;
pub mod acceptance;
pub mod drift;
pub mod events;
pub mod ltv;
pub mod optimize;
pub mod retention;
pub mod segment;
pub mod series;
pub mod special;
pub mod transactions;

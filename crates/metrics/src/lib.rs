//! Slope's loop metrics engine.
//!
//! This crate depends on no web crate. It reads interaction events from files ([`events`]), computes
//! the character acceptance rate with polars ([`acceptance`]), compares it between an A/B test's arms
//! ([`ab`]), computes weekly cohort retention ([`retention`]) and fits customer lifetime value models
//! ([`ltv`]) to customer summaries, which [`transactions`] builds from transaction files, and keeps
//! lifetime value as a weekly series with its interval ([`ltv_series`]). It also
//! encodes events as Parquet segments ([`segment`]), computes metric series over windows of days
//! ([`series`]) and distribution drift ([`drift`]), and the per-unit activity behind the adoption
//! dashboard ([`adoption`]); where segments are stored is the service's business.

pub mod ab;
pub mod acceptance;
pub mod adoption;
pub mod drift;
pub mod events;
pub mod examples;
pub mod ltv;
pub mod ltv_series;
pub mod optimize;
pub mod retention;
pub mod segment;
pub mod series;
pub mod special;
pub mod transactions;

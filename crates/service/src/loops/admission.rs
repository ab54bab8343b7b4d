//! Admission of batches: who may send one, how many are taken in at once, and how much one may hold.
//!
//! A batch costs memory in proportion to its decoded size and CPU for parsing, hashing and encoding,
//! so the lowest-privilege credential (an `ingest` token) could otherwise exhaust the server by sending
//! many at once or one that decodes into far more than it weighs. A caller is admitted (authorized, and
//! counted against the server's and its organisation's share) before its body is read, and the
//! [`IngestPermit`] it gets is what ingesting requires; the permit's drop frees the place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use slope_domain::*;
use slope_metrics::events::Budget;

use crate::{Result, ServiceError};

/// How much ingestion one server takes on. The defaults fit a 2-core, 8 GiB machine with room for
/// pages and jobs beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Rows in one batch (`ingest_max_rows`).
    pub max_rows: usize,
    /// Bytes of decoded text in one batch (`ingest_max_text_bytes`).
    pub max_text_bytes: usize,
    /// Batches this server takes in at once, all organisations together (`ingest_concurrency`).
    pub max_concurrent: usize,
    /// Batches one organisation has in flight on this server at once (`ingest_concurrency_per_org`).
    pub max_concurrent_per_org: usize,
    /// Days from a batch's first event to its last (`ingest_max_span_days`). A batch's range decides
    /// the segments it is deduplicated against and the buckets its metrics recompute, so two events
    /// decades apart would otherwise cost a recomputation of every day between them, and leave a
    /// segment that every later batch overlaps.
    pub max_span_days: i64,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_rows: 5_000_000,
            max_text_bytes: 1 << 30,
            max_concurrent: 4,
            max_concurrent_per_org: 2,
            max_span_days: 366,
        }
    }
}

impl IngestLimits {
    pub(crate) fn budget(&self) -> Budget {
        Budget { max_rows: self.max_rows.max(1), max_text_bytes: self.max_text_bytes.max(1) }
    }
}

/// How long a refused sender is told to wait: a batch of typical size is taken in within seconds.
pub const BUSY_RETRY_AFTER_SECS: u64 = 2;

/// The batches in flight on this server, in all and by organisation.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    in_flight: Mutex<(usize, HashMap<OrgId, usize>)>,
}

/// A place among the batches being taken in, held from before the body is read until the batch is
/// stored or refused.
#[derive(Debug)]
pub struct IngestPermit {
    org: OrgId,
    gate: Arc<Gate>,
}

impl IngestPermit {
    pub fn org(&self) -> OrgId {
        self.org
    }
}

impl Drop for IngestPermit {
    fn drop(&mut self) {
        // A poisoned lock means a panic while counting, which cannot leave the counts inconsistent (both
        // are updated after the checks); the counts are still right to use.
        let mut guard = self.gate.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let (all, by_org) = &mut *guard;
        *all = all.saturating_sub(1);
        if let Some(n) = by_org.get_mut(&self.org) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_org.remove(&self.org);
            }
        }
    }
}

impl Gate {
    /// A place for `org`, or `Busy` naming the limit that is reached.
    pub(crate) fn enter(self: &Arc<Self>, org: OrgId, limits: &IngestLimits) -> Result<IngestPermit> {
        let mut guard = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let (all, by_org) = &mut *guard;
        let mine = by_org.get(&org).copied().unwrap_or(0);
        if mine >= limits.max_concurrent_per_org.max(1) {
            return Err(ServiceError::Busy {
                message: format!(
                    "this organisation already has {mine} batches being taken in (ingest_concurrency_per_org); \
                     send this one when one of them is answered"
                ),
                retry_after_secs: BUSY_RETRY_AFTER_SECS,
            });
        }
        if *all >= limits.max_concurrent.max(1) {
            return Err(ServiceError::Busy {
                message: format!(
                    "the server is taking in {all} batches already (ingest_concurrency); send this one again shortly"
                ),
                retry_after_secs: BUSY_RETRY_AFTER_SECS,
            });
        }
        *all += 1;
        *by_org.entry(org).or_insert(0) += 1;
        Ok(IngestPermit { org, gate: Arc::clone(self) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_limited_per_server_and_per_organisation_and_freed_on_drop() {
        let gate = Arc::new(Gate::default());
        let limits = IngestLimits { max_concurrent: 3, max_concurrent_per_org: 2, ..Default::default() };
        let (a, b) = (OrgId(1), OrgId(2));
        let a1 = gate.enter(a, &limits).unwrap();
        let _a2 = gate.enter(a, &limits).unwrap();
        let busy = gate.enter(a, &limits).unwrap_err();
        assert!(matches!(&busy, ServiceError::Busy { message, .. } if message.contains("per_org")), "{busy:?}");
        let _b1 = gate.enter(b, &limits).unwrap();
        let full = gate.enter(b, &limits).unwrap_err();
        assert!(
            matches!(&full, ServiceError::Busy { message, .. } if message.contains("(ingest_concurrency)")),
            "{full:?}"
        );
        drop(a1);
        let _b2 = gate.enter(b, &limits).expect("a dropped permit frees its place");
        assert_eq!(gate.in_flight.lock().unwrap().0, 3);
    }
}

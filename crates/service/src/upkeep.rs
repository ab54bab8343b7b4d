//! The periodic upkeep that every server runs: served suggestions become events, segments a crash left
//! unmaterialised are materialised, each organisation's trailing-window metrics are filled in, its
//! small segments compacted and its thesis signals raised, and expired sessions are removed.

use std::time::Duration;

use chrono::Utc;

use crate::{Access, Loops, Planning, Runner};

/// The upkeep of the event store, the runner's serving log, the season dashboards and the sessions.
///
/// Every server may run it at the same time as others: the manifest arbitrates segments, and signals
/// are raised idempotently. Its steps take the organisation they work in rather than an actor.
///
/// It works across organisations, which is the one named exception to the rule that the service layer
/// works only in its actor's organisation: it lists the organisations (through the loops service's
/// store), and each step then works in one organisation at a time.
#[derive(Clone)]
pub struct Upkeep {
    planning: Planning,
    loops: Loops,
    runner: Runner,
    access: Access,
}

impl Upkeep {
    pub fn new(planning: Planning, loops: Loops, runner: Runner, access: Access) -> Self {
        Upkeep { planning, loops, runner, access }
    }

    /// One round of every step. A failing step is logged and the next one runs regardless, so that one
    /// broken organisation or loop does not stop the rest; the next round tries it again.
    pub async fn run_once(&self) {
        match self.runner.flush_impressions(Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "served suggestions recorded as events"),
            Err(e) => tracing::warn!(error = %e, "recording served suggestions failed"),
        }
        if let Err(e) = self.loops.materialize_pending().await {
            tracing::warn!(error = %e, "materialising pending segments failed");
        }
        let orgs = match self.loops.store().list_orgs().await {
            Ok(orgs) => orgs,
            Err(e) => {
                tracing::warn!(error = %e, "listing organisations failed");
                return;
            }
        };
        for org in orgs {
            if let Err(e) = self.loops.catch_up(org).await {
                tracing::warn!(error = %e, %org, "filling in trailing-window metrics failed");
            }
            match self.loops.compact(org).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(segments = n, %org, "compacted event segments"),
                Err(e) => tracing::warn!(error = %e, %org, "compaction failed"),
            }
            // Thesis signals appear on the season dashboard even when nobody has opened it.
            if let Err(e) = self.planning.raise_signals(org).await {
                tracing::warn!(error = %e, %org, "raising thesis signals failed");
            }
        }
        if let Err(e) = self.access.purge().await {
            tracing::warn!(error = %e, "removing expired sessions failed");
        }
    }

    /// Runs a round at once and then every `every` (at least a second: tokio's interval refuses zero)
    /// for as long as the process runs.
    pub fn spawn(self, every: Duration) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
            loop {
                tick.tick().await;
                self.run_once().await;
            }
        });
    }
}

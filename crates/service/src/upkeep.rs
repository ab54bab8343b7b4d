//! The periodic upkeep that every server runs: served suggestions become events, segments a crash left
//! unmaterialised are materialised, each organisation's trailing-window metrics are filled in, its
//! small segments compacted, its thesis signals raised and its due monitors evaluated, expired sessions
//! are removed, and objects that no row names are swept.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{Access, Loops, Monitors, Planning, Result, Runner};

/// How old an object must be before the sweep may delete it when no row names it: far longer than any
/// write takes between putting a file and committing the row that names it.
pub const ORPHAN_GRACE: chrono::Duration = chrono::Duration::hours(1);

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
    monitors: Monitors,
    /// Names this server in the monitors' schedule claims.
    worker: String,
}

impl Upkeep {
    pub fn new(
        planning: Planning,
        loops: Loops,
        runner: Runner,
        access: Access,
        monitors: Monitors,
        worker: String,
    ) -> Self {
        Upkeep { planning, loops, runner, access, monitors, worker }
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
            // Monitors are evaluated once per schedule slot across every server: the claim arbitrates.
            if let Err(e) = self.monitors.run_due(org, &self.worker, Utc::now()).await {
                tracing::warn!(error = %e, %org, "evaluating monitors failed");
            }
        }
        if let Err(e) = self.access.purge().await {
            tracing::warn!(error = %e, "removing expired sessions failed");
        }
        match self.sweep(Utc::now() - ORPHAN_GRACE).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(objects = n, "removed objects that no row names"),
            Err(e) => tracing::warn!(error = %e, "sweeping unreferenced objects failed"),
        }
    }

    /// Deletes every object of the object store that no row of any organisation names and that was
    /// last written before `before`. Such objects are what a write leaves when its commit fails or its
    /// process dies between writing a file and recording it (a segment, a model, a checkpoint, a
    /// dataset). The references of every organisation are read before anything is deleted, and any
    /// failure to read them stops the sweep: it deletes only on complete knowledge. `before` must leave
    /// writes in progress alone: a file is written before the row that names it.
    pub async fn sweep(&self, before: DateTime<Utc>) -> Result<usize> {
        let store = self.loops.store();
        let mut exact: HashSet<String> = HashSet::new();
        for org in store.list_orgs().await? {
            exact.extend(store.object_paths(org).await?);
            // A dataset built from events names the list of event ids it used (and, with annotations,
            // the rows' lineage to them) in its source.
            for dataset in store.list_datasets(org).await? {
                exact.extend(dataset.source.objects().into_iter().map(str::to_owned));
            }
        }
        let normal = |path: &str| path.trim_matches('/').to_owned();
        let exact: HashSet<String> = exact.iter().map(|p| normal(p)).collect();
        // A path names the object itself, or the folder of a model's or checkpoint's files.
        let named = |object: &str| {
            let mut prefix = object;
            loop {
                if exact.contains(prefix) {
                    return true;
                }
                match prefix.rfind('/') {
                    Some(i) => prefix = &prefix[..i],
                    None => return false,
                }
            }
        };
        let mut removed = 0;
        for (path, written) in self.runner.objects().list_all().await? {
            if written >= before || named(&normal(&path)) {
                continue;
            }
            self.runner.objects().delete(&path).await?;
            tracing::info!(path, %written, "removed an object no row names");
            removed += 1;
        }
        Ok(removed)
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

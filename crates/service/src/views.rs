//! Read models assembled in one call: what a page shows that takes several reads of the services, so
//! that the UI's server functions (and any other edge) each call one method and only map its answer.
//!
//! The conversions of the runner's records are pure functions of the domain beside their types; the
//! loops' rows are converted here, because they are made of the store's and the metrics engine's types,
//! which the domain cannot name.

use chrono::{DateTime, Utc};

use slope_domain::*;
use slope_metrics::acceptance::AcceptancePoint;
use slope_metrics::retention::Retention;
use slope_store::{BatchRecord, LoopSummary};

use crate::{Access, Loops, Planning, Result, Runner, ServiceError};

/// How the loops pages print a loop's first and last event.
fn minute(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

fn loop_row(l: LoopSummary) -> LoopRow {
    LoopRow {
        key: l.loop_key,
        events: l.events,
        segments: l.segments,
        first_event: minute(l.first_event),
        last_event: minute(l.last_event),
    }
}

fn acceptance_row(p: AcceptancePoint) -> AcceptanceRow {
    AcceptanceRow {
        variant: p.variant.unwrap_or_default(),
        day: p.bucket,
        value: p.value,
        ci_low: p.ci_low,
        ci_high: p.ci_high,
        users: p.users,
    }
}

/// Every loop's weekly cohorts, in the order the retention report lists them.
fn cohort_rows(retention: Retention) -> Vec<CohortRow> {
    retention
        .loops
        .into_iter()
        .flat_map(|l| l.cohorts)
        .map(|c| CohortRow {
            week: c.week.to_string(),
            size: c.size,
            shares: c.weeks.iter().map(|w| w.share).collect(),
        })
        .collect()
}

fn batch_row(b: BatchRecord) -> BatchRow {
    BatchRow {
        id: b.batch_id,
        rows: b.rows,
        stored: b.stored,
        duplicates: b.duplicates,
        received_at: b.received_at.format("%Y-%m-%d %H:%M:%S").to_string(),
    }
}

impl Loops {
    /// Every loop, every metric with its current series (read at once, not one read per metric), and
    /// the recent drift alerts.
    pub async fn overview(&self, actor: &Actor) -> Result<LoopsOverview> {
        let org = actor.authorize(Action::Read)?;
        let loops = self.list_loops(actor).await?.into_iter().map(loop_row).collect();
        let now = Utc::now();
        let metrics = self
            .store()
            .all_series(org)
            .await?
            .into_iter()
            .map(|(metric, points)| MetricSeries::new(metric, points, now))
            .collect();
        let alerts = self.drift_alerts(actor).await?;
        Ok(LoopsOverview { loops, metrics, alerts })
    }

    /// The page of one loop: its summary, daily acceptance over the last 28 days per line (the current
    /// experiment's arms, the champion, earlier models pooled), weekly cohorts, its metrics and recent
    /// batches.
    pub async fn loop_view(&self, actor: &Actor, key: &str) -> Result<LoopView> {
        let report = self.loop_report(actor, key, 28).await?;
        let retention = self.retention(actor, key).await?;
        Ok(LoopView {
            key: key.to_owned(),
            summary: report.summary.map(loop_row),
            method: report.method.to_owned(),
            acceptance: report.by_line.into_iter().map(acceptance_row).collect(),
            lines: report.lines,
            cohorts: cohort_rows(retention),
            metrics: report.metrics,
            batches: report.batches.into_iter().map(batch_row).collect(),
        })
    }
}

impl Runner {
    /// The page of one job: the job, its specification and result, and every step's metrics so far.
    pub async fn job_view(&self, actor: &Actor, id: i64) -> Result<JobView> {
        let job = self.job(actor, id).await?;
        let metrics = self.job_metrics(actor, id, 0).await?;
        Ok(JobView::of(&job, &metrics))
    }

    /// The registry page: every model with its aliases, every promotion decision and every dataset.
    pub async fn models_view(&self, actor: &Actor) -> Result<ModelsView> {
        let models = self.models(actor, None).await?;
        let aliases = self.aliases(actor, None).await?;
        let promotions = self.promotions(actor, None).await?;
        let datasets = self.datasets(actor).await?;
        Ok(ModelsView::of(&models, &aliases, &promotions, &datasets))
    }
}

impl Access {
    /// The members page: the organisation's members and its API tokens. Listing tokens is an admin's
    /// right, so for anyone else the whole page is refused, as it always was.
    pub async fn members_view(&self, actor: &Actor) -> Result<(Vec<Member>, Vec<Invitation>, Vec<ApiToken>)> {
        let members = self.members(actor).await?;
        let invitations = self.invitations(actor).await?;
        let tokens = self.tokens(actor).await?;
        Ok((members, invitations, tokens))
    }

    /// The latest 200 changes of one entity (`entity` and `id` both given), else of the organisation.
    pub async fn audit_view(&self, actor: &Actor, entity: Option<&str>, id: Option<i64>) -> Result<AuditView> {
        let filter = entity.zip(id);
        let scope = match filter {
            Some((e, i)) => format!("Changes of {} {i}", e.replace('_', " ")),
            None => "The latest 200 changes in this organisation".to_owned(),
        };
        let records = self.audit(actor, filter, None, 200).await?;
        Ok(AuditView { scope, records })
    }
}

impl Planning {
    /// An objective with the season it belongs to.
    pub async fn objective_with_season(&self, actor: &Actor, id: ObjectiveId) -> Result<(Objective, Season)> {
        let objective = self.get_objective(actor, id).await?;
        let season = self.get_season(actor, objective.season_id).await?;
        Ok((objective, season))
    }

    /// The tree of the organisation's current season (see [`Planning::current_season`]); `None` while it
    /// has no season.
    pub async fn current_season_tree(&self, actor: &Actor) -> Result<Option<SeasonTree>> {
        let Some(season) = self.current_season(actor).await? else { return Ok(None) };
        Ok(Some(self.season_tree(actor, season.id, None).await?))
    }

    /// A key result with the current series of the metric feeding it, when it is fed by one.
    pub async fn key_result_page(
        &self,
        actor: &Actor,
        id: KeyResultId,
    ) -> Result<(KeyResultDetail, Option<MetricSeries>)> {
        let org = actor.authorize(Action::Read)?;
        let detail = self.key_result_detail(actor, id).await?;
        let series = match &detail.key_result.metric {
            None => None,
            // The store refuses a link to an unknown metric and never deletes one, so this is not found
            // only if that ever changes; it then answers as a read of the metric itself would.
            Some(feed) => Some(
                self.metric_series(org, &feed.key, Utc::now())
                    .await?
                    .ok_or_else(|| ServiceError::NotFound(format!("no metric has the key {:?}", feed.key)))?,
            ),
        };
        Ok((detail, series))
    }
}

#[cfg(test)]
mod tests {
    use slope_metrics::retention::{Cohort, LoopRetention, RetentionPoint};

    use super::*;

    fn at(raw: &str) -> DateTime<Utc> {
        raw.parse().expect("fixture instants are valid")
    }

    #[test]
    fn loop_rows_print_minutes_and_batch_rows_seconds() {
        let summary = LoopSummary {
            loop_key: "notes".into(),
            segments: 2,
            events: 40,
            first_event: at("2027-01-04T08:09:10Z"),
            last_event: at("2027-01-05T23:59:59.9Z"),
        };
        let row = loop_row(summary);
        assert_eq!((row.key.as_str(), row.events, row.segments), ("notes", 40, 2));
        assert_eq!((row.first_event.as_str(), row.last_event.as_str()), ("2027-01-04 08:09", "2027-01-05 23:59"));
        let batch = BatchRecord {
            batch_id: 3,
            loop_key: "notes".into(),
            rows: 5,
            stored: 4,
            duplicates: 1,
            min_ts: None,
            max_ts: None,
            received_at: at("2027-01-06T10:11:12.5Z"),
            replayed: false,
        };
        let row = batch_row(batch);
        assert_eq!((row.id, row.rows, row.stored, row.duplicates), (3, 5, 4, 1));
        assert_eq!(row.received_at, "2027-01-06 10:11:12");
    }

    #[test]
    fn cohort_rows_keep_each_week_share_and_acceptance_rows_name_no_variant_as_empty() {
        let week = |offset, share| RetentionPoint { offset, active: 0, share };
        let retention = Retention {
            last_week: None,
            loops: vec![LoopRetention {
                loop_key: "notes".into(),
                cohorts: vec![
                    Cohort { week: "2027-01-04".parse().unwrap(), size: 10, weeks: vec![week(0, 1.0), week(1, 0.4)] },
                    Cohort { week: "2027-01-11".parse().unwrap(), size: 4, weeks: vec![week(0, 1.0)] },
                ],
            }],
        };
        let rows = cohort_rows(retention);
        let expected = [("2027-01-04", 10, vec![1.0, 0.4]), ("2027-01-11", 4, vec![1.0])];
        assert_eq!(rows.len(), expected.len());
        for (row, (week, size, shares)) in rows.iter().zip(expected) {
            assert_eq!((row.week.as_str(), row.size, &row.shares), (week, size, &shares));
        }
        let point = AcceptancePoint {
            variant: None,
            bucket: "2027-01-04".into(),
            value: 0.3,
            users: 12,
            events: 40,
            accepted: 30.0,
            suggested: 100.0,
            std_error: Some(0.02),
            ci_low: Some(0.26),
            ci_high: Some(0.34),
        };
        let row = acceptance_row(point);
        assert_eq!(
            row,
            AcceptanceRow {
                variant: String::new(),
                day: "2027-01-04".into(),
                value: 0.3,
                ci_low: Some(0.26),
                ci_high: Some(0.34),
                users: 12
            }
        );
    }
}

//! Character acceptance rate: Σ accepted characters / Σ suggested characters, per variant and time
//! bucket, with a 95 % confidence interval by the delta method for ratio metrics. The randomisation
//! unit is the user: characters of one user are not independent, so each user contributes one
//! (accepted, suggested) pair per bucket.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use slope_domain::{AcceptanceLine, EARLIER_MODELS, LineRole};

use crate::events::InteractionEvent;

/// The normal quantile of a two-sided 95 % interval.
pub const Z_95: f64 = 1.959_963_984_540_054;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Day,
    /// ISO weeks, labelled by their Monday.
    Week,
    /// One bucket for the whole file.
    All,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptancePoint {
    /// `None` when not split by variant.
    pub variant: Option<String>,
    /// The bucket's first day (`YYYY-MM-DD`), or `all`.
    pub bucket: String,
    pub value: f64,
    /// Users in the bucket: the sample size of the ratio.
    pub users: u64,
    pub events: u64,
    pub accepted: f64,
    pub suggested: f64,
    pub std_error: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

/// The delta-method standard error of Σa / Σs over `n` units, from the per-unit sums.
///
/// Var(R) ≈ (Var(a) − 2R·Cov(a, s) + R²·Var(s)) / (n · mean(s)²), with sample (co)variances over units.
/// `None` with fewer than two units: there is no spread to estimate.
pub fn delta_method_se(n: f64, sum_a: f64, sum_s: f64, sum_aa: f64, sum_ss: f64, sum_as: f64) -> Option<f64> {
    if n < 2.0 || sum_s <= 0.0 {
        return None;
    }
    let (mean_a, mean_s) = (sum_a / n, sum_s / n);
    let var_a = (sum_aa - n * mean_a * mean_a) / (n - 1.0);
    let var_s = (sum_ss - n * mean_s * mean_s) / (n - 1.0);
    let cov = (sum_as - n * mean_a * mean_s) / (n - 1.0);
    let r = sum_a / sum_s;
    let variance = (var_a - 2.0 * r * cov + r * r * var_s) / (n * mean_s * mean_s);
    // Rounding can push an exact zero slightly negative.
    Some(variance.max(0.0).sqrt())
}

/// The bucket of each event as a date expression (`None` for [`Bucket::All`]).
pub fn bucket_expr(bucket: Bucket) -> Option<Expr> {
    let day = col("ts").cast(DataType::Date);
    match bucket {
        Bucket::Day => Some(day),
        // Truncating to one week lands on the Monday of the ISO week.
        Bucket::Week => Some(day.dt().truncate(lit("1w"))),
        Bucket::All => None,
    }
}

/// The acceptance rate per bucket of validated events; see [`acceptance_of`].
pub fn acceptance(events: &[InteractionEvent], by_variant: bool, bucket: Bucket) -> PolarsResult<Vec<AcceptancePoint>> {
    acceptance_of(crate::events::to_frame(events)?.lazy(), by_variant, bucket)
}

/// The acceptance rate per bucket and line of a loop page's chart (see `slope_domain::acceptance_lines`):
/// each event counts towards the line that names its variant, and every other event towards
/// [`EARLIER_MODELS`] (a loop with a champion or an experiment) or its own variant (one without, whose
/// lines are its variants). The points' `variant` is the line's label. A pooled line's per-user sums
/// cover all its variants, so its interval is that of the pool, not an average of its variants'.
pub fn acceptance_by_line(
    events: LazyFrame,
    lines: &[AcceptanceLine],
    bucket: Bucket,
) -> PolarsResult<Vec<AcceptancePoint>> {
    let named = lines.iter().filter(|l| !matches!(l.role, LineRole::Earlier | LineRole::Variant));
    let mut label =
        if lines.iter().any(|l| l.role == LineRole::Variant) { col("variant") } else { lit(EARLIER_MODELS) };
    for line in named {
        for variant in &line.variants {
            label = when(col("variant").eq(lit(variant.clone()))).then(lit(line.label.clone())).otherwise(label);
        }
    }
    acceptance_of(events.with_column(label.alias("variant")), true, bucket)
}

/// The acceptance rate per bucket of an events frame (columns of [`crate::events::schema`]), split by
/// variant when `by_variant`, computed with polars: first the per-user sums within each group, then the
/// group's ratio and its spread across users.
pub fn acceptance_of(events: LazyFrame, by_variant: bool, bucket: Bucket) -> PolarsResult<Vec<AcceptancePoint>> {
    let variant = if by_variant { col("variant") } else { lit("") };
    let label = match bucket_expr(bucket) {
        Some(expr) => expr.cast(DataType::String),
        None => lit("all"),
    };
    let per_user = events
        .select([
            variant.alias("variant"),
            label.alias("bucket"),
            col("user_id"),
            col("accepted_chars").cast(DataType::Float64).alias("accepted"),
            col("suggested_chars").cast(DataType::Float64).alias("suggested"),
        ])
        .group_by([col("variant"), col("bucket"), col("user_id")])
        .agg([
            col("accepted").sum().alias("a"),
            col("suggested").sum().alias("s"),
            col("accepted").count().alias("events"),
        ]);
    let groups = per_user
        .group_by([col("variant"), col("bucket")])
        .agg([
            col("a").count().alias("n"),
            col("events").sum().alias("events"),
            col("a").sum().alias("sum_a"),
            col("s").sum().alias("sum_s"),
            (col("a") * col("a")).sum().alias("sum_aa"),
            (col("s") * col("s")).sum().alias("sum_ss"),
            (col("a") * col("s")).sum().alias("sum_as"),
        ])
        .sort(["variant", "bucket"], SortMultipleOptions::default())
        .collect()?;
    let text = |name: &str| -> PolarsResult<Vec<String>> {
        Ok(groups.column(name)?.str()?.iter().map(|v| v.unwrap_or_default().to_owned()).collect())
    };
    let float = |name: &str| -> PolarsResult<Vec<f64>> {
        let column = groups.column(name)?.cast(&DataType::Float64)?;
        Ok(column.f64()?.iter().map(|v| v.unwrap_or_default()).collect())
    };
    let (variants, bucket_labels) = (text("variant")?, text("bucket")?);
    let (n, events_count) = (float("n")?, float("events")?);
    let (sum_a, sum_s) = (float("sum_a")?, float("sum_s")?);
    let (sum_aa, sum_ss, sum_as) = (float("sum_aa")?, float("sum_ss")?, float("sum_as")?);
    Ok((0..groups.height())
        .filter(|&i| sum_s[i] > 0.0)
        .map(|i| {
            let value = sum_a[i] / sum_s[i];
            let std_error = delta_method_se(n[i], sum_a[i], sum_s[i], sum_aa[i], sum_ss[i], sum_as[i]);
            AcceptancePoint {
                variant: by_variant.then(|| variants[i].clone()),
                bucket: bucket_labels[i].clone(),
                value,
                users: n[i] as u64,
                events: events_count[i] as u64,
                accepted: sum_a[i],
                suggested: sum_s[i],
                std_error,
                ci_low: std_error.map(|se| (value - Z_95 * se).max(0.0)),
                ci_high: std_error.map(|se| (value + Z_95 * se).min(1.0)),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn event(id: u32, day: u32, user: &str, variant: &str, suggested: u64, accepted: u64) -> InteractionEvent {
        let ts = Utc.with_ymd_and_hms(2027, 1, day, 12, 0, 0).unwrap();
        InteractionEvent::sample(&id.to_string(), ts, user, variant, suggested, accepted)
    }

    #[test]
    fn delta_method_matches_a_hand_computation() {
        // Users: (a, s) = (2, 10), (5, 10), (9, 20). R = 16 / 40 = 0.4; mean s = 40/3.
        // Var(a) = 37/3, Var(s) = 100/3, Cov = 55/3 (sample, n − 1).
        // Var(R) = (37/3 − 2·0.4·55/3 + 0.16·100/3) / (3 · (40/3)²) = 3 / 533.33… = 0.005625, SE = 0.075.
        let se =
            delta_method_se(3.0, 16.0, 40.0, 4.0 + 25.0 + 81.0, 100.0 + 100.0 + 400.0, 20.0 + 50.0 + 180.0).unwrap();
        assert!((se - 0.075).abs() < 1e-12, "{se}");
        assert_eq!(delta_method_se(1.0, 1.0, 2.0, 1.0, 4.0, 2.0), None);
    }

    #[test]
    fn acceptance_groups_by_variant_and_day_with_users_as_units() {
        let events = vec![
            event(1, 4, "u1", "A", 6, 1),
            event(2, 4, "u1", "A", 4, 1), // u1 on day 4: (2, 10)
            event(3, 4, "u2", "A", 10, 5),
            event(4, 4, "u3", "A", 20, 9),
            event(5, 4, "u4", "B", 10, 10),
            event(6, 5, "u1", "A", 10, 0),
            event(7, 5, "u1", "A", 0, 0),
        ];
        let points = acceptance(&events, true, Bucket::Day).unwrap();
        assert_eq!(points.len(), 3);
        let a4 = &points[0];
        assert_eq!((a4.variant.as_deref(), a4.bucket.as_str()), (Some("A"), "2027-01-04"));
        assert_eq!((a4.users, a4.events), (3, 4));
        assert!((a4.value - 0.4).abs() < 1e-12);
        assert!((a4.std_error.unwrap() - 0.075).abs() < 1e-12);
        assert!(a4.ci_low.unwrap() < 0.4 && a4.ci_high.unwrap() > 0.4);
        let a5 = &points[1];
        assert_eq!((a5.bucket.as_str(), a5.value, a5.std_error), ("2027-01-05", 0.0, None));
        assert_eq!(points[2].variant.as_deref(), Some("B"));

        let weekly = acceptance(&events, false, Bucket::Week).unwrap();
        assert_eq!(weekly.len(), 1);
        assert_eq!(weekly[0].bucket, "2027-01-04", "4 January 2027 is a Monday");
        assert!((weekly[0].value - 26.0 / 60.0).abs() < 1e-12);
    }

    #[test]
    fn lines_pool_their_variants_per_user_and_everything_else_is_earlier() {
        // On day 4 user u1 saw both old variants: pooled, u1 is one unit with (3, 10).
        let events = vec![
            event(1, 4, "u1", "old-1", 6, 1),
            event(2, 4, "u1", "old-2", 4, 2),
            event(3, 4, "u2", "old-2", 10, 5),
            event(4, 4, "u3", "exp-control", 20, 9),
            event(5, 4, "u4", "exp-treatment", 10, 10),
        ];
        let line = |label: &str, role, variant: &str| AcceptanceLine {
            label: label.into(),
            role,
            variants: vec![variant.into()],
            model: None,
        };
        let lines = [
            line("control: m1", LineRole::Control, "exp-control"),
            line("treatment: m2", LineRole::Treatment, "exp-treatment"),
        ];
        let frame = crate::events::to_frame(&events).unwrap().lazy();
        let points = acceptance_by_line(frame, &lines, Bucket::Day).unwrap();
        let by: std::collections::HashMap<_, _> =
            points.iter().map(|p| (p.variant.clone().unwrap_or_default(), p)).collect();
        assert_eq!(by.len(), 3);
        let earlier = by[EARLIER_MODELS];
        assert_eq!((earlier.users, earlier.events), (2, 3), "u1's two variants are one unit");
        assert!((earlier.value - 8.0 / 20.0).abs() < 1e-12);
        assert!((by["control: m1"].value - 0.45).abs() < 1e-12);
        assert_eq!(by["treatment: m2"].value, 1.0);

        // A loop whose lines are its own variants keeps every variant apart.
        let own = [line("old-1", LineRole::Variant, "old-1")];
        let frame = crate::events::to_frame(&events).unwrap().lazy();
        let points = acceptance_by_line(frame, &own, Bucket::Day).unwrap();
        assert_eq!(points.len(), 4);
    }
}

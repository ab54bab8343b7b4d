//! Distribution drift of one event field between a reference window and a current window: the
//! population stability index (PSI) and the Jensen–Shannon distance over bins cut at the reference's
//! deciles.

use serde::{Deserialize, Serialize};

use crate::events::InteractionEvent;

/// The field of an event whose distribution is compared; the domain names it, since monitors store it.
pub use slope_domain::DriftField;

/// The value of `field` in one event, if it has one.
pub fn field_value(field: DriftField, e: &InteractionEvent) -> Option<f64> {
    match field {
        DriftField::LatencyMs => e.latency_ms,
        DriftField::CostUsd => e.cost_usd,
        DriftField::SuggestedChars => Some(e.suggested_chars as f64),
        DriftField::AcceptedChars => Some(e.accepted_chars as f64),
        DriftField::Acceptance => (e.suggested_chars > 0).then(|| e.accepted_chars as f64 / e.suggested_chars as f64),
    }
}

/// The values of `field` in an events frame (columns of [`crate::events::schema`]), nulls left out.
pub fn values_of(events: polars::prelude::LazyFrame, field: DriftField) -> polars::prelude::PolarsResult<Vec<f64>> {
    use polars::prelude::*;
    let value = match field {
        DriftField::LatencyMs => col("latency_ms"),
        DriftField::CostUsd => col("cost_usd"),
        DriftField::SuggestedChars => col("suggested_chars").cast(DataType::Float64),
        DriftField::AcceptedChars => col("accepted_chars").cast(DataType::Float64),
        DriftField::Acceptance => when(col("suggested_chars").gt(lit(0u64)))
            .then(col("accepted_chars").cast(DataType::Float64) / col("suggested_chars").cast(DataType::Float64))
            .otherwise(lit(NULL).cast(DataType::Float64)),
    };
    let frame = events.select([value.alias("value")]).collect()?;
    Ok(frame.column("value")?.cast(&DataType::Float64)?.f64()?.iter().flatten().collect())
}

/// The usual reading of a PSI value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftBand {
    /// PSI < 0.1.
    Stable,
    /// 0.1 ≤ PSI ≤ 0.25.
    Moderate,
    /// PSI > 0.25: the distribution has shifted; an alert is warranted.
    Major,
}

impl DriftBand {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftBand::Stable => "stable",
            DriftBand::Moderate => "moderate",
            DriftBand::Major => "major",
        }
    }

    pub fn of(psi: f64) -> Self {
        if psi < 0.1 {
            DriftBand::Stable
        } else if psi <= 0.25 {
            DriftBand::Moderate
        } else {
            DriftBand::Major
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub psi: f64,
    /// √(JS divergence) with base-2 logarithms: 0 for equal distributions, 1 for disjoint ones.
    pub js_distance: f64,
    pub band: DriftBand,
    /// Upper edges of the bins but the last, which is open.
    pub edges: Vec<f64>,
    pub reference_share: Vec<f64>,
    pub current_share: Vec<f64>,
    pub reference_n: usize,
    pub current_n: usize,
}

/// Proportions below this are raised to it, so an empty bin does not make PSI infinite.
const FLOOR: f64 = 1e-4;

/// Compares `current` with `reference`. `None` when either sample is empty.
pub fn drift(reference: &[f64], current: &[f64]) -> Option<Drift> {
    if reference.is_empty() || current.is_empty() {
        return None;
    }
    let mut sorted: Vec<f64> = reference.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Decile edges of the reference; repeated values (a discrete field) collapse into fewer bins.
    let mut edges: Vec<f64> = (1..10).map(|k| sorted[(k * sorted.len() / 10).min(sorted.len() - 1)]).collect();
    edges.dedup();
    let shares = |values: &[f64]| -> Vec<f64> {
        let mut counts = vec![0.0; edges.len() + 1];
        for v in values {
            // A value equal to an edge belongs to the bin above it, so each bin is [edge, next edge).
            counts[edges.partition_point(|e| e <= v)] += 1.0;
        }
        counts.iter().map(|c| (c / values.len() as f64).max(FLOOR)).collect()
    };
    let (r, c) = (shares(reference), shares(current));
    let psi: f64 = r.iter().zip(&c).map(|(r, c)| (c - r) * (c / r).ln()).sum();
    let js: f64 = r
        .iter()
        .zip(&c)
        .map(|(r, c)| {
            let m = (r + c) / 2.0;
            0.5 * r * (r / m).log2() + 0.5 * c * (c / m).log2()
        })
        .sum();
    Some(Drift {
        psi,
        js_distance: js.max(0.0).sqrt().min(1.0),
        band: DriftBand::of(psi),
        edges,
        reference_share: r,
        current_share: c,
        reference_n: reference.len(),
        current_n: current.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform(n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|i| lo + (hi - lo) * (i as f64 + 0.5) / n as f64).collect()
    }

    #[test]
    fn equal_distributions_do_not_drift() {
        let d = drift(&uniform(1000, 0.0, 1.0), &uniform(500, 0.0, 1.0)).unwrap();
        assert!(d.psi.abs() < 1e-9 && d.js_distance < 1e-6, "{d:?}");
        assert_eq!(d.band, DriftBand::Stable);
        assert_eq!(d.edges.len(), 9);
    }

    #[test]
    fn psi_matches_a_hand_computation() {
        // Reference 0, 1, …, 999: edges 100, 200, …, 900 and ten bins of exactly 10 %. Current 0 … 499:
        // five bins of 20 % and five at the floor. PSI = 5·(0.2 − 0.1)·ln 2 + 5·(1e-4 − 0.1)·ln(1e-3).
        let integers = |n: usize| (0..n).map(|i| i as f64).collect::<Vec<_>>();
        let d = drift(&integers(1000), &integers(500)).unwrap();
        assert_eq!(d.edges, [100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0]);
        let expected = 5.0 * 0.1 * 2f64.ln() + 5.0 * (FLOOR - 0.1) * (FLOOR / 0.1).ln();
        assert!((d.psi - expected).abs() < 1e-9, "{} vs {expected}", d.psi);
        assert_eq!(d.band, DriftBand::Major);
        assert!(d.js_distance > 0.5 && d.js_distance <= 1.0);
    }

    #[test]
    fn a_small_shift_is_moderate_and_bands_have_their_bounds() {
        let reference = uniform(10_000, 0.0, 1.0);
        // Shifting by 0.07 empties 7 % of the first bin into the open last one:
        // PSI ≈ 0.07·ln(0.17 / 0.03) ≈ 0.12.
        let shifted: Vec<f64> = reference.iter().map(|v| v + 0.07).collect();
        let d = drift(&reference, &shifted).unwrap();
        assert_eq!(d.band, DriftBand::Moderate, "psi {}", d.psi);
        assert_eq!(DriftBand::of(0.0999), DriftBand::Stable);
        assert_eq!(DriftBand::of(0.25), DriftBand::Moderate);
        assert_eq!(DriftBand::of(0.2501), DriftBand::Major);
        assert!(drift(&[], &[1.0]).is_none());
    }

    #[test]
    fn discrete_fields_collapse_repeated_edges() {
        let d = drift(&[1.0, 1.0, 1.0, 2.0, 2.0], &[1.0, 2.0, 2.0, 2.0, 2.0]).unwrap();
        assert_eq!(d.edges, [1.0, 2.0]);
        assert!(d.psi > 0.1);
    }
}

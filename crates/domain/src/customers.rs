//! What the Customers page and `GET /api/v1/customers` show: lifetime value fitted to the
//! organisation's transactions, and the lifetime value metrics kept from it week by week.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::views::MetricSeries;

/// The customers' lifetime value as the models see them now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CustomersReport {
    /// The `ltv` metrics, each with its series and the note of its newest computation.
    pub metrics: Vec<MetricSeries>,
    /// The fit on every transaction so far; `None` with the reason in `fit_problem` (no transactions,
    /// too few repeat customers, a fit that did not converge).
    pub fit: Option<CustomerValueFit>,
    pub fit_problem: Option<String>,
}

/// BG/NBD and Gamma-Gamma fitted to every customer, with what they predict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CustomerValueFit {
    pub method: String,
    pub customers: usize,
    pub horizon_weeks: usize,
    /// The mean expected value per customer over the horizon (no spend model: `None`).
    pub mean_clv: Option<f64>,
    /// BG/NBD: purchase rates ~ Gamma(r, α), drop-out ~ Beta(a, b); rates per week.
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    /// Gamma-Gamma: spend per purchase; `None` without amounts.
    pub spend: Option<SpendModel>,
    /// How many customers' expected value falls in each bin (the last bin holds the top 1 %).
    pub distribution: Vec<ValueBin>,
    /// The mean probability of being alive by weeks since the last purchase, for customers who bought
    /// more than once.
    pub p_alive: Vec<AliveAt>,
    /// Customers by the month of their first purchase.
    pub cohorts: Vec<CohortValueRow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpendModel {
    pub p: f64,
    pub q: f64,
    pub v: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ValueBin {
    pub from: f64,
    pub to: f64,
    pub customers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AliveAt {
    /// Whole periods of the fit (weeks on the Customers page; days for `GET /api/v1/ltv?period=day`)
    /// since the last purchase.
    pub periods_since_purchase: u32,
    pub mean_p_alive: f64,
    pub customers: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CohortValueRow {
    /// The first day of the month of the cohort's first purchases.
    pub cohort: NaiveDate,
    pub customers: usize,
    pub mean_p_alive: f64,
    pub mean_expected_purchases: f64,
    pub mean_clv: Option<f64>,
}

/// Bins of equal width from 0 to the 99th percentile of `values`; values above it fall in the last
/// bin, so one extreme customer does not squash the chart.
pub fn value_bins(values: &[f64], bins: usize) -> Vec<ValueBin> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite() && *v >= 0.0).collect();
    if sorted.is_empty() || bins == 0 {
        return vec![];
    }
    sorted.sort_by(f64::total_cmp);
    let top = sorted[((sorted.len() - 1) as f64 * 0.99).round() as usize];
    let width = if top > 0.0 { top / bins as f64 } else { 1.0 };
    let mut out: Vec<ValueBin> =
        (0..bins).map(|i| ValueBin { from: i as f64 * width, to: (i + 1) as f64 * width, customers: 0 }).collect();
    for v in sorted {
        let i = ((v / width) as usize).min(bins - 1);
        out[i].customers += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_every_customer_and_fold_the_top_percent_into_the_last() {
        let mut values: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        values.push(1e9);
        let bins = value_bins(&values, 10);
        assert_eq!(bins.len(), 10);
        assert_eq!(bins.iter().map(|b| b.customers).sum::<usize>(), 1001);
        assert!(bins[9].to < 1000.0, "the extreme value does not stretch the axis: {:?}", bins[9]);
        assert!(value_bins(&[], 10).is_empty());
        assert_eq!(value_bins(&[0.0, 0.0], 4)[0].customers, 2);
    }
}

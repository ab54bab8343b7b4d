//! Customer lifetime value: the BG/NBD model of repeat purchasing (Fader, Hardie & Lee 2005) and the
//! Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee 2005, "RFM and CLV"), fitted by
//! maximum likelihood.
//!
//! Customers are summarised as in the papers: `frequency` x (repeat purchases), `recency` t_x (age at
//! the last purchase) and `t` T (age at the end of observation), all in one time unit (days, weeks…),
//! plus the mean value of the repeat purchases for the spend model.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::optimize::nelder_mead;
use crate::special::{hyp2f1, ln_beta, ln_gamma, log_add_exp};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LtvError {
    #[error("customer {row}: {message}")]
    InvalidCustomer { row: usize, message: String },
    #[error("{0}")]
    NotEnoughData(String),
    #[error("the {model} fit did not converge after {iterations} iterations")]
    NoConvergence { model: &'static str, iterations: usize },
}

/// One customer's summary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub frequency: f64,
    pub recency: f64,
    pub t: f64,
    /// Mean value of the repeat purchases; needed only by the spend model.
    pub monetary_value: Option<f64>,
}

impl Customer {
    /// Checks the summary's own rules; `row` (counted from 1) names the customer in the message.
    pub fn validate(&self, row: usize) -> Result<(), LtvError> {
        let fail = |message: String| Err(LtvError::InvalidCustomer { row, message });
        let Customer { frequency: x, recency: tx, t, monetary_value } = *self;
        if !(x.is_finite() && tx.is_finite() && t.is_finite()) {
            return fail("frequency, recency and T must be finite numbers".into());
        }
        if x < 0.0 || x.fract() != 0.0 {
            return fail(format!("frequency must be a whole number ≥ 0, not {x}"));
        }
        if t <= 0.0 {
            return fail(format!("T must be greater than 0, not {t}"));
        }
        if tx < 0.0 || tx > t {
            return fail(format!("recency must lie between 0 and T ({t}), not {tx}"));
        }
        if x == 0.0 && tx != 0.0 {
            return fail(format!("a customer without repeat purchases has recency 0, not {tx}"));
        }
        if let Some(m) = monetary_value
            && !(m.is_finite() && m >= 0.0)
        {
            return fail(format!("monetary value must be a number ≥ 0, not {m}"));
        }
        Ok(())
    }
}

/// BG/NBD parameters: purchase rates λ ~ Gamma(r, α) and drop-out probabilities p ~ Beta(a, b).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// A fitted model with what the fit says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fit<P> {
    pub params: P,
    pub log_likelihood: f64,
    pub customers: usize,
    pub iterations: usize,
}

/// Whether a search that ran out of iterations still found the maximum: a restart from where it
/// stopped gained (almost) nothing. Data without heterogeneity in one respect (every customer with the
/// same drop-out chance, say) puts the maximum at the end of a ridge along which the likelihood barely
/// changes; the simplex creeps along it without ever meeting the tolerance, while the predictions,
/// which depend on the ridge's direction only, are already settled.
fn on_a_flat_ridge(first: f64, restart: f64) -> bool {
    first.is_finite() && restart.is_finite() && (first - restart).abs() <= 1e-9 * restart.abs().max(1.0)
}

/// Identical summaries share one likelihood term; period-level data has many, so fits on large
/// populations evaluate far fewer terms than there are customers.
pub(crate) fn group(customers: &[Customer], key: impl Fn(&Customer) -> [u64; 3]) -> Vec<(Customer, f64)> {
    let mut groups: HashMap<[u64; 3], (Customer, f64)> = HashMap::new();
    for c in customers {
        groups.entry(key(c)).or_insert((*c, 0.0)).1 += 1.0;
    }
    let mut groups: Vec<(Customer, f64)> = groups.into_values().collect();
    // A fixed order makes the sum, and so the fit, reproducible to the last bit.
    groups.sort_by(|a, b| {
        (a.0.frequency, a.0.recency, a.0.t)
            .partial_cmp(&(b.0.frequency, b.0.recency, b.0.t))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    groups
}

impl BgNbd {
    /// The log-likelihood of one customer, in the numerically stable form: the two terms of the
    /// likelihood are added in log space.
    pub fn log_likelihood_one(&self, x: f64, tx: f64, t: f64) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
        let a2 = ln_beta(a, b + x) - ln_beta(a, b);
        let a3 = -(r + x) * (alpha + t).ln();
        let tail = if x > 0.0 { a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + tx).ln() } else { f64::NEG_INFINITY };
        a1 + a2 + log_add_exp(a3, tail)
    }

    /// The total log-likelihood of `customers`.
    pub fn log_likelihood(&self, customers: &[Customer]) -> f64 {
        customers.iter().map(|c| self.log_likelihood_one(c.frequency, c.recency, c.t)).sum()
    }

    /// Maximum-likelihood fit. Parameters are searched in log space (they are positive), with ages
    /// rescaled so the largest T is 10, which keeps α near 1 and the search well conditioned.
    pub fn fit(customers: &[Customer]) -> Result<Fit<BgNbd>, LtvError> {
        BgNbd::fit_from(customers, None)
    }

    /// [`BgNbd::fit`] starting the search at `start`, the last fit of much the same customers: a
    /// weekly refit after a batch of transactions then takes a few hundred evaluations, not thousands.
    pub fn fit_from(customers: &[Customer], start: Option<BgNbd>) -> Result<Fit<BgNbd>, LtvError> {
        for (i, c) in customers.iter().enumerate() {
            c.validate(i + 1)?;
        }
        if customers.iter().filter(|c| c.frequency > 0.0).count() < 2 {
            return Err(LtvError::NotEnoughData("BG/NBD needs at least two customers with repeat purchases".into()));
        }
        let max_t = customers.iter().map(|c| c.t).fold(0.0, f64::max);
        let scale = 10.0 / max_t;
        let scaled: Vec<Customer> =
            customers.iter().map(|c| Customer { recency: c.recency * scale, t: c.t * scale, ..*c }).collect();
        let groups = group(&scaled, |c| [c.frequency.to_bits(), c.recency.to_bits(), c.t.to_bits()]);
        let negative_ll = |p: &[f64]| {
            let model = BgNbd { r: p[0].exp(), alpha: p[1].exp(), a: p[2].exp(), b: p[3].exp() };
            -groups.iter().map(|(c, n)| n * model.log_likelihood_one(c.frequency, c.recency, c.t)).sum::<f64>()
        };
        let max_iterations = 4000;
        let (origin, step) = match start {
            Some(m) if [m.r, m.alpha, m.a, m.b].iter().all(|v| v.is_finite() && *v > 0.0) => {
                (vec![m.r.ln(), (m.alpha * scale).ln(), m.a.ln(), m.b.ln()], 0.1)
            }
            _ => (vec![0.0; 4], 0.5),
        };
        let mut best = nelder_mead(negative_ll, &origin, step, 1e-12, max_iterations);
        // A restart from the optimum refreshes a simplex that may have collapsed along a ridge.
        let restart = nelder_mead(negative_ll, &best.x, 0.1, 1e-13, max_iterations);
        let iterations = best.iterations + restart.iterations;
        // Either search meeting its tolerance is a maximum found: a restart that then creeps along a
        // ridge for all its iterations only improves on it.
        let converged = best.converged || restart.converged || on_a_flat_ridge(best.value, restart.value);
        if restart.value <= best.value {
            best = restart;
        }
        if !converged {
            return Err(LtvError::NoConvergence { model: "BG/NBD", iterations });
        }
        let params =
            BgNbd { r: best.x[0].exp(), alpha: best.x[1].exp() / scale, a: best.x[2].exp(), b: best.x[3].exp() };
        Ok(Fit { log_likelihood: params.log_likelihood(customers), params, customers: customers.len(), iterations })
    }

    /// The probability that a customer with this history is still active at the end of observation.
    pub fn p_alive(&self, x: f64, tx: f64, t: f64) -> f64 {
        if x == 0.0 {
            return 1.0;
        }
        let BgNbd { r, alpha, a, b } = *self;
        let odds_dead = (a / (b + x - 1.0)) * ((alpha + t) / (alpha + tx)).powf(r + x);
        1.0 / (1.0 + odds_dead)
    }

    /// The expected number of purchases in the next `horizon` time units by a customer with this history
    /// (equation 10 of the paper).
    pub fn expected_purchases(&self, horizon: f64, x: f64, tx: f64, t: f64) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        // The closed form divides by a − 1, and its hypergeometric function has poles where
        // a + b + x − 1 ≤ 0; near either, integrate the conditional expectation numerically instead
        // (4,000 times the work, so not everywhere).
        if (a - 1.0).abs() < 1e-3 || a + b + x - 1.0 <= 1e-3 {
            return self.expected_purchases_numeric(horizon, x, tx, t);
        }
        let z = horizon / (alpha + t + horizon);
        let hyp = hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        let first = (a + b + x - 1.0) / (a - 1.0);
        let second = 1.0 - ((alpha + t) / (alpha + t + horizon)).powf(r + x) * hyp;
        let odds_dead = if x > 0.0 { (a / (b + x - 1.0)) * ((alpha + t) / (alpha + tx)).powf(r + x) } else { 0.0 };
        first * second / (1.0 + odds_dead)
    }

    /// The same expectation by integrating the purchase rate over the horizon: the posterior expected
    /// rate of a live customer, times the chance of staying alive, which BG/NBD ties to each purchase.
    /// Used where the closed form does not exist (a ≤ 1).
    fn expected_purchases_numeric(&self, horizon: f64, x: f64, tx: f64, t: f64) -> f64 {
        // Conditional on being alive at T, the customer's future behaves like a new customer's with
        // updated parameters: λ ~ Gamma(r + x, α + T), p ~ Beta(a, b + x).
        let alive = BgNbd { r: self.r + x, alpha: self.alpha + t, a: self.a, b: self.b + x };
        self.p_alive(x, tx, t) * alive.expected_purchases_new_numeric(horizon)
    }

    /// E[X(t)] for a newly acquired customer by numerical integration over p (Simpson's rule on the
    /// Beta density, after substituting p = s² to tame its behaviour near 0).
    fn expected_purchases_new_numeric(&self, horizon: f64) -> f64 {
        // Given λ and p, E[X(t)] = (1 − e^{−λpt}) / p (equation 7 of the paper); averaged over
        // λ ~ Gamma(r, α) that is (1 − (α / (α + p t))^r) / p.
        let BgNbd { r, alpha, a, b } = *self;
        let n = 4000;
        let h = 1.0 / n as f64;
        let ln_norm = ln_beta(a, b);
        let f = |s: f64| {
            if s <= 0.0 || s >= 1.0 {
                return 0.0;
            }
            let p = s * s;
            let density = ((a - 1.0) * p.ln() + (b - 1.0) * (1.0 - p).ln() - ln_norm).exp() * 2.0 * s;
            let given_p = (1.0 - (alpha / (alpha + p * horizon)).powf(r)) / p;
            density * given_p
        };
        let mut sum = f(0.0) + f(1.0);
        for i in 1..n {
            sum += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        sum * h / 3.0
    }
}

/// Gamma-Gamma parameters: transaction values z ~ Gamma(p, ν) around a customer's mean, with
/// ν ~ Gamma(q, γ) across customers (γ is called v, as in the `lifetimes` package).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub v: f64,
}

impl GammaGamma {
    /// The log-likelihood of a customer's mean value `m` over `x` transactions (x > 0), up to a constant
    /// that does not depend on the parameters.
    pub fn log_likelihood_one(&self, x: f64, m: f64) -> f64 {
        let GammaGamma { p, q, v } = *self;
        ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q) + q * v.ln() + (p * x - 1.0) * m.ln() + (p * x) * x.ln()
            - (p * x + q) * (x * m + v).ln()
    }

    /// The total log-likelihood over customers with repeat purchases and a positive mean value; the
    /// others carry no information about spend.
    pub fn log_likelihood(&self, customers: &[Customer]) -> f64 {
        spenders(customers).map(|(x, m)| self.log_likelihood_one(x, m)).sum()
    }

    pub fn fit(customers: &[Customer]) -> Result<Fit<GammaGamma>, LtvError> {
        GammaGamma::fit_from(customers, None)
    }

    /// [`GammaGamma::fit`] starting the search at `start`, the last fit of much the same customers.
    pub fn fit_from(customers: &[Customer], start: Option<GammaGamma>) -> Result<Fit<GammaGamma>, LtvError> {
        for (i, c) in customers.iter().enumerate() {
            c.validate(i + 1)?;
        }
        let used: Vec<Customer> = customers
            .iter()
            .filter(|c| c.frequency > 0.0 && c.monetary_value.is_some_and(|m| m > 0.0))
            .copied()
            .collect();
        if used.len() < 2 {
            return Err(LtvError::NotEnoughData(
                "Gamma-Gamma needs at least two customers with repeat purchases and a monetary value".into(),
            ));
        }
        // Values are rescaled so their mean is 1; v scales with them, p and q do not.
        let mean = used.iter().filter_map(|c| c.monetary_value).sum::<f64>() / used.len() as f64;
        let scaled: Vec<Customer> =
            used.iter().map(|c| Customer { monetary_value: c.monetary_value.map(|m| m / mean), ..*c }).collect();
        let groups = group(&scaled, |c| [c.frequency.to_bits(), c.monetary_value.unwrap_or_default().to_bits(), 0]);
        let negative_ll = |w: &[f64]| {
            let model = GammaGamma { p: w[0].exp(), q: w[1].exp(), v: w[2].exp() };
            -groups
                .iter()
                .map(|(c, n)| n * model.log_likelihood_one(c.frequency, c.monetary_value.unwrap_or_default()))
                .sum::<f64>()
        };
        let (origin, step) = match start {
            Some(m) if [m.p, m.q, m.v].iter().all(|v| v.is_finite() && *v > 0.0) => {
                (vec![m.p.ln(), m.q.ln(), (m.v / mean).ln()], 0.1)
            }
            _ => (vec![0.0; 3], 0.5),
        };
        let first = nelder_mead(negative_ll, &origin, step, 1e-12, 4000);
        let best = nelder_mead(negative_ll, &first.x, 0.1, 1e-13, 4000);
        if !(first.converged || best.converged || on_a_flat_ridge(first.value, best.value)) {
            return Err(LtvError::NoConvergence {
                model: "Gamma-Gamma",
                iterations: first.iterations + best.iterations,
            });
        }
        let params = GammaGamma { p: best.x[0].exp(), q: best.x[1].exp(), v: best.x[2].exp() * mean };
        Ok(Fit {
            log_likelihood: params.log_likelihood(customers),
            params,
            customers: used.len(),
            iterations: first.iterations + best.iterations,
        })
    }

    /// The expected mean transaction value of a customer with `x` repeat purchases averaging `m`: a
    /// weighted mean of the population mean and the customer's own.
    pub fn expected_average_value(&self, x: f64, m: f64) -> f64 {
        let GammaGamma { p, q, v } = *self;
        p * (v + x * m) / (p * x + q - 1.0)
    }
}

fn spenders(customers: &[Customer]) -> impl Iterator<Item = (f64, f64)> + '_ {
    customers.iter().filter_map(|c| match c.monetary_value {
        Some(m) if c.frequency > 0.0 && m > 0.0 => Some((c.frequency, m)),
        _ => None,
    })
}

/// Expected customer lifetime value over `periods` periods of `period_length` time units each,
/// discounted by `discount_rate` per period: the expected purchases in each period times the expected
/// value per purchase, as the `lifetimes` package computes it.
pub fn customer_lifetime_value(
    purchases: &BgNbd,
    spend: &GammaGamma,
    customer: &Customer,
    periods: usize,
    period_length: f64,
    discount_rate: f64,
) -> f64 {
    let Customer { frequency: x, recency: tx, t, monetary_value } = *customer;
    let value = if x > 0.0 && monetary_value.is_some_and(|m| m > 0.0) {
        spend.expected_average_value(x, monetary_value.unwrap_or_default())
    } else {
        // Without repeat purchases the population mean is the best guess: E[z] = p v / (q − 1).
        spend.p * spend.v / (spend.q - 1.0)
    };
    let mut total = 0.0;
    let mut previous = 0.0;
    for i in 1..=periods {
        let expected = purchases.expected_purchases(i as f64 * period_length, x, tx, t);
        total += (expected - previous) * value / (1.0 + discount_rate).powi(i as i32);
        previous = expected;
    }
    total
}

/// Expected value of the customers whose first purchase fell in one month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CohortValue {
    /// The first day of the month of the cohort's first purchases.
    pub cohort: chrono::NaiveDate,
    pub customers: usize,
    pub mean_p_alive: f64,
    pub mean_expected_purchases: f64,
    pub mean_clv: Option<f64>,
}

/// A customer's predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerValue {
    pub customer: String,
    pub summary: Customer,
    pub p_alive: f64,
    pub expected_purchases: f64,
    pub clv: Option<f64>,
}

/// BG/NBD and Gamma-Gamma fitted to customer summaries, with predictions per customer and per monthly
/// cohort over `horizon` periods discounted at `discount_rate` per period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LtvReport {
    pub method: String,
    pub customers: usize,
    pub horizon_periods: usize,
    pub discount_rate: f64,
    pub bg_nbd: Fit<BgNbd>,
    pub gamma_gamma: Option<Fit<GammaGamma>>,
    pub cohorts: Vec<CohortValue>,
    /// The customers with the highest expected value (or purchases without a spend model), at most 50.
    pub top_customers: Vec<CustomerValue>,
    /// The mean expected value per customer (no spend model: `None`).
    pub mean_clv: Option<f64>,
    /// Customers per bin of expected value (no spend model: empty).
    pub distribution: Vec<slope_domain::ValueBin>,
    /// The mean P(alive) by whole periods since the last purchase, over customers who bought more
    /// than once.
    pub p_alive_curve: Vec<slope_domain::AliveAt>,
}

/// Fits both models and predicts. `customers` are (id, summary, first purchase day); customers first
/// seen in the last period (T = 0) carry no information and are left out of the fit but not of the
/// predictions.
pub fn ltv_report(
    customers: &[(String, Customer, chrono::NaiveDate)],
    horizon: usize,
    discount_rate: f64,
) -> Result<LtvReport, LtvError> {
    use chrono::Datelike;
    let fit_on: Vec<Customer> = customers.iter().map(|c| c.1).filter(|c| c.t > 0.0).collect();
    let purchases = BgNbd::fit(&fit_on)?;
    let spend = if fit_on.iter().any(|c| c.frequency > 0.0 && c.monetary_value.is_some_and(|m| m > 0.0)) {
        Some(GammaGamma::fit(&fit_on)?)
    } else {
        None
    };
    let mut values: Vec<CustomerValue> = customers
        .iter()
        .map(|(id, c, _)| CustomerValue {
            customer: id.clone(),
            summary: *c,
            p_alive: purchases.params.p_alive(c.frequency, c.recency, c.t),
            expected_purchases: purchases.params.expected_purchases(horizon as f64, c.frequency, c.recency, c.t),
            clv: spend
                .as_ref()
                .map(|s| customer_lifetime_value(&purchases.params, &s.params, c, horizon, 1.0, discount_rate)),
        })
        .collect();
    let mut cohorts: std::collections::BTreeMap<chrono::NaiveDate, Vec<&CustomerValue>> = Default::default();
    for (value, (_, _, first)) in values.iter().zip(customers) {
        let month = first.with_day(1).unwrap_or(*first);
        cohorts.entry(month).or_default().push(value);
    }
    let cohorts = cohorts
        .into_iter()
        .map(|(cohort, members)| {
            let n = members.len() as f64;
            CohortValue {
                cohort,
                customers: members.len(),
                mean_p_alive: members.iter().map(|m| m.p_alive).sum::<f64>() / n,
                mean_expected_purchases: members.iter().map(|m| m.expected_purchases).sum::<f64>() / n,
                mean_clv: spend.as_ref().map(|_| members.iter().filter_map(|m| m.clv).sum::<f64>() / n),
            }
        })
        .collect();
    let clvs: Vec<f64> = values.iter().filter_map(|v| v.clv).collect();
    let mean_clv = (!clvs.is_empty()).then(|| clvs.iter().sum::<f64>() / clvs.len() as f64);
    let distribution = slope_domain::value_bins(&clvs, 20);
    let mut by_gap: std::collections::BTreeMap<u32, (f64, usize)> = Default::default();
    for v in values.iter().filter(|v| v.summary.frequency > 0.0) {
        let gap = (v.summary.t - v.summary.recency).round().max(0.0) as u32;
        let entry = by_gap.entry(gap).or_default();
        entry.0 += v.p_alive;
        entry.1 += 1;
    }
    let p_alive_curve = by_gap
        .into_iter()
        .map(|(gap, (sum, n))| slope_domain::AliveAt {
            periods_since_purchase: gap,
            mean_p_alive: sum / n as f64,
            customers: n,
        })
        .collect();
    values.sort_by(|a, b| {
        let key = |v: &CustomerValue| v.clv.unwrap_or(v.expected_purchases);
        key(b).total_cmp(&key(a))
    });
    values.truncate(50);
    Ok(LtvReport {
        method: "BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma fitted by maximum likelihood; expected purchases \
                 and P(alive) per customer; CLV = Σ over the horizon of each period's expected purchases × the \
                 Gamma-Gamma expected spend, discounted per period"
            .into(),
        customers: customers.len(),
        horizon_periods: horizon,
        discount_rate,
        bg_nbd: purchases,
        gamma_gamma: spend,
        cohorts,
        top_customers: values,
        mean_clv,
        distribution,
        p_alive_curve,
    })
}

/// Reads customer summaries from a CSV or Parquet file with columns `frequency`, `recency`, `T` and
/// optionally `monetary_value`. Every row is checked; the first invalid one is named in the error.
pub fn read_summary(path: &std::path::Path) -> Result<Vec<Customer>, String> {
    use polars::prelude::*;
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    let frame = match extension.as_str() {
        "csv" => CsvReadOptions::default()
            .with_has_header(true)
            .try_into_reader_with_file_path(Some(path.into()))
            .and_then(|r| r.finish()),
        "parquet" => std::fs::File::open(path).map_err(PolarsError::from).and_then(|f| ParquetReader::new(f).finish()),
        other => return Err(format!("unknown summary file type {other:?}: use .csv or .parquet")),
    }
    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let numbers = |name: &str, required: bool| -> Result<Option<Vec<Option<f64>>>, String> {
        match frame.column(name) {
            Ok(column) => {
                let floats = column.cast(&DataType::Float64).map_err(|e| format!("column {name}: {e}"))?;
                Ok(Some(floats.f64().map_err(|e| format!("column {name}: {e}"))?.iter().collect()))
            }
            Err(_) if !required => Ok(None),
            Err(_) => Err(format!("the summary has no column {name:?} (it needs frequency, recency and T)")),
        }
    };
    let (frequency, recency, t) = (numbers("frequency", true)?, numbers("recency", true)?, numbers("T", true)?);
    let (frequency, recency, t) = (frequency.unwrap_or_default(), recency.unwrap_or_default(), t.unwrap_or_default());
    let monetary = numbers("monetary_value", false)?;
    (0..frame.height())
        .map(|i| {
            let missing = |name: &str| format!("customer {}: {name} is missing or not a number", i + 1);
            let customer = Customer {
                frequency: frequency[i].ok_or_else(|| missing("frequency"))?,
                recency: recency[i].ok_or_else(|| missing("recency"))?,
                t: t[i].ok_or_else(|| missing("T"))?,
                monetary_value: monetary.as_ref().and_then(|m| m[i]),
            };
            customer.validate(i + 1).map_err(|e| e.to_string())?;
            Ok(customer)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Beta, Distribution, Exp, Gamma};

    /// Draws customers from the BG/NBD model itself, with known parameters.
    fn simulate_bg_nbd(model: BgNbd, customers: usize, seed: u64) -> Vec<Customer> {
        let mut rng = StdRng::seed_from_u64(seed);
        let rates = Gamma::new(model.r, 1.0 / model.alpha).unwrap();
        let dropout = Beta::new(model.a, model.b).unwrap();
        (0..customers)
            .map(|_| {
                let lambda: f64 = rates.sample(&mut rng);
                let p: f64 = dropout.sample(&mut rng);
                let t = rng.random_range(26.0..52.0_f64).floor();
                let (mut now, mut x, mut tx) = (0.0, 0.0, 0.0);
                let wait = Exp::new(lambda.max(1e-12)).unwrap();
                loop {
                    now += wait.sample(&mut rng);
                    if now > t {
                        break;
                    }
                    x += 1.0;
                    // Purchases are recorded by day, as real transaction logs are.
                    tx = (now * 7.0).floor() / 7.0;
                    if rng.random::<f64>() < p {
                        break;
                    }
                }
                Customer { frequency: x, recency: tx, t, monetary_value: None }
            })
            .collect()
    }

    fn assert_close(name: &str, got: f64, want: f64, tolerance: f64) {
        let error = (got - want).abs() / want.abs();
        assert!(error <= tolerance, "{name}: fitted {got}, true {want}, relative error {error:.3} > {tolerance}");
    }

    /// Adaptive-free composite Simpson rule, enough for the smooth integrands of the check below.
    fn simpson(f: impl Fn(f64) -> f64, lo: f64, hi: f64, n: usize) -> f64 {
        let h = (hi - lo) / n as f64;
        let mut sum = f(lo) + f(hi);
        for i in 1..n {
            sum += f(lo + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        sum * h / 3.0
    }

    #[test]
    fn log_likelihood_matches_direct_integration() {
        // Parameters above 1 keep both densities smooth, so plain quadrature is accurate.
        let model = BgNbd { r: 2.0, alpha: 3.0, a: 2.0, b: 3.0 };
        let gamma = |l: f64| {
            (model.r * model.alpha.ln() + (model.r - 1.0) * l.ln() - model.alpha * l - ln_gamma(model.r)).exp()
        };
        let beta =
            |p: f64| ((model.a - 1.0) * p.ln() + (model.b - 1.0) * (1.0 - p).ln() - ln_beta(model.a, model.b)).exp();
        for (x, tx, t) in [(0.0, 0.0, 30.0), (1.0, 5.0, 30.0), (4.0, 20.5, 38.0), (12.0, 37.0, 39.0)] {
            // L(x, t_x, T | λ, p) = (1 − p)^x λ^x e^{−λT} + [x > 0] p (1 − p)^{x−1} λ^x e^{−λ t_x}.
            let e_lambda = |age: f64| {
                simpson(|l| if l == 0.0 { 0.0 } else { gamma(l) * l.powf(x) * (-l * age).exp() }, 0.0, 60.0, 200_000)
            };
            let e_p1 = simpson(|p| beta(p) * (1.0 - p).powf(x), 0.0, 1.0, 20_000);
            let mut direct = e_p1 * e_lambda(t);
            if x > 0.0 {
                let e_p2 = simpson(|p| beta(p) * p * (1.0 - p).powf(x - 1.0), 0.0, 1.0, 20_000);
                direct += e_p2 * e_lambda(tx);
            }
            let closed = model.log_likelihood_one(x, tx, t);
            assert!((closed - direct.ln()).abs() < 1e-6, "x={x}: closed form {closed}, integral {}", direct.ln());
        }
    }

    #[test]
    fn bg_nbd_recovers_the_parameters_it_was_simulated_with() {
        // The CDNOW estimates of the paper.
        let truth = BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
        let customers = simulate_bg_nbd(truth, 40_000, 7);
        let fit = BgNbd::fit(&customers).unwrap();
        // The fit must beat the truth on the data it saw: that is what maximum likelihood means.
        assert!(fit.log_likelihood >= truth.log_likelihood(&customers) - 1e-6);
        assert_close("r", fit.params.r, truth.r, 0.1);
        assert_close("alpha", fit.params.alpha, truth.alpha, 0.15);
        assert_close("a", fit.params.a, truth.a, 0.3);
        assert_close("b", fit.params.b, truth.b, 0.3);
    }

    #[test]
    fn gamma_gamma_recovers_the_parameters_it_was_simulated_with() {
        let truth = GammaGamma { p: 6.25, q: 3.74, v: 15.44 };
        let mut rng = StdRng::seed_from_u64(11);
        let nu = Gamma::new(truth.q, 1.0 / truth.v).unwrap();
        let customers: Vec<Customer> = (0..20_000)
            .map(|_| {
                let x = rng.random_range(1..8) as f64;
                let scale = 1.0 / nu.sample(&mut rng);
                let values = Gamma::new(truth.p, scale).unwrap();
                let m = (0..x as usize).map(|_| values.sample(&mut rng)).sum::<f64>() / x;
                Customer { frequency: x, recency: 1.0, t: 2.0, monetary_value: Some(m) }
            })
            .collect();
        let fit = GammaGamma::fit(&customers).unwrap();
        assert!(fit.log_likelihood >= truth.log_likelihood(&customers) - 1e-6);
        assert_close("p", fit.params.p, truth.p, 0.1);
        assert_close("q", fit.params.q, truth.q, 0.15);
        assert_close("v", fit.params.v, truth.v, 0.2);
    }

    #[test]
    fn predictions_behave() {
        let model = BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
        // A customer who bought often and recently is more likely alive than one who stopped early.
        assert!(model.p_alive(10.0, 38.0, 39.0) > model.p_alive(10.0, 5.0, 39.0));
        assert_eq!(model.p_alive(0.0, 0.0, 39.0), 1.0);
        // More horizon, more purchases; the numeric path (used for a ≤ 1) agrees with the closed form.
        let e10 = model.expected_purchases(10.0, 2.0, 30.0, 39.0);
        let e20 = model.expected_purchases(20.0, 2.0, 30.0, 39.0);
        assert!(e20 > e10 && e10 > 0.0);
        // Above and below a = 1 (CDNOW's a is below), with and without repeat purchases. Much below,
        // the Beta density's pole at 0 defeats Simpson's rule, so the check stops at 0.6.
        for a in [1.5, model.a, 0.6] {
            for (x, tx) in [(2.0, 30.0), (0.0, 0.0), (7.0, 38.5)] {
                let m = BgNbd { a, ..model };
                let closed = m.expected_purchases(20.0, x, tx, 39.0);
                let numeric = m.expected_purchases_numeric(20.0, x, tx, 39.0);
                assert!((closed - numeric).abs() / numeric < 1e-3, "a={a} x={x}: closed {closed}, numeric {numeric}");
            }
        }
        let spend = GammaGamma { p: 6.25, q: 3.74, v: 15.44 };
        let rich = Customer { frequency: 5.0, recency: 30.0, t: 39.0, monetary_value: Some(80.0) };
        let poor = Customer { monetary_value: Some(10.0), ..rich };
        let clv = |c: &Customer, d: f64| customer_lifetime_value(&model, &spend, c, 12, 4.0, d);
        assert!(clv(&rich, 0.01) > clv(&poor, 0.01));
        assert!(clv(&rich, 0.0) > clv(&rich, 0.05), "discounting lowers value");
    }

    #[test]
    fn invalid_summaries_name_the_customer() {
        let bad = [Customer { frequency: 1.0, recency: 5.0, t: 4.0, monetary_value: None }];
        let err = BgNbd::fit(&bad).unwrap_err();
        assert_eq!(
            err,
            LtvError::InvalidCustomer { row: 1, message: "recency must lie between 0 and T (4), not 5".into() }
        );
        let zero = Customer { frequency: 0.0, recency: 3.0, t: 9.0, monetary_value: None };
        assert!(zero.validate(7).unwrap_err().to_string().starts_with("customer 7:"));
    }
}

//! Customer lifetime value as a metric series. Each weekly bucket is a fresh look at the customers as
//! they stood at the bucket's end: BG/NBD and Gamma-Gamma are fitted to every transaction up to then,
//! and the point is the mean expected value per customer over the next [`HORIZON_WEEKS`] weeks,
//! discounted at [`ANNUAL_DISCOUNT`] a year.
//!
//! The interval is the delta method on the maximum-likelihood estimates: the covariance of the seven
//! log-parameters is the (generalised) inverse of the observed information (the Hessian of the
//! negative log-likelihood, by finite differences; the two models' likelihoods are separate, so it is
//! block diagonal), and the gradient of the log of the mean value carries it to a 95 % interval that stays
//! positive. It describes the uncertainty of the fitted parameters, not of the customers' futures.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use polars::prelude::*;

use crate::acceptance::Z_95;
use crate::ltv::{BgNbd, Customer, Fit, GammaGamma, LtvError};
use crate::transactions::{Period, SummaryOptions, summaries_of};

/// The weeks ahead whose purchases make up a customer's value.
pub const HORIZON_WEEKS: usize = 52;
/// The yearly discount rate applied week by week.
pub const ANNUAL_DISCOUNT: f64 = 0.10;

/// How the points are computed, for pages and the API.
pub const METHOD: &str = "Each complete week (the current one gets its point once it has ended): BG/NBD and \
                          Gamma-Gamma fitted by maximum likelihood to every transaction up to the week's end; the point is the mean expected value per customer over the next 52 weeks, \
                          discounted at 10 % a year; the 95 % interval is the delta method on the fitted parameters \
                          (observed information), on the log scale.";

/// The weekly rate equivalent to [`ANNUAL_DISCOUNT`].
pub fn weekly_discount() -> f64 {
    (1.0 + ANNUAL_DISCOUNT).powf(1.0 / 52.0) - 1.0
}

/// The parameters of the last fit, to start the next one from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warm {
    pub purchases: BgNbd,
    pub spend: GammaGamma,
}

/// The mean value per customer with its interval and the fit behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub mean: f64,
    pub ci: Option<(f64, f64)>,
    pub customers: usize,
    pub fitted: Warm,
}

/// One bucket's outcome: a point, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum LtvOutcome {
    Point { bucket: NaiveDate, estimate: Estimate, observed_at: DateTime<Utc> },
    Failed { bucket: NaiveDate, reason: String },
}

/// Fits both models to `customers` (those first seen at the end of observation carry no information and
/// are left out of the fits, not of the mean) and estimates their mean discounted value.
pub fn estimate(customers: &[Customer], warm: Option<Warm>) -> Result<Estimate, LtvError> {
    let fit_on: Vec<Customer> = customers.iter().copied().filter(|c| c.t > 0.0).collect();
    // The search runs from the standard start and, when there is one, from the last fit, and keeps
    // the better maximum: on a likelihood with ridges a warm start alone can settle elsewhere than a
    // fit from scratch, and the series must agree with a fresh fit of the same transactions.
    let purchases = better(BgNbd::fit_from(&fit_on, None), warm.map(|w| BgNbd::fit_from(&fit_on, Some(w.purchases))))?;
    let spend =
        better(GammaGamma::fit_from(&fit_on, None), warm.map(|w| GammaGamma::fit_from(&fit_on, Some(w.spend))))?;
    let value = MeanValue::new(customers);
    let mean = value.at(&purchases, &spend);
    if !(mean.is_finite() && mean > 0.0) {
        return Err(LtvError::NotEnoughData(format!("the fitted models give a mean value of {mean}")));
    }
    let ci = interval(&fit_on, &value, purchases, spend, mean);
    Ok(Estimate { mean, ci, customers: customers.len(), fitted: Warm { purchases, spend } })
}

/// The fit with the higher likelihood of a cold and an optional warm one; an error only when both fail.
fn better<P: Copy>(cold: Result<Fit<P>, LtvError>, warm: Option<Result<Fit<P>, LtvError>>) -> Result<P, LtvError> {
    match (cold, warm) {
        (Ok(c), Some(Ok(w))) => Ok(if w.log_likelihood > c.log_likelihood { w.params } else { c.params }),
        (Ok(c), _) => Ok(c.params),
        (Err(_), Some(Ok(w))) => Ok(w.params),
        (Err(e), _) => Err(e),
    }
}

/// A purchase history (frequency, recency, T) and the customers who have it.
type History = ((f64, f64, f64), Vec<usize>);

/// The mean discounted value of a fixed set of customers as a function of the parameters. Customers
/// with the same purchase history share the purchase model's work, which is most of it.
struct MeanValue {
    /// (frequency, recency, T) of each distinct history and the customers that have it.
    histories: Vec<History>,
    customers: Vec<Customer>,
}

impl MeanValue {
    fn new(customers: &[Customer]) -> MeanValue {
        let mut histories: HashMap<[u64; 3], History> = HashMap::new();
        for (i, c) in customers.iter().enumerate() {
            let key = [c.frequency.to_bits(), c.recency.to_bits(), c.t.to_bits()];
            histories.entry(key).or_insert(((c.frequency, c.recency, c.t), vec![])).1.push(i);
        }
        let mut histories: Vec<_> = histories.into_values().collect();
        // A fixed order makes the sums reproducible to the last bit.
        histories.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        MeanValue { histories, customers: customers.to_vec() }
    }

    /// Each history's discounted expected purchases over the horizon.
    fn discounted_purchases(&self, purchases: &BgNbd) -> Vec<f64> {
        let d = weekly_discount();
        self.histories
            .iter()
            .map(|((x, tx, t), _)| {
                let (mut total, mut previous) = (0.0, 0.0);
                for week in 1..=HORIZON_WEEKS {
                    let expected = purchases.expected_purchases(week as f64, *x, *tx, *t);
                    total += (expected - previous) / (1.0 + d).powi(week as i32);
                    previous = expected;
                }
                total
            })
            .collect()
    }

    /// Each history's summed expected value per purchase.
    fn values(&self, spend: &GammaGamma) -> Vec<f64> {
        let population = spend.p * spend.v / (spend.q - 1.0);
        self.histories
            .iter()
            .map(|(_, members)| {
                members
                    .iter()
                    .map(|&i| {
                        let c = &self.customers[i];
                        match c.monetary_value {
                            Some(m) if c.frequency > 0.0 && m > 0.0 => spend.expected_average_value(c.frequency, m),
                            // Without repeat purchases the population mean is the best guess.
                            _ => population,
                        }
                    })
                    .sum()
            })
            .collect()
    }

    fn combine(&self, purchases: &[f64], values: &[f64]) -> f64 {
        purchases.iter().zip(values).map(|(p, v)| p * v).sum::<f64>() / self.customers.len().max(1) as f64
    }

    fn at(&self, purchases: &BgNbd, spend: &GammaGamma) -> f64 {
        self.combine(&self.discounted_purchases(purchases), &self.values(spend))
    }
}

fn bg_of(w: &[f64]) -> BgNbd {
    BgNbd { r: w[0].exp(), alpha: w[1].exp(), a: w[2].exp(), b: w[3].exp() }
}

fn gg_of(w: &[f64]) -> GammaGamma {
    GammaGamma { p: w[0].exp(), q: w[1].exp(), v: w[2].exp() }
}

/// The delta-method interval of the mean value, or `None` where the information matrix is not
/// positive semi-definite (the fit is not at a maximum, so its curvature says nothing reliable).
fn interval(
    fit_on: &[Customer],
    value: &MeanValue,
    purchases: BgNbd,
    spend: GammaGamma,
    mean: f64,
) -> Option<(f64, f64)> {
    let bg = [purchases.r.ln(), purchases.alpha.ln(), purchases.a.ln(), purchases.b.ln()];
    let gg = [spend.p.ln(), spend.q.ln(), spend.v.ln()];
    let histories = crate::ltv::group(fit_on, |c| [c.frequency.to_bits(), c.recency.to_bits(), c.t.to_bits()]);
    let bg_nll = |w: &[f64]| {
        let m = bg_of(w);
        -histories.iter().map(|(c, n)| n * m.log_likelihood_one(c.frequency, c.recency, c.t)).sum::<f64>()
    };
    let spenders: Vec<(f64, f64)> = fit_on
        .iter()
        .filter_map(|c| match c.monetary_value {
            Some(m) if c.frequency > 0.0 && m > 0.0 => Some((c.frequency, m)),
            _ => None,
        })
        .collect();
    let gg_nll = |w: &[f64]| {
        let m = gg_of(w);
        -spenders.iter().map(|(x, v)| m.log_likelihood_one(*x, *v)).sum::<f64>()
    };
    let bg_cov = covariance(&hessian(bg_nll, &bg))?;
    let gg_cov = covariance(&hessian(gg_nll, &gg))?;

    // The gradient of ln(mean) by central differences: the purchase parameters move the discounted
    // purchases with the values fixed, and the spend parameters the other way round.
    let h = 1e-4;
    let (base_purchases, base_values) = (value.discounted_purchases(&purchases), value.values(&spend));
    let bg_grad: Vec<f64> = (0..4)
        .map(|j| {
            let (mut up, mut down) = (bg, bg);
            up[j] += h;
            down[j] -= h;
            let hi = value.combine(&value.discounted_purchases(&bg_of(&up)), &base_values);
            let lo = value.combine(&value.discounted_purchases(&bg_of(&down)), &base_values);
            (hi.ln() - lo.ln()) / (2.0 * h)
        })
        .collect();
    let gg_grad: Vec<f64> = (0..3)
        .map(|j| {
            let (mut up, mut down) = (gg, gg);
            up[j] += h;
            down[j] -= h;
            let hi = value.combine(&base_purchases, &value.values(&gg_of(&up)));
            let lo = value.combine(&base_purchases, &value.values(&gg_of(&down)));
            (hi.ln() - lo.ln()) / (2.0 * h)
        })
        .collect();
    let variance = quadratic(&bg_cov, &bg_grad) + quadratic(&gg_cov, &gg_grad);
    if !(variance.is_finite() && variance >= 0.0) {
        return None;
    }
    let half = Z_95 * variance.sqrt();
    Some((mean * (-half).exp(), mean * half.exp()))
}

// Matrix code reads best with the indices of its formulas.
#[allow(clippy::needless_range_loop)]
fn quadratic(matrix: &[Vec<f64>], v: &[f64]) -> f64 {
    (0..v.len()).map(|i| (0..v.len()).map(|j| v[i] * matrix[i][j] * v[j]).sum::<f64>()).sum()
}

/// The relative size below which an eigenvalue of the information counts as a ridge.
const RIDGE: f64 = 1e-4;

/// The Hessian of `f` at `x` by central differences.
// Matrix code reads best with the indices of its formulas.
#[allow(clippy::needless_range_loop)]
fn hessian(f: impl Fn(&[f64]) -> f64, x: &[f64]) -> Vec<Vec<f64>> {
    let n = x.len();
    let h = 1e-3;
    let at = |shifts: &[(usize, f64)]| {
        let mut p = x.to_vec();
        for (i, d) in shifts {
            p[*i] += d;
        }
        f(&p)
    };
    let centre = f(x);
    let mut out = vec![vec![0.0; n]; n];
    for i in 0..n {
        out[i][i] = (at(&[(i, h)]) - 2.0 * centre + at(&[(i, -h)])) / (h * h);
        for j in 0..i {
            let v = (at(&[(i, h), (j, h)]) - at(&[(i, h), (j, -h)]) - at(&[(i, -h), (j, h)]) + at(&[(i, -h), (j, -h)]))
                / (4.0 * h * h);
            out[i][j] = v;
            out[j][i] = v;
        }
    }
    out
}

/// The covariance from an information matrix: its inverse, restricted to the directions the data
/// inform. Eigenvalues within [`RIDGE`] of the largest, either side of zero (a ridge of the
/// likelihood, where a and b of BG/NBD grow together without changing a/(a + b), and finite
/// differences along it are noise), are left out, which is the Moore–Penrose inverse; the
/// predictions barely move along such a ridge, so the gradient has no weight there. `None` when the
/// matrix is clearly not positive semi-definite (not a maximum).
// Matrix code reads best with the indices of its formulas.
#[allow(clippy::needless_range_loop)]
fn covariance(information: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = information.len();
    let (values, vectors) = jacobi_eigen(information);
    let largest = values.iter().copied().fold(0.0_f64, f64::max);
    if !(largest.is_finite() && largest > 0.0) || values.iter().any(|v| *v < -RIDGE * largest) {
        return None;
    }
    let mut out = vec![vec![0.0; n]; n];
    for (k, value) in values.iter().enumerate() {
        if *value <= RIDGE * largest {
            continue;
        }
        for i in 0..n {
            for j in 0..n {
                out[i][j] += vectors[i][k] * vectors[j][k] / value;
            }
        }
    }
    Some(out)
}

/// Eigenvalues and eigenvectors (as columns) of a small symmetric matrix by cyclic Jacobi rotations.
// Matrix code reads best with the indices of its formulas.
#[allow(clippy::needless_range_loop)]
fn jacobi_eigen(matrix: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = matrix.len();
    let mut a = matrix.to_vec();
    let mut v: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect()).collect();
    for _ in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |j| *j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vkp, vkq) = (row[p], row[q]);
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i][i]).collect(), v)
}

/// The points of the weekly `buckets` (Mondays) from a frame of
/// [`transactions_frame`](crate::segment::transactions_frame), optionally only the transactions of
/// `unit`. A bucket after the last transaction gets nothing; one whose fit fails gets the reason. Each
/// fit starts from the one before it, the first from `warm`.
pub fn ltv_points(
    transactions: LazyFrame,
    unit: Option<&str>,
    buckets: &[NaiveDate],
    warm: Option<Warm>,
) -> PolarsResult<Vec<LtvOutcome>> {
    let transactions = match unit {
        Some(unit) => transactions.filter(col("unit").eq(lit(unit.to_owned()))),
        None => transactions,
    };
    let frame = transactions.select([col("customer"), col("date"), col("amount"), col("ts")]).collect()?;
    let Some(last_day) = crate::segment::time_range(&frame)?.map(|(_, hi)| hi.date_naive()) else {
        return Ok(vec![]);
    };
    let mut buckets = buckets.to_vec();
    buckets.sort();
    let mut warm = warm;
    let mut out = vec![];
    for bucket in buckets {
        if bucket > last_day {
            continue;
        }
        let end = (bucket + Duration::days(6)).min(last_day);
        // Filtered once: the newest purchase and the summaries read the same rows.
        let upto = frame.clone().lazy().filter(col("date").lt_eq(lit(end))).collect()?;
        let observed_at = crate::segment::time_range(&upto)?.map(|(_, hi)| hi);
        let options = SummaryOptions { period: Period::Week, calibration_end: Some(end) };
        let customers: Vec<Customer> = summaries_of(upto.lazy(), &options)?.into_iter().map(|(_, c)| c).collect();
        match (estimate(&customers, warm), observed_at) {
            (Ok(estimate), Some(observed_at)) => {
                warm = Some(estimate.fitted);
                out.push(LtvOutcome::Point { bucket, estimate, observed_at });
            }
            (Err(e), _) => out.push(LtvOutcome::Failed { bucket, reason: e.to_string() }),
            (Ok(_), None) => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Beta, Distribution, Exp, Gamma};

    const PURCHASES: BgNbd = BgNbd { r: 0.8, alpha: 4.0, a: 1.6, b: 6.0 };
    const SPEND: GammaGamma = GammaGamma { p: 6.0, q: 4.0, v: 60.0 };

    /// Customers drawn from both models with known parameters, observed for 26 to 52 weeks.
    fn simulate(customers: usize, seed: u64) -> Vec<Customer> {
        let mut rng = StdRng::seed_from_u64(seed);
        let rates = Gamma::new(PURCHASES.r, 1.0 / PURCHASES.alpha).unwrap();
        let dropout = Beta::new(PURCHASES.a, PURCHASES.b).unwrap();
        let scales = Gamma::new(SPEND.q, 1.0 / SPEND.v).unwrap();
        (0..customers)
            .map(|_| {
                let lambda: f64 = rates.sample(&mut rng);
                let p: f64 = dropout.sample(&mut rng);
                let nu: f64 = scales.sample(&mut rng);
                let amounts = Gamma::new(SPEND.p, 1.0 / nu).unwrap();
                let t = rng.random_range(26..=52) as f64;
                let wait = Exp::new(lambda.max(1e-9)).unwrap();
                let (mut now, mut x, mut tx, mut spent) = (0.0, 0.0, 0.0, 0.0);
                loop {
                    now += wait.sample(&mut rng);
                    if now > t {
                        break;
                    }
                    x += 1.0;
                    tx = now;
                    spent += amounts.sample(&mut rng);
                    if rng.random::<f64>() < p {
                        break;
                    }
                }
                Customer { frequency: x, recency: tx, t, monetary_value: Some(if x > 0.0 { spent / x } else { 0.0 }) }
            })
            .collect()
    }

    #[test]
    fn the_interval_covers_the_true_mean_value_about_as_often_as_it_claims() {
        // The estimand is the mean value of these customers under the true parameters; a 95 % interval
        // should hold it in about 95 of 100 samples. 60 samples keep the test quick; below 85 % (or a
        // uselessly wide interval) fails.
        let (samples, mut covered, mut width) = (60, 0, 0.0);
        for seed in 0..samples {
            let customers = simulate(1_500, 100 + seed);
            let truth = MeanValue::new(&customers).at(&PURCHASES, &SPEND);
            let estimate = estimate(&customers, None).unwrap();
            let (lo, hi) = estimate.ci.expect("an interval");
            assert!(lo < estimate.mean && estimate.mean < hi);
            covered += usize::from(lo <= truth && truth <= hi);
            width += (hi - lo) / truth / samples as f64;
        }
        let coverage = covered as f64 / samples as f64;
        assert!(coverage >= 0.85, "coverage {coverage}");
        assert!(width < 0.6, "mean relative width {width}");
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn the_covariance_inverts_what_the_data_inform_and_skips_a_ridge() {
        let m = vec![vec![4.0, 1.0, 0.0], vec![1.0, 3.0, 0.5], vec![0.0, 0.5, 2.0]];
        let inv = covariance(&m).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let product: f64 = (0..3).map(|k| m[i][k] * inv[k][j]).sum();
                assert!((product - f64::from(u8::from(i == j))).abs() < 1e-9, "({i}, {j}): {product}");
            }
        }
        // A ridge along (1, 1): the direction along it gets no variance, the one across it does.
        let ridge = vec![vec![13.67, -13.67], vec![-13.67, 13.67]];
        let cov = covariance(&ridge).unwrap();
        assert!((quadratic(&cov, &[1.0, 1.0])).abs() < 1e-9);
        // (1, −1) is √2 times the unit eigenvector of eigenvalue 27.34.
        assert!((quadratic(&cov, &[1.0, -1.0]) - 2.0 / 27.34).abs() < 1e-6);
        assert!(covariance(&[vec![-1.0, 0.0], vec![0.0, 2.0]]).is_none(), "not a maximum");
    }

    #[test]
    fn a_warm_start_lands_on_the_same_fit() {
        let customers = simulate(3_000, 5);
        let cold = estimate(&customers, None).unwrap();
        let more = simulate(3_200, 5);
        let warm = estimate(&more, Some(cold.fitted)).unwrap();
        let again = estimate(&more, None).unwrap();
        assert!((warm.mean - again.mean).abs() / again.mean < 1e-4, "warm {} cold {}", warm.mean, again.mean);
    }

    #[test]
    fn points_per_week_from_transactions_and_failures_named() {
        use crate::events::TransactionEvent;
        use chrono::TimeZone;
        let monday = NaiveDate::from_ymd_opt(2027, 1, 4).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let mut rows = vec![];
        for c in 0..400 {
            let unit = if c % 2 == 0 { "clinical" } else { "revenue" };
            // Purchases at exponential waits around a customer's own rate, leaving after any of them.
            let mean_wait = rng.random_range(4.0..30.0_f64);
            let spend = Gamma::new(6.0, rng.random_range(30.0..150.0_f64) / 6.0).unwrap();
            let mut day = rng.random_range(0.0..40.0_f64);
            for k in 0..40 {
                if k > 0 {
                    if rng.random::<f64>() < 0.15 {
                        break;
                    }
                    day += Exp::new(1.0 / mean_wait).unwrap().sample(&mut rng);
                }
                let day = day.floor() as i64;
                if day > 69 {
                    break;
                }
                let ts = Utc.from_utc_datetime(&(monday + Duration::days(day)).and_hms_opt(10, 0, 0).unwrap());
                rows.push(TransactionEvent {
                    event_id: format!("{c}-{k}"),
                    customer_id: format!("c{c}"),
                    ts,
                    amount: spend.sample(&mut rng),
                    unit: Some(unit.into()),
                    user_id: None,
                });
            }
        }
        let bytes = crate::segment::encode_transactions(&rows).unwrap();
        let frame = crate::segment::transactions_frame(&[bytes]).unwrap();
        // Week 1 has customers but none has bought twice yet; week 11 is after the last transaction.
        let buckets: Vec<NaiveDate> = [0, 7, 63, 70].iter().map(|d| monday + Duration::days(*d)).collect();
        let outcomes = ltv_points(frame.clone(), None, &buckets, None).unwrap();
        assert_eq!(outcomes.len(), 3, "nothing after the last transaction: {outcomes:?}");
        let LtvOutcome::Failed { reason, .. } = &outcomes[0] else { panic!("first week: {:?}", outcomes[0]) };
        assert!(reason.contains("repeat purchases"), "{reason}");
        let LtvOutcome::Point { estimate, observed_at, .. } = &outcomes[2] else { panic!("{:?}", outcomes[2]) };
        assert_eq!(estimate.customers, 400);
        assert!(observed_at.date_naive() <= monday + Duration::days(69));
        let clinical = ltv_points(frame, Some("clinical"), &buckets[2..3], None).unwrap();
        let LtvOutcome::Point { estimate, .. } = &clinical[0] else { panic!("{:?}", clinical[0]) };
        assert_eq!(estimate.customers, 200);
    }
}

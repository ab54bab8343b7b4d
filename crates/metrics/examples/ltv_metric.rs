//! How long the `ltv` metric takes to recompute after a batch of transactions: the work the service
//! does on its blocking pool when a batch arrives (decode every transaction segment, summarise the
//! customers up to the touched week's end, fit BG/NBD and Gamma-Gamma from scratch and from the last
//! fit, and the delta-method interval), without the database write around it.
//!
//! `cargo run --release -p slope-metrics --example ltv_metric -- [CUSTOMERS] [BATCH]` (defaults 100,000
//! and 10,000). Customers are simulated from heterogeneous purchase rates and drop-out chances over the
//! 52 weeks before today; the batch is `BATCH` more purchases during the last week.

use std::time::Instant;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use polars::prelude::{col, lit};
use slope_metrics::events::TransactionEvent;
use slope_metrics::ltv::{BgNbd, Customer, GammaGamma};
use slope_metrics::ltv_series::{LtvOutcome, estimate, ltv_points};
use slope_metrics::segment::{encode_transactions, transactions_frame};
use slope_metrics::transactions::{Period, SummaryOptions, summaries_of};

/// A small deterministic generator (the example needs no dependency beyond the crate's own).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.replace(',', "").parse().ok()).collect();
    let customers = args.first().copied().unwrap_or(100_000);
    let batch = args.get(1).copied().unwrap_or(10_000);
    let today = Utc::now().date_naive();
    let start = today - Duration::weeks(52);
    let at = |day: f64| {
        Utc.from_utc_datetime(&start.and_hms_opt(0, 0, 0).unwrap()) + Duration::minutes((day * 1440.0) as i64)
    };
    let mut rng = Lcg(42);
    let mut history = vec![];
    let mut rates = vec![];
    for c in 0..customers {
        // Weekly rates spread like a gamma with shape 1 (an exponential), drop-out chances from 2 % to 32 %.
        let rate = -(rng.next().max(1e-12)).ln() * 0.5;
        let leave = 0.02 + 0.3 * rng.next();
        let spend = 30.0 + 150.0 * rng.next();
        rates.push(rate);
        let mut day = rng.next() * 300.0;
        let mut n = 0;
        while day < 358.0 {
            history.push(TransactionEvent {
                event_id: format!("h{c}-{n}"),
                customer_id: format!("c{c}"),
                ts: at(day),
                amount: (spend * (0.6 + 0.8 * rng.next()) * 100.0).round() / 100.0,
                unit: None,
                user_id: None,
            });
            n += 1;
            if rng.next() < leave {
                break;
            }
            day += -(rng.next().max(1e-12)).ln() / rate.max(1e-6) * 7.0;
        }
    }
    let follow_up: Vec<TransactionEvent> = (0..batch)
        .map(|i| {
            let c = (rng.next() * customers as f64) as usize;
            TransactionEvent {
                event_id: format!("b{i}"),
                customer_id: format!("c{c}"),
                ts: at(358.0 + rng.next() * 5.0),
                amount: (30.0 + 150.0 * rng.next() * 100.0).round() / 100.0,
                unit: None,
                user_id: None,
            }
        })
        .collect();
    let segments = [encode_transactions(&history).unwrap(), encode_transactions(&follow_up).unwrap()];
    eprintln!("{customers} customers, {} transactions, then a batch of {batch}", history.len());

    // The week before the batch, as the service kept it: its fit is where the next one starts.
    let week = |day: NaiveDate| day - Duration::days(i64::from(chrono::Datelike::weekday(&day).num_days_from_monday()));
    let batch_week = week(start + Duration::days(358));
    let before = transactions_frame(&segments[..1]).unwrap();
    let warm = match ltv_points(before, None, &[batch_week - Duration::weeks(1)], None).unwrap().pop() {
        Some(LtvOutcome::Point { estimate, .. }) => Some(estimate.fitted),
        other => panic!("the week before the batch did not fit: {other:?}"),
    };

    let mut times = vec![];
    let mut value = None;
    for _ in 0..3 {
        let started = Instant::now();
        let frame = transactions_frame(&segments).unwrap();
        let outcomes = ltv_points(frame, None, &[batch_week], warm).unwrap();
        times.push(started.elapsed().as_secs_f64());
        value = outcomes.into_iter().next();
    }
    times.sort_by(f64::total_cmp);

    // Where the time goes: summarising the customers (polars), then the fits and the interval.
    let started = Instant::now();
    let frame = transactions_frame(&segments).unwrap();
    let end = (batch_week + Duration::days(6)).min(start + Duration::days(363));
    let options = SummaryOptions { period: Period::Week, calibration_end: Some(end) };
    let upto = frame.filter(col("date").lt_eq(lit(end)));
    let summaries: Vec<Customer> = summaries_of(upto, &options).unwrap().into_iter().map(|(_, c)| c).collect();
    let summarise = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let fitted = estimate(&summaries, warm).unwrap();
    let fit_and_interval = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let fit_on: Vec<Customer> = summaries.iter().copied().filter(|c| c.t > 0.0).collect();
    BgNbd::fit_from(&fit_on, warm.map(|w| w.purchases)).unwrap();
    GammaGamma::fit_from(&fit_on, warm.map(|w| w.spend)).unwrap();
    let warm_fits = started.elapsed().as_secs_f64();
    let started = Instant::now();
    BgNbd::fit(&fit_on).unwrap();
    GammaGamma::fit(&fit_on).unwrap();
    let cold_fits = started.elapsed().as_secs_f64();
    println!(
        "breakdown: summaries {summarise:.2} s; fits (cold and warm) + interval {fit_and_interval:.2} s, of which the warm fits {warm_fits:.2} s and the cold fits {cold_fits:.2} s (mean {:.2})",
        fitted.mean
    );
    match value {
        Some(LtvOutcome::Point { estimate, .. }) => println!(
            "ltv metric recompute after a batch of {batch} transactions on {customers} customers: median {:.2} s of 3 ({}); mean value {:.2}, 95 % CI {:?}, {} customers",
            times[1],
            times.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>().join(", "),
            estimate.mean,
            estimate.ci.map(|(l, h)| (l.round(), h.round())),
            estimate.customers
        ),
        other => println!("the batch's week did not fit: {other:?}"),
    }
}

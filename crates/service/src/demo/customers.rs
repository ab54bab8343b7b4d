//! The demo's simulated customers: practices buying seats of the notes product, each in one of the
//! demo units, with purchase rates, drop-out and spend drawn at random (simulated inputs; the lifetime
//! value is fitted from them like any real transactions). A lifetime value metric feeds the "Customer
//! LTV" key result.

use chrono::{Duration, NaiveDate, Utc};
use slope_domain::*;

use super::{DEMO_UNITS, Lcg};
use crate::{BatchInput, Loops, Planning, Result};

/// The demo's lifetime value metric.
pub const DEMO_LTV_METRIC: &str = "customer-ltv";

/// How many simulated customers, and over how many weeks they were acquired.
const CUSTOMERS: u32 = 1_200;
const WEEKS: i64 = 16;

/// A standard normal draw (Box–Muller), for the spread of purchase rates.
fn normal(rng: &mut Lcg) -> f64 {
    let (u, v) = (rng.next().max(1e-12), rng.next());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// Simulated purchases, one NDJSON line each: customers acquired over [`WEEKS`] weeks up to `today`,
/// buying at their own weekly rate, with a chance of leaving after each purchase.
fn transactions(rng: &mut Lcg, today: NaiveDate) -> (String, usize) {
    let first = today - Duration::weeks(WEEKS);
    let now = Utc::now() - Duration::minutes(5);
    let (mut lines, mut n) = (String::new(), 0);
    for customer in 0..CUSTOMERS {
        let joined = rng.next() * (WEEKS * 7) as f64;
        let rate = 0.45 * (0.6 * normal(rng)).exp();
        let leave = 0.03 + 0.12 * rng.next();
        let spend = 70.0 + 120.0 * rng.next();
        let unit = DEMO_UNITS[customer as usize % DEMO_UNITS.len()];
        let mut day = joined;
        loop {
            let ts =
                first.and_hms_opt(9, 0, 0).unwrap_or_default().and_utc() + Duration::minutes((day * 1440.0) as i64);
            if ts > now {
                break;
            }
            n += 1;
            let amount = (spend * (0.6 + 0.8 * rng.next()) * 100.0).round() / 100.0;
            lines.push_str(
                &serde_json::json!({
                    "event_id": format!("demo-tx-{n}"),
                    "customer_id": format!("practice-{customer}"),
                    "ts": ts.to_rfc3339(),
                    "amount": amount,
                    "unit": unit,
                })
                .to_string(),
            );
            lines.push('\n');
            if rng.next() < leave {
                break;
            }
            // Exponential waits at the customer's weekly rate.
            day += -(rng.next().max(1e-12)).ln() / rate * 7.0;
        }
    }
    (lines, n)
}

/// Seeds the simulated transactions, the lifetime value metric (the whole organisation's) and its link
/// to the "Customer LTV" key result of the current season, unless the metric exists.
pub async fn seed_customers(planning: &Planning, loops: &Loops, actor: &Actor, today: NaiveDate) -> Result<()> {
    if loops.store().metric(actor.org, DEMO_LTV_METRIC).await?.is_some() {
        return Ok(());
    }
    let (body, n) = transactions(&mut Lcg(20_270_303), today);
    let input = BatchInput {
        loop_key: "",
        body: body.as_bytes(),
        format: slope_metrics::events::Format::Ndjson,
        gzip: false,
        idempotency_key: Some("demo-transactions-seed"),
    };
    loops.ingest_transactions(actor, input).await?;
    let metric = MetricInput {
        key: DEMO_LTV_METRIC.into(),
        name: "Customer LTV (52 weeks)".into(),
        kind: "ltv".into(),
        freshness_hours: Some(24 * 8),
        ..Default::default()
    };
    loops.create_metric(actor, &metric).await?;
    if let Some(season) = planning.current_season(actor).await? {
        let krs = planning.store().list_key_results(actor.org, season.id).await?;
        if let Some(kr) = krs.into_iter().find(|k| k.title == "Customer LTV") {
            let mut input = kr.to_input();
            input.metric = DEMO_LTV_METRIC.into();
            planning.update_key_result(actor, kr.id, kr.version, &input).await?;
        }
    }
    tracing::info!(transactions = n, "seeded the demo's simulated customers");
    Ok(())
}

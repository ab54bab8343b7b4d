//! The demo's simulated customers: practices buying seats of the notes product, each in one of the
//! demo units, with purchase rates, drop-out and spend drawn at random (simulated inputs; the lifetime
//! value is fitted from them like any real transactions). A lifetime value metric feeds the "Customer
//! LTV" key result; one per unit measures that unit's customers, and two of them feed key results of
//! their units; the traffic simulator carries the customers' purchases on in real time.
//!
//! The story the inputs tell: Clinical's practices buy more often from the day Clinical took the
//! note-drafting loop up ([`UPTAKE_BOOST`] times their own rate), the other units' customers buy as they
//! always did. The lift the adoption dashboard then finds in Clinical's lifetime value, its interval
//! and the stage it gives Clinical are computed from the purchases like any other.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use slope_domain::*;

use super::{DEMO_UNITS, Lcg};
use crate::{BatchInput, Loops, Planning, Result};

/// The demo's lifetime value metric.
pub const DEMO_LTV_METRIC: &str = "customer-ltv";

/// The demo's lifetime value metrics of each unit's customers, with the key result each feeds (Revenue's
/// feeds none, so its unit has no business key result of its own).
pub const DEMO_UNIT_LTV: [(&str, &str, Option<&str>); 3] = [
    ("Clinical", "clinical-customer-ltv", Some("Clinical practices' LTV")),
    ("Platform", "platform-customer-ltv", Some("Platform customers' LTV")),
    ("Revenue", "revenue-customer-ltv", None),
];

/// How many simulated customers, and over how many weeks they were acquired.
const CUSTOMERS: u32 = 1_200;
const WEEKS: i64 = 26;

/// How many times its own rate a Clinical practice buys at once Clinical took the notes loop up (a
/// simulated input: the effect the demo's story assumes, not a result).
pub const UPTAKE_BOOST: f64 = 2.0;

/// A standard normal draw (Box–Muller), for the spread of purchase rates.
fn normal(rng: &mut Lcg) -> f64 {
    let (u, v) = (rng.next().max(1e-12), rng.next());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// One simulated customer: its own weekly purchase rate, chance of leaving after a purchase and
/// spending level, and whether it is still a customer.
#[derive(Clone, Debug)]
pub(crate) struct SimulatedCustomer {
    id: String,
    unit: &'static str,
    rate: f64,
    leave: f64,
    spend: f64,
    alive: bool,
    /// From when the customer buys at [`UPTAKE_BOOST`] times its rate (Clinical's practices, from the
    /// day Clinical took the notes loop up).
    boosted_from: Option<DateTime<Utc>>,
}

impl SimulatedCustomer {
    /// The weekly purchase rate at `at`.
    fn rate_at(&self, at: DateTime<Utc>) -> f64 {
        if self.boosted_from.is_some_and(|from| at >= from) { self.rate * UPTAKE_BOOST } else { self.rate }
    }

    /// One purchase at `ts` as an NDJSON line, after which the customer may leave.
    fn buy(&mut self, rng: &mut Lcg, ts: DateTime<Utc>, event_id: String, lines: &mut String) {
        let amount = (self.spend * (0.6 + 0.8 * rng.next()) * 100.0).round() / 100.0;
        let line = serde_json::json!({
            "event_id": event_id,
            "customer_id": self.id,
            "ts": ts.to_rfc3339(),
            "amount": amount,
            "unit": self.unit,
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
        if rng.next() < self.leave {
            self.alive = false;
        }
    }
}

/// Simulated purchases, one NDJSON line each: customers acquired over [`WEEKS`] weeks up to `today`,
/// buying at their own weekly rate, with a chance of leaving after each purchase. Returns the lines,
/// their number and the customers as they stand at the end.
fn transactions(rng: &mut Lcg, today: NaiveDate) -> (String, usize, Vec<SimulatedCustomer>) {
    let first = today - Duration::weeks(WEEKS);
    let uptake = super::notes_uptake(0, today).and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let now = Utc::now() - Duration::minutes(5);
    let (mut lines, mut n, mut customers) = (String::new(), 0, vec![]);
    for customer in 0..CUSTOMERS {
        let joined = rng.next() * (WEEKS * 7) as f64;
        let unit = DEMO_UNITS[customer as usize % DEMO_UNITS.len()];
        let mut c = SimulatedCustomer {
            id: format!("practice-{customer}"),
            unit,
            rate: 0.45 * (0.6 * normal(rng)).exp(),
            leave: 0.03 + 0.12 * rng.next(),
            spend: 70.0 + 120.0 * rng.next(),
            alive: true,
            boosted_from: (unit == DEMO_UNITS[0]).then_some(uptake),
        };
        let mut day = joined;
        while c.alive {
            let ts =
                first.and_hms_opt(9, 0, 0).unwrap_or_default().and_utc() + Duration::minutes((day * 1440.0) as i64);
            if ts > now {
                break;
            }
            n += 1;
            c.buy(rng, ts, format!("demo-tx-{n}"), &mut lines);
            // Exponential waits at the customer's weekly rate as it stands at the purchase (memoryless, so
            // a wait that spans the uptake is drawn at the old rate: a small lag, no bias after it).
            day += -(rng.next().max(1e-12)).ln() / c.rate_at(ts) * 7.0;
        }
        customers.push(c);
    }
    (lines, n, customers)
}

/// The demo's customers as the seed left them (the same generator, so the same customers), for the
/// traffic simulator to carry on from.
pub(crate) fn seeded_customers(today: NaiveDate) -> Vec<SimulatedCustomer> {
    transactions(&mut Lcg(20_270_303), today).2
}

/// How often the traffic simulator sends the customers' purchases.
pub const PURCHASE_TICK: std::time::Duration = std::time::Duration::from_secs(600);

/// The purchases the live customers made in the `minutes` before `now`: each buys a Poisson number of
/// times at its weekly rate over that span (at uniform moments in it), and may leave after each
/// purchase. Returns NDJSON lines and their number; `tick` makes the event ids unique.
pub(crate) fn purchases_since(
    customers: &mut [SimulatedCustomer],
    rng: &mut Lcg,
    now: DateTime<Utc>,
    minutes: f64,
    tick: u64,
) -> (String, usize) {
    let weeks = minutes / (7.0 * 1440.0);
    let (mut lines, mut n) = (String::new(), 0);
    for c in customers.iter_mut() {
        // A Poisson draw by counting exponential waits that fit in the span.
        let rate = c.rate_at(now);
        let mut waited = -(rng.next().max(1e-12)).ln() / rate;
        while c.alive && waited < weeks {
            let ts = now - Duration::seconds((rng.next() * minutes * 60.0) as i64);
            n += 1;
            c.buy(rng, ts, format!("sim-tx-{tick}-{n}"), &mut lines);
            waited += -(rng.next().max(1e-12)).ln() / rate;
        }
    }
    (lines, n)
}

/// Seeds the simulated transactions, the lifetime value metric of the whole organisation and one per
/// unit ([`DEMO_UNIT_LTV`]), the link of the first to the "Customer LTV" key result of the current season
/// and a key result of each unit's customers' value under the same objective. Fitting the weekly series
/// of four metrics takes the better part of a minute, so the server runs this in the background after
/// it starts (see [`seed_customers_in_background`]); every step is idempotent, so a start interrupted
/// halfway is finished by the next one.
pub async fn seed_customers(planning: &Planning, loops: &Loops, actor: &Actor, today: NaiveDate) -> Result<()> {
    let last = DEMO_UNIT_LTV[DEMO_UNIT_LTV.len() - 1].1;
    if loops.store().metric(actor.org, last).await?.is_some() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let (body, n, _) = transactions(&mut Lcg(20_270_303), today);
    // The transactions first (a replay of the same key stores nothing twice), then each metric, whose
    // creation computes its series from them.
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
    let mut inputs = vec![metric.clone()];
    for (unit, key, _) in DEMO_UNIT_LTV {
        inputs.push(MetricInput {
            key: key.into(),
            name: format!("{unit} customers' LTV (52 weeks)"),
            unit: unit.into(),
            ..metric.clone()
        });
    }
    for input in &inputs {
        if loops.store().metric(actor.org, &input.key).await?.is_none() {
            loops.create_metric(actor, input).await?;
        }
    }
    if let Some(season) = planning.current_season(actor).await? {
        let krs = planning.store().list_key_results(actor.org, season.id).await?;
        if let Some(kr) = krs.iter().find(|k| k.title == "Customer LTV") {
            let mut input = kr.to_input();
            input.metric = DEMO_LTV_METRIC.into();
            planning.update_key_result(actor, kr.id, kr.version, &input).await?;
            for (_, key, title) in DEMO_UNIT_LTV {
                let Some(title) = title else { continue };
                if krs.iter().any(|k| k.title == title) {
                    continue;
                }
                let mut unit_kr = super::kr(title, "increase-to", Some(1200.0), Some(1800.0), "USD");
                unit_kr.metric = key.into();
                planning.create_key_result(actor, kr.objective_id, &unit_kr).await?;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(transactions = n, seconds, "seeded the demo's simulated customers and fitted their value");
    Ok(())
}

/// Runs [`seed_customers`] on a task of its own, logging how it ended, so that the server answers while
/// the customers' value is fitted (the Customers page shows each metric once its series is in).
pub fn seed_customers_in_background(planning: Planning, loops: Loops, actor: Actor) {
    tokio::spawn(async move {
        let today = Utc::now().date_naive();
        if let Err(e) = seed_customers(&planning, &loops, &actor, today).await {
            tracing::warn!(error = %e, "seeding the demo's customers failed; the next start tries again");
        }
    });
}

/// The demo's simulated customers keep buying in real time (the traffic simulator runs this): every
/// [`PURCHASE_TICK`] the purchases of the span just past go in as one transaction batch, which refits
/// the weeks it reaches once they are complete (so the "Customer LTV" key result gets each week's point
/// as the week ends and does not go stale). Only where the demo seeded its customers.
pub(crate) async fn carry_on_purchases(loops: Loops, actor: Actor) {
    // The customers are seeded in the background at start-up; purchases follow once they are there.
    let last = DEMO_UNIT_LTV[DEMO_UNIT_LTV.len() - 1].1;
    loop {
        match loops.store().metric(actor.org, last).await {
            Ok(Some(_)) => break,
            Ok(None) => tokio::time::sleep(std::time::Duration::from_secs(15)).await,
            Err(e) => {
                tracing::warn!(error = %e, "simulator: cannot tell whether the demo has customers; no purchases simulated");
                return;
            }
        }
    }
    let mut customers = seeded_customers(Utc::now().date_naive());
    let mut rng = Lcg(Utc::now().timestamp_millis() as u64);
    let mut tick = tokio::time::interval(PURCHASE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = Utc::now() - chrono::Duration::seconds(1);
        let minutes = PURCHASE_TICK.as_secs_f64() / 60.0;
        // Milliseconds in the ids keep them unique across restarts, which start the count again.
        let (body, n) = purchases_since(&mut customers, &mut rng, now, minutes, now.timestamp_millis() as u64);
        if n == 0 {
            continue;
        }
        let input = BatchInput {
            loop_key: "",
            body: body.as_bytes(),
            format: slope_metrics::events::Format::Ndjson,
            gzip: false,
            idempotency_key: None,
        };
        match loops.ingest_transactions(&actor, input).await {
            Ok(ack) => tracing::info!(purchases = n, metrics = ?ack.metrics_updated, "simulator: customers' purchases"),
            Err(e) => tracing::warn!(error = %e, "simulator: the customers' purchases were refused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_customers_buy_at_their_rate_and_the_departed_do_not() {
        let today = NaiveDate::from_ymd_opt(2027, 3, 1).unwrap();
        let mut customers = seeded_customers(today);
        let alive = customers.iter().filter(|c| c.alive).count();
        assert!(alive > 100 && alive < customers.len(), "some customers left, most did not: {alive}");
        let expected: f64 = customers.iter().filter(|c| c.alive).map(|c| c.rate).sum();
        // A week of purchases in one span: about the live customers' summed weekly rates.
        let now = Utc::now();
        let (lines, n) = purchases_since(&mut customers, &mut Lcg(1), now, 7.0 * 1440.0, 1);
        assert_eq!(lines.lines().count(), n);
        assert!(
            (n as f64 - expected).abs() < 4.0 * expected.sqrt() + expected * 0.1,
            "{n} purchases, {expected:.0} expected"
        );
        assert!(lines.lines().all(|l| l.contains("sim-tx-1-")));
        let departed: Vec<SimulatedCustomer> = customers.iter().filter(|c| !c.alive).cloned().collect();
        let mut departed = departed;
        assert_eq!(purchases_since(&mut departed, &mut Lcg(2), now, 7.0 * 1440.0, 2).1, 0);
    }
}

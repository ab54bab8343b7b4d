//! The exec adoption dashboard's rules: how far each organisation unit has come with AI, and the failure
//! modes worth a leader's attention.
//!
//! A unit climbs three stages, each resting on the one before: **AI fluency** (most of its people work
//! with AI suggestions), **process AI** (a loop of the unit moves a key result measured in money or
//! time, fed by a live metric) and **growth inflection** (a loop of the unit has measurably lifted
//! lifetime value or retention). Every verdict states its evidence and the rule in words, because an
//! exec who is told "stage 1" without the numbers behind it can neither trust nor act on it.
//!
//! The evidence (counts of users, links, staleness, experiment results) is gathered elsewhere; this
//! module only judges it, so the rules can be tested on constructed data and shown in the browser.

// Long on purpose: the stage rules, the evidence they cite and the failure-mode detectors are one model, and
// its worked-example tests sit beside it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::entities::{GoalStatus, Investment, string_enum};

string_enum!(
    /// What a key result's unit of measure measures. Only money and time count as a process outcome:
    /// they are what a business case is written in, where a ratio or a count can move without anyone
    /// being better off.
    Dimension {
        Money => "money",
        Time => "time",
        Ratio => "ratio",
        Count => "count",
        Other => "other",
    }
);

// The words of each dimension, separated by spaces. Ratio words are checked first: a percentage of
// anything ("% of hours") is a ratio.
const RATIO_WORDS: &str = "percent percentage pct pp ppt bp bps ratio rate share fraction proportion";
const CURRENCY_SYMBOLS: &[char] = &['$', '€', '£', '¥', '₹', '₩', '₽', '₺', '₪', '₫', '฿'];
const CURRENCY_WORDS: &str = "usd eur gbp jpy chf cad aud nzd cny rmb inr sek nok dkk pln czk huf brl mxn sgd hkd krw zar ils \
     try dollar dollars euro euros cent cents";
const TIME_WORDS: &str = "ns µs μs us ms msec msecs millisecond milliseconds s sec secs second seconds min mins minute \
     minutes h hr hrs hour hours d day days wk wks week weeks mo month months yr yrs year years";
const COUNT_WORDS: &str = "# n count counts number user users people person persons customer customers account accounts \
     session sessions event events request requests call calls ticket tickets item items order \
     orders message messages conversation conversations document documents doc docs note notes \
     suggestion suggestions completion completions task tasks";

/// Classifies a key result's unit of measure ("USD", "€", "ms", "hours", "%", "users", …).
///
/// A compound unit is judged by its numerator, so "USD/month" is money, "ms/request" time and
/// "tickets/day" a count. Words are matched whole (so "users" is not taken for seconds), ignoring case,
/// and a magnitude prefix on a currency code is allowed ("kUSD", "mEUR"). An empty unit is `Other`:
/// nothing says what the figure measures.
pub fn measure_dimension(unit: &str) -> Dimension {
    let lower = unit.trim().to_lowercase();
    let numerator = lower.split('/').next().unwrap_or("");
    let numerator = numerator.split(" per ").next().unwrap_or("").trim();
    if numerator.is_empty() {
        return Dimension::Other;
    }
    let words: Vec<&str> = numerator
        .split(|c: char| c.is_whitespace() || matches!(c, '-' | '_' | '(' | ')'))
        .filter(|w| !w.is_empty())
        .collect();
    let listed = |list: &str, word: &str| list.split_whitespace().any(|w| w == word);
    let any = |list: &str| words.iter().any(|w| listed(list, w));
    let is_currency = |w: &&str| {
        listed(CURRENCY_WORDS, w)
            || ["k", "m", "mn", "bn"].iter().any(|p| w.strip_prefix(p).is_some_and(|rest| listed(CURRENCY_WORDS, rest)))
    };
    if numerator.contains('%') || any(RATIO_WORDS) {
        Dimension::Ratio
    } else if numerator.contains(CURRENCY_SYMBOLS) || words.iter().any(is_currency) {
        Dimension::Money
    } else if any(TIME_WORDS) {
        Dimension::Time
    } else if any(COUNT_WORDS) {
        Dimension::Count
    } else {
        Dimension::Other
    }
}

string_enum!(
    /// The outcome a measured lift is on. Only lifetime value and retention show growth: they are what
    /// compounds, where a lift in acceptance or activity may not.
    LiftMetric { Ltv => "ltv", Retention => "retention", Other => "other" }
);

/// The `source` of a lift measured by comparing a period before a loop's change with one after it,
/// rather than by an experiment.
pub const BEFORE_AFTER: &str = "before/after";

/// The `source` of a lift measured before and after a change in one unit against the same weeks of the
/// other units (difference in differences), so that what moves every unit at once cancels.
pub const DIFF_IN_DIFF: &str = "difference-in-differences";

/// What is known of one key result that a loop serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct KrEvidence {
    pub title: String,
    pub unit_of_measure: String,
    /// The key of the metric that feeds the key result, if one does.
    pub metric: Option<String>,
    /// True when the linked metric's newest data is older than its freshness limit (see
    /// `MetricFeed::is_stale`); meaningless without a metric.
    pub metric_stale: bool,
    /// True once the key result has a current value, from its metric or a check-in.
    pub has_data: bool,
    /// The unit its metric measures alone, when it measures one: it then counts towards that unit's
    /// stage (and its parents'), not towards every unit the loop serves.
    pub unit: Option<String>,
}

/// A measured lift on an outcome, attributed to a loop: the 95 % interval of the difference between
/// treatment and control (or after and before).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LiftEvidence {
    pub metric_kind: LiftMetric,
    pub low: f64,
    pub high: f64,
    /// The key of the experiment that measured it, or [`BEFORE_AFTER`].
    pub source: String,
    /// The metric whose series or experiment measured it.
    #[serde(default)]
    pub metric: Option<String>,
    /// The unit whose people or customers it measures, when it measures one unit only: it then counts
    /// towards that unit's stage (and its parents'), not towards every unit the loop serves.
    #[serde(default)]
    pub unit: Option<String>,
    /// For a before/after comparison, the change it is taken around, in words ("the promotion of …",
    /// "Clinical's first event in the loop on …").
    #[serde(default)]
    pub around: Option<String>,
}

/// What is known of one of a unit's process loops.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct LoopEvidence {
    pub key: String,
    pub owner_squad: Option<String>,
    pub key_results: Vec<KrEvidence>,
    pub lifts: Vec<LiftEvidence>,
    /// When the loop's champion model was last evaluated.
    pub last_eval_at: Option<DateTime<Utc>>,
    /// The base model the loop's champion was fine-tuned from, as `provider/model` where the provider is
    /// known (a Hugging Face id such as `meta-llama/Llama-3.1-8B`).
    pub champion_base: Option<String>,
}

impl LoopEvidence {
    /// The loop as the evidence of `unit`: its key results and lifts that measure the loop as a whole or
    /// that unit alone (the LTV of one unit's customers says nothing of the other units the loop serves).
    pub fn seen_by(&self, unit: &str) -> LoopEvidence {
        let ours = |of: &Option<String>| of.as_deref().is_none_or(|u| u == unit);
        LoopEvidence {
            key_results: self.key_results.iter().filter(|k| ours(&k.unit)).cloned().collect(),
            lifts: self.lifts.iter().filter(|l| ours(&l.unit)).cloned().collect(),
            ..self.clone()
        }
    }
}

/// What is known of one organisation unit: its own people and loops, not those of its sub-units (see
/// [`roll_up`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct UnitEvidence {
    pub unit: String,
    pub parent: Option<String>,
    /// The number of people in the unit, when someone has said so.
    pub headcount: Option<u32>,
    /// Distinct users seen in the unit's interaction events over the last 12 weeks.
    pub people_seen_12w: u32,
    /// Distinct users of the unit's interaction events with at least one suggestion shown, last 4 weeks.
    pub active_ai_users_4w: u32,
    pub loops: Vec<LoopEvidence>,
}

impl UnitEvidence {
    /// The people the fluency share is taken over: the headcount when one is given, else the users seen
    /// over 12 weeks. A headcount of 0 is taken as not given, since a unit with active users has people.
    pub fn people(&self) -> u32 {
        self.headcount.filter(|&h| h > 0).unwrap_or(self.people_seen_12w)
    }
}

/// What is known of one squad goal, for the failure-mode detectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GoalEvidence {
    pub squad: String,
    pub title: String,
    pub status: GoalStatus,
    pub investment: Investment,
    /// The title of the key result the goal ladders up to.
    pub key_result: Option<String>,
    /// The key of the metric that feeds the goal.
    pub metric: Option<String>,
}

/// Everything the detectors look at: each unit's own evidence, and every squad goal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct OrgEvidence {
    pub units: Vec<UnitEvidence>,
    pub goals: Vec<GoalEvidence>,
}

/// The organisation's settings for the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct AdoptionRules {
    /// The share of a unit's people active with AI suggestions at which it is fluent.
    pub fluency_bar: f64,
    /// More active goals than this in one squad is too many at once.
    pub max_active_goals_per_squad: usize,
    /// A loop whose champion was last evaluated longer ago than this is not being measured.
    pub eval_max_age_days: i64,
}

impl Default for AdoptionRules {
    fn default() -> Self {
        AdoptionRules { fluency_bar: 0.5, max_active_goals_per_squad: 3, eval_max_age_days: 30 }
    }
}

/// The most goals a squad may be allowed at once before the warning, and the longest an eval may be
/// left: bounds beyond which a setting would switch its detector off rather than tune it.
pub const MAX_GOALS_SETTING: u32 = 50;
pub const MAX_EVAL_AGE_SETTING: u32 = 365;

/// The rules an organisation's adoption dashboard judges by, and which version of them: version 0 is
/// the defaults, which nobody has changed; each change by an admin is the next version, kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdoptionSettings {
    pub rules: AdoptionRules,
    pub version: crate::Version,
    /// Who set this version, and when; `None` for the defaults.
    pub set_by: Option<String>,
    pub set_at: Option<DateTime<Utc>>,
}

impl Default for AdoptionSettings {
    fn default() -> Self {
        AdoptionSettings { rules: AdoptionRules::default(), version: crate::Version(0), set_by: None, set_at: None }
    }
}

/// The adoption rules as an admin writes them: every rule, and the version they were read at, so that
/// two admins changing them at once do not overwrite each other unseen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct AdoptionRulesInput {
    /// The version being changed (0 while the defaults hold).
    pub version: Option<i64>,
    /// The share of people (above 0, at most 1) at which a unit is fluent.
    pub fluency_bar: Option<f64>,
    /// More active goals than this in one squad at once is too many (1 to 50).
    pub max_active_goals_per_squad: Option<u32>,
    /// An eval older than this many days means a loop is not being measured (1 to 365).
    pub eval_max_age_days: Option<u32>,
}

impl AdoptionRulesInput {
    /// Checks every field at once; returns the version changed and the new rules.
    pub fn parse(&self) -> Result<(crate::Version, AdoptionRules), crate::FieldErrors> {
        let mut c = crate::newtypes::Checker::new();
        let version = match self.version {
            Some(v) if v >= 0 => Some(crate::Version(v)),
            Some(_) => c.check("version", Err("must be 0 or more".to_owned())),
            None => c.check("version", Err("is required: the version of the rules you changed".to_owned())),
        };
        let bar = match self.fluency_bar {
            Some(b) if b.is_finite() && b > 0.0 && b <= 1.0 => Some(b),
            Some(_) => c.check("fluency_bar", Err("must be a share above 0 and at most 1 (0.5 is 50 %)".to_owned())),
            None => c.check("fluency_bar", Err("is required".to_owned())),
        };
        let goals = within(&mut c, "max_active_goals_per_squad", self.max_active_goals_per_squad, MAX_GOALS_SETTING);
        let days = within(&mut c, "eval_max_age_days", self.eval_max_age_days, MAX_EVAL_AGE_SETTING);
        c.finish(|| {
            Some((
                version?,
                AdoptionRules {
                    fluency_bar: bar?,
                    max_active_goals_per_squad: goals? as usize,
                    eval_max_age_days: i64::from(days?),
                },
            ))
        })
    }
}

impl AdoptionRules {
    /// The input that would set these rules again, based on `version`: what the rules form starts from.
    pub fn to_input(&self, version: crate::Version) -> AdoptionRulesInput {
        AdoptionRulesInput {
            version: Some(version.0),
            fluency_bar: Some(self.fluency_bar),
            max_active_goals_per_squad: u32::try_from(self.max_active_goals_per_squad).ok(),
            eval_max_age_days: u32::try_from(self.eval_max_age_days).ok(),
        }
    }
}

fn within(c: &mut crate::newtypes::Checker, field: &str, value: Option<u32>, most: u32) -> Option<u32> {
    match value {
        Some(v) if (1..=most).contains(&v) => Some(v),
        Some(_) => c.check(field, Err(format!("must be a whole number from 1 to {most}"))),
        None => c.check(field, Err("is required".to_owned())),
    }
}

/// The stages' names, indexed by stage.
pub const STAGE_LABELS: [&str; 4] = ["not yet", "AI fluency", "process AI", "growth inflection"];

/// The stage a unit has reached, why, and what the next one needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnitStage {
    pub unit: String,
    /// 0 (not yet), 1 (AI fluency), 2 (process AI) or 3 (growth inflection).
    pub stage: u8,
    /// What was met, with its numbers, and the rule it was held to.
    pub reasons: Vec<String>,
    /// What the next stage needs, with the numbers and the nearest misses; `None` at stage 3.
    pub missing: Option<String>,
    /// The one thing that would move the unit to the next stage, as one short sentence (the dashboard's
    /// headline; `missing` is its evidence); `None` at stage 3.
    pub next_step: Option<String>,
}

/// What a stage lacks: one short sentence saying what to do, and the full account with its numbers.
struct Missing {
    next: String,
    detail: String,
}

/// Tolerance for comparing shares with a bar: 5 of 10 people is 0.5 however it is computed.
const EPSILON: f64 = 1e-9;

/// Classifies one unit on its evidence alone (for a unit with sub-units, classify its [`roll_up`]).
///
/// - Stage 1, AI fluency: active AI users over the last 4 weeks, over the unit's people (see
///   [`UnitEvidence::people`]), at or above `rules.fluency_bar`.
/// - Stage 2, process AI: stage 1, and a key result of one of the unit's loops measured in money or time
///   (see [`measure_dimension`]) and fed by a metric that is not stale.
/// - Stage 3, growth inflection: stage 2, and a lift on LTV or retention attributed to one of the unit's
///   loops whose 95 % interval lies wholly above zero.
///
/// A stage's evidence does not count without the stages below it, but it is reported, so that a unit
/// held back by fluency alone is seen as such.
pub fn classify(unit: &UnitEvidence, rules: &AdoptionRules) -> UnitStage {
    let mut reasons = Vec::new();
    let fluency = fluency(unit, rules);
    let process = process(unit);
    let growth = growth(unit);

    let mut stage = 0;
    if fluency.met {
        stage = 1;
        reasons.push(fluency.text.clone());
        if let Ok(met) = &process {
            stage = 2;
            reasons.extend(met.iter().cloned());
            if let Ok(met) = &growth {
                stage = 3;
                reasons.extend(met.iter().cloned());
            }
        }
    }
    let missing = match stage {
        0 => {
            note_held_back(&mut reasons, "AI fluency", [&process, &growth]);
            Some(Missing { next: fluency.next, detail: fluency.text })
        }
        1 => {
            note_held_back(&mut reasons, "process AI", [&growth]);
            process.err()
        }
        2 => growth.err(),
        _ => None,
    };
    let (next_step, missing) = missing.map(|m| (m.next, m.detail)).unzip();
    UnitStage { unit: unit.unit.clone(), stage, reasons, missing, next_step }
}

/// Records evidence of a higher stage that does not count yet because `blocker` is not reached.
fn note_held_back<const N: usize>(
    reasons: &mut Vec<String>,
    blocker: &str,
    higher: [&Result<Vec<String>, Missing>; N],
) {
    for met in higher.into_iter().filter_map(|r| r.as_ref().ok()) {
        for text in met {
            reasons.push(format!("Present but not counted until the unit reaches {blocker}: {text}"));
        }
    }
}

struct Fluency {
    met: bool,
    /// What was found, as a reason when met and as what is missing when not.
    text: String,
    /// What to do when not met, in one sentence.
    next: String,
}

fn fluency(unit: &UnitEvidence, rules: &AdoptionRules) -> Fluency {
    let people = unit.people();
    let active = unit.active_ai_users_4w;
    let bar = pct(rules.fluency_bar);
    let basis = if unit.headcount.is_some_and(|h| h > 0) {
        "people counted by headcount".to_owned()
    } else {
        "people counted as the distinct users seen in the unit's events over the last 12 weeks (no headcount given)"
            .to_owned()
    };
    if people == 0 {
        return Fluency {
            met: false,
            text: format!(
                "AI fluency needs {bar} of the unit's people active with AI suggestions over the last 4 weeks; \
                 the unit has no headcount and no users seen in 12 weeks, so there is no share to measure"
            ),
            next: "Give the unit a headcount, or send interaction events that name it.".to_owned(),
        };
    }
    let share = active as f64 / people as f64;
    let met = share + EPSILON >= rules.fluency_bar;
    let mut found =
        format!("{active} of {people} people ({}) were shown AI suggestions in the last 4 weeks ({basis})", pct(share));
    // A headcount below the people the events show is out of date (or names the wrong unit); say so
    // rather than report a share that may pass 100 %.
    if unit.headcount.is_some_and(|h| h > 0 && h < unit.people_seen_12w) {
        found.push_str(&format!(
            "; more people were seen in its events over 12 weeks ({}) than its headcount, which may be out of date",
            unit.people_seen_12w
        ));
    }
    let needed = ((rules.fluency_bar * people as f64) - EPSILON).ceil().max(0.0) as u64;
    let more = needed.saturating_sub(active as u64).max(1);
    let text = if met {
        format!("AI fluency: {found}, at or above the bar of {bar}")
    } else {
        format!(
            "AI fluency needs {bar} of people active with AI suggestions over the last 4 weeks: {found}; {more} more needed"
        )
    };
    let next = format!(
        "{more} more of its {people} people need to work with AI suggestions to reach the {bar} bar{}.",
        if unit.headcount.is_some_and(|h| h > 0) { "" } else { " (counting only people seen in events)" }
    );
    Fluency { met, text, next }
}

/// The stage-2 evidence: `Ok` with one reason per qualifying key result, or `Err` with what is missing
/// and the nearest misses.
fn process(unit: &UnitEvidence) -> Result<Vec<String>, Missing> {
    let mut met = Vec::new();
    let mut near = Vec::new();
    // The nearest miss as something to do, the most actionable first: a business key result whose metric
    // went stale, then one that no metric feeds, then a live metric feeding a key result in other units.
    let mut nearest: Option<(u8, String)> = None;
    let mut consider = |rank: u8, step: String| {
        if nearest.as_ref().is_none_or(|(r, _)| rank < *r) {
            nearest = Some((rank, step));
        }
    };
    for lp in &unit.loops {
        for kr in &lp.key_results {
            let dimension = measure_dimension(&kr.unit_of_measure);
            let business = matches!(dimension, Dimension::Money | Dimension::Time);
            let what = format!("loop {}: key result “{}” ({})", lp.key, kr.title, unit_label(&kr.unit_of_measure));
            match (&kr.metric, business) {
                (Some(metric), true) if !kr.metric_stale => met
                    .push(format!("Process AI: {what} is measured in {dimension} and fed by the live metric {metric}")),
                (Some(metric), true) => {
                    near.push(format!("{what} is in {dimension} but its metric {metric} is stale"));
                    consider(0, format!("Bring metric {metric} up to date: it feeds key result “{}”.", kr.title));
                }
                (None, true) => {
                    near.push(format!("{what} is in {dimension} but no metric feeds it"));
                    consider(1, format!("Feed key result “{}” from a live metric of loop {}.", kr.title, lp.key));
                }
                (Some(metric), false) if !kr.metric_stale => {
                    near.push(format!("{what} is fed by {metric} but measured as {dimension}, not money or time"));
                    consider(2, format!("Give loop {} a key result measured in money or time.", lp.key));
                }
                _ => {}
            }
        }
    }
    if !met.is_empty() {
        return Ok(met);
    }
    let mut text = "Process AI needs a key result of one of the unit's loops measured in money or time \
                    (such as USD, €, ms, minutes, hours, days) and fed by a live metric"
        .to_owned();
    let next = if unit.loops.is_empty() {
        text.push_str("; the unit has no loops");
        "Give the unit a loop: a squad of the unit owning a loop's goal, or a loop whose events name the unit."
            .to_owned()
    } else {
        if !near.is_empty() {
            text.push_str(&format!("; closest: {}", near.join("; ")));
        }
        nearest.map(|(_, step)| step).unwrap_or_else(|| {
            "Tie a key result measured in money or time to one of the unit's loops, fed by a live metric.".to_owned()
        })
    };
    Err(Missing { next, detail: text })
}

/// The stage-3 evidence, shaped like [`process`]'s.
fn growth(unit: &UnitEvidence) -> Result<Vec<String>, Missing> {
    let mut met = Vec::new();
    let mut near = Vec::new();
    // A lift whose interval includes zero is closer than one that is not positive: it may only need more
    // evidence.
    let mut nearest: Option<(u8, String)> = None;
    for lp in &unit.loops {
        for lift in &lp.lifts {
            if lift.metric_kind == LiftMetric::Other || !(lift.low.is_finite() && lift.high.is_finite()) {
                continue;
            }
            let what = format!(
                "loop {}: {} lift{}{}, 95 % interval {} to {} ({})",
                lp.key,
                lift_label(lift.metric_kind),
                lift.metric.as_ref().map(|m| format!(" on metric {m}")).unwrap_or_default(),
                lift.unit.as_ref().map(|u| format!(" (the customers of {u})")).unwrap_or_default(),
                signed(lift.low),
                signed(lift.high),
                match &lift.around {
                    Some(change) => format!("{} around {change}", source_label(&lift.source)),
                    None => source_label(&lift.source),
                }
            );
            let name = lift_label(lift.metric_kind);
            if lift.low > 0.0 && lift.high >= lift.low {
                met.push(format!("Growth inflection: {what}, wholly above zero"));
            } else if lift.high <= 0.0 {
                near.push(format!("{what} is not positive"));
                if nearest.is_none() {
                    nearest = Some((1, format!("The {name} lift of loop {} is not positive yet.", lp.key)));
                }
            } else {
                near.push(format!("{what} includes zero"));
                if nearest.as_ref().is_none_or(|(rank, _)| *rank > 0) {
                    nearest = Some((
                        0,
                        format!("The {name} lift of loop {} includes zero: it needs more evidence to count.", lp.key),
                    ));
                }
            }
        }
    }
    if !met.is_empty() {
        return Ok(met);
    }
    let mut text = "Growth inflection needs an LTV or retention lift attributable to one of the unit's loops, \
                    from an experiment or a before/after comparison, whose 95 % interval lies wholly above zero"
        .to_owned();
    if !near.is_empty() {
        text.push_str(&format!("; measured so far: {}", near.join("; ")));
    }
    let next = nearest.map(|(_, step)| step).unwrap_or_else(|| {
        "Measure an LTV or retention lift of one of the unit's loops, by an experiment or around a promotion."
            .to_owned()
    });
    Err(Missing { next, detail: text })
}

/// Each unit's evidence together with that of all its sub-units, in the order given.
///
/// A parent's stage is computed from this union, not taken as the best of its sub-units' stages: a
/// division where one small team is fluent is not a fluent division. People and active users are summed
/// (each unit counts its people as [`UnitEvidence::people`] does: its headcount, or the users seen in
/// its events where it has none), and loops are pooled. A person counted in two units would be counted
/// twice; units partition people, so this does not arise. A `parent` naming no unit in `units` is
/// ignored, and a cycle of parents (which the store forbids) cannot make this loop forever.
pub fn roll_up(units: &[UnitEvidence]) -> Vec<UnitEvidence> {
    let mut children: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, u) in units.iter().enumerate() {
        if let Some(parent) = &u.parent {
            children.entry(parent.as_str()).or_default().push(i);
        }
    }
    units
        .iter()
        .enumerate()
        .map(|(root, unit)| {
            let mut seen = BTreeSet::from([root]);
            let mut queue = vec![root];
            let mut subtree = Vec::new();
            while let Some(i) = queue.pop() {
                subtree.push(i);
                for &child in children.get(units[i].unit.as_str()).into_iter().flatten() {
                    if seen.insert(child) {
                        queue.push(child);
                    }
                }
            }
            subtree.sort_unstable();
            let members: Vec<&UnitEvidence> = subtree.iter().map(|&i| &units[i]).collect();
            let any_headcount = members.iter().any(|u| u.headcount.is_some_and(|h| h > 0));
            UnitEvidence {
                unit: unit.unit.clone(),
                parent: unit.parent.clone(),
                headcount: any_headcount.then(|| members.iter().map(|u| u.people()).sum()),
                people_seen_12w: members.iter().map(|u| u.people_seen_12w).sum(),
                active_ai_users_4w: members.iter().map(|u| u.active_ai_users_4w).sum(),
                loops: members.iter().flat_map(|u| u.loops.iter().cloned()).collect(),
            }
        })
        .collect()
}

/// Classifies every unit on its [`roll_up`], saying which sub-units' evidence a verdict includes.
pub fn classify_all(units: &[UnitEvidence], rules: &AdoptionRules) -> Vec<UnitStage> {
    roll_up(units)
        .iter()
        .map(|rolled| {
            let mut stage = classify(rolled, rules);
            let subs: Vec<&str> = descendants(units, &rolled.unit);
            if !subs.is_empty() {
                stage.reasons.insert(
                    0,
                    format!(
                        "Includes the evidence of its sub-units ({}): people and active users summed, loops pooled",
                        subs.join(", ")
                    ),
                );
            }
            stage
        })
        .collect()
}

fn descendants<'a>(units: &'a [UnitEvidence], root: &str) -> Vec<&'a str> {
    let mut found: Vec<&str> = Vec::new();
    let mut frontier = vec![root];
    while let Some(name) = frontier.pop() {
        for u in units.iter().filter(|u| u.parent.as_deref() == Some(name)) {
            if u.unit != root && !found.contains(&u.unit.as_str()) {
                found.push(&u.unit);
                frontier.push(&u.unit);
            }
        }
    }
    found
}

string_enum!(
    /// The failure modes the dashboard watches for: AI for AI's sake (loops or slope bets not tied to a
    /// measured outcome), too many simultaneous projects (more goals at once than a squad can carry, or
    /// loops nobody owns), no measurement (loops whose evals, metrics or key results have gone quiet) and
    /// being beholden to one technology (every champion model rests on one base model or provider).
    WarningKind {
        AiForAisSake => "ai-for-ais-sake",
        TooManyProjects => "too-many-projects",
        NoMeasurement => "no-measurement",
        OneTechnology => "one-technology",
    }
);

/// What a warning is about, so the dashboard can link to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", content = "key", rename_all = "kebab-case")]
pub enum Subject {
    Organisation,
    Unit(String),
    Squad(String),
    Loop(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Warning {
    pub kind: WarningKind,
    pub title: String,
    /// The facts behind the warning, one a line.
    pub evidence: Vec<String>,
    pub subject: Subject,
}

/// Runs every failure-mode detector over the organisation, in the order of [`WarningKind`], and within
/// a kind in the order the evidence lists units, loops and goals.
///
/// - AI for AI's sake: a loop none of whose key results is fed by a metric (or that has none), and an
///   open (planned or active) slope-bet goal without a key result or without a metric. A bet against
///   current thinking that nothing measures can never be killed on evidence.
/// - Too many simultaneous projects: a squad with more active goals than
///   `rules.max_active_goals_per_squad`, and a loop with no owner squad.
/// - No measurement: a loop never evaluated or last evaluated more than `rules.eval_max_age_days` ago,
///   with a stale metric, or with a key result without data; one warning per loop with all its findings.
/// - Beholden to one technology: two or more loops have champions and all come from one base model, or
///   all from one provider (the part of the base before `/`).
///
/// A loop listed under two units is judged once.
pub fn detect(org: &OrgEvidence, rules: &AdoptionRules, now: DateTime<Utc>) -> Vec<Warning> {
    let mut loops: Vec<&LoopEvidence> = Vec::new();
    for lp in org.units.iter().flat_map(|u| &u.loops) {
        if !loops.iter().any(|seen| seen.key == lp.key) {
            loops.push(lp);
        }
    }
    let mut warnings = Vec::new();
    ai_for_ais_sake(&loops, &org.goals, &mut warnings);
    too_many_projects(&loops, &org.goals, rules, &mut warnings);
    no_measurement(&loops, rules, now, &mut warnings);
    one_technology(&loops, &mut warnings);
    warnings
}

fn ai_for_ais_sake(loops: &[&LoopEvidence], goals: &[GoalEvidence], out: &mut Vec<Warning>) {
    for lp in loops {
        let evidence = if lp.key_results.is_empty() {
            vec![format!("Loop {} serves no key result", lp.key)]
        } else if lp.key_results.iter().all(|kr| kr.metric.is_none()) {
            lp.key_results
                .iter()
                .map(|kr| format!("Key result “{}” of loop {} is fed by no metric", kr.title, lp.key))
                .collect()
        } else {
            continue;
        };
        out.push(Warning {
            kind: WarningKind::AiForAisSake,
            title: format!("AI for AI's sake: loop {} is not tied to a measured outcome", lp.key),
            evidence,
            subject: Subject::Loop(lp.key.clone()),
        });
    }
    let open = |g: &&GoalEvidence| matches!(g.status, GoalStatus::Planned | GoalStatus::Active);
    for goal in goals.iter().filter(open).filter(|g| g.investment == Investment::Slope) {
        let mut evidence = Vec::new();
        if goal.key_result.is_none() {
            evidence.push(format!("Slope bet “{}” of squad {} ladders up to no key result", goal.title, goal.squad));
        }
        if goal.metric.is_none() {
            evidence.push(format!(
                "Slope bet “{}” of squad {} is fed by no metric, so its kill criteria cannot be judged on data",
                goal.title, goal.squad
            ));
        }
        if !evidence.is_empty() {
            out.push(Warning {
                kind: WarningKind::AiForAisSake,
                title: format!("AI for AI's sake: slope bet “{}” has no measured outcome", goal.title),
                evidence,
                subject: Subject::Squad(goal.squad.clone()),
            });
        }
    }
}

fn too_many_projects(loops: &[&LoopEvidence], goals: &[GoalEvidence], rules: &AdoptionRules, out: &mut Vec<Warning>) {
    let mut per_squad: Vec<(&str, Vec<&str>)> = Vec::new();
    for goal in goals.iter().filter(|g| g.status == GoalStatus::Active) {
        match per_squad.iter_mut().find(|(squad, _)| *squad == goal.squad) {
            Some((_, titles)) => titles.push(&goal.title),
            None => per_squad.push((&goal.squad, vec![&goal.title])),
        }
    }
    for (squad, titles) in per_squad {
        if titles.len() > rules.max_active_goals_per_squad {
            out.push(Warning {
                kind: WarningKind::TooManyProjects,
                title: format!(
                    "Too many simultaneous projects: squad {squad} has {} active goals (limit {})",
                    titles.len(),
                    rules.max_active_goals_per_squad
                ),
                evidence: titles.iter().map(|t| format!("Active goal “{t}”")).collect(),
                subject: Subject::Squad(squad.to_owned()),
            });
        }
    }
    for lp in loops.iter().filter(|lp| lp.owner_squad.as_deref().is_none_or(|s| s.trim().is_empty())) {
        out.push(Warning {
            kind: WarningKind::TooManyProjects,
            title: format!("Too many simultaneous projects: loop {} has no owner squad", lp.key),
            evidence: vec![format!("No squad owns loop {}, so no one answers for its results", lp.key)],
            subject: Subject::Loop(lp.key.clone()),
        });
    }
}

fn no_measurement(loops: &[&LoopEvidence], rules: &AdoptionRules, now: DateTime<Utc>, out: &mut Vec<Warning>) {
    for lp in loops {
        let mut evidence = Vec::new();
        match lp.last_eval_at {
            None => evidence.push(format!("Loop {}: the champion has never been evaluated", lp.key)),
            Some(at) if now - at > Duration::days(rules.eval_max_age_days) => evidence.push(format!(
                "Loop {}: the champion was last evaluated {} days ago, on {} (limit {} days)",
                lp.key,
                (now - at).num_days(),
                at.date_naive(),
                rules.eval_max_age_days
            )),
            Some(_) => {}
        }
        for kr in &lp.key_results {
            if let Some(metric) = kr.metric.as_ref().filter(|_| kr.metric_stale) {
                evidence.push(format!("Metric {metric} feeding key result “{}” is stale", kr.title));
            }
            if !kr.has_data {
                evidence.push(format!("Key result “{}” has no data yet", kr.title));
            }
        }
        if !evidence.is_empty() {
            out.push(Warning {
                kind: WarningKind::NoMeasurement,
                title: format!("No measurement: loop {} is not being measured", lp.key),
                evidence,
                subject: Subject::Loop(lp.key.clone()),
            });
        }
    }
}

fn one_technology(loops: &[&LoopEvidence], out: &mut Vec<Warning>) {
    let champions: Vec<(&str, String)> = loops
        .iter()
        .filter_map(|lp| {
            let base = lp.champion_base.as_deref()?.trim();
            (!base.is_empty()).then(|| (lp.key.as_str(), base.to_lowercase()))
        })
        .collect();
    if champions.len() < 2 {
        return;
    }
    let provider = |base: &str| base.split_once('/').map(|(p, _)| p.to_owned());
    let first = &champions[0].1;
    let title = if champions.iter().all(|(_, b)| b == first) {
        format!("Beholden to one technology: all {} champion models are built on {first}", champions.len())
    } else if let Some(p) = provider(first).filter(|p| champions.iter().all(|(_, b)| provider(b).as_ref() == Some(p))) {
        format!("Beholden to one technology: all {} champion models come from {p}", champions.len())
    } else {
        return;
    };
    let originals = loops.iter().filter_map(|lp| Some((lp.key.as_str(), lp.champion_base.as_deref()?.trim())));
    out.push(Warning {
        kind: WarningKind::OneTechnology,
        title,
        evidence: originals
            .filter(|(_, base)| !base.is_empty())
            .map(|(key, base)| format!("Loop {key}: the champion is fine-tuned from {base}"))
            .collect(),
        subject: Subject::Organisation,
    });
}

/// How many units were at each stage on one date, for the dashboard's chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageCounts {
    pub on: NaiveDate,
    /// `counts[s]` is the number of units at stage `s`, for s in 0..=3.
    pub counts: [u32; 4],
}

/// Counts units per stage in each dated snapshot, in date order (snapshots on the same date keep their
/// given order). Every unit in a snapshot is counted, so pass one level of the tree (for example the
/// top-level units, or the leaves) to avoid counting a division and its teams together. A stage above 3
/// is counted as 3.
pub fn stage_trend(snapshots: &[(NaiveDate, Vec<UnitStage>)]) -> Vec<StageCounts> {
    let mut trend: Vec<StageCounts> = snapshots
        .iter()
        .map(|(on, stages)| {
            let mut counts = [0; 4];
            for s in stages {
                counts[usize::from(s.stage.min(3))] += 1;
            }
            StageCounts { on: *on, counts }
        })
        .collect();
    trend.sort_by_key(|c| c.on);
    trend
}

/// One rule of the dashboard, in the words the dashboard states it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleStatement {
    pub name: String,
    pub rule: String,
}

/// The rules of [`classify`], [`roll_up`] and [`detect`] in words, with `rules`' settings filled in, so
/// that the dashboard states the rule each verdict was held to.
pub fn rule_statements(rules: &AdoptionRules) -> Vec<RuleStatement> {
    let statement = |name: &str, rule: String| RuleStatement { name: name.to_owned(), rule };
    vec![
        statement(
            "Stage 1: AI fluency",
            format!(
                "At least {} of the unit's people were shown AI suggestions in the last 4 weeks. Its people are its \
                 headcount when one is given, else the distinct users seen in its interaction events over the last \
                 12 weeks.",
                pct(rules.fluency_bar)
            ),
        ),
        statement(
            "Stage 2: process AI",
            "AI fluency, and a key result of one of the unit's loops that is measured in money or time (such as USD, \
             €, ms, minutes, hours or days) and fed by a live metric, one whose newest data is within its freshness \
             limit."
                .to_owned(),
        ),
        statement(
            "Stage 3: growth inflection",
            "Process AI, and a lift in lifetime value or retention attributed to one of the unit's loops, whose 95 % \
             interval lies wholly above zero: from an experiment; from a before/after comparison of the loop's own \
             metric around its latest promotion; or, for the lifetime value of the unit's own customers, from a \
             difference in differences around the unit's first event in the loop against the units that had not \
             taken it up yet. The weekly points of a series are not independent, so the last two intervals are a \
             guide rather than an experiment's."
                .to_owned(),
        ),
        statement(
            "Units with sub-units",
            "A unit is judged on the evidence of its whole subtree: people and active users summed, loops pooled. \
             Its stage is not the best of its sub-units' stages."
                .to_owned(),
        ),
        statement(
            "Warning: AI for AI's sake",
            "A loop none of whose key results is fed by a metric (or that serves none), or an open slope bet without \
             a key result or a metric."
                .to_owned(),
        ),
        statement(
            "Warning: too many simultaneous projects",
            format!(
                "A squad with more than {} active goals at once, or a loop that no squad owns.",
                rules.max_active_goals_per_squad
            ),
        ),
        statement(
            "Warning: no measurement",
            format!(
                "A loop whose champion was never evaluated or was last evaluated more than {} days ago, with a stale \
                 metric, or with a key result that has no data.",
                rules.eval_max_age_days
            ),
        ),
        statement(
            "Warning: beholden to one technology",
            "Two or more loops have champion models and all are fine-tuned from one base model, or all from one \
             provider."
                .to_owned(),
        ),
    ]
}

/// One unit on the dashboard: its stage with the reasons and what the next stage needs (see
/// [`UnitStage`]), and the evidence it was judged on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnitReport {
    pub unit: String,
    /// 0 (not yet), 1 (AI fluency), 2 (process AI) or 3 (growth inflection).
    pub stage: u8,
    /// The stage's name, from [`STAGE_LABELS`].
    pub stage_label: String,
    pub reasons: Vec<String>,
    pub missing: Option<String>,
    /// What would move the unit to the next stage, in one sentence (see [`UnitStage::next_step`]).
    pub next_step: Option<String>,
    /// The unit's own evidence, without its sub-units' (their evidence is listed under them).
    pub evidence: UnitEvidence,
}

impl UnitReport {
    pub fn new(stage: UnitStage, evidence: UnitEvidence) -> UnitReport {
        UnitReport {
            stage_label: STAGE_LABELS[usize::from(stage.stage.min(3))].to_owned(),
            unit: stage.unit,
            stage: stage.stage,
            reasons: stage.reasons,
            missing: stage.missing,
            next_step: stage.next_step,
            evidence,
        }
    }
}

/// The exec adoption dashboard: every unit's stage with its evidence, the failure-mode warnings, the
/// trend of stages over recent weeks, and the rules all of it was judged by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdoptionReport {
    /// When the evidence was gathered.
    pub as_of: DateTime<Utc>,
    /// The season whose key results and squad goals were read; `None` when there is no season.
    pub season: Option<String>,
    pub rules: AdoptionRules,
    /// Which version of the organisation's rules those are, who set them and when (see
    /// [`AdoptionSettings`]).
    pub rules_version: crate::Version,
    pub rules_set_by: Option<String>,
    pub rules_set_at: Option<DateTime<Utc>>,
    /// The rules in words.
    pub statements: Vec<RuleStatement>,
    pub units: Vec<UnitReport>,
    pub warnings: Vec<Warning>,
    /// Units per stage at each of the last weekly dates, oldest first.
    pub trend: Vec<StageCounts>,
    /// How the trend was computed and what it approximates.
    pub trend_method: String,
}

fn pct(share: f64) -> String {
    format!("{:.0} %", share * 100.0)
}

fn signed(v: f64) -> String {
    let text = crate::measure::fmt_number(v);
    if v > 0.0 { format!("+{text}") } else { text }
}

fn unit_label(unit: &str) -> &str {
    if unit.trim().is_empty() { "no unit" } else { unit.trim() }
}

fn lift_label(kind: LiftMetric) -> &'static str {
    match kind {
        LiftMetric::Ltv => "LTV",
        LiftMetric::Retention => "retention",
        LiftMetric::Other => "other",
    }
}

fn source_label(source: &str) -> String {
    match source.trim() {
        BEFORE_AFTER => "before/after comparison".to_owned(),
        DIFF_IN_DIFF => "difference in differences against the other units' customers".to_owned(),
        experiment => format!("experiment {experiment}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2027-03-01T09:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn rules() -> AdoptionRules {
        AdoptionRules::default()
    }

    fn kr(title: &str, unit: &str, metric: Option<&str>, stale: bool) -> KrEvidence {
        KrEvidence {
            title: title.into(),
            unit_of_measure: unit.into(),
            metric: metric.map(Into::into),
            metric_stale: stale,
            has_data: true,
            unit: None,
        }
    }

    fn lift(kind: LiftMetric, low: f64, high: f64) -> LiftEvidence {
        LiftEvidence {
            metric_kind: kind,
            low,
            high,
            source: "shorter-drafts".into(),
            metric: None,
            unit: None,
            around: None,
        }
    }

    /// A loop that is owned, evaluated last week, and serves a time key result fed by a live metric.
    fn good_loop(key: &str) -> LoopEvidence {
        LoopEvidence {
            key: key.into(),
            owner_squad: Some("drafts".into()),
            key_results: vec![kr("Cut handling time", "min", Some("handling-time"), false)],
            lifts: vec![],
            last_eval_at: Some(now() - Duration::days(7)),
            champion_base: None,
        }
    }

    fn unit(active: u32, headcount: Option<u32>, loops: Vec<LoopEvidence>) -> UnitEvidence {
        UnitEvidence {
            unit: "Clinical".into(),
            parent: None,
            headcount,
            people_seen_12w: 40,
            active_ai_users_4w: active,
            loops,
        }
    }

    #[test]
    fn units_of_measure_are_classified_by_their_numerator() {
        for (raw, dim) in [
            ("USD", Dimension::Money),
            ("$", Dimension::Money),
            ("€", Dimension::Money),
            ("EUR/month", Dimension::Money),
            ("kUSD", Dimension::Money),
            ("k€", Dimension::Money),
            ("$ per user", Dimension::Money),
            ("ms", Dimension::Time),
            ("s", Dimension::Time),
            ("min", Dimension::Time),
            ("Hours", Dimension::Time),
            ("days", Dimension::Time),
            ("person-hours", Dimension::Time),
            ("ms/request", Dimension::Time),
            ("%", Dimension::Ratio),
            ("pp", Dimension::Ratio),
            ("% of users", Dimension::Ratio),
            ("acceptance rate", Dimension::Ratio),
            ("users", Dimension::Count),
            ("tickets/day", Dimension::Count),
            ("#", Dimension::Count),
            ("", Dimension::Other),
            ("NPS", Dimension::Other),
            ("centimetres", Dimension::Other),
            ("mEUR", Dimension::Money),
            ("µs", Dimension::Time),
            ("score", Dimension::Other),
        ] {
            assert_eq!(measure_dimension(raw), dim, "{raw:?}");
        }
    }

    #[test]
    fn fluency_is_met_at_the_bar_and_not_just_below() {
        let at = classify(&unit(20, None, vec![]), &rules());
        assert_eq!(at.stage, 1, "20 of 40 seen users is 50 %");
        assert!(at.reasons[0].contains("20 of 40 people (50 %)") && at.reasons[0].contains("12 weeks"), "{at:?}");
        let below = classify(&unit(19, None, vec![]), &rules());
        assert_eq!(below.stage, 0);
        let missing = below.missing.unwrap();
        assert!(missing.contains("19 of 40 people (48 %)") && missing.contains("1 more needed"), "{missing}");
        assert_eq!(
            below.next_step.as_deref(),
            Some(
                "1 more of its 40 people need to work with AI suggestions to reach the 50 % bar \
                 (counting only people seen in events)."
            )
        );
        // A headcount, when given, is the denominator instead of the users seen.
        let counted = classify(&unit(20, Some(50), vec![]), &rules());
        assert_eq!(counted.stage, 0);
        assert!(counted.missing.unwrap().contains("20 of 50 people (40 %) were shown AI suggestions"));
        assert_eq!(
            counted.next_step.as_deref(),
            Some("5 more of its 50 people need to work with AI suggestions to reach the 50 % bar.")
        );
        // A headcount below the people seen is used, and flagged as possibly out of date.
        let small = classify(&unit(20, Some(30), vec![]), &rules());
        assert_eq!(small.stage, 1, "20 of 30");
        assert!(small.reasons[0].contains("more people were seen in its events over 12 weeks (40)"), "{small:?}");
        let large = classify(&unit(20, Some(50), vec![]), &rules()).missing.unwrap();
        assert!(!large.contains("more people were seen"), "a headcount above the people seen is plausible: {large}");
        let stricter = AdoptionRules { fluency_bar: 0.6, ..rules() };
        assert_eq!(classify(&unit(23, None, vec![]), &stricter).stage, 0);
        assert_eq!(classify(&unit(24, None, vec![]), &stricter).stage, 1);
    }

    #[test]
    fn a_unit_without_people_has_no_share() {
        let empty = UnitEvidence { unit: "New".into(), ..Default::default() };
        let stage = classify(&empty, &rules());
        assert_eq!(stage.stage, 0);
        assert!(stage.missing.unwrap().contains("no share to measure"));
        assert_eq!(
            stage.next_step.as_deref(),
            Some("Give the unit a headcount, or send interaction events that name it.")
        );
    }

    #[test]
    fn process_ai_needs_money_or_time_fed_by_a_live_metric() {
        let with = |kr: KrEvidence| unit(30, None, vec![LoopEvidence { key_results: vec![kr], ..good_loop("notes") }]);
        let time = classify(&with(kr("Cut handling time", "min", Some("handling-time"), false)), &rules());
        assert_eq!(time.stage, 2);
        assert!(time.reasons[1].contains("measured in time") && time.reasons[1].contains("handling-time"), "{time:?}");
        let money = classify(&with(kr("Cost per note", "USD", Some("cost"), false)), &rules());
        assert_eq!(money.stage, 2);

        let ratio = classify(&with(kr("Acceptance", "%", Some("acceptance"), false)), &rules());
        assert_eq!(ratio.stage, 1);
        assert!(ratio.missing.unwrap().contains("measured as ratio, not money or time"));
        assert_eq!(ratio.next_step.as_deref(), Some("Give loop notes a key result measured in money or time."));
        let stale = classify(&with(kr("Cut handling time", "min", Some("handling-time"), true)), &rules());
        assert_eq!(stale.stage, 1);
        assert!(stale.missing.unwrap().contains("handling-time is stale"));
        assert_eq!(
            stale.next_step.as_deref(),
            Some("Bring metric handling-time up to date: it feeds key result “Cut handling time”.")
        );
        let unfed = classify(&with(kr("Cut handling time", "min", None, false)), &rules());
        assert_eq!(unfed.stage, 1);
        assert!(unfed.missing.unwrap().contains("no metric feeds it"));
        assert_eq!(
            unfed.next_step.as_deref(),
            Some("Feed key result “Cut handling time” from a live metric of loop notes.")
        );
        // A stale business metric is the nearest miss even when listed after a ratio key result.
        let both = unit(
            30,
            None,
            vec![LoopEvidence {
                key_results: vec![
                    kr("Acceptance", "%", Some("acceptance"), false),
                    kr("Cut handling time", "min", Some("handling-time"), true),
                ],
                ..good_loop("notes")
            }],
        );
        assert!(classify(&both, &rules()).next_step.unwrap().starts_with("Bring metric handling-time up to date"));
        let alone = classify(&unit(30, None, vec![]), &rules());
        assert!(alone.next_step.unwrap().starts_with("Give the unit a loop"));
    }

    #[test]
    fn higher_evidence_does_not_count_without_the_stage_below() {
        // Process evidence but fluency below the bar: the unit stays at 0, and the evidence is reported.
        let stalled = classify(&unit(19, None, vec![good_loop("notes")]), &rules());
        assert_eq!(stalled.stage, 0);
        assert!(stalled.reasons.iter().any(|r| r.starts_with("Present but not counted") && r.contains("Process AI")));
        // A growth lift with fluency but no process key result: the unit stays at 1.
        let lifted = LoopEvidence {
            key_results: vec![kr("Acceptance", "%", Some("acceptance"), false)],
            lifts: vec![lift(LiftMetric::Retention, 0.01, 0.03)],
            ..good_loop("notes")
        };
        let stage = classify(&unit(30, None, vec![lifted]), &rules());
        assert_eq!(stage.stage, 1);
        assert!(stage.reasons.iter().any(|r| r.contains("Growth inflection")), "{stage:?}");
    }

    #[test]
    fn growth_needs_a_positive_ltv_or_retention_lift_that_excludes_zero() {
        let with = |lifts: Vec<LiftEvidence>| unit(30, None, vec![LoopEvidence { lifts, ..good_loop("notes") }]);
        let grown = classify(&with(vec![lift(LiftMetric::Retention, 0.008, 0.034)]), &rules());
        assert_eq!(grown.stage, 3);
        assert_eq!(grown.missing, None);
        assert_eq!(grown.next_step, None);
        assert!(
            grown.reasons[2].contains("retention lift, 95 % interval +0.008 to +0.034 (experiment shorter-drafts)")
        );
        let ltv = LiftEvidence { source: BEFORE_AFTER.into(), ..lift(LiftMetric::Ltv, 3.0, 9.0) };
        let by_ltv = classify(&with(vec![ltv]), &rules());
        assert_eq!(by_ltv.stage, 3);
        assert!(by_ltv.reasons[2].contains("before/after comparison"));
        let of_unit = LiftEvidence {
            metric: Some("clinical-ltv".into()),
            unit: Some("Clinical".into()),
            source: DIFF_IN_DIFF.into(),
            around: Some("Clinical's first event in the loop on 2027-01-04".into()),
            ..lift(LiftMetric::Ltv, 3.0, 9.0)
        };
        let by_unit = classify(&with(vec![of_unit.clone()]), &rules());
        assert!(
            by_unit.reasons[2].contains(
                "LTV lift on metric clinical-ltv (the customers of Clinical), 95 % interval +3 to +9 (difference in \
                 differences against the other units' customers around Clinical's first event in the loop on \
                 2027-01-04)"
            ),
            "{:?}",
            by_unit.reasons
        );
        // The same loop seen by another unit it serves has no lift of its own.
        let mut seen =
            LoopEvidence { lifts: vec![of_unit, lift(LiftMetric::Retention, -0.01, 0.02)], ..good_loop("notes") };
        assert_eq!(seen.seen_by("Clinical").lifts.len(), 2);
        let platform = seen.seen_by("Platform");
        assert_eq!(platform.lifts.len(), 1, "only the loop-wide retention lift");
        assert_eq!(classify(&unit(30, None, vec![platform]), &rules()).stage, 2);
        // Nor a key result of the Clinical customers' value.
        for kr in &mut seen.key_results {
            kr.unit = Some("Clinical".into());
        }
        assert!(seen.seen_by("Platform").key_results.is_empty());
        assert_eq!(seen.seen_by("Clinical").key_results.len(), seen.key_results.len());
        assert_eq!(classify(&unit(30, None, vec![seen.seen_by("Platform")]), &rules()).stage, 1);

        let zero = classify(&with(vec![lift(LiftMetric::Retention, -0.005, 0.03)]), &rules());
        assert_eq!(zero.stage, 2);
        assert!(zero.missing.unwrap().contains("includes zero"));
        assert_eq!(
            zero.next_step.as_deref(),
            Some("The retention lift of loop notes includes zero: it needs more evidence to count.")
        );
        let negative = classify(&with(vec![lift(LiftMetric::Ltv, -9.0, -3.0)]), &rules());
        assert_eq!(negative.stage, 2);
        assert!(negative.missing.unwrap().contains("is not positive"));
        assert_eq!(negative.next_step.as_deref(), Some("The LTV lift of loop notes is not positive yet."));
        let touching = classify(&with(vec![lift(LiftMetric::Retention, 0.0, 0.03)]), &rules());
        assert_eq!(touching.stage, 2, "an interval that reaches zero does not exclude it");
        let other = classify(&with(vec![lift(LiftMetric::Other, 0.1, 0.3)]), &rules());
        assert_eq!(other.stage, 2, "a lift in acceptance is not growth");
    }

    #[test]
    fn parents_are_judged_on_the_union_of_their_subtree() {
        let division =
            UnitEvidence { unit: "Care".into(), headcount: Some(10), active_ai_users_4w: 0, ..Default::default() };
        let team_a = UnitEvidence {
            unit: "Care/Notes".into(),
            parent: Some("Care".into()),
            headcount: Some(20),
            active_ai_users_4w: 18,
            loops: vec![good_loop("notes")],
            ..Default::default()
        };
        let team_b = UnitEvidence {
            unit: "Care/Notes/Night".into(),
            parent: Some("Care/Notes".into()),
            people_seen_12w: 10,
            active_ai_users_4w: 2,
            ..Default::default()
        };
        let other = UnitEvidence { unit: "Finance".into(), people_seen_12w: 5, ..Default::default() };
        let units = [division, team_a, team_b, other];
        let rolled = roll_up(&units);
        assert_eq!(rolled[0].people(), 40, "10 + 20 by headcount + 10 seen");
        assert_eq!(rolled[0].active_ai_users_4w, 20);
        assert_eq!(rolled[0].loops.len(), 1);
        assert_eq!(rolled[1].people(), 30);
        assert_eq!(rolled[3], units[3]);

        let stages = classify_all(&units, &rules());
        // 20 of 40 across the division: fluent, with the team's loop making it process AI.
        assert_eq!(stages[0].stage, 2);
        assert!(stages[0].reasons[0].contains("Care/Notes, Care/Notes/Night"), "{:?}", stages[0]);
        // The team with its sub-team: 20 of 30.
        assert_eq!(stages[1].stage, 2);
        assert_eq!(stages[2].stage, 0);
        // Not the best sub-unit's stage: a team with 18 of its 20 people active does not make a division
        // of 50 fluent.
        let big = UnitEvidence { headcount: Some(30), ..units[0].clone() };
        let stages = classify_all(&[big, units[1].clone()], &rules());
        assert_eq!((stages[0].stage, stages[1].stage), (0, 2));
    }

    #[test]
    fn a_cycle_of_parents_ends() {
        let a = UnitEvidence { unit: "A".into(), parent: Some("B".into()), people_seen_12w: 1, ..Default::default() };
        let b = UnitEvidence { unit: "B".into(), parent: Some("A".into()), people_seen_12w: 2, ..Default::default() };
        let rolled = roll_up(&[a, b]);
        assert_eq!(rolled[0].people(), 3);
        assert_eq!(rolled[1].people(), 3);
    }

    fn goal(squad: &str, title: &str, status: GoalStatus, investment: Investment) -> GoalEvidence {
        GoalEvidence {
            squad: squad.into(),
            title: title.into(),
            status,
            investment,
            key_result: Some("Cut handling time".into()),
            metric: Some("handling-time".into()),
        }
    }

    /// An organisation where every detector is satisfied.
    fn clean() -> OrgEvidence {
        let mut other = good_loop("triage");
        other.owner_squad = Some("triage".into());
        OrgEvidence {
            units: vec![
                unit(30, None, vec![good_loop("notes")]),
                UnitEvidence { loops: vec![other], ..Default::default() },
            ],
            goals: vec![
                goal("drafts", "Inline suggestions", GoalStatus::Active, Investment::Snapshot),
                goal("drafts", "Full drafts", GoalStatus::Active, Investment::Slope),
                goal("drafts", "Old bet", GoalStatus::Killed, Investment::Slope),
                goal("drafts", "Faster search", GoalStatus::Active, Investment::Snapshot),
            ],
        }
    }

    fn kinds(warnings: &[Warning]) -> Vec<(WarningKind, Subject)> {
        warnings.iter().map(|w| (w.kind, w.subject.clone())).collect()
    }

    #[test]
    fn a_clean_organisation_raises_no_warning() {
        assert_eq!(detect(&clean(), &rules(), now()), vec![]);
    }

    #[test]
    fn loops_and_slope_bets_without_a_measured_outcome_are_ai_for_ais_sake() {
        let mut org = clean();
        org.units[0].loops[0].key_results = vec![];
        org.units[1].loops[0].key_results[0].metric = None;
        org.goals[1].metric = None;
        // A snapshot goal without a metric and a killed bet without one are not flagged.
        org.goals[0].metric = None;
        org.goals[2].metric = None;
        let warnings = detect(&org, &rules(), now());
        assert_eq!(
            kinds(&warnings),
            [
                (WarningKind::AiForAisSake, Subject::Loop("notes".into())),
                (WarningKind::AiForAisSake, Subject::Loop("triage".into())),
                (WarningKind::AiForAisSake, Subject::Squad("drafts".into())),
            ]
        );
        assert_eq!(warnings[0].evidence, ["Loop notes serves no key result"]);
        assert!(warnings[1].evidence[0].contains("“Cut handling time” of loop triage is fed by no metric"));
        assert!(warnings[2].title.contains("“Full drafts”") && warnings[2].evidence[0].contains("no metric"));
    }

    #[test]
    fn too_many_active_goals_or_an_unowned_loop_are_too_many_projects() {
        let mut org = clean();
        org.goals.push(goal("drafts", "Voice notes", GoalStatus::Active, Investment::Snapshot));
        org.goals.push(goal("drafts", "Later", GoalStatus::Planned, Investment::Snapshot));
        org.units[1].loops[0].owner_squad = None;
        let warnings = detect(&org, &rules(), now());
        assert_eq!(
            kinds(&warnings),
            [
                (WarningKind::TooManyProjects, Subject::Squad("drafts".into())),
                (WarningKind::TooManyProjects, Subject::Loop("triage".into())),
            ]
        );
        assert!(warnings[0].title.contains("4 active goals (limit 3)"), "{}", warnings[0].title);
        assert_eq!(warnings[0].evidence.len(), 4);
        // At the limit is fine.
        org.goals.pop();
        org.goals.pop();
        org.units[1].loops[0].owner_squad = Some("triage".into());
        assert_eq!(detect(&org, &rules(), now()), vec![]);
    }

    #[test]
    fn old_evals_stale_metrics_and_empty_key_results_are_no_measurement() {
        let mut org = clean();
        org.units[0].loops[0].last_eval_at = Some(now() - Duration::days(31));
        org.units[0].loops[0].key_results[0].metric_stale = true;
        org.units[0].loops[0]
            .key_results
            .push(KrEvidence { has_data: false, ..kr("Notes per day", "notes", None, true) });
        org.units[1].loops[0].last_eval_at = None;
        let warnings = detect(&org, &rules(), now());
        assert_eq!(
            kinds(&warnings),
            [
                (WarningKind::NoMeasurement, Subject::Loop("notes".into())),
                (WarningKind::NoMeasurement, Subject::Loop("triage".into())),
            ]
        );
        assert_eq!(
            warnings[0].evidence,
            [
                "Loop notes: the champion was last evaluated 31 days ago, on 2027-01-29 (limit 30 days)",
                "Metric handling-time feeding key result “Cut handling time” is stale",
                "Key result “Notes per day” has no data yet",
            ]
        );
        assert_eq!(warnings[1].evidence, ["Loop triage: the champion has never been evaluated"]);
        // Exactly at the age limit still counts as measured.
        let mut org = clean();
        org.units[0].loops[0].last_eval_at = Some(now() - Duration::days(30));
        assert_eq!(detect(&org, &rules(), now()), vec![]);
    }

    #[test]
    fn champions_from_one_base_or_provider_are_one_technology() {
        let mut org = clean();
        org.units[0].loops[0].champion_base = Some("meta-llama/Llama-3.1-8B".into());
        org.units[1].loops[0].champion_base = Some("meta-llama/llama-3.1-8b".into());
        let warnings = detect(&org, &rules(), now());
        assert_eq!(kinds(&warnings), [(WarningKind::OneTechnology, Subject::Organisation)]);
        assert!(warnings[0].title.contains("all 2 champion models are built on meta-llama/llama-3.1-8b"));
        assert_eq!(warnings[0].evidence[0], "Loop notes: the champion is fine-tuned from meta-llama/Llama-3.1-8B");

        org.units[1].loops[0].champion_base = Some("meta-llama/Llama-3.2-1B".into());
        let warnings = detect(&org, &rules(), now());
        assert!(warnings[0].title.contains("come from meta-llama"), "{}", warnings[0].title);

        // Two providers, or a single champion, are not a dependency on one technology.
        org.units[1].loops[0].champion_base = Some("mistralai/Mistral-7B".into());
        assert_eq!(detect(&org, &rules(), now()), vec![]);
        org.units[1].loops[0].champion_base = None;
        assert_eq!(detect(&org, &rules(), now()), vec![]);
    }

    #[test]
    fn a_loop_listed_twice_is_judged_once() {
        let mut org = clean();
        org.units[0].loops[0].owner_squad = None;
        let copy = org.units[0].loops[0].clone();
        org.units[1].loops.push(copy);
        assert_eq!(detect(&org, &rules(), now()).len(), 1);
    }

    #[test]
    fn stage_counts_follow_the_snapshots_in_date_order() {
        let stage = |unit: &str, stage: u8| UnitStage {
            unit: unit.into(),
            stage,
            reasons: vec![],
            missing: None,
            next_step: None,
        };
        let day = |d: &str| crate::newtypes::parse_date(d).unwrap();
        let snapshots = vec![
            (day("2027-02-01"), vec![stage("a", 1), stage("b", 2), stage("c", 2)]),
            (day("2027-01-01"), vec![stage("a", 0), stage("b", 1), stage("c", 9)]),
        ];
        let trend = stage_trend(&snapshots);
        assert_eq!(
            trend,
            [
                StageCounts { on: day("2027-01-01"), counts: [1, 1, 0, 1] },
                StageCounts { on: day("2027-02-01"), counts: [0, 1, 2, 0] },
            ]
        );
        assert_eq!(serde_json::to_value(&trend[0]).unwrap()["counts"], serde_json::json!([1, 1, 0, 1]));
    }

    #[test]
    fn rules_are_stated_with_their_settings() {
        let rules = AdoptionRules { fluency_bar: 0.6, max_active_goals_per_squad: 4, eval_max_age_days: 14 };
        let statements = rule_statements(&rules);
        let rule = |name: &str| statements.iter().find(|s| s.name.contains(name)).unwrap().rule.clone();
        assert!(rule("AI fluency").starts_with("At least 60 % of the unit's people"));
        assert!(rule("too many").contains("more than 4 active goals"));
        assert!(rule("no measurement").contains("more than 14 days ago"));
        assert_eq!(statements.iter().filter(|s| s.name.starts_with("Stage")).count(), 3);
        let report = UnitReport::new(
            UnitStage {
                unit: "Care".into(),
                stage: 2,
                reasons: vec!["r".into()],
                missing: Some("m".into()),
                next_step: Some("n".into()),
            },
            UnitEvidence { unit: "Care".into(), ..Default::default() },
        );
        assert_eq!((report.stage_label.as_str(), report.unit.as_str()), ("process AI", "Care"));
    }

    #[test]
    fn subjects_and_rules_serialise_for_the_dashboard() {
        assert_eq!(
            serde_json::to_value(Subject::Loop("notes".into())).unwrap(),
            serde_json::json!({"kind": "loop", "key": "notes"})
        );
        assert_eq!(serde_json::to_value(Subject::Organisation).unwrap(), serde_json::json!({"kind": "organisation"}));
        let rules: AdoptionRules = serde_json::from_str(r#"{"fluency_bar": 0.6}"#).unwrap();
        assert_eq!(rules, AdoptionRules { fluency_bar: 0.6, ..AdoptionRules::default() });
        assert_eq!(serde_json::to_value(WarningKind::AiForAisSake).unwrap(), "ai-for-ais-sake");
    }

    #[test]
    fn adoption_rules_are_checked_field_by_field() {
        let input = |bar: Option<f64>, goals: Option<u32>, days: Option<u32>| AdoptionRulesInput {
            version: Some(0),
            fluency_bar: bar,
            max_active_goals_per_squad: goals,
            eval_max_age_days: days,
        };
        let (version, rules) = input(Some(0.6), Some(4), Some(14)).parse().unwrap();
        assert_eq!(version, crate::Version(0));
        assert_eq!(rules, AdoptionRules { fluency_bar: 0.6, max_active_goals_per_squad: 4, eval_max_age_days: 14 });
        assert!(input(Some(1.0), Some(MAX_GOALS_SETTING), Some(MAX_EVAL_AGE_SETTING)).parse().is_ok());

        let fields = |i: AdoptionRulesInput| i.parse().unwrap_err().0.into_keys().collect::<Vec<_>>();
        assert_eq!(fields(input(Some(0.0), Some(4), Some(14))), ["fluency_bar"], "a bar of 0 makes every unit fluent");
        assert_eq!(fields(input(Some(50.0), Some(4), Some(14))), ["fluency_bar"], "a share, not a percentage");
        assert_eq!(fields(input(Some(f64::NAN), Some(4), Some(14))), ["fluency_bar"]);
        assert_eq!(fields(input(Some(0.5), Some(0), Some(366))), ["eval_max_age_days", "max_active_goals_per_squad"]);
        assert_eq!(
            fields(AdoptionRulesInput::default()),
            ["eval_max_age_days", "fluency_bar", "max_active_goals_per_squad", "version"],
            "every rule and the version are required"
        );
        // The settings read back as the input that would set them again.
        let settings = AdoptionSettings::default();
        assert_eq!(
            settings.rules.to_input(settings.version).parse().unwrap(),
            (crate::Version(0), AdoptionRules::default())
        );
    }
}

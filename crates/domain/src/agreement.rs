//! How far annotators agree, and how well each matches the gold set.
//!
//! - **Preferences and ratings**: Krippendorff's alpha (nominal for preferences, ordinal for ratings),
//!   which takes any number of annotators per item and items that not everyone labelled, and corrects
//!   for the agreement chance alone would give. Cohen's kappa, the two-annotator special case people
//!   know, is here too.
//! - **Corrections**: the normalised edit distance between two annotators' corrections of one item
//!   (0: identical, 1: nothing in common), averaged over the item's pairs, then over items.
//! - **Per annotator**: the same statistics over the pairs the annotator forms with the others on shared
//!   items, so a careless annotator stands out, and a gold score: on items with a known answer, 1 for a
//!   matching preference, 1 − |Δ|/4 for a rating, 1 − the normalised edit distance for a correction,
//!   averaged over the labels the answer has.
//!
//! Every estimate has a 95 % interval from a percentile bootstrap over items (1,000 resamples with a
//! fixed seed, so the figures repeat), because items, not single labels, are what was sampled.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::annotation::{Annotation, AnnotationItem, AnnotationOutcome, Labels, Preferred, normalized_edit_distance};
use crate::outlook::Rng;

const BOOTSTRAP_RESAMPLES: usize = 1_000;
const BOOTSTRAP_SEED: u64 = 1;

/// How [`agreement`] measures, in words for the page and the API.
pub const AGREEMENT_METHOD: &str = "Preferences: Krippendorff's alpha, nominal; ratings: Krippendorff's alpha, ordinal (1 is perfect agreement, 0 is what chance gives). Corrections: mean normalised edit distance between two annotators' corrections of an item (0 is identical). Per annotator: the same over the pairs they form with the others on shared items. Gold: on items with a known answer, 1 for a matching preference, 1 − |difference|/4 for a rating and 1 − the normalised edit distance for a correction, averaged. Intervals: 95 % percentile bootstrap over items (1,000 resamples, fixed seed).";

/// The level of measurement of the values Krippendorff's alpha compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Categories without order (a preference).
    Nominal,
    /// Ranks (a rating): a difference counts by how many values lie between.
    Ordinal,
    /// Numbers whose differences mean the same everywhere.
    Interval,
}

/// Krippendorff's alpha of `units`, each the values its annotators gave (units with fewer than two
/// values are not pairable and count for nothing). `None` when fewer than two values are pairable or
/// every pairable value is the same, where agreement cannot be told from chance.
///
/// From the coincidence matrix o_ck (each ordered pair of values within a unit, weighted by 1/(m_u − 1)):
/// α = 1 − (n − 1) Σ o_ck δ²_ck / Σ n_c n_k δ²_ck, with n_c the pairable values of category c.
pub fn krippendorff_alpha(units: &[Vec<f64>], level: Level) -> Option<f64> {
    let mut categories: Vec<f64> =
        units.iter().filter(|u| u.len() >= 2).flat_map(|u| u.iter().copied()).filter(|v| v.is_finite()).collect();
    categories.sort_by(f64::total_cmp);
    categories.dedup();
    let index = |v: f64| categories.iter().position(|c| *c == v);
    let k = categories.len();
    let mut o = vec![0.0; k * k];
    for unit in units {
        let values: Vec<usize> = unit.iter().filter_map(|v| index(*v)).collect();
        let m = values.len();
        if m < 2 {
            continue;
        }
        for (i, &a) in values.iter().enumerate() {
            for (j, &b) in values.iter().enumerate() {
                if i != j {
                    o[a * k + b] += 1.0 / (m as f64 - 1.0);
                }
            }
        }
    }
    let n_c: Vec<f64> = (0..k).map(|c| (0..k).map(|d| o[c * k + d]).sum()).collect();
    let n: f64 = n_c.iter().sum();
    if n < 2.0 {
        return None;
    }
    let delta = |c: usize, d: usize| -> f64 {
        match level {
            Level::Nominal => f64::from(u8::from(c != d)),
            Level::Interval => (categories[c] - categories[d]).powi(2),
            Level::Ordinal => {
                let (lo, hi) = (c.min(d), c.max(d));
                let between: f64 = n_c[lo..=hi].iter().sum();
                (between - (n_c[lo] + n_c[hi]) / 2.0).powi(2)
            }
        }
    };
    let (mut observed, mut expected) = (0.0, 0.0);
    for c in 0..k {
        for d in 0..k {
            let dd = delta(c, d);
            observed += o[c * k + d] * dd;
            expected += n_c[c] * n_c[d] * dd;
        }
    }
    if expected <= 0.0 {
        return None;
    }
    Some(1.0 - (n - 1.0) * observed / expected)
}

/// Cohen's kappa of two annotators' categorical labels of the same items: (p_o − p_e) / (1 − p_e).
/// `None` without items or when chance alone agrees fully.
pub fn cohens_kappa(pairs: &[(u32, u32)]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let observed = pairs.iter().filter(|(a, b)| a == b).count() as f64 / n;
    let mut first: HashMap<u32, f64> = HashMap::new();
    let mut second: HashMap<u32, f64> = HashMap::new();
    for (a, b) in pairs {
        *first.entry(*a).or_default() += 1.0 / n;
        *second.entry(*b).or_default() += 1.0 / n;
    }
    let expected: f64 = first.iter().map(|(c, p)| p * second.get(c).copied().unwrap_or(0.0)).sum();
    if expected >= 1.0 { None } else { Some((observed - expected) / (1.0 - expected)) }
}

/// An estimate with its 95 % interval (none when there is too little to resample) and the number of
/// items behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Estimate {
    pub value: f64,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub items: usize,
}

/// One annotator's work and quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnnotatorQuality {
    pub annotator: String,
    pub labelled: i64,
    pub skipped: i64,
    pub flagged: i64,
    /// Median seconds from taking an item to labelling it.
    pub median_seconds: Option<f64>,
    /// Alpha over the pairs this annotator forms with others (preferences, ratings).
    pub preference_alpha: Option<Estimate>,
    pub rating_alpha: Option<Estimate>,
    /// Mean normalised edit distance of this annotator's corrections to the others'.
    pub correction_distance: Option<Estimate>,
    /// Mean score on gold items, in [0, 1].
    pub gold: Option<Estimate>,
}

/// A queue's agreement and each annotator's quality.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgreementReport {
    /// Items with labels from at least two annotators: what agreement is measured on.
    pub items_compared: usize,
    pub preference_alpha: Option<Estimate>,
    pub rating_alpha: Option<Estimate>,
    pub correction_distance: Option<Estimate>,
    pub gold_items: usize,
    pub annotators: Vec<AnnotatorQuality>,
    pub method: String,
}

/// The labelled annotations of one item, in a fixed order.
struct ItemLabels<'a> {
    item: &'a AnnotationItem,
    labels: Vec<(&'a str, &'a Labels)>,
}

fn preference_code(p: Preferred) -> f64 {
    match p {
        Preferred::Suggestion => 0.0,
        Preferred::Alternative => 1.0,
    }
}

/// The per-item values of one kind of label: (annotator, value).
fn values_of<'a>(item: &ItemLabels<'a>, pick: impl Fn(&Labels) -> Option<f64>) -> Vec<(&'a str, f64)> {
    item.labels.iter().filter_map(|(who, l)| pick(l).map(|v| (*who, v))).collect()
}

fn rating(l: &Labels) -> Option<f64> {
    l.rating.map(f64::from)
}

fn preference(l: &Labels) -> Option<f64> {
    l.preference.map(preference_code)
}

/// A percentile bootstrap over `units` items: `stat` sees the resampled items' indices.
fn estimate(units: usize, stat: impl Fn(&[usize]) -> Option<f64>) -> Option<Estimate> {
    let all: Vec<usize> = (0..units).collect();
    let value = stat(&all)?;
    if !value.is_finite() {
        return None;
    }
    let (mut low, mut high) = (None, None);
    if units >= 2 {
        let mut rng = Rng::new(BOOTSTRAP_SEED);
        let mut draws: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
            .filter_map(|_| {
                let sample: Vec<usize> = (0..units).map(|_| rng.below(units)).collect();
                stat(&sample).filter(|v| v.is_finite())
            })
            .collect();
        // Resamples where the statistic is undefined (no variation left) are left out; with too few
        // left, no interval is claimed.
        if draws.len() >= BOOTSTRAP_RESAMPLES / 2 {
            draws.sort_by(f64::total_cmp);
            let at = |q: f64| draws[((q * (draws.len() - 1) as f64).round() as usize).min(draws.len() - 1)];
            (low, high) = (Some(at(0.025)), Some(at(0.975)));
        }
    }
    Some(Estimate { value, low, high, items: units })
}

/// Alpha of one kind of label over items (each a unit of its annotators' values).
fn alpha_estimate(units: &[Vec<f64>], level: Level) -> Option<Estimate> {
    let pairable: Vec<&Vec<f64>> = units.iter().filter(|u| u.len() >= 2).collect();
    estimate(pairable.len(), |idx| {
        let sample: Vec<Vec<f64>> = idx.iter().map(|&i| pairable[i].clone()).collect();
        krippendorff_alpha(&sample, level)
    })
}

/// The mean of per-item means.
fn mean_of_items(items: &[Vec<f64>], idx: &[usize]) -> Option<f64> {
    let means: Vec<f64> = idx
        .iter()
        .map(|&i| &items[i])
        .filter(|v| !v.is_empty())
        .map(|v| v.iter().sum::<f64>() / v.len() as f64)
        .collect();
    if means.is_empty() { None } else { Some(means.iter().sum::<f64>() / means.len() as f64) }
}

/// The pairwise normalised edit distances of an item's corrections, with the pair's annotators.
fn correction_pairs<'a>(item: &ItemLabels<'a>) -> Vec<(&'a str, &'a str, f64)> {
    let corrections: Vec<(&str, &str)> =
        item.labels.iter().filter_map(|(who, l)| l.correction.as_deref().map(|c| (*who, c))).collect();
    let mut out = Vec::new();
    for i in 0..corrections.len() {
        for j in i + 1..corrections.len() {
            out.push((
                corrections[i].0,
                corrections[j].0,
                normalized_edit_distance(corrections[i].1, corrections[j].1),
            ));
        }
    }
    out
}

/// How close an annotation is to an item's gold answer, in [0, 1], over the labels both have.
pub fn gold_score(gold: &Labels, given: &Labels) -> Option<f64> {
    let mut scores = Vec::new();
    if let (Some(g), Some(a)) = (gold.preference, given.preference) {
        scores.push(f64::from(u8::from(g == a)));
    }
    if let (Some(g), Some(a)) = (gold.rating, given.rating) {
        scores.push(1.0 - (f64::from(g) - f64::from(a)).abs() / 4.0);
    }
    if let (Some(g), Some(a)) = (&gold.correction, &given.correction) {
        scores.push(1.0 - normalized_edit_distance(g, a));
    }
    if scores.is_empty() { None } else { Some(scores.iter().sum::<f64>() / scores.len() as f64) }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let m = values.len() / 2;
    Some(if values.len() % 2 == 1 { values[m] } else { (values[m - 1] + values[m]) / 2.0 })
}

/// A queue's agreement report from its items and annotations.
pub fn agreement(items: &[AnnotationItem], annotations: &[Annotation]) -> AgreementReport {
    let mut by_item: BTreeMap<i64, Vec<&Annotation>> = BTreeMap::new();
    for a in annotations.iter().filter(|a| a.outcome == AnnotationOutcome::Labelled) {
        by_item.entry(a.item_id).or_default().push(a);
    }
    let mut labelled: Vec<ItemLabels> = Vec::new();
    for item in items {
        if let Some(list) = by_item.get_mut(&item.id) {
            list.sort_by_key(|a| (a.created_at, a.id));
            labelled
                .push(ItemLabels { item, labels: list.iter().map(|a| (a.annotator.as_str(), &a.labels)).collect() });
        }
    }
    let shared: Vec<&ItemLabels> = labelled.iter().filter(|i| i.labels.len() >= 2).collect();
    let units = |pick: fn(&Labels) -> Option<f64>| -> Vec<Vec<f64>> {
        shared.iter().map(|i| values_of(i, pick).into_iter().map(|(_, v)| v).collect()).collect()
    };
    let pair_items: Vec<Vec<f64>> = shared
        .iter()
        .map(|i| correction_pairs(i).into_iter().map(|(_, _, d)| d).collect::<Vec<f64>>())
        .filter(|p| !p.is_empty())
        .collect();

    let mut annotators: BTreeSet<&str> = BTreeSet::new();
    for a in annotations {
        annotators.insert(a.annotator.as_str());
    }
    let gold_items = items.iter().filter(|i| i.gold.is_some()).count();
    let qualities = annotators
        .into_iter()
        .map(|who| {
            let mine = annotations.iter().filter(|a| a.annotator == who);
            let count = |o: AnnotationOutcome| mine.clone().filter(|a| a.outcome == o).count() as i64;
            // Each shared item this annotator labelled gives units of two values: theirs and each other's.
            let pair_units = |pick: fn(&Labels) -> Option<f64>| -> Vec<Vec<Vec<f64>>> {
                shared
                    .iter()
                    .filter_map(|i| {
                        let values = values_of(i, pick);
                        let own = values.iter().find(|(w, _)| *w == who)?.1;
                        let units: Vec<Vec<f64>> =
                            values.iter().filter(|(w, _)| *w != who).map(|(_, v)| vec![own, *v]).collect();
                        (!units.is_empty()).then_some(units)
                    })
                    .collect()
            };
            let alpha_of = |per_item: Vec<Vec<Vec<f64>>>, level: Level| {
                estimate(per_item.len(), |idx| {
                    let sample: Vec<Vec<f64>> = idx.iter().flat_map(|&i| per_item[i].clone()).collect();
                    krippendorff_alpha(&sample, level)
                })
            };
            let distances: Vec<Vec<f64>> = shared
                .iter()
                .map(|i| {
                    correction_pairs(i)
                        .into_iter()
                        .filter(|(a, b, _)| *a == who || *b == who)
                        .map(|(_, _, d)| d)
                        .collect::<Vec<f64>>()
                })
                .filter(|d| !d.is_empty())
                .collect();
            let gold: Vec<f64> = labelled
                .iter()
                .filter_map(|i| {
                    let g = i.item.gold.as_ref()?;
                    let given = i.labels.iter().find(|(w, _)| *w == who)?.1;
                    gold_score(g, given)
                })
                .collect();
            let gold_units: Vec<Vec<f64>> = gold.into_iter().map(|s| vec![s]).collect();
            AnnotatorQuality {
                annotator: who.to_owned(),
                labelled: count(AnnotationOutcome::Labelled),
                skipped: count(AnnotationOutcome::Skipped),
                flagged: count(AnnotationOutcome::Flagged),
                median_seconds: median(
                    mine.clone()
                        .filter(|a| a.outcome == AnnotationOutcome::Labelled)
                        .filter_map(|a| a.seconds)
                        .collect(),
                ),
                preference_alpha: alpha_of(pair_units(preference), Level::Nominal),
                rating_alpha: alpha_of(pair_units(rating), Level::Ordinal),
                correction_distance: estimate(distances.len(), |idx| mean_of_items(&distances, idx)),
                gold: estimate(gold_units.len(), |idx| mean_of_items(&gold_units, idx)),
            }
        })
        .collect();
    AgreementReport {
        items_compared: shared.len(),
        preference_alpha: alpha_estimate(&units(preference), Level::Nominal),
        rating_alpha: alpha_estimate(&units(rating), Level::Ordinal),
        correction_distance: estimate(pair_items.len(), |idx| mean_of_items(&pair_items, idx)),
        gold_items,
        annotators: qualities,
        method: AGREEMENT_METHOD.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotation::tests::{annotation, item};

    /// The reliability data of Krippendorff's worked example ("Computing Krippendorff's Alpha-Reliability",
    /// 2011, section C): four observers, twelve units, with missing values.
    fn krippendorff_example() -> Vec<Vec<f64>> {
        let nan = f64::NAN;
        let observers = [
            [1.0, 2.0, 3.0, 3.0, 2.0, 1.0, 4.0, 1.0, 2.0, nan, nan, nan],
            [1.0, 2.0, 3.0, 3.0, 2.0, 2.0, 4.0, 1.0, 2.0, 5.0, nan, 3.0],
            [nan, 3.0, 3.0, 3.0, 2.0, 3.0, 4.0, 2.0, 2.0, 5.0, 1.0, nan],
            [1.0, 2.0, 3.0, 3.0, 2.0, 4.0, 4.0, 1.0, 2.0, 5.0, 1.0, nan],
        ];
        (0..12).map(|u| observers.iter().map(|o| o[u]).filter(|v| v.is_finite()).collect()).collect()
    }

    #[test]
    fn alpha_matches_krippendorffs_worked_example() {
        // Published: nominal 0.743, ordinal 0.815, interval 0.849 (three decimals). The `krippendorff`
        // package from PyPI (0.9.0) gives 0.7434210526, 0.8153875038 and 0.8491071429 on the same data.
        let data = krippendorff_example();
        let nominal = krippendorff_alpha(&data, Level::Nominal).unwrap();
        let ordinal = krippendorff_alpha(&data, Level::Ordinal).unwrap();
        let interval = krippendorff_alpha(&data, Level::Interval).unwrap();
        assert!((nominal - 0.7434210526).abs() < 1e-9, "{nominal}");
        assert!((ordinal - 0.8153875038).abs() < 1e-9, "{ordinal}");
        assert!((interval - 0.8491071429).abs() < 1e-9, "{interval}");
        assert_eq!(format!("{nominal:.3} {ordinal:.3} {interval:.3}"), "0.743 0.815 0.849");
        // No variation, or nothing pairable: undefined, not perfect.
        assert_eq!(krippendorff_alpha(&[vec![3.0, 3.0], vec![3.0, 3.0]], Level::Nominal), None);
        assert_eq!(krippendorff_alpha(&[vec![1.0], vec![2.0]], Level::Nominal), None);
        // Perfect agreement with variation is 1.
        assert_eq!(krippendorff_alpha(&[vec![1.0, 1.0], vec![2.0, 2.0]], Level::Nominal), Some(1.0));
    }

    #[test]
    fn kappa_matches_the_textbook_example() {
        // 50 proposals read by two editors: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no.
        let mut pairs = vec![(1, 1); 20];
        pairs.extend(vec![(1, 0); 5]);
        pairs.extend(vec![(0, 1); 10]);
        pairs.extend(vec![(0, 0); 15]);
        let kappa = cohens_kappa(&pairs).unwrap();
        assert!((kappa - 0.4).abs() < 1e-12, "{kappa}");
        assert_eq!(cohens_kappa(&[(1, 1), (1, 1)]), None, "chance agrees fully");
    }

    fn rated(id: i64, item_id: i64, who: &str, r: u8) -> Annotation {
        annotation(id, item_id, who, Labels { rating: Some(r), ..Default::default() })
    }

    #[test]
    fn a_careless_annotator_stands_out_and_gold_scores_them() {
        // Ann and Bob agree on every item; Cy rates at random.
        let mut items = Vec::new();
        let mut annotations = Vec::new();
        let mut id = 0;
        let cy = [5u8, 1, 4, 1, 3, 5, 2, 1, 5, 2, 4, 1, 3, 5, 1, 2, 5, 1, 4, 2];
        for i in 0..20 {
            let mut it = item(i, "served", None);
            let truth = 1 + (i % 5) as u8;
            if i < 5 {
                it.gold = Some(Labels { rating: Some(truth), ..Default::default() });
            }
            items.push(it);
            for (who, r) in [("ann", truth), ("bob", truth), ("cy", cy[i as usize])] {
                id += 1;
                annotations.push(rated(id, i, who, r));
            }
        }
        let report = agreement(&items, &annotations);
        assert_eq!((report.items_compared, report.gold_items), (20, 5));
        let alpha = report.rating_alpha.as_ref().unwrap();
        // The `krippendorff` package (0.9.0) gives 0.1564710145 for these three rows, ordinal.
        assert!((alpha.value - 0.1564710145).abs() < 1e-9, "{alpha:?}");
        let (lo, hi) = (alpha.low.unwrap(), alpha.high.unwrap());
        assert!(lo < alpha.value && alpha.value < hi, "{alpha:?}");
        let by = |who: &str| report.annotators.iter().find(|a| a.annotator == who).unwrap().clone();
        let (ann, cy) = (by("ann"), by("cy"));
        assert!(ann.rating_alpha.as_ref().unwrap().value > cy.rating_alpha.as_ref().unwrap().value + 0.3);
        assert_eq!(ann.gold.as_ref().unwrap().value, 1.0);
        assert!(cy.gold.as_ref().unwrap().value < 0.9);
        assert_eq!((ann.labelled, ann.skipped), (20, 0));
        // The same evidence gives the same figures.
        assert_eq!(agreement(&items, &annotations), report);
    }

    #[test]
    fn corrections_compare_by_edit_distance() {
        let items = vec![item(1, "rest", None), item(2, "ice", None)];
        let c = |id, item_id, who: &str, text: &str| {
            annotation(id, item_id, who, Labels { correction: Some(text.into()), ..Default::default() })
        };
        let annotations = vec![
            c(1, 1, "ann", "rest and fluids"),
            c(2, 1, "bob", "rest and fluids"),
            c(3, 2, "ann", "kitten"),
            c(4, 2, "bob", "sitting"),
        ];
        let report = agreement(&items, &annotations);
        let d = report.correction_distance.unwrap();
        assert!((d.value - (0.0 + 3.0 / 7.0) / 2.0).abs() < 1e-12, "{d:?}");
        assert_eq!(report.preference_alpha, None);
        assert_eq!(
            gold_score(
                &Labels { correction: Some("kitten".into()), rating: Some(5), ..Default::default() },
                &Labels { correction: Some("sitting".into()), rating: Some(3), ..Default::default() }
            ),
            Some(((1.0 - 3.0 / 7.0) + 0.5) / 2.0)
        );
    }
}

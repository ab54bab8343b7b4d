//! The interactions that carry text: what the runner's datasets are built from. An event's `context`
//! is the text before the cursor, `suggestion` what the model offered there and `final_text` what the
//! user actually wrote next.

use chrono::{DateTime, Utc};
use polars::prelude::*;

use crate::segment::frame_of;

#[derive(Debug, Clone, PartialEq)]
pub struct TextInteraction {
    pub event_id: String,
    pub ts: DateTime<Utc>,
    pub context: String,
    pub suggestion: Option<String>,
    pub final_text: Option<String>,
    pub suggested_chars: u64,
    pub accepted_chars: u64,
}

const COLUMNS: [&str; 7] =
    ["event_id", "ts", "context", "suggestion", "final_text", "suggested_chars", "accepted_chars"];

/// Every event of the segments with a non-empty context and a suggestion or a final text, ordered by
/// time then id so that a dataset built twice from the same events is byte-identical.
pub fn text_interactions<B: AsRef<[u8]>>(segments: &[B]) -> PolarsResult<Vec<TextInteraction>> {
    let frame = frame_of(segments, Some(&COLUMNS))?
        .filter(
            col("context")
                .is_not_null()
                .and(col("context").str().len_bytes().gt(lit(0u32)))
                .and(col("suggestion").is_not_null().or(col("final_text").is_not_null())),
        )
        .with_column(col("ts").cast(DataType::Int64).alias("ts_us"))
        .sort(["ts_us", "event_id"], SortMultipleOptions::default())
        .collect()?;
    let ids = frame.column("event_id")?.str()?;
    let ts = frame.column("ts_us")?.i64()?;
    let context = frame.column("context")?.str()?;
    let suggestion = frame.column("suggestion")?.str()?;
    let final_text = frame.column("final_text")?.str()?;
    let suggested = frame.column("suggested_chars")?.u64()?;
    let accepted = frame.column("accepted_chars")?.u64()?;
    let mut out = Vec::with_capacity(frame.height());
    for i in 0..frame.height() {
        let (Some(id), Some(us), Some(ctx)) = (ids.get(i), ts.get(i), context.get(i)) else { continue };
        out.push(TextInteraction {
            event_id: id.to_owned(),
            ts: DateTime::from_timestamp_micros(us).unwrap_or_default(),
            context: ctx.to_owned(),
            suggestion: suggestion.get(i).filter(|s| !s.is_empty()).map(str::to_owned),
            final_text: final_text.get(i).filter(|s| !s.is_empty()).map(str::to_owned),
            suggested_chars: suggested.get(i).unwrap_or(0),
            accepted_chars: accepted.get(i).unwrap_or(0),
        });
    }
    Ok(out)
}

impl TextInteraction {
    /// A supervised example: the context as prompt, what the user wrote as completion.
    pub fn completion(&self) -> Option<(&str, &str)> {
        Some((self.context.as_str(), self.final_text.as_deref()?))
    }

    /// A preference: what the user wrote is chosen over a suggestion they did not take whole. A
    /// suggestion the final text begins with was accepted, so it is no counter-example.
    pub fn preference(&self) -> Option<(&str, &str, &str)> {
        let (suggestion, written) = (self.suggestion.as_deref()?, self.final_text.as_deref()?);
        let rejected = self.accepted_chars < suggestion.chars().count() as u64 && !written.starts_with(suggestion);
        rejected.then_some((self.context.as_str(), written, suggestion))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::InteractionEvent;
    use crate::segment::encode;

    fn event(
        id: &str,
        secs: i64,
        ctx: Option<&str>,
        sug: Option<&str>,
        fin: Option<&str>,
        accepted: u64,
    ) -> InteractionEvent {
        let mut e = InteractionEvent::sample(
            id,
            DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap(),
            "u1",
            "v1",
            10,
            accepted,
        );
        e.context = ctx.map(str::to_owned);
        e.suggestion = sug.map(str::to_owned);
        e.final_text = fin.map(str::to_owned);
        e
    }

    #[test]
    fn keeps_text_events_in_time_order_and_classifies_them() {
        let a = encode(&[
            event("b", 5, Some("Plan: "), Some("rest"), Some("rest and fluids"), 4),
            event("a", 1, Some("Pt has "), Some("cough"), Some("fever"), 0),
            event("c", 2, None, Some("x"), Some("y"), 0),
            event("d", 3, Some(""), Some("x"), Some("y"), 0),
        ])
        .unwrap();
        let b =
            encode(&[event("e", 3, Some("Dx: "), None, Some("flu"), 0), event("f", 4, Some("Hx: "), None, None, 0)])
                .unwrap();
        let got = text_interactions(&[a, b]).unwrap();
        let ids: Vec<&str> = got.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["a", "e", "b"]);
        assert_eq!(got[0].preference(), Some(("Pt has ", "fever", "cough")));
        assert_eq!(got[1].preference(), None, "no suggestion");
        assert_eq!(got[1].completion(), Some(("Dx: ", "flu")));
        assert_eq!(got[2].preference(), None, "the suggestion was taken");
        assert_eq!(got[0].ts, DateTime::from_timestamp(1_800_000_001, 0).unwrap());
    }
}

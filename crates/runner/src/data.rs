//! Datasets: JSONL files of `{"text"}`, `{"prompt","completion"}` or `{"prompt","chosen","rejected"}`
//! rows, named by the digest of their content so a job always says exactly what it learned from.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, RunnerError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Row {
    Preference { prompt: String, chosen: String, rejected: String },
    Completion { prompt: String, completion: String },
    Text { text: String },
}

pub use slope_domain::DatasetKind;

#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub kind: DatasetKind,
    pub rows: Vec<Row>,
}

/// Rows are capped so one upload cannot exhaust memory; a corpus this size trains for hours on a CPU.
pub const MAX_ROWS: usize = 2_000_000;
const MAX_FIELD_BYTES: usize = 1 << 20;

impl Dataset {
    /// Parses JSONL. Blank lines are skipped; every other line must be exactly one of the three row
    /// shapes with non-empty strings, and an error names the line (1-based) and the field.
    pub fn parse_jsonl(bytes: &[u8]) -> Result<Dataset> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            RunnerError::invalid(format!("line {line}"), "is not UTF-8")
        })?;
        let mut rows = Vec::new();
        let mut kind: Option<DatasetKind> = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let row =
                parse_row(line).map_err(|(field, msg)| RunnerError::invalid(format!("line {n}: {field}"), msg))?;
            let row_kind = match row {
                Row::Text { .. } => DatasetKind::Text,
                Row::Completion { .. } => DatasetKind::Sft,
                Row::Preference { .. } => DatasetKind::Preference,
            };
            kind = Some(match (kind, row_kind) {
                (None, k) => k,
                (Some(DatasetKind::Preference), DatasetKind::Preference) => DatasetKind::Preference,
                (Some(DatasetKind::Preference), _) | (Some(_), DatasetKind::Preference) => {
                    return Err(RunnerError::invalid(
                        format!("line {n}"),
                        "preference rows (prompt, chosen, rejected) cannot be mixed with other rows",
                    ));
                }
                (Some(DatasetKind::Text), DatasetKind::Text) => DatasetKind::Text,
                _ => DatasetKind::Sft,
            });
            rows.push(row);
            if rows.len() > MAX_ROWS {
                return Err(RunnerError::invalid(
                    format!("line {n}"),
                    format!("a dataset holds at most {MAX_ROWS} rows"),
                ));
            }
        }
        let kind = kind.ok_or_else(|| RunnerError::invalid("dataset", "has no rows"))?;
        Ok(Dataset { kind, rows })
    }

    /// The canonical JSONL form: one compact object per row, fields in a fixed order.
    pub fn to_jsonl(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for row in &self.rows {
            serde_json::to_writer(&mut out, row).expect("rows serialise");
            out.push(b'\n');
        }
        out
    }

    /// `sha256:<hex>` of the canonical form, so whitespace or key order in a file does not make a new
    /// version while any changed character does.
    pub fn digest(&self) -> String {
        let hex: String = Sha256::digest(self.to_jsonl()).iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.rows.iter().filter_map(|r| match r {
            Row::Text { text } => Some(text.as_str()),
            _ => None,
        })
    }

    /// Splits off every `every`-th row (by position) as a held-out set: a stable split that needs no
    /// random state and keeps both sides non-empty when there are at least two rows.
    pub fn split_held_out(&self, every: usize) -> (Dataset, Dataset) {
        let every = every.max(2);
        let (mut train, mut held) = (Vec::new(), Vec::new());
        for (i, r) in self.rows.iter().enumerate() {
            if i % every == every - 1 { held.push(r.clone()) } else { train.push(r.clone()) }
        }
        (Dataset { kind: self.kind, rows: train }, Dataset { kind: self.kind, rows: held })
    }
}

fn parse_row(line: &str) -> std::result::Result<Row, (String, String)> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| ("row".to_string(), format!("is not JSON: {e}")))?;
    let obj = value.as_object().ok_or(("row".to_string(), "must be a JSON object".to_string()))?;
    let field = |name: &str| -> std::result::Result<Option<String>, (String, String)> {
        match obj.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.is_empty() => Err((name.into(), "must not be empty".into())),
            Some(serde_json::Value::String(s)) if s.len() > MAX_FIELD_BYTES => {
                Err((name.into(), format!("is longer than {MAX_FIELD_BYTES} bytes")))
            }
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err((name.into(), "must be a string".into())),
        }
    };
    for key in obj.keys() {
        if !["text", "prompt", "completion", "chosen", "rejected"].contains(&key.as_str()) {
            return Err((key.clone(), "is not a dataset field (text, prompt, completion, chosen, rejected)".into()));
        }
    }
    let (text, prompt, completion) = (field("text")?, field("prompt")?, field("completion")?);
    let (chosen, rejected) = (field("chosen")?, field("rejected")?);
    match (text, prompt, completion, chosen, rejected) {
        (Some(text), None, None, None, None) => Ok(Row::Text { text }),
        (None, Some(prompt), Some(completion), None, None) => Ok(Row::Completion { prompt, completion }),
        (None, Some(prompt), None, Some(chosen), Some(rejected)) => {
            if chosen == rejected {
                return Err(("rejected".into(), "must differ from chosen".into()));
            }
            Ok(Row::Preference { prompt, chosen, rejected })
        }
        (None, Some(_), None, Some(_), None) => Err(("rejected".into(), "is required with chosen".into())),
        (None, Some(_), None, None, _) => {
            Err(("completion".into(), "is required with prompt (or chosen and rejected)".into()))
        }
        (None, None, _, _, _) => {
            Err(("text".into(), "is required (or prompt with completion, or prompt, chosen and rejected)".into()))
        }
        (Some(_), _, _, _, _) => {
            Err(("text".into(), "cannot be combined with prompt, completion, chosen or rejected".into()))
        }
        _ => Err(("row".into(), "mixes completion with chosen/rejected".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_shapes_and_names_bad_lines() {
        let d = Dataset::parse_jsonl(b"{\"text\":\"a\"}\n\n{\"prompt\":\"p\",\"completion\":\"c\"}\n").unwrap();
        assert_eq!(d.kind, DatasetKind::Sft);
        assert_eq!(d.rows.len(), 2);
        let p = Dataset::parse_jsonl(b"{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}").unwrap();
        assert_eq!(p.kind, DatasetKind::Preference);
        let e = Dataset::parse_jsonl(b"{\"text\":\"a\"}\n{\"prompt\":\"p\"}\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2: completion: is required with prompt (or chosen and rejected)");
        let e = Dataset::parse_jsonl(b"{\"text\":\"a\"}\n{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}")
            .unwrap_err();
        assert!(e.to_string().starts_with("line 2:"), "{e}");
        let e = Dataset::parse_jsonl(b"{\"text\":5}").unwrap_err();
        assert_eq!(e.to_string(), "line 1: text: must be a string");
        let e = Dataset::parse_jsonl(b"{\"txt\":\"a\"}").unwrap_err();
        assert!(e.to_string().starts_with("line 1: txt:"), "{e}");
        assert!(Dataset::parse_jsonl(b"\n\n").is_err());
        assert!(Dataset::parse_jsonl(b"nope").unwrap_err().to_string().starts_with("line 1: row: is not JSON"));
    }

    #[test]
    fn digest_ignores_formatting_but_not_content() {
        let a = Dataset::parse_jsonl(b"{\"prompt\":\"p\",\"completion\":\"c\"}").unwrap();
        let b = Dataset::parse_jsonl(b"  { \"completion\" : \"c\", \"prompt\":\"p\" }\n").unwrap();
        let c = Dataset::parse_jsonl(b"{\"prompt\":\"p\",\"completion\":\"C\"}").unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
        assert!(a.digest().starts_with("sha256:"));
        assert_eq!(Dataset::parse_jsonl(&a.to_jsonl()).unwrap(), a);
    }
}

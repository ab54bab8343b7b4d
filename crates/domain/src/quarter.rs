use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::newtypes::DateRange;

/// A calendar quarter such as `2027-Q1`, the horizon of an objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Quarter {
    pub year: i32,
    pub q: u8,
}

impl Quarter {
    pub fn range(self) -> DateRange {
        let first_month = (self.q as u32 - 1) * 3 + 1;
        let start = NaiveDate::from_ymd_opt(self.year, first_month, 1).expect("quarter months are valid");
        let next = if self.q == 4 {
            NaiveDate::from_ymd_opt(self.year + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(self.year, first_month + 3, 1)
        }
        .expect("quarter months are valid");
        DateRange { start, end: next.pred_opt().expect("not the first day of time") }
    }

    pub fn containing(day: NaiveDate) -> Self {
        use chrono::Datelike;
        Quarter { year: day.year(), q: (day.month0() / 3 + 1) as u8 }
    }

    /// Every quarter that shares at least one day with `range`, in order.
    pub fn spanning(range: &DateRange) -> Vec<Quarter> {
        let mut quarters = vec![];
        let mut quarter = Quarter::containing(range.start);
        while quarter.range().start <= range.end {
            quarters.push(quarter);
            quarter = if quarter.q == 4 {
                Quarter { year: quarter.year + 1, q: 1 }
            } else {
                Quarter { year: quarter.year, q: quarter.q + 1 }
            };
        }
        quarters
    }
}

impl FromStr for Quarter {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let invalid = || format!("must be a quarter like 2027-Q1, not {raw:?}");
        let (year, q) = raw.split_once("-Q").or_else(|| raw.split_once("-q")).ok_or_else(invalid)?;
        let year: i32 = year.parse().map_err(|_| invalid())?;
        let q: u8 = q.parse().map_err(|_| invalid())?;
        if !(1..=4).contains(&q) || !(1900..=9999).contains(&year) {
            return Err(invalid());
        }
        Ok(Quarter { year, q })
    }
}

impl fmt::Display for Quarter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-Q{}", self.year, self.q)
    }
}

impl TryFrom<String> for Quarter {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        value.parse()
    }
}

impl From<Quarter> for String {
    fn from(value: Quarter) -> String {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn quarters_parse_and_cover_their_months() {
        let q: Quarter = "2027-Q1".parse().unwrap();
        assert_eq!(q.range(), DateRange { start: d("2027-01-01"), end: d("2027-03-31") });
        let q4: Quarter = "2026-Q4".parse().unwrap();
        assert_eq!(q4.range().end, d("2026-12-31"));
        assert!("2027-Q5".parse::<Quarter>().is_err());
        assert!("Q1 2027".parse::<Quarter>().unwrap_err().contains("2027-Q1"));
        assert_eq!(q.to_string(), "2027-Q1");
    }

    #[test]
    fn spanning_lists_every_touched_quarter() {
        let range = DateRange { start: d("2026-11-15"), end: d("2027-04-01") };
        let names: Vec<String> = Quarter::spanning(&range).iter().map(|q| q.to_string()).collect();
        assert_eq!(names, ["2026-Q4", "2027-Q1", "2027-Q2"]);
    }
}

//! Identifiers and the small enums shared by every plan entity.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_newtype {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

id_newtype!(
    /// An organisation: the tenant every row belongs to.
    OrgId,
    SeasonId,
    ObjectiveId,
    KeyResultId,
    SquadId,
    SquadGoalId,
    CheckInId,
);

/// Optimistic-concurrency version of a stored entity; every edit names the version it was based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct Version(pub i64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Declares a string-backed enum with one spelling shared by storage, JSON and forms.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "kebab-case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(raw: &str) -> Result<Self, String> {
                match raw.trim() {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "must be one of {}, not {other:?}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}
pub(crate) use string_enum;

string_enum!(
    /// A season is drafted, then run, then closed with a retrospective.
    SeasonStatus { Draft => "draft", Active => "active", Closed => "closed" }
);

string_enum!(
    /// Committed objectives are expected to be met in full; aspirational ones at 70 %.
    Commitment { Committed => "committed", Aspirational => "aspirational" }
);

string_enum!(
    /// Snapshot work serves the platform's current thinking; slope work bets against it.
    Investment { Snapshot => "snapshot", Slope => "slope" }
);

string_enum!(
    GoalStatus { Planned => "planned", Active => "active", Done => "done", Killed => "killed" }
);

impl Commitment {
    /// The score an objective of this kind is expected to reach by the end of its quarter.
    pub fn expectation(self) -> f64 {
        match self {
            Commitment::Committed => 1.0,
            Commitment::Aspirational => 0.7,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_their_spelling() {
        for status in SeasonStatus::ALL {
            assert_eq!(status.as_str().parse::<SeasonStatus>().unwrap(), *status);
        }
        assert_eq!(serde_json::to_string(&GoalStatus::Killed).unwrap(), "\"killed\"");
        let err = "paused".parse::<GoalStatus>().unwrap_err();
        assert!(err.contains("planned, active, done, killed"), "{err}");
    }
}

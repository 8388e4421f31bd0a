//! The change feed's vocabulary: positions in the log and the kinds of change.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A position in the change log: the writing transaction's order key (taken when it first
/// wrote the log), then the entry's sequence number. Entries are delivered in this order,
/// which (read below the smallest key still in use, decision 004) never lets a late commit
/// slip behind a position already delivered.
///
/// Written as `<key>.<seq>`; `0.0` is the very beginning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangePosition {
    pub tx: u64,
    pub seq: i64,
}

impl ChangePosition {
    pub const START: ChangePosition = ChangePosition { tx: 0, seq: 0 };
}

impl fmt::Display for ChangePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.tx, self.seq)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a change position (expected <key>.<seq>, as sent in an event's id)")]
pub struct BadPosition(pub String);

impl FromStr for ChangePosition {
    type Err = BadPosition;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadPosition(s.to_owned());
        let (tx, seq) = s.trim().split_once('.').ok_or_else(bad)?;
        Ok(ChangePosition {
            tx: tx.parse().map_err(|_| bad())?,
            seq: seq.parse().ok().filter(|s: &i64| *s >= 0).ok_or_else(bad)?,
        })
    }
}

impl Serialize for ChangePosition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChangePosition {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What happened to a job row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "text", rename_all = "snake_case")
)]
pub enum ChangeOp {
    Insert,
    Update,
    Delete,
}

impl ChangeOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Insert => "insert",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
        }
    }
}

impl FromStr for ChangeOp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "insert" => Ok(ChangeOp::Insert),
            "update" => Ok(ChangeOp::Update),
            "delete" => Ok(ChangeOp::Delete),
            other => Err(format!("unknown change {other:?}")),
        }
    }
}

/// A Postgres snapshot (`pg_current_snapshot()`, written `xmin:xmax:xip,…`): which
/// transactions' effects a read saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxSnapshot {
    pub xmin: u64,
    pub xmax: u64,
    pub in_progress: Vec<u64>,
}

impl TxSnapshot {
    /// Whether the effects of transaction `xid` are visible in this snapshot.
    pub fn sees(&self, xid: u64) -> bool {
        xid < self.xmin || (xid < self.xmax && !self.in_progress.contains(&xid))
    }
}

impl FromStr for TxSnapshot {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a pg_snapshot");
        let mut parts = s.split(':');
        let xmin = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let xmax = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let in_progress = match parts.next() {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|x| x.parse().map_err(|_| bad()))
                .collect::<Result<_, _>>()?,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(TxSnapshot {
            xmin,
            xmax,
            in_progress,
        })
    }
}

/// What a page read in one snapshot already shows, so that the changes after its position
/// can skip those it reflects: a `reset` is followed by neither gaps nor repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown {
    /// The snapshot the page was read in.
    pub snapshot: TxSnapshot,
    /// The last order key handed out, read after the snapshot was taken: a transaction the
    /// snapshot sees had taken its key by then, so no later key can be in it.
    pub issued: u64,
}

impl Shown {
    /// Whether the change at `position`, written by transaction `xid`, is already shown.
    pub fn includes(&self, position: ChangePosition, xid: u64) -> bool {
        position.tx <= self.issued && self.snapshot.sees(xid)
    }

    /// Whether nothing at or after `position` can be shown: the snapshot can be let go.
    pub fn is_behind(&self, position: ChangePosition) -> bool {
        position.tx > self.issued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_parse_and_tell_visibility() {
        let snapshot: TxSnapshot = "100:105:101,103".parse().unwrap();
        assert!(snapshot.sees(99));
        assert!(snapshot.sees(100) && snapshot.sees(102) && snapshot.sees(104));
        assert!(!snapshot.sees(101) && !snapshot.sees(103));
        assert!(!snapshot.sees(105) && !snapshot.sees(200));
        assert_eq!(
            "7:7:".parse::<TxSnapshot>().unwrap().in_progress,
            Vec::<u64>::new()
        );
        assert!("7".parse::<TxSnapshot>().is_err());
        assert!("a:b:".parse::<TxSnapshot>().is_err());
    }

    #[test]
    fn a_page_shows_the_changes_its_snapshot_sees_up_to_the_last_key_issued() {
        let shown = Shown {
            snapshot: "100:105:101,103".parse().unwrap(),
            issued: 40,
        };
        let at = |tx| ChangePosition { tx, seq: 1 };
        assert!(shown.includes(at(38), 102));
        assert!(
            !shown.includes(at(38), 101),
            "still running when the page was read"
        );
        assert!(
            !shown.includes(at(39), 105),
            "began after the page was read"
        );
        assert!(
            !shown.includes(at(41), 99),
            "a key taken after the page was read is never in it"
        );
        assert!(!shown.is_behind(at(40)));
        assert!(shown.is_behind(at(41)));
    }

    #[test]
    fn positions_round_trip_and_order_by_transaction_first() {
        let a = ChangePosition { tx: 7, seq: 11 };
        let b = ChangePosition { tx: 8, seq: 10 };
        assert!(a < b, "a later transaction comes later, whatever its seq");
        assert_eq!("7.11".parse::<ChangePosition>(), Ok(a));
        assert_eq!(a.to_string(), "7.11");
        assert_eq!(serde_json::to_value(a).unwrap(), serde_json::json!("7.11"));
        assert!(ChangePosition::START < a);
    }

    #[test]
    fn bad_positions_are_refused() {
        for bad in ["", "7", "7.", ".3", "x.1", "1.-2", "1.2.3"] {
            assert!(bad.parse::<ChangePosition>().is_err(), "{bad}");
        }
    }
}

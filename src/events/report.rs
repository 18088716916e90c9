//! `GET /admin/v1/concerts/{concertId}/report`: the sale in figures, kept by the scripts that
//! make the changes, with their outbox entries (outbox.lua): exact, and kept after the sale.

use serde_json::{json, Value};

use crate::store::events::ReportData;

/// The fan changes a report counts, in the order it lists them.
pub const OUTCOMES: &[&str] =
    &["placed", "admitted", "session.started", "session.ended", "completed", "expired", "abandoned", "removed"];

/// The `p`-th percentile of sorted `values` by the nearest-rank method: the smallest value
/// with at least p % of the values at or below it.
pub fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (u64::from(p) * sorted.len() as u64).div_ceil(100).max(1) as usize;
    Some(sorted[rank - 1])
}

/// The report's JSON.
pub fn render(concert: &str, r: &ReportData) -> Value {
    let counts: serde_json::Map<String, Value> =
        OUTCOMES.iter().map(|k| ((*k).to_owned(), json!(r.counts.get(*k).copied().unwrap_or(0)))).collect();
    let per_minute = |series: &[(i64, u64)]| -> Vec<Value> {
        series.iter().map(|(m, n)| json!({"minute": crate::clock::rfc3339(m * 60_000), "count": n})).collect()
    };
    // The queue's length at the end of each minute something happened: placed so far less
    // those who left so far.
    let mut minutes: Vec<i64> = r.joins.iter().chain(&r.left).map(|(m, _)| *m).collect();
    minutes.sort_unstable();
    minutes.dedup();
    let (mut j, mut l, mut length) = (0usize, 0usize, 0i64);
    let mut over_time = Vec::new();
    for m in minutes {
        while j < r.joins.len() && r.joins[j].0 <= m {
            length += r.joins[j].1 as i64;
            j += 1;
        }
        while l < r.left.len() && r.left[l].0 <= m {
            length -= r.left[l].1 as i64;
            l += 1;
        }
        over_time.push(json!({"minute": crate::clock::rfc3339(m * 60_000), "length": length.max(0)}));
    }
    json!({
        "concertId": concert,
        "counts": counts,
        "waitMs": {
            "count": r.waits.len(),
            "p50": percentile(&r.waits, 50),
            "p90": percentile(&r.waits, 90),
            "p99": percentile(&r.waits, 99),
            "max": r.waits.last(),
        },
        "joinsPerMinute": per_minute(&r.joins),
        "admissionsPerMinute": per_minute(&r.admissions),
        "queueLength": over_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 90), Some(90));
        assert_eq!(percentile(&v, 99), Some(99));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[1, 2, 3], 50), Some(2));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn the_queue_length_is_placed_less_left_at_each_minute() {
        let r = ReportData { joins: vec![(10, 5), (12, 3)], left: vec![(11, 2), (12, 4)], ..Default::default() };
        let v = render("c", &r);
        let lengths: Vec<i64> =
            v["queueLength"].as_array().unwrap().iter().map(|p| p["length"].as_i64().unwrap()).collect();
        assert_eq!(lengths, vec![5, 3, 2]);
        assert_eq!(v["counts"]["placed"], 0);
    }
}

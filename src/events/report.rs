//! `GET /admin/v1/concerts/{concertId}/report`: the sale in figures, kept by the scripts that
//! make the changes, with their outbox entries (outbox.lua), and kept after the sale: counts
//! exact; waits as a histogram (percentiles within a bucket's width, an eighth, above the exact
//! ones); per-minute series for the last day, earlier minutes rolled up.

use serde_json::{json, Value};

use crate::store::events::ReportData;

/// The fan changes a report counts, in the order it lists them.
pub const OUTCOMES: &[&str] =
    &["placed", "admitted", "session.started", "session.ended", "completed", "expired", "abandoned", "removed"];

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
    // The minutes before the window kept (outbox.lua keeps the last day of each series) start it.
    let (mut j, mut l, mut length) = (0usize, 0usize, r.joins_older as i64 - r.left_older as i64);
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
    let w = &r.waits;
    json!({
        "concertId": concert,
        "counts": counts,
        "waitMs": {
            "count": w.count,
            "p50": w.percentile(50),
            "p90": w.percentile(90),
            "p99": w.percentile(99),
            "max": w.max,
            "min": w.min,
            "mean": w.mean(),
        },
        "joinsPerMinute": per_minute(&r.joins),
        "admissionsPerMinute": per_minute(&r.admissions),
        "beforeMinutes": {"joins": r.joins_older, "admissions": r.admissions_older, "left": r.left_older},
        "queueLength": over_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_waits_come_from_the_histogram_and_minutes_rolled_up_start_the_queue_length() {
        use crate::store::events::{wait_bucket, WaitHistogram};
        let waits: Vec<u64> = (1..=100).map(|i| i * 1_000).collect();
        let mut buckets = std::collections::BTreeMap::new();
        for w in &waits {
            *buckets.entry(wait_bucket(*w)).or_insert(0u64) += 1;
        }
        let h = WaitHistogram {
            count: 100,
            sum: waits.iter().sum(),
            min: Some(1_000),
            max: Some(100_000),
            buckets: buckets.into_iter().collect(),
        };
        let r = ReportData { waits: h, joins: vec![(10, 5)], joins_older: 7, left_older: 4, ..Default::default() };
        let v = render("c", &r);
        assert_eq!(v["waitMs"]["count"], 100);
        assert_eq!(v["waitMs"]["mean"], 50_500);
        assert_eq!((v["waitMs"]["min"].as_u64(), v["waitMs"]["max"].as_u64()), (Some(1_000), Some(100_000)));
        for (p, exact) in [(50, 50_000u64), (90, 90_000), (99, 99_000)] {
            let got = v["waitMs"][format!("p{p}")].as_u64().unwrap();
            assert!(exact <= got && got <= exact + exact / 8, "p{p}: {got} for {exact}");
        }
        assert_eq!(v["queueLength"][0]["length"], 7 - 4 + 5, "rolled-up minutes count");
        assert_eq!(v["beforeMinutes"]["joins"], 7);
        let empty = render("c", &ReportData::default());
        assert_eq!((empty["waitMs"]["count"].as_u64(), empty["waitMs"]["p50"].is_null()), (Some(0), true));
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

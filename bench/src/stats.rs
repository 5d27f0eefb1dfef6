//! Percentiles and the results table.

use std::time::Duration;

/// The `p`-th percentile (0..=100) of `samples` by the nearest-rank method.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    assert!(!samples.is_empty(), "no samples");
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `values` (mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "no values");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Whether a bigger or a smaller number is better; decides the ratio's direction so that
/// a ratio above 1 always means `exactly` did better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// One row of the results table.
#[derive(Clone, Debug)]
pub struct Row {
    pub workload: String,
    pub unit: &'static str,
    pub better: Better,
    pub exactly: Option<f64>,
    pub dbos: Option<f64>,
}

impl Row {
    /// exactly/dbos for throughput, dbos/exactly for latency: above 1 means exactly is better.
    pub fn ratio(&self) -> Option<f64> {
        let (e, d) = (self.exactly?, self.dbos?);
        match self.better {
            Better::Higher if d > 0.0 => Some(e / d),
            Better::Lower if e > 0.0 => Some(d / e),
            _ => None,
        }
    }
}

/// Renders the rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let header = ["workload", "exactly", "dbos", "ratio"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|row| {
            let value = |v: Option<f64>| match v {
                Some(v) if row.unit == "wf/s" => format!("{v:.0} {}", row.unit),
                Some(v) => format!("{v:.2} {}", row.unit),
                None => "-".to_owned(),
            };
            let ratio = match row.ratio() {
                Some(r) => format!("{r:.2}x"),
                None => "-".to_owned(),
            };
            [row.workload.clone(), value(row.exactly), value(row.dbos), ratio]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cols: [&str; 4]| {
        let mut out = String::from("|");
        for (i, (col, w)) in cols.iter().zip(widths).enumerate() {
            // The first column is text; the numbers are right-aligned.
            if i == 0 {
                out.push_str(&format!(" {col:<w$} |"));
            } else {
                out.push_str(&format!(" {col:>w$} |"));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header);
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, w)| if i == 0 { format!(":{}", "-".repeat(w + 1)) } else { format!("{}:", "-".repeat(w + 1)) })
        .collect();
    out.push_str(&format!("|{}|\n", rule.join("|")));
    for row in &cells {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
    }
    out
}

/// Renders a Markdown table of any number of columns: the first is text (left
/// aligned), the others right-aligned.
pub fn grid(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let mut out = String::from("|");
        for (i, (col, w)) in cols.iter().zip(&widths).enumerate() {
            let pad = w.saturating_sub(col.chars().count());
            if i == 0 {
                out.push_str(&format!(" {col}{} |", " ".repeat(pad)));
            } else {
                out.push_str(&format!(" {}{col} |", " ".repeat(pad)));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, w)| if i == 0 { format!(":{}", "-".repeat(w + 1)) } else { format!("{}:", "-".repeat(w + 1)) })
        .collect();
    out.push_str(&format!("|{}|\n", rule.join("|")));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&samples, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&samples[..1], 99.0), Duration::from_millis(1));
    }

    #[test]
    fn ratio_direction_favours_exactly_above_one() {
        let mut row = Row { workload: "x".into(), unit: "wf/s", better: Better::Higher, exactly: Some(300.0), dbos: Some(100.0) };
        assert_eq!(row.ratio(), Some(3.0));
        row.better = Better::Lower;
        assert_eq!(row.ratio(), Some(1.0 / 3.0));
    }
}

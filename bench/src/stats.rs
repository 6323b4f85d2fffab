//! The statistics of the report: medians and percentiles of samples.

/// The median of `s` (sorting it), or NaN if it is empty.
pub fn median(s: &mut [f64]) -> f64 {
    percentile(s, 0.5)
}

/// The `p`-th quantile of `s` (0 to 1, nearest rank; sorting it), or NaN if
/// it is empty.
pub fn percentile(s: &mut [f64], p: f64) -> f64 {
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let i = ((s.len() - 1) as f64 * p).round() as usize;
    s[i]
}

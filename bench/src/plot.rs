//! The plot of the report: the hand-off latency CDF as an SVG.

use std::fmt::Write as _;

use crate::contenders::Kind;

/// An SVG plot of the hand-off latency CDF per waiter kind, latency on a log
/// axis.
pub fn cdf_svg(results: &[(Kind, Vec<f64>)]) -> String {
    const W: f64 = 760.0;
    const H: f64 = 420.0;
    const LEFT: f64 = 60.0;
    const RIGHT: f64 = 250.0;
    const TOP: f64 = 20.0;
    const BOTTOM: f64 = 50.0;
    const COLOURS: [&str; 9] = [
        "#000000", "#1f77b4", "#17becf", "#d62728", "#ff7f0e", "#2ca02c", "#98df8a", "#9467bd",
        "#8c564b",
    ];
    let all: Vec<f64> = results
        .iter()
        .flat_map(|(_, l)| l.iter().copied())
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).max(1.0);
    let hi = all.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
    let (lo_e, hi_e) = (lo.log10().floor(), hi.log10().ceil());
    let x = |v: f64| LEFT + (v.max(1.0).log10() - lo_e) / (hi_e - lo_e) * (W - LEFT - RIGHT);
    let y = |p: f64| TOP + (1.0 - p) * (H - TOP - BOTTOM);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for e in lo_e as i32..=hi_e as i32 {
        let gx = x(10f64.powi(e));
        let label = match e {
            ..=2 => format!("{} µs", 10f64.powi(e)),
            3..=5 => format!("{} ms", 10f64.powi(e - 3)),
            _ => format!("{} s", 10f64.powi(e - 6)),
        };
        let _ = writeln!(
            svg,
            "<line x1=\"{gx:.1}\" y1=\"{TOP}\" x2=\"{gx:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{gx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            H - BOTTOM,
            H - BOTTOM + 16.0
        );
    }
    for p in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let gy = y(p);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{gy:.1}\" x2=\"{:.1}\" y2=\"{gy:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{p}</text>",
            W - RIGHT,
            LEFT - 6.0,
            gy + 4.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">hand-off latency (log scale)</text>\
         <text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">\
         fraction of hand-offs</text>",
        (LEFT + W - RIGHT) / 2.0,
        H - 12.0,
        (TOP + H - BOTTOM) / 2.0,
        (TOP + H - BOTTOM) / 2.0
    );
    for (i, (kind, latencies)) in results.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut sorted = latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        // A step function: up by 1/n at each sample.
        let mut points = Vec::new();
        for (j, v) in sorted.iter().enumerate() {
            points.push(format!("{:.1},{:.1}", x(*v), y(j as f64 / n)));
            points.push(format!("{:.1},{:.1}", x(*v), y((j + 1) as f64 / n)));
        }
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            points.join(" ")
        );
        let ly = TOP + 10.0 + i as f64 * 18.0;
        let name = kind.name().replace('`', "");
        let _ = writeln!(
            svg,
            "<line x1=\"{:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" \
             stroke-width=\"3\"/><text x=\"{:.1}\" y=\"{:.1}\">{name}</text>",
            W - RIGHT + 10.0,
            W - RIGHT + 30.0,
            W - RIGHT + 36.0,
            ly + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

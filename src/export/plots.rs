//! The dataset card's plots, as SVG files (plotters, SVG backend only): the yield funnel, oracle
//! calls by difficulty band, tools per environment, reject reasons. Every plot has a title, axis
//! titles with units, one label per bar or box, and a height that grows with the number of bars,
//! so labels never overlap. The text is what an SVG viewer renders; plotters only estimates its
//! width, so label areas are sized from the longest label with room to spare.

use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::{AsRangedCoord, SegmentValue, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::BTreeMap;

const FONT: &str = "sans-serif";
const WIDTH: u32 = 960;
const BAR_COLOR: RGBColor = RGBColor(66, 114, 196);

/// One labelled count of a bar chart.
pub(crate) struct Bar {
    pub label: String,
    pub value: u64,
}

fn error(e: impl std::fmt::Display) -> String {
    format!("cannot draw the plot: {e}")
}

/// Width in pixels of a label area holding `labels` at `size` points (generous: SVG viewers'
/// fonts vary, an overlap is worse than white space).
fn label_width(labels: impl Iterator<Item = usize>, size: u32) -> u32 {
    let longest = labels.max().unwrap_or(0) as u32;
    (longest * size * 62 / 100 + 24).clamp(60, 520)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// An SVG `height` pixels high, drawn by `draw` on white.
fn svg(height: u32, draw: impl FnOnce(&Area<'_>) -> Result<(), String>) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(error)?;
        draw(&root)?;
        root.present().map_err(error)?;
    }
    Ok(out)
}

/// A chart with its title, margins and label areas.
fn chart_builder<'a, 'b>(root: &'a Area<'b>, title: &str, y_label_area: u32) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder.caption(title, (FONT, 22)).margin(16).margin_right(40).x_label_area_size(56).y_label_area_size(y_label_area);
    builder
}

/// The axis titles and the label fonts every chart shares.
fn titled<X: Ranged, Y: Ranged>(mesh: &mut MeshStyle<'_, '_, X, Y, SVGBackend<'_>>, x_desc: &str, y_desc: &str) {
    mesh.x_desc(x_desc).y_desc(y_desc).axis_desc_style((FONT, 15)).label_style((FONT, 13));
}

/// Says so in the middle of an empty chart.
fn nothing_to_show(root: &Area<'_>, height: u32) -> Result<(), String> {
    root.draw(&Text::new("(nothing to show)", (WIDTH as i32 / 2 - 60, height as i32 / 2), (FONT, 16))).map_err(error)
}

/// How a bar chart's value axis maps counts to lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scale {
    /// Length proportional to the count, from 0.
    Linear,
    /// Length proportional to the count's logarithm, from 1/2 (so a count of 1 still shows):
    /// counts of different orders of magnitude (32 problems, 767 configurations) all readable.
    Log,
}

impl Scale {
    /// Where bars start.
    fn origin(self) -> f64 {
        match self {
            Scale::Linear => 0.0,
            Scale::Log => 0.5,
        }
    }

    /// The axis' end for a largest count `max`, with room for its label.
    fn end(self, max: f64) -> f64 {
        match self {
            Scale::Linear => max * 1.18,
            Scale::Log => max * 8.0,
        }
    }

    /// Where the label of a bar of `value` starts, just past its end.
    fn label_at(self, value: f64, max: f64) -> f64 {
        match self {
            Scale::Linear => value + max * 0.01,
            Scale::Log => value.max(self.origin()) * 1.08,
        }
    }
}

/// A horizontal bar chart, bars top to bottom in `bars` order, each with its value at its end.
pub(crate) fn horizontal_bars(title: &str, x_desc: &str, y_desc: &str, bars: &[Bar], scale: Scale) -> Result<String, String> {
    let rows = bars.len().max(1) as i32;
    let height = (140 + 34 * rows as u32).max(320);
    svg(height, |root| {
        let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1) as f64;
        let label_area = label_width(bars.iter().map(|b| b.label.chars().count()), 13) + 28;
        let builder = chart_builder(root, title, label_area);
        match scale {
            Scale::Linear => draw_bars(builder, scale.origin()..scale.end(max), bars, scale, (x_desc, y_desc))?,
            Scale::Log => draw_bars(builder, (scale.origin()..scale.end(max)).log_scale(), bars, scale, (x_desc, y_desc))?,
        }
        if bars.is_empty() { nothing_to_show(root, height) } else { Ok(()) }
    })
}

/// Draws `bars` on a chart whose value axis is `x` (linear or logarithmic), with their labels.
fn draw_bars<X>(
    mut builder: ChartBuilder<'_, '_, SVGBackend<'_>>,
    x: X,
    bars: &[Bar],
    scale: Scale,
    (x_desc, y_desc): (&str, &str),
) -> Result<(), String>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let rows = bars.len().max(1) as i32;
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1) as f64;
    let mut chart = builder.build_cartesian_2d(x, (0..rows - 1).into_segmented()).map_err(error)?;
    // Bar i sits in segment rows-1-i, so the first bar is at the top.
    let label_of = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(s) => bars.get((rows - 1 - s) as usize).map_or(String::new(), |b| b.label.clone()),
        _ => String::new(),
    };
    let mut mesh = chart.configure_mesh();
    titled(&mut mesh, x_desc, y_desc);
    mesh.disable_y_mesh()
        .x_max_light_lines(1)
        .y_labels(rows as usize)
        .y_label_formatter(&label_of)
        .x_label_formatter(&|v| if *v < 1.0 { String::new() } else { thousands(*v as u64) })
        .x_labels(6)
        .draw()
        .map_err(error)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, bar)| {
            let segment = rows - 1 - i as i32;
            let end = (bar.value as f64).max(scale.origin());
            let mut rect = Rectangle::new(
                [(scale.origin(), SegmentValue::Exact(segment)), (end, SegmentValue::Exact(segment + 1))],
                BAR_COLOR.filled(),
            );
            rect.set_margin(6, 6, 0, 0);
            rect
        }))
        .map_err(error)?;
    let value_style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    chart
        .draw_series(bars.iter().enumerate().map(|(i, bar)| {
            let segment = rows - 1 - i as i32;
            let at = scale.label_at(bar.value as f64, max);
            Text::new(thousands(bar.value), (at, SegmentValue::CenterOf(segment)), value_style.clone())
        }))
        .map_err(error)?;
    Ok(())
}

/// A vertical bar chart of counts per integer value (a histogram of small integers).
pub(crate) fn integer_histogram(title: &str, x_desc: &str, y_desc: &str, counts: &BTreeMap<i32, u64>) -> Result<String, String> {
    svg(480, |root| {
        let (low, high) = match (counts.keys().next(), counts.keys().next_back()) {
            (Some(&low), Some(&high)) => (low, high),
            _ => (0, 1),
        };
        let max = counts.values().copied().max().unwrap_or(0).max(1) as f64;
        let mut chart =
            chart_builder(root, title, 84).build_cartesian_2d((low..high).into_segmented(), 0f64..max * 1.15).map_err(error)?;
        let span = (high - low + 1) as usize;
        let mut mesh = chart.configure_mesh();
        titled(&mut mesh, x_desc, y_desc);
        mesh.disable_x_mesh()
            .y_max_light_lines(1)
            .x_labels(span.min(25))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(n) => n.to_string(),
                _ => String::new(),
            })
            .y_label_formatter(&|v| thousands(*v as u64))
            .y_labels(6)
            .draw()
            .map_err(error)?;
        chart
            .draw_series(counts.iter().map(|(&n, &count)| {
                let mut rect = Rectangle::new(
                    [(SegmentValue::Exact(n), 0.0), (SegmentValue::Exact(n + 1), count as f64)],
                    BAR_COLOR.filled(),
                );
                rect.set_margin(0, 0, 3, 3);
                rect
            }))
            .map_err(error)?;
        let value_style = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        if span <= 30 {
            chart
                .draw_series(counts.iter().map(|(&n, &count)| {
                    Text::new(thousands(count), (SegmentValue::CenterOf(n), count as f64 + max * 0.01), value_style.clone())
                }))
                .map_err(error)?;
        }
        Ok(())
    })
}

/// The value at quantile `q` (0..=1) of a distribution given as value -> count (nearest rank).
fn quantile(counts: &BTreeMap<i32, u64>, q: f64) -> f64 {
    let total: u64 = counts.values().sum();
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total.max(1));
    let mut seen = 0;
    for (&value, &count) in counts {
        seen += count;
        if seen >= rank {
            return f64::from(value);
        }
    }
    0.0
}

/// Box plots of a count per category: the box spans the middle half (quartiles), the line in it
/// is the median, the whiskers reach the smallest and largest value; `n` is in each label.
pub(crate) fn box_plots(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    groups: &[(String, BTreeMap<i32, u64>)],
) -> Result<String, String> {
    const HEIGHT: u32 = 520;
    svg(HEIGHT, |root| {
        let categories = groups.len().max(1);
        let max = groups.iter().filter_map(|(_, counts)| counts.keys().next_back()).copied().max().unwrap_or(1).max(1) as f64;
        let labels: Vec<String> =
            groups.iter().map(|(name, counts)| format!("{name} (n={})", thousands(counts.values().sum()))).collect();
        let mut chart = chart_builder(root, title, 72)
            .build_cartesian_2d(-0.5f64..categories as f64 - 0.5, 0f64..max * 1.1)
            .map_err(error)?;
        let mut mesh = chart.configure_mesh();
        titled(&mut mesh, x_desc, y_desc);
        mesh.disable_x_mesh()
            .y_max_light_lines(1)
            .x_labels(categories)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 { labels.get(i as usize).cloned().unwrap_or_default() } else { String::new() }
            })
            .y_label_formatter(&|y| format!("{y:.0}"))
            .y_labels(8)
            .draw()
            .map_err(error)?;
        let line = BAR_COLOR.stroke_width(2);
        for (i, (_, counts)) in groups.iter().enumerate().filter(|(_, (_, counts))| !counts.is_empty()) {
            let x = i as f64;
            let [low, q1, median, q3, high] = [0.0, 0.25, 0.5, 0.75, 1.0].map(|q| quantile(counts, q));
            let segment = |points: Vec<(f64, f64)>| PathElement::new(points, line);
            chart.draw_series([Rectangle::new([(x - 0.18, q1), (x + 0.18, q3)], BAR_COLOR.mix(0.25).filled())]).map_err(error)?;
            chart
                .draw_series([
                    segment(vec![(x - 0.18, q1), (x + 0.18, q1), (x + 0.18, q3), (x - 0.18, q3), (x - 0.18, q1)]),
                    segment(vec![(x - 0.18, median), (x + 0.18, median)]),
                    segment(vec![(x, low), (x, q1)]),
                    segment(vec![(x, q3), (x, high)]),
                    segment(vec![(x - 0.08, low), (x + 0.08, low)]),
                    segment(vec![(x - 0.08, high), (x + 0.08, high)]),
                ])
                .map_err(error)?;
        }
        if groups.iter().all(|(_, counts)| counts.is_empty()) { nothing_to_show(root, HEIGHT) } else { Ok(()) }
    })
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_elements(svg: &str) -> Vec<String> {
        svg.split("<text").skip(1).map(|t| t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()].trim().to_string()).collect()
    }

    #[test]
    fn bar_charts_carry_their_title_axes_and_every_label() {
        let bars = vec![Bar { label: "problems ingested".into(), value: 1200 }, Bar { label: "kept".into(), value: 7 }];
        let svg = horizontal_bars("Yield", "count (rows)", "stage", &bars, Scale::Linear).unwrap();
        let texts = text_elements(&svg);
        for expected in ["Yield", "count (rows)", "stage", "problems ingested", "kept", "1,200", "7"] {
            assert!(texts.iter().any(|t| t == expected), "no `{expected}` in {texts:?}");
        }
        for scale in [Scale::Linear, Scale::Log] {
            let empty = horizontal_bars("Rejects", "rejects", "reason", &[], scale).unwrap();
            assert!(text_elements(&empty).iter().any(|t| t == "(nothing to show)"));
        }
    }

    /// The widths of the bars of a bar chart, top to bottom.
    fn bar_widths(svg: &str) -> Vec<f64> {
        let fill = format!("fill=\"#{:02X}{:02X}{:02X}\"", BAR_COLOR.0, BAR_COLOR.1, BAR_COLOR.2);
        let attribute = |rect: &str, name: &str| -> f64 {
            let start = rect.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            rect[start..start + rect[start..].find('"').unwrap()].parse().unwrap()
        };
        let mut bars: Vec<(f64, f64)> = svg
            .split("<rect")
            .skip(1)
            .map(|r| &r[..r.find("/>").unwrap()])
            .filter(|r| r.contains(&fill))
            .map(|r| (attribute(r, "y"), attribute(r, "width")))
            .collect();
        bars.sort_by(|a, b| a.0.total_cmp(&b.0));
        bars.into_iter().map(|(_, width)| width).collect()
    }

    #[test]
    fn a_log_funnel_shows_every_bar_whatever_the_orders_of_magnitude() {
        let counts = [32, 30, 25, 767, 1_000_000, 1];
        let bars: Vec<Bar> = counts.iter().map(|&value| Bar { label: format!("stage {value}"), value }).collect();
        let log = bar_widths(&horizontal_bars("Yield", "count, log scale", "stage", &bars, Scale::Log).unwrap());
        assert_eq!(log.len(), counts.len(), "one bar per count");
        let widest = log.iter().copied().fold(0.0, f64::max);
        for (count, width) in counts.iter().zip(&log) {
            assert!(*width >= 20.0, "the bar of {count} is {width} px wide: {log:?}");
        }
        assert!(log[0] >= widest / 5.0, "32 beside 1,000,000 is a fifth of its bar at least: {log:?}");
        assert!(log[0] < log[3] && log[3] < log[4], "longer bars for larger counts: {log:?}");
        let linear = bar_widths(&horizontal_bars("Yield", "count", "stage", &bars, Scale::Linear).unwrap());
        assert!(linear[0] < 1.0, "on a linear axis 32 beside 1,000,000 is a sliver: {linear:?}");
    }

    #[test]
    fn histograms_and_box_plots_render_with_empty_inputs_too() {
        let counts = BTreeMap::from([(4, 10), (6, 3)]);
        let svg = integer_histogram("Tools", "tools per environment", "environments", &counts).unwrap();
        assert!(text_elements(&svg).iter().any(|t| t == "10"));
        integer_histogram("Tools", "x", "y", &BTreeMap::new()).unwrap();
        let groups = vec![("easy".to_string(), BTreeMap::from([(10, 2), (20, 1)])), ("hard".to_string(), BTreeMap::new())];
        let svg = box_plots("Calls", "band", "calls", &groups).unwrap();
        assert!(text_elements(&svg).iter().any(|t| t == "easy (n=3)"), "{:?}", text_elements(&svg));
        box_plots("Calls", "band", "calls", &[]).unwrap();
        assert_eq!(thousands(1_234_567), "1,234,567");
        let counts = BTreeMap::from([(10, 1), (12, 2), (40, 1)]);
        assert_eq!([0.0, 0.25, 0.5, 0.75, 1.0].map(|q| quantile(&counts, q)), [10.0, 10.0, 12.0, 12.0, 40.0]);
        assert_eq!(thousands(999), "999");
    }
}

//! The report's charts, each drawn twice — PNG for quick looks, SVG for the HTML page.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

use super::analysis::axis_position;
use crate::error::{Result, TuneError};
use crate::model::Value;
use crate::study::{TrialRecord, TrialState};

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Draws `draw` into `<dir>/<name>.png` and `<dir>/<name>.svg`; returns both paths.
fn both(
    dir: &Path,
    name: &str,
    size: (u32, u32),
    draw: impl Fn(&DrawingArea<BitMapBackend, Shift>) -> DrawResult,
    draw_svg: impl Fn(&DrawingArea<SVGBackend, Shift>) -> DrawResult,
) -> Result<Vec<PathBuf>> {
    let png = dir.join(format!("{name}.png"));
    let svg = dir.join(format!("{name}.svg"));
    let fail = |p: &Path, e: Box<dyn std::error::Error>| TuneError::io(p, std::io::Error::other(e.to_string()));
    crate::font::register();
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&png, e.into()))?;
        draw(&root).map_err(|e| fail(&png, e))?;
        root.present().map_err(|e| fail(&png, e.into()))?;
    }
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&svg, e.into()))?;
        draw_svg(&root).map_err(|e| fail(&svg, e))?;
        root.present().map_err(|e| fail(&svg, e.into()))?;
    }
    Ok(vec![png, svg])
}

/// Same closure body for both backends.
macro_rules! chart {
    ($dir:expr, $name:expr, $size:expr, |$root:ident| $body:block) => {
        both(
            $dir,
            $name,
            $size,
            |$root: &DrawingArea<BitMapBackend, Shift>| $body,
            |$root: &DrawingArea<SVGBackend, Shift>| $body,
        )
    };
}

/// The frame most charts share: a 20-point caption, a 10-pixel margin, and room for the axes'
/// labels (`y_labels` pixels left of the plot).
fn framed<'a, 'b, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    caption: impl AsRef<str>,
    y_labels: u32,
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(root);
    builder.caption(caption, ("sans-serif", 20)).margin(10).x_label_area_size(35).y_label_area_size(y_labels);
    builder
}

/// A legend entry's key: a short line in the series' own colour and width.
fn line_key<C: Color + Copy>(color: C) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
}

/// The legend every chart with labelled series draws: boxed, half see-through, at `at`.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    c: &mut ChartContext<'a, DB, CT>,
    at: SeriesLabelPosition,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    c.configure_series_labels().position(at).background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    Ok(())
}

fn state_color(s: TrialState) -> RGBColor {
    match s {
        TrialState::Complete => RGBColor(31, 119, 180),
        TrialState::Pruned => RGBColor(255, 127, 14),
        TrialState::Failed => RGBColor(214, 39, 40),
        TrialState::Infeasible => RGBColor(127, 127, 127),
        TrialState::Running => RGBColor(44, 160, 44),
        TrialState::Paused => RGBColor(148, 103, 189),
    }
}

fn value_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(0.005);
    ((lo - pad).max(0.0), (hi + pad).min(1.0))
}

/// Horizontal bars: best val_acc of the top trials, coloured by state.
pub fn leaderboard(dir: &Path, ranked: &[&TrialRecord]) -> Result<Vec<PathBuf>> {
    let rows: Vec<(String, f64, RGBColor)> = ranked
        .iter()
        .take(15)
        .filter_map(|t| t.best().map(|b| (format!("#{}", t.number), b.0, state_color(t.state))))
        .collect();
    let (lo, hi) = value_range(rows.iter().map(|r| r.1));
    let frame = BarFrame {
        name: "leaderboard",
        title: "Leaderboard: best val_acc (blue complete, orange pruned)",
        x_desc: "best val_acc",
        label_width: 60,
    };
    horizontal_bars(dir, frame, lo..hi, &rows)
}

/// Value of each trained trial by trial number, and the best so far.
pub fn history(dir: &Path, trials: &BTreeMap<usize, TrialRecord>) -> Result<Vec<PathBuf>> {
    let points: Vec<(usize, f64, TrialState)> =
        trials.values().filter_map(|t| t.best().map(|b| (t.number, b.0, t.state))).collect();
    let mut best = f64::NEG_INFINITY;
    let running: Vec<(usize, f64)> = points
        .iter()
        .map(|p| {
            best = best.max(p.1);
            (p.0, best)
        })
        .collect();
    let (lo, hi) = value_range(points.iter().map(|p| p.1));
    let max_n = trials.keys().max().copied().unwrap_or(0) + 1;
    chart!(dir, "history", (900, 450), |root| {
        let mut c = framed(root, "Optimization history", 55).build_cartesian_2d(0usize..max_n, lo..hi)?;
        c.configure_mesh().x_desc("trial").y_desc("best val_acc").draw()?;
        c.draw_series(points.iter().map(|p| Circle::new((p.0, p.1), 4, state_color(p.2).filled())))?;
        c.draw_series(LineSeries::new(running.iter().copied(), RGBColor(214, 39, 40).stroke_width(2)))?
            .label("best so far")
            .legend(line_key(RGBColor(214, 39, 40)));
        draw_legend(&mut c, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })
}

/// val_acc per epoch of every trial; pruned trials dashed in orange with a cross where they stopped.
pub fn learning_curves(dir: &Path, trials: &BTreeMap<usize, TrialRecord>) -> Result<Vec<PathBuf>> {
    let curves: Vec<(&TrialRecord, Vec<(usize, f64)>)> = trials
        .values()
        .filter(|t| !t.history.is_empty())
        .map(|t| (t, t.history.iter().map(|m| (m.epoch, m.val_acc)).collect()))
        .collect();
    let (lo, hi) = value_range(curves.iter().flat_map(|c| c.1.iter().map(|p| p.1)));
    let max_epoch = curves.iter().flat_map(|c| c.1.iter().map(|p| p.0)).max().unwrap_or(1) + 1;
    chart!(dir, "learning_curves", (900, 450), |root| {
        let mut c = framed(root, "Learning curves (orange dashed: pruned, × where stopped)", 55)
            .build_cartesian_2d(1usize..max_epoch, lo..hi)?;
        c.configure_mesh().x_desc("epoch").y_desc("val_acc").draw()?;
        for (i, (t, pts)) in curves.iter().enumerate() {
            if t.state == TrialState::Pruned {
                let style = state_color(TrialState::Pruned).stroke_width(1);
                c.draw_series(DashedLineSeries::new(pts.iter().copied(), 5, 4, style))?;
                if let Some(last) = pts.last() {
                    c.draw_series(std::iter::once(Cross::new(
                        *last,
                        5,
                        state_color(TrialState::Pruned).stroke_width(2),
                    )))?;
                }
            } else {
                let color = Palette99::pick(i).mix(0.9);
                c.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?;
            }
        }
        Ok(())
    })
}

/// val_acc per epoch of every retrained seed: one colour per trial, a dot at each seed's best
/// (restored) epoch, and the legend giving each seed's test accuracy.
pub fn retrain_curves(dir: &Path, retrains: &[super::retrains::Retrained]) -> Result<Vec<PathBuf>> {
    let series: Vec<(usize, &super::retrains::SeedRun)> =
        retrains.iter().enumerate().flat_map(|(i, t)| t.seeds.iter().map(move |s| (i, s))).collect();
    // The interesting part is the top: start a little below the first epoch's median.
    let mut firsts: Vec<f64> = series.iter().filter_map(|(_, s)| s.history.first().map(|m| m.val_acc)).collect();
    firsts.sort_by(f64::total_cmp);
    let floor = firsts.get(firsts.len() / 2).copied().unwrap_or(0.0);
    let (lo, hi) =
        value_range(series.iter().flat_map(|(_, s)| s.history.iter().map(|m| m.val_acc)).filter(|v| *v >= floor));
    let max_epoch = series.iter().map(|(_, s)| s.history.len()).max().unwrap_or(1) + 1;
    chart!(dir, "retrain_curves", (900, 480), |root| {
        let mut c = framed(root, "Retrains: val_acc per epoch (dot: restored best epoch)", 55)
            .build_cartesian_2d(1usize..max_epoch, lo..hi)?;
        c.configure_mesh().x_desc("epoch").y_desc("val_acc").draw()?;
        for (i, s) in &series {
            let color = Palette99::pick(*i).mix(0.9);
            let trial = retrains[*i].trial;
            let test = s.test_accuracy.map_or("training".to_string(), |a| format!("test {a:.4}"));
            let pts: Vec<(usize, f64)> = s.history.iter().map(|m| (m.epoch, m.val_acc.max(lo))).collect();
            // Seeds of one trial share its colour and differ by dash: solid, dashed, dotted.
            let dash = [(0, 0), (8, 4), (2, 3)][s.seed % 3];
            let drawn = if dash.0 == 0 {
                c.draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            } else {
                c.draw_series(DashedLineSeries::new(pts, dash.0, dash.1, color.stroke_width(2)))?
            };
            drawn.label(format!("trial {trial} seed {}: {test}", s.seed)).legend(line_key(color));
            if let Some((v, e)) = s.best() {
                c.draw_series(std::iter::once(Circle::new((e, v), 4, color.filled())))?;
            }
        }
        draw_legend(&mut c, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })
}

/// One polyline per trained trial across the varying parameters, coloured by val_acc.
pub fn parallel_coordinates(
    dir: &Path,
    trials: &BTreeMap<usize, TrialRecord>,
    params: &[String],
) -> Result<Vec<PathBuf>> {
    let trained: Vec<&TrialRecord> = trials.values().filter(|t| t.value().is_some()).collect();
    let axes: Vec<String> = params.iter().take(10).cloned().collect();
    let values: Vec<Vec<Value>> =
        axes.iter().map(|a| trained.iter().filter_map(|t| t.params.get(a).cloned()).collect()).collect();
    let (lo, hi) = value_range(trained.iter().filter_map(|t| t.value()));
    let n_axes = axes.len() + 1;
    chart!(dir, "parallel_coordinates", (160 * n_axes as u32 + 100, 480), |root| {
        let mut c = ChartBuilder::on(root)
            .caption("Parallel coordinates (colour: val_acc, yellow best)", ("sans-serif", 20))
            .margin(20)
            .x_label_area_size(40)
            .y_label_area_size(10)
            .build_cartesian_2d(-0.2f64..(n_axes as f64 - 0.8), -0.05f64..1.05)?;
        c.configure_mesh()
            .disable_mesh()
            .x_labels(n_axes)
            .x_label_formatter(&|x| {
                let i = x.round() as usize;
                if (x - i as f64).abs() > 0.01 {
                    String::new()
                } else if i < axes.len() {
                    axes[i].clone()
                } else {
                    "val_acc".into()
                }
            })
            .y_labels(0)
            .draw()?;
        for i in 0..n_axes {
            c.draw_series(LineSeries::new([(i as f64, 0.0), (i as f64, 1.0)], BLACK.mix(0.4)))?;
        }
        for t in &trained {
            let v = t.value().unwrap_or(lo);
            let shade = if hi > lo { ((v - lo) / (hi - lo)) as f32 } else { 1.0 };
            let color = ViridisRGB.get_color(shade);
            let mut pts: Vec<(f64, f64)> = Vec::new();
            for (i, a) in axes.iter().enumerate() {
                if let Some(x) = t.params.get(a) {
                    pts.push((i as f64, axis_position(&values[i], x)));
                }
            }
            pts.push((axes.len() as f64, if hi > lo { (v - lo) / (hi - lo) } else { 0.5 }));
            c.draw_series(LineSeries::new(pts, color.stroke_width(2)))?;
        }
        Ok(())
    })
}

/// Horizontal bars of a (name, score) list; used for importance and infeasibility.
pub fn bars(dir: &Path, name: &str, title: &str, x_desc: &str, rows: &[(String, f64)]) -> Result<Vec<PathBuf>> {
    let rows: Vec<(String, f64, RGBColor)> =
        rows.iter().take(15).map(|(label, v)| (label.clone(), *v, RGBColor(31, 119, 180))).collect();
    horizontal_bars(dir, BarFrame { name, title, x_desc, label_width: 150 }, 0.0..1.0, &rows)
}

/// What a horizontal bar chart is called and labelled.
struct BarFrame<'a> {
    name: &'a str,
    title: &'a str,
    x_desc: &'a str,
    /// Pixels left of the plot for the row labels.
    label_width: u32,
}

/// One bar per (label, value, colour) row, the first at the top, over `x`.
fn horizontal_bars(
    dir: &Path,
    frame: BarFrame,
    x: std::ops::Range<f64>,
    rows: &[(String, f64, RGBColor)],
) -> Result<Vec<PathBuf>> {
    let n = rows.len().max(1);
    chart!(dir, frame.name, (900, 120 + 28 * n as u32), |root| {
        let mut c =
            framed(root, frame.title, frame.label_width).build_cartesian_2d(x.clone(), (0..n - 1).into_segmented())?;
        // Row i is drawn in segment n − 1 − i.
        c.configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|y| match y {
                SegmentValue::CenterOf(s) => rows.get(n - 1 - *s).map_or(String::new(), |r| r.0.clone()),
                _ => String::new(),
            })
            .x_desc(frame.x_desc)
            .draw()?;
        c.draw_series(rows.iter().enumerate().map(|(i, r)| {
            Rectangle::new([(x.start, SegmentValue::Exact(n - 1 - i)), (r.1, SegmentValue::Exact(n - i))], r.2.filled())
        }))?;
        Ok(())
    })
}

/// Confusion matrix heat map with counts, for `tune retrain`.
pub fn confusion(path_png: &Path, matrix: &[Vec<usize>], names: &[&str]) -> Result<()> {
    let dir = path_png.parent().unwrap_or(Path::new("."));
    let stem = path_png.file_stem().and_then(|s| s.to_str()).unwrap_or("confusion");
    let k = matrix.len();
    let max = matrix.iter().flatten().copied().max().unwrap_or(1).max(1) as f32;
    chart!(dir, stem, (820, 760), |root| {
        let mut c = framed(root, "Confusion matrix (rows: true class, columns: predicted)", 110)
            .x_label_area_size(50)
            .build_cartesian_2d((0..k - 1).into_segmented(), (0..k - 1).into_segmented())?;
        // True class 0 is the top row: segment y holds class k − 1 − y.
        let column = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => names.get(*i).map_or(String::new(), |s| s.to_string()),
            _ => String::new(),
        };
        let row = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => names.get(k - 1 - *i).map_or(String::new(), |s| s.to_string()),
            _ => String::new(),
        };
        c.configure_mesh()
            .disable_mesh()
            .x_labels(k)
            .y_labels(k)
            .x_label_formatter(&column)
            .y_label_formatter(&row)
            .x_label_style(("sans-serif", 10))
            .x_desc("predicted")
            .y_desc("true")
            .draw()?;
        for (t, row) in matrix.iter().enumerate() {
            for (p, &count) in row.iter().enumerate() {
                let y = k - 1 - t;
                let shade = (count as f32 / max).sqrt();
                c.draw_series(std::iter::once(Rectangle::new(
                    [
                        (SegmentValue::Exact(p), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(p + 1), SegmentValue::Exact(y + 1)),
                    ],
                    ViridisRGB.get_color(shade).filled(),
                )))?;
                let color = if shade > 0.6 { BLACK } else { WHITE };
                c.draw_series(std::iter::once(Text::new(
                    count.to_string(),
                    (SegmentValue::CenterOf(p), SegmentValue::CenterOf(y)),
                    ("sans-serif", 13).into_font().color(&color),
                )))?;
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// Loss and accuracy per epoch (train and validation), for `tune retrain`.
pub fn training_history(path_png: &Path, history: &[crate::training::EpochMetrics]) -> Result<()> {
    let dir = path_png.parent().unwrap_or(Path::new("."));
    let stem = path_png.file_stem().and_then(|s| s.to_str()).unwrap_or("history");
    let max_epoch = history.len().max(2);
    chart!(dir, stem, (1000, 420), |root| {
        let halves = root.split_evenly((1, 2));
        for (half, (title, train, val)) in halves.iter().zip([("loss", 0usize, 1usize), ("accuracy", 2, 3)]) {
            let pick =
                |m: &crate::training::EpochMetrics, i: usize| [m.train_loss, m.val_loss, m.train_acc, m.val_acc][i];
            let (lo, hi) = history
                .iter()
                .flat_map(|m| [pick(m, train), pick(m, val)])
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
            let (lo, hi) =
                if lo.is_finite() { (lo - 0.05 * (hi - lo + 1e-3), hi + 0.05 * (hi - lo + 1e-3)) } else { (0.0, 1.0) };
            let mut c = ChartBuilder::on(half)
                .caption(title, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(1usize..max_epoch, lo..hi)?;
            c.configure_mesh().x_desc("epoch").draw()?;
            for (i, name, color) in
                [(train, "train", RGBColor(31, 119, 180)), (val, "validation", RGBColor(255, 127, 14))]
            {
                c.draw_series(LineSeries::new(history.iter().map(|m| (m.epoch, pick(m, i))), color.stroke_width(2)))?
                    .label(name)
                    .legend(line_key(color));
            }
            draw_legend(&mut c, SeriesLabelPosition::MiddleRight)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// A multi-objective study's trade-off: best val_acc against the first other objective
/// (parameters, FLOPs or latency, log scale), ranked trials coloured by state, the non-dominated front
/// joined by a line. Nothing is drawn for a single-objective study.
pub fn front(
    dir: &Path,
    trials: &BTreeMap<usize, TrialRecord>,
    objectives: &[crate::study::objectives::Objective],
) -> Result<Vec<PathBuf>> {
    use crate::study::objectives::Metric;
    let Some(size_metric) = objectives.iter().map(|o| o.metric).find(|m| *m != Metric::ValAcc) else {
        return Ok(Vec::new());
    };
    let rows = crate::study::leaderboard::rank_with(trials, objectives);
    let points: Vec<(f64, f64, TrialState, bool)> = rows
        .iter()
        .filter_map(|r| Some((r.objective(size_metric)?, r.trial.value()?, r.trial.state, r.front == Some(0))))
        .collect();
    let mut line: Vec<(f64, f64)> = points.iter().filter(|p| p.3).map(|p| (p.0, p.1)).collect();
    line.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (lo, hi) = value_range(points.iter().map(|p| p.1));
    let (smallest, largest) = points.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (x0, x1) = if smallest.is_finite() { (smallest / 1.5, largest * 1.5) } else { (1.0, 10.0) };
    let name = size_metric.name();
    chart!(dir, "front", (900, 500), |root| {
        let mut c = framed(root, format!("Accuracy against {name}: the non-dominated front"), 55)
            .x_label_area_size(40)
            .build_cartesian_2d((x0..x1).log_scale(), lo..hi)?;
        c.configure_mesh()
            .x_desc(format!("{name} (log scale)"))
            .y_desc("best val_acc")
            .x_label_formatter(&|v| match size_metric {
                Metric::Params | Metric::Flops => crate::model::shape::group(*v as usize),
                _ => format!("{v:.2} ms"),
            })
            .draw()?;
        c.draw_series(points.iter().map(|p| Circle::new((p.0, p.1), 4, state_color(p.2).filled())))?;
        c.draw_series(LineSeries::new(line.iter().copied(), BLACK.stroke_width(2)))?
            .label(format!("front: no network with less {name} is as accurate"))
            .legend(line_key(BLACK));
        c.draw_series(line.iter().map(|p| Circle::new(*p, 6, BLACK.stroke_width(2))))?;
        draw_legend(&mut c, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })
}

//! `tune data samples` and `--distribution`: a grid of example images per class and the
//! per-split class-distribution bar chart.

use std::path::Path;

use plotters::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::{CLASS_NAMES, CLASSES, Images};
use crate::error::{Result, TuneError};

fn plot_err(path: &Path, e: impl std::fmt::Display) -> TuneError {
    TuneError::io(path, std::io::Error::other(e.to_string()))
}

/// Draws `per_class` random images of each class from `indices`, one row per class, titled.
pub fn samples_grid(images: &Images, indices: &[usize], per_class: usize, seed: u64, out: &Path) -> Result<()> {
    const SCALE: i32 = 3;
    const CELL: i32 = 28 * SCALE + 6;
    const LEFT: i32 = 120;
    const TOP: i32 = 34;
    let (w, h) = (LEFT + per_class as i32 * CELL, TOP + CLASSES as i32 * CELL);
    crate::font::register();
    let root = BitMapBackend::new(out, (w as u32, h as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(out, e))?;
    root.draw(&Text::new("Fashion-MNIST: random training images per class", (10, 8), ("sans-serif", 18).into_font()))
        .map_err(|e| plot_err(out, e))?;
    let mut rng = StdRng::seed_from_u64(seed);
    for (class, name) in CLASS_NAMES.iter().enumerate().take(CLASSES) {
        let of_class: Vec<usize> = indices.iter().copied().filter(|&i| images.labels[i] as usize == class).collect();
        let y0 = TOP + class as i32 * CELL;
        root.draw(&Text::new(*name, (8, y0 + CELL / 2 - 8), ("sans-serif", 15).into_font()))
            .map_err(|e| plot_err(out, e))?;
        for (col, &i) in of_class.choose_multiple(&mut rng, per_class).enumerate() {
            let x0 = LEFT + col as i32 * CELL;
            for (p, &v) in images.image(i).iter().enumerate() {
                let (r, c) = ((p / 28) as i32, (p % 28) as i32);
                let shade = 255 - v;
                let rect = Rectangle::new(
                    [(x0 + c * SCALE, y0 + r * SCALE), (x0 + (c + 1) * SCALE, y0 + (r + 1) * SCALE)],
                    RGBColor(shade, shade, shade).filled(),
                );
                root.draw(&rect).map_err(|e| plot_err(out, e))?;
            }
        }
    }
    root.present().map_err(|e| plot_err(out, e))
}

/// Grouped bar chart: images per class for each named split.
pub fn distribution_chart(splits: &[(&str, [usize; CLASSES])], out: &Path) -> Result<()> {
    crate::font::register();
    let root = BitMapBackend::new(out, (1000, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(out, e))?;
    // Head room above the tallest bar for the legend.
    let max = (splits.iter().flat_map(|(_, c)| c.iter()).copied().max().unwrap_or(1) as f64 * 1.3) as u32;
    let mut chart = ChartBuilder::on(&root)
        .caption("Images per class and split", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0..CLASSES - 1).into_segmented(), 0u32..max)
        .map_err(|e| plot_err(out, e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(CLASSES)
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => CLASS_NAMES.get(*i).map_or(String::new(), |s| s.to_string()),
            _ => String::new(),
        })
        .y_desc("images")
        .draw()
        .map_err(|e| plot_err(out, e))?;
    let width = 0.8 / splits.len() as f64;
    for (s, (name, counts)) in splits.iter().enumerate() {
        let color = Palette99::pick(s).to_rgba();
        let bars = counts.iter().enumerate().map(move |(c, &n)| {
            // Each class segment is split into one bar per split, in pixel space.
            let offset = 0.1 + s as f64 * width;
            BarElement { class: c, from: offset, to: offset + width, height: n as u32, color }
        });
        chart
            .draw_series(bars.map(|b| b.rectangle()))
            .map_err(|e| plot_err(out, e))?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperMiddle)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_err(out, e))?;
    root.present().map_err(|e| plot_err(out, e))
}

/// One bar inside a class segment: `from`/`to` are fractions of the segment's width.
struct BarElement {
    class: usize,
    from: f64,
    to: f64,
    height: u32,
    color: RGBAColor,
}

impl BarElement {
    fn rectangle(&self) -> Rectangle<(SegmentValue<usize>, u32)> {
        let mut r = Rectangle::new(
            [(SegmentValue::Exact(self.class), 0), (SegmentValue::Exact(self.class + 1), self.height)],
            self.color.filled(),
        );
        // Margins in pixels approximate the fractions for a 1000 px wide chart (≈ 90 px per class).
        let seg = 92.0;
        r.set_margin(0, 0, (self.from * seg) as u32, ((1.0 - self.to) * seg) as u32);
        r
    }
}

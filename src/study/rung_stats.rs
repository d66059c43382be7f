//! `tune bench rungs`: how well what a rung ranks on predicts where a trial ends, over a
//! recorded learning-curve table. For every epoch that could be a rung, the Spearman rank
//! correlation between each rule's score and the configuration's final value (its best epoch):
//! - `value`: the best val_acc so far (what ASHA and Hyperband rank on today);
//! - `slope`: the last epoch's val_acc extrapolated linearly to the last epoch of the table;
//! - `fitted`: a least-squares model `final ≈ a + b·v + c·(v − v_prev)` fitted on the other
//!   rows (leave-one-out), i.e. a model of the curves a study has already seen.
//!
//! A rule that ranks better at early rungs spares late bloomers that `value` stops.

use crate::study::replay::{CurveTable, Row};

/// A rule's score of one row at epoch `e` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Value,
    Slope,
    Fitted,
}

impl Rule {
    pub const ALL: [Rule; 3] = [Rule::Value, Rule::Slope, Rule::Fitted];

    pub fn name(self) -> &'static str {
        match self {
            Rule::Value => "value",
            Rule::Slope => "slope",
            Rule::Fitted => "fitted",
        }
    }
}

fn best_at(row: &Row, e: usize) -> f64 {
    row.val_acc[..e].iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// The two features of a row at epoch `e`: its best value so far and its last step.
fn features(row: &Row, e: usize) -> (f64, f64) {
    let v = best_at(row, e);
    let prev = if e >= 2 { best_at(row, e - 1) } else { v };
    (v, v - prev)
}

/// Least squares of `y ≈ a + b·x1 + c·x2` (normal equations, 3 × 3, with a small ridge so a
/// constant feature, as the step at epoch 1, does not make them singular).
fn fit(points: &[((f64, f64), f64)]) -> [f64; 3] {
    let mut m = [[0.0f64; 4]; 3];
    for &((x1, x2), y) in points {
        let x = [1.0, x1, x2];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += x[i] * x[j];
            }
            m[i][3] += x[i] * y;
        }
    }
    for (i, row) in m.iter_mut().enumerate() {
        row[i] += 1e-9;
    }
    // Gauss-Jordan with partial pivoting.
    for col in 0..3 {
        let pivot = (col..3).max_by(|a, b| m[*a][col].abs().total_cmp(&m[*b][col].abs())).expect("rows");
        m.swap(col, pivot);
        let p = m[col][col];
        m[col].iter_mut().skip(col).for_each(|x| *x /= p);
        let pivot_row = m[col];
        for (r, row) in m.iter_mut().enumerate() {
            if r != col {
                let f = row[col];
                row.iter_mut().zip(pivot_row).skip(col).for_each(|(x, p)| *x -= f * p);
            }
        }
    }
    [m[0][3], m[1][3], m[2][3]]
}

/// Every row's score under `rule` at epoch `e` (rows shorter than `e` are skipped by callers).
pub fn scores(rows: &[&Row], e: usize, last: usize, rule: Rule) -> Vec<f64> {
    match rule {
        Rule::Value => rows.iter().map(|r| best_at(r, e)).collect(),
        Rule::Slope => rows
            .iter()
            .map(|r| {
                let (v, step) = features(r, e);
                v + step * (last - e) as f64
            })
            .collect(),
        Rule::Fitted => (0..rows.len())
            .map(|i| {
                let others: Vec<((f64, f64), f64)> = (0..rows.len())
                    .filter(|j| *j != i)
                    .map(|j| (features(rows[j], e), rows[j].final_value()))
                    .collect();
                let [a, b, c] = fit(&others);
                let (v, step) = features(rows[i], e);
                a + b * v + c * step
            })
            .collect(),
    }
}

/// Ranks, 1-based, ties sharing their mean rank.
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|a, b| x[*a].total_cmp(&x[*b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[order[k]] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (Pearson's on the ranks).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let (rx, ry) = (ranks(x), ranks(y));
    let n = x.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = rx.iter().map(|a| (a - mx) * (a - mx)).sum();
    let vy: f64 = ry.iter().map(|b| (b - my) * (b - my)).sum();
    if vx == 0.0 || vy == 0.0 { f64::NAN } else { cov / (vx * vy).sqrt() }
}

/// One line of the table: at epoch `epoch`, each rule's Spearman ρ with the final value.
#[derive(Debug, Clone)]
pub struct RungRow {
    pub epoch: usize,
    pub rows: usize,
    pub rho: Vec<(Rule, f64)>,
}

/// ρ of every rule at every epoch before the last, over the rows that have the whole curve.
pub fn table(t: &CurveTable) -> Vec<RungRow> {
    let last = t.epochs();
    let rows: Vec<&Row> = t.rows.iter().filter(|r| r.val_acc.len() == last).collect();
    let finals: Vec<f64> = rows.iter().map(|r| r.final_value()).collect();
    (1..last)
        .map(|epoch| RungRow {
            epoch,
            rows: rows.len(),
            rho: Rule::ALL.iter().map(|&rule| (rule, spearman(&scores(&rows, epoch, last, rule), &finals))).collect(),
        })
        .collect()
}

/// Prints the table for `tune bench rungs`.
pub fn print(t: &CurveTable) {
    println!(
        "{}: {} curves of {} epochs; Spearman ρ with the final value (best epoch)",
        t.file.display(),
        t.rows.len(),
        t.epochs()
    );
    print!("{:>6} {:>6}", "epoch", "rows");
    for r in Rule::ALL {
        print!(" {:>8}", r.name());
    }
    println!();
    for row in table(t) {
        print!("{:>6} {:>6}", row.epoch, row.rows);
        for (_, rho) in &row.rho {
            print!(" {rho:>8.3}");
        }
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(trial: usize, val_acc: &[f64]) -> Row {
        Row {
            trial,
            params: Default::default(),
            val_acc: val_acc.to_vec(),
            secs: vec![1.0; val_acc.len()],
            start_secs: 0.0,
        }
    }

    #[test]
    fn spearman_of_known_orders() {
        let rows = [
            (vec![1.0, 2.0, 3.0], vec![10.0, 20.0, 30.0], 1.0, "same order"),
            (vec![1.0, 2.0, 3.0], vec![3.0, 2.0, 1.0], -1.0, "reversed"),
            (vec![1.0, 2.0, 3.0, 4.0], vec![1.0, 3.0, 2.0, 4.0], 0.8, "one swap of four"),
        ];
        for (x, y, want, why) in rows {
            assert!((spearman(&x, &y) - want).abs() < 1e-12, "{why}: {}", spearman(&x, &y));
        }
        assert_eq!(ranks(&[5.0, 1.0, 5.0]), vec![2.5, 1.0, 2.5], "ties share their mean rank");
    }

    #[test]
    fn slope_and_fit_see_late_bloomers_that_the_value_misses() {
        // Fast starters level off; slow starters climb past them. Ranked on the value at epoch 2
        // the order is reversed; the slope and a fitted model see the climb.
        let t = CurveTable {
            file: "t".into(),
            rows: (0..8)
                .map(|i| {
                    let k = i as f64;
                    let fast = [0.80 + 0.01 * k, 0.81 + 0.01 * k, 0.815 + 0.01 * k, 0.82 + 0.01 * k];
                    let slow = [0.60 + 0.01 * k, 0.70 + 0.01 * k, 0.80 + 0.01 * k, 0.90 + 0.01 * k];
                    row(i, if i % 2 == 0 { &fast } else { &slow })
                })
                .collect(),
        };
        let at2 = &table(&t)[1];
        let rho = |rule| at2.rho.iter().find(|(r, _)| *r == rule).unwrap().1;
        assert!(rho(Rule::Value) < 0.0, "the value at epoch 2 ranks the climbers last: {}", rho(Rule::Value));
        assert!(rho(Rule::Slope) > 0.9 && rho(Rule::Fitted) > 0.9, "{at2:?}");
    }

    #[test]
    fn the_fit_recovers_a_linear_law() {
        let pts: Vec<((f64, f64), f64)> = (0..10)
            .map(|i| ((i as f64, (i * i % 7) as f64), 1.0 + 2.0 * i as f64 - 0.5 * (i * i % 7) as f64))
            .collect();
        let [a, b, c] = fit(&pts);
        assert!((a - 1.0).abs() < 1e-6 && (b - 2.0).abs() < 1e-6 && (c + 0.5).abs() < 1e-6, "{a} {b} {c}");
    }
}

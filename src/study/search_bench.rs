//! `tune bench search`: samplers × pruners × worker counts compared on recorded learning
//! curves. Each run is a real study (the real loop, sampler and pruner, a real journal) whose
//! trials replay the table on a simulated clock; runs are paired by seed across methods.
//! Figures: the best val_acc seen at 10/25/50/100% of the budget (mean, IQM, bootstrap 95%
//! interval of the mean) and the regret of the network each run would pick.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::replay::{CurveTable, ReplayLauncher, Report};
use super::settings::{PrunerKind, SamplerKind, SchedulerKind};
use super::space::SearchSpace;
use crate::error::{Result, TuneError};

/// Budget fractions at which the best value so far is read.
pub const FRACTIONS: [f64; 4] = [0.1, 0.25, 0.5, 1.0];

/// One sampler, pruner and scheduler combination.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Method {
    pub sampler: SamplerKind,
    pub pruner: PrunerKind,
    pub scheduler: SchedulerKind,
}

impl Method {
    pub fn new(sampler: SamplerKind, pruner: PrunerKind) -> Method {
        Method { sampler, pruner, scheduler: SchedulerKind::Stop }
    }

    pub fn name(&self) -> String {
        let word = |v: serde_json::Value| v.as_str().unwrap_or("?").to_string();
        let (s, p) = (
            word(serde_json::to_value(self.sampler).expect("ok")),
            word(serde_json::to_value(self.pruner).expect("ok")),
        );
        match self.scheduler {
            SchedulerKind::Stop => format!("{s}+{p}"),
            SchedulerKind::Promote => format!("{s}+{p}+promote"),
            SchedulerKind::Pbt => format!("{s}+{p}+pbt"),
        }
    }

    /// Parses `sampler+pruner` (e.g. `tpe+asha`) or `sampler+pruner+promote`.
    pub fn parse(text: &str) -> std::result::Result<Method, String> {
        let parts: Vec<&str> = text.split('+').collect();
        let (s, p, scheduler) = match parts[..] {
            [s, p] => (s, p, SchedulerKind::Stop),
            [s, p, "promote"] => (s, p, SchedulerKind::Promote),
            [s, p, "pbt"] => (s, p, SchedulerKind::Pbt),
            _ => {
                return Err(format!(
                    "`{text}`: write sampler+pruner, e.g. tpe+asha, or tpe+asha+promote, random+none+pbt"
                ));
            }
        };
        let sampler = serde_json::from_value(serde_json::Value::String(s.into()))
            .map_err(|_| format!("`{s}`: samplers are random, tpe"))?;
        let pruner = serde_json::from_value(serde_json::Value::String(p.into()))
            .map_err(|_| format!("`{p}`: pruners are none, median, asha, hyperband, first_epoch"))?;
        if !scheduler.fits(pruner) {
            return Err(match scheduler {
                SchedulerKind::Pbt => format!("`{text}`: +pbt replaces pruning: use the pruner none"),
                _ => format!("`{text}`: +promote needs rungs: asha or hyperband"),
            });
        }
        Ok(Method { sampler, pruner, scheduler })
    }
}

/// What to compare, and where.
#[derive(Debug, Clone)]
pub struct SearchBenchOptions {
    pub table: PathBuf,
    /// The space the table was recorded from (its `[params]` and `[study.pruning]`).
    pub space: PathBuf,
    pub methods: Vec<Method>,
    pub workers: Vec<usize>,
    pub seeds: usize,
    /// The simulated budget, in whole recorded trials' worth of time in all (shared by the workers).
    pub budget_trials: f64,
    /// Per-seed rows of other tools (`benches/optuna_replay.py`), aggregated alongside.
    pub extra: Vec<PathBuf>,
    /// Where the per-seed rows go as CSV.
    pub out: Option<PathBuf>,
}

/// One run's figure at one budget fraction.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub method: String,
    pub workers: usize,
    pub seed: u64,
    pub frac: f64,
    pub best_val_acc: f64,
    pub regret: f64,
}

/// The simulated budget of a study with `workers` workers, in seconds.
pub fn budget_secs(table: &CurveTable, budget_trials: f64, workers: usize) -> f64 {
    budget_trials * table.mean_trial_secs() / workers as f64
}

/// The best value seen by each fraction of the budget, and the regret of the trial holding it.
pub fn outcomes(reports: &[Report], table: &CurveTable, budget: f64) -> Vec<(f64, f64, f64)> {
    let best_final = table.best_final();
    FRACTIONS
        .iter()
        .map(|&frac| {
            let seen = reports.iter().filter(|r| r.at <= frac * budget + 1e-9);
            match seen.fold(
                None::<&Report>,
                |best, r| if best.is_none_or(|b| r.val_acc > b.val_acc) { Some(r) } else { best },
            ) {
                Some(b) => (frac, b.val_acc, best_final - table.rows[b.row].final_value()),
                None => (frac, f64::NAN, f64::NAN),
            }
        })
        .collect()
}

/// Writes the space file of one run: the recording space with this method, seed and lag.
fn run_space(template: &toml::Table, method: Method, seed: u64, workers: usize, path: &Path) -> Result<()> {
    let mut t = template.clone();
    let study = t.entry("study").or_insert_with(|| toml::Value::Table(Default::default()));
    let study = study.as_table_mut().ok_or_else(|| TuneError::Study("[study] is not a table".into()))?;
    let str_of = |v: serde_json::Value| toml::Value::String(v.as_str().unwrap_or_default().to_string());
    study.insert("sampler".into(), str_of(serde_json::to_value(method.sampler).expect("serialisable")));
    study.insert("pruner".into(), str_of(serde_json::to_value(method.pruner).expect("serialisable")));
    study.insert("scheduler".into(), str_of(serde_json::to_value(method.scheduler).expect("serialisable")));
    study.insert("seed".into(), toml::Value::Integer(seed as i64));
    study.insert("enqueue_default".into(), toml::Value::Boolean(false));
    // TPE samples from trials older than the lag: with W workers, W are in flight anyway.
    study.insert("history_lag".into(), toml::Value::Integer(workers as i64));
    study.remove("max_params");
    crate::files::write_atomic(path, toml::to_string(&t).expect("serialisable").as_bytes())
}

/// The population of a replayed PBT study: four trials a worker, eight at least.
pub fn pbt_population(workers: usize) -> usize {
    (4 * workers).max(8)
}

/// Runs one simulated study; returns its figures at each fraction of the budget.
pub fn run_one(
    table: &Arc<CurveTable>,
    template: &toml::Table,
    method: Method,
    workers: usize,
    seed: u64,
    budget_trials: f64,
) -> Result<Vec<Outcome>> {
    let scratch = if Path::new("/dev/shm").is_dir() { tempfile::tempdir_in("/dev/shm") } else { tempfile::tempdir() };
    let scratch = scratch.map_err(|e| TuneError::io("a temporary directory", e))?;
    let space_file = scratch.path().join("space.toml");
    run_space(template, method, seed, workers, &space_file)?;
    let space = SearchSpace::from_file(&space_file)?;
    let launcher = ReplayLauncher::new(table.clone(), space);
    let reports = launcher.reports();
    let budget = budget_secs(table, budget_trials, workers);
    let opts = super::RunOptions {
        space_file,
        runs_dir: scratch.path().join("runs"),
        // PBT's population is the budget of configurations (forks come on top); everything
        // else samples until the simulated time runs out.
        trials: Some(match method.scheduler {
            SchedulerKind::Pbt => pbt_population(workers),
            _ => 100_000,
        }),
        concurrency: Some(workers),
        max_epochs: Some(table.epochs()),
        seed: Some(seed),
        timeout: Some(Duration::from_secs_f64(budget)),
        threads: Some(1),
        known_train_size: Some(1),
        ..Default::default()
    };
    // The study's per-trial log lines would drown the table: silenced for the run only.
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
        super::run::run_simulated(opts, Box::new(launcher))
    })?;
    let reports = reports.lock().expect("not poisoned").clone();
    Ok(outcomes(&reports, table, budget)
        .into_iter()
        .map(|(frac, best_val_acc, regret)| Outcome {
            method: method.name(),
            workers,
            seed,
            frac,
            best_val_acc,
            regret,
        })
        .collect())
}

/// Mean, interquartile mean and a bootstrap 95% interval of the mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    pub iqm: f64,
    pub low: f64,
    pub high: f64,
}

pub fn stats(values: &[f64]) -> Stats {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return Stats { n, mean: f64::NAN, iqm: f64::NAN, low: f64::NAN, high: f64::NAN };
    }
    let mean_of = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let cut = n / 4;
    let iqm = mean_of(&v[cut..n - cut]);
    let mut rng = StdRng::seed_from_u64(0);
    let mut means: Vec<f64> =
        (0..1000).map(|_| (0..n).map(|_| v[rng.random_range(0..n)]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    Stats { n, mean: mean_of(&v), iqm, low: means[25], high: means[974] }
}

fn read_extra(path: &Path) -> Result<Vec<Outcome>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| TuneError::Study(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| TuneError::Study(format!("{}: {e}", path.display())))?;
        let bad = || TuneError::Config {
            file: path.to_path_buf(),
            key: format!("row {}", i + 1),
            problem: "expected method,workers,seed,frac,best_val_acc,regret".into(),
            fix: "write it with benches/optuna_replay.py".into(),
        };
        let num = |k: usize| rec.get(k).and_then(|s| s.parse::<f64>().ok()).ok_or_else(bad);
        out.push(Outcome {
            method: rec.get(0).ok_or_else(bad)?.to_string(),
            workers: num(1)? as usize,
            seed: num(2)? as u64,
            frac: num(3)?,
            best_val_acc: rec.get(4).and_then(|s| s.parse().ok()).unwrap_or(f64::NAN),
            regret: rec.get(5).and_then(|s| s.parse().ok()).unwrap_or(f64::NAN),
        });
    }
    Ok(out)
}

/// Per budget fraction (in thousandths): the runs' best values and regrets.
type ByFraction = BTreeMap<u64, (Vec<f64>, Vec<f64>)>;

/// The table people read: one row per method × workers.
pub fn render(outcomes: &[Outcome]) -> String {
    let mut groups: BTreeMap<(usize, String), ByFraction> = BTreeMap::new();
    for o in outcomes {
        let g = groups.entry((o.workers, o.method.clone())).or_default();
        let e = g.entry((o.frac * 1000.0).round() as u64).or_default();
        e.0.push(o.best_val_acc);
        e.1.push(o.regret);
    }
    let mut s = format!(
        "{:>7}  {:<24} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>17} {:>8}\n",
        "workers", "method", "seeds", "@10%", "@25%", "@50%", "@100%", "IQM", "95% CI (mean)", "regret"
    );
    for ((workers, method), fracs) in &groups {
        let at = |f: f64| fracs.get(&((f * 1000.0).round() as u64)).map(|(v, _)| stats(v));
        let full = at(1.0);
        let regret = fracs.get(&1000).map(|(_, r)| stats(r).mean);
        let cell = |st: Option<Stats>| st.map_or("-".into(), |x| format!("{:.4}", x.mean));
        s += &format!(
            "{workers:>7}  {method:<24} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>17} {:>8}\n",
            full.map_or(0, |x| x.n),
            cell(at(0.1)),
            cell(at(0.25)),
            cell(at(0.5)),
            cell(full),
            full.map_or("-".into(), |x| format!("{:.4}", x.iqm)),
            full.map_or("-".into(), |x| format!("[{:.4}, {:.4}]", x.low, x.high)),
            regret.map_or("-".into(), |r| format!("{r:.4}")),
        );
    }
    s
}

fn write_rows(path: &Path, rows: &[Outcome]) -> Result<()> {
    let mut text = String::from("method,workers,seed,frac,best_val_acc,regret\n");
    for o in rows {
        text += &format!("{},{},{},{},{},{}\n", o.method, o.workers, o.seed, o.frac, o.best_val_acc, o.regret);
    }
    crate::files::write_atomic(path, text.as_bytes())
}

/// Runs every method × workers × seed and prints the table.
pub fn run(opts: &SearchBenchOptions) -> Result<()> {
    let table = Arc::new(CurveTable::load(&opts.table)?);
    let text = crate::files::read_text(&opts.space)?;
    SearchSpace::parse(&text, &opts.space)?; // a bad space is refused once, with its own message
    let template: toml::Table = toml::from_str(&text)
        .map_err(|e| TuneError::ConfigSyntax { file: opts.space.clone(), message: e.to_string() })?;
    println!(
        "table {}: {} curves × ≤{} epochs, best final val_acc {:.4}, a whole trial {:.1} s on average",
        table.file.display(),
        table.rows.len(),
        table.epochs(),
        table.best_final(),
        table.mean_trial_secs()
    );
    println!(
        "budget: {} whole trials' time in all, shared by the workers (simulated); {} paired seeds",
        opts.budget_trials, opts.seeds
    );
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    for &workers in &opts.workers {
        for method in &opts.methods {
            for seed in 0..opts.seeds as u64 {
                rows.extend(run_one(&table, &template, *method, workers, seed, opts.budget_trials)?);
            }
            eprintln!(
                "  {workers} workers, {}: {} runs done ({:.0} s)",
                method.name(),
                opts.seeds,
                started.elapsed().as_secs_f64()
            );
        }
    }
    for extra in &opts.extra {
        rows.extend(read_extra(extra)?);
    }
    if let Some(out) = &opts.out {
        write_rows(out, &rows)?;
    }
    print!("{}", render(&rows));
    println!(
        "best val_acc seen by each share of the budget (mean over seeds); regret: the table's best final value minus the final value of the network each run would pick"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_known_values() {
        let s = stats(&[1.0, 2.0, 3.0, 4.0, 100.0, f64::NAN]);
        assert_eq!(s.n, 5);
        assert_eq!(s.mean, 22.0);
        assert_eq!(s.iqm, 3.0, "the middle of five after dropping one each side");
        assert!(s.low <= s.mean && s.mean <= s.high);
    }

    const SPACE: &str = r#"
        [study]
        name = "replay"
        [study.training]
        max_epochs = 4
        [params]
        lr = { float = [1e-4, 1e-2], log = true }
        n_conv = { int = [1, 2] }
        "conv*_channels" = { choice = [16, 32] }
        "conv*_filter" = 3
        "conv*_pad" = 1
    "#;

    /// 40 configurations whose curves rise at rates set by lr, 10 s an epoch.
    fn table() -> Arc<CurveTable> {
        let mut rng = StdRng::seed_from_u64(3);
        let rows = (0..40)
            .map(|trial| {
                let lr: f64 = 10f64.powf(rng.random_range(-4.0..-2.0));
                let n = rng.random_range(1..=2usize);
                let mut params = crate::model::params::Params::new();
                params.insert("lr".into(), crate::model::params::Value::Float(lr));
                params.insert("n_conv".into(), crate::model::params::Value::Int(n as i64));
                for i in 0..n {
                    params.insert(format!("conv{i}_channels"), crate::model::params::Value::Int(16));
                    params.insert(format!("conv{i}_filter"), crate::model::params::Value::Int(3));
                    params.insert(format!("conv{i}_pad"), crate::model::params::Value::Int(1));
                }
                let top = 0.8 + 0.1 * (lr.log10() + 4.0) / 2.0;
                let val_acc = (1..=4).map(|e| top - 0.1 / e as f64).collect();
                super::super::replay::Row { trial, params, val_acc, secs: vec![10.0; 4], start_secs: 1.0 }
            })
            .collect();
        Arc::new(CurveTable { file: "synthetic".into(), rows })
    }

    #[test]
    fn a_replayed_study_is_deterministic_and_runs_on_the_simulated_clock() {
        let (table, template): (_, toml::Table) = (table(), toml::from_str(SPACE).unwrap());
        let method = Method::new(SamplerKind::Tpe, PrunerKind::Asha);
        // 16 whole trials per worker, 4 workers: 164 simulated seconds per worker-trial, 656 s of study.
        let wall = std::time::Instant::now();
        let a = run_one(&table, &template, method, 4, 5, 16.0).unwrap();
        assert!(wall.elapsed().as_secs_f64() < 60.0, "656 simulated seconds must not take real ones");
        let b = run_one(&table, &template, method, 4, 5, 16.0).unwrap();
        assert_eq!(a, b, "same seed, same simulated study");
        assert_eq!(a.len(), FRACTIONS.len());
        assert!(a.iter().all(|o| o.best_val_acc.is_finite() && o.regret >= 0.0), "{a:?}");
        assert!(a.windows(2).all(|w| w[0].best_val_acc <= w[1].best_val_acc), "best so far never falls: {a:?}");
        let other_seed = run_one(&table, &template, method, 4, 6, 16.0).unwrap();
        assert_ne!(a, other_seed, "another seed samples other configurations");
    }

    #[test]
    fn the_budget_cuts_reports_off() {
        let t = table();
        let at = |at, row| Report { at, trial: row, row, val_acc: t.rows[row].val_acc[0] };
        let reports = [at(5.0, 0), at(50.0, 1), at(200.0, 2)];
        let got = outcomes(&reports, &t, 100.0);
        assert_eq!(got[0].1, t.rows[0].val_acc[0], "only the report at 5 s is inside 10% of 100 s");
        let best = t.rows[0].val_acc[0].max(t.rows[1].val_acc[0]);
        assert_eq!(got[3].1, best, "the report at 200 s is past the budget");
    }

    #[test]
    fn methods_parse_and_name_themselves() {
        let m = Method::parse("tpe+first_epoch").unwrap();
        assert_eq!(m, Method::new(SamplerKind::Tpe, PrunerKind::FirstEpoch));
        assert_eq!(m.name(), "tpe+first_epoch");
        assert!(Method::parse("tpe").unwrap_err().contains("sampler+pruner"));
        assert!(Method::parse("tpe+fast").unwrap_err().contains("pruners are"));
        let promo = Method::parse("random+hyperband+promote").unwrap();
        assert_eq!(promo.scheduler, SchedulerKind::Promote);
        assert_eq!(promo.name(), "random+hyperband+promote");
        assert!(Method::parse("tpe+median+promote").unwrap_err().contains("needs rungs"));
        assert!(Method::parse("tpe+asha+later").unwrap_err().contains("sampler+pruner"));
    }
}

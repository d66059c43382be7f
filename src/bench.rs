//! `tune bench`: training and evaluation images/s of a model at batch 100, the data load
//! time (first decode and cached), and the process's peak memory. Figures, not assertions.

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};

use crate::data::{FashionMnist, PIXELS, source};
use crate::error::Result;
use crate::model::{Cnn, infer};

/// What `tune bench` times.
pub struct BenchOptions {
    pub data_dir: Option<std::path::PathBuf>,
    /// Timed training steps per round.
    pub steps: usize,
    pub rounds: usize,
    pub threads: Option<usize>,
    /// Params TOML; `None` is the seed's network.
    pub params: Option<std::path::PathBuf>,
    /// A Python with torch, to time the same model in PyTorch.
    pub pytorch: Option<std::path::PathBuf>,
    /// The convolutions' products in bf16 ([`crate::kernels::bf16`]).
    pub bf16: bool,
}

pub fn run(args: &BenchOptions) -> Result<()> {
    crate::backend::configure_kernels(args.bf16).map_err(|why| crate::TuneError::Config {
        file: crate::training::layers::COMMAND_LINE.into(),
        key: "--precision".into(),
        problem: format!("bf16 is not available here: {why}"),
        fix: "leave --precision out (fp32)".into(),
    })?;
    crate::backend::set_threads(args.threads);
    let threads = rayon::current_num_threads();
    let src = source::locate(args.data_dir.as_deref())?;
    // First load without the cache, then through it (written by the first).
    let cache = tempfile::tempdir().map_err(|e| crate::TuneError::io(std::env::temp_dir(), e))?;
    let t = Instant::now();
    let data = FashionMnist::load_source_cached(&src, Some(cache.path()))?;
    let decode = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let cached = FashionMnist::load_source_cached(&src, Some(cache.path()))?;
    let cached_secs = t.elapsed().as_secs_f64();
    assert_eq!(cached.train.len(), data.train.len());
    drop(cached);
    println!(
        "data: {} train + {} validation images from {}",
        data.train.len(),
        data.official_test.len(),
        data.origin.display()
    );
    println!("load (decompress + parse): {decode:.3} s; from the decoded cache: {cached_secs:.3} s");

    let (arch, _) = crate::model::load_params(args.params.as_deref())?;
    let device = crate::backend::device();
    let ad = device.clone().autodiff();
    crate::backend::seed(&ad, 1);
    let mut model = Cnn::new(&arch, &ad)?;
    let mut optim = crate::training::adam::FusedAdam::new(0.0).init();
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let batch = 100usize;
    let n = data.train.len();
    let (mut px, mut labels) = (Vec::with_capacity(batch * PIXELS), Vec::new());
    // Phase totals of the timed steps: forward (with the loss), backward, optimizer.
    let mut phases = [0.0f64; 3];
    let mut step = |model: Cnn, k: usize, phases: &mut [f64; 3]| -> Cnn {
        let idx: Vec<usize> = (0..batch).map(|i| (k * batch + i) % n).collect();
        data.train.gather(&idx, &mut px, &mut labels);
        let t = Instant::now();
        let x = Tensor::<4>::from_data(TensorData::new(std::mem::take(&mut px), [batch, 1, 28, 28]), &ad);
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [batch]), &ad);
        let loss = loss_fn.forward(model.forward(x), y);
        let _ = loss.clone().into_scalar::<f32>();
        phases[0] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        phases[1] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let model = optim.step(1e-3, model, grads);
        phases[2] += t.elapsed().as_secs_f64();
        model
    };
    for k in 0..2 {
        model = step(model, k, &mut [0.0; 3]);
    }
    // Rounds alternate tune and PyTorch, so both see the same machine (a shared VM's speed
    // drifts by 10–20% over minutes); medians are compared.
    crate::kernels::profile::take();
    crate::kernels::profile::enable(true);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut done = 2;
    for round in 0..args.rounds.max(1) {
        let t = Instant::now();
        for _ in 0..args.steps {
            model = step(model, done, &mut phases);
            done += 1;
        }
        ours.push((args.steps * batch) as f64 / t.elapsed().as_secs_f64());
        let mut line = format!("round {}: tune {:.1} images/s", round + 1, ours[round]);
        if let Some(python) = &args.pytorch {
            match run_pytorch(python, threads, args.steps) {
                Ok(p) => {
                    line += &format!(" · pytorch {:.1} images/s (eval {:.1})", p.train, p.eval);
                    theirs.push(p);
                }
                Err(why) => line += &format!(" · pytorch skipped: {why}"),
            }
        }
        println!("{line}");
    }
    crate::kernels::profile::enable(false);
    let kernels = crate::kernels::profile::take();
    let eval_idx: Vec<usize> = (0..data.official_test.len().min(2000)).collect();
    let _ = crate::training::evaluate(&model, &data.official_test, &eval_idx[..eval_idx.len().min(500)], &device);
    let t = Instant::now();
    let _ = crate::training::evaluate(&model, &data.official_test, &eval_idx, &device);
    let eval_secs = t.elapsed().as_secs_f64();
    let summary = infer(&arch)?;
    println!(
        "model: {} params, backend {}, {threads} threads, batch {batch}",
        summary.total(),
        crate::backend::description()
    );
    let products = match (args.bf16, crate::kernels::fma::available()) {
        _ if !crate::backend::uses_kernels() => "",
        (true, _) => "; convolution products in bf16",
        (false, true) if crate::kernels::winograd::enabled() => {
            "; convolution products: ours (AVX-512 FMA), Winograd F(2×2, 3×3) for 3 × 3 stride-1 padding-1 layers"
        }
        (false, true) => {
            "; convolution products: ours (AVX-512 FMA) forward and input gradient, the gemm crate's weight gradient"
        }
        (false, false) => "; convolution products: the gemm crate's",
    };
    println!("cpu: {}; our kernels at {}{products}", cpu_description(), crate::kernels::simd::level().name());
    let train = median(&ours);
    println!(
        "train: {train:.1} images/s ({:.1} ms/step; median of {} rounds of {} steps)",
        1000.0 * batch as f64 / train,
        ours.len(),
        args.steps
    );
    print_breakdown(&phases, &kernels, done - 2);
    if crate::backend::NAME == "flex" {
        // The machine's fp32 limit for this model: its training FLOPs at the best GEMM rate.
        let flops = summary.training_flops() as f64;
        let peak = crate::kernels::gemm_peak(threads);
        let limit = peak / flops;
        println!(
            "fp32 limit: {:.1} MFLOP per training image at {:.1} GFLOP/s (GEMM 1024³, {threads} threads, best of 5) = {limit:.0} images/s; \
             training reaches {:.1} GFLOP/s, {:.0}% of it{}",
            flops / 1e6,
            peak / 1e9,
            train * flops / 1e9,
            100.0 * train / limit,
            if !args.bf16 && crate::backend::uses_kernels() && crate::kernels::winograd::enabled() {
                " (FLOPs of direct convolutions: Winograd's products make 2.25× fewer multiplications in the 3 × 3 layers, so this counts work saved as done)"
            } else {
                ""
            }
        );
    }
    println!("eval:  {:.1} images/s ({} images)", eval_idx.len() as f64 / eval_secs, eval_idx.len());
    if let Some(mib) = crate::memory::peak_rss_mib() {
        println!("peak RSS: {mib:.0} MiB");
    }
    if !theirs.is_empty() {
        let their_train = median(&theirs.iter().map(|p| p.train).collect::<Vec<_>>());
        let their_eval = median(&theirs.iter().map(|p| p.eval).collect::<Vec<_>>());
        println!("{}: train {their_train:.1} images/s, eval {their_eval:.1} images/s (medians)", theirs[0].version);
        println!(
            "ratio tune/pytorch: training {:.2}, evaluation {:.2}",
            train / their_train,
            eval_idx.len() as f64 / eval_secs / their_eval
        );
    }
    Ok(())
}

/// The CPU's model and the vector extensions that matter for these kernels (Linux).
fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
    };
    let model = field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let flags = field("flags").unwrap_or_default();
    let wanted = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"];
    let have: Vec<&str> = wanted.into_iter().filter(|w| flags.split_whitespace().any(|f| f == *w)).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {cores} cores, {}", if have.is_empty() { "no AVX2".to_string() } else { have.join(" ") })
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Where a training step's time went: phases, and our kernels within forward and backward
/// (what is left there is burn's: dense layers, activations, dropout, loss, autodiff).
fn print_breakdown(phases: &[f64; 3], kernels: &[(crate::kernels::profile::Kernel, f64, f64)], steps: usize) {
    let ms = |secs: f64| 1000.0 * secs / steps as f64;
    let total: f64 = phases.iter().sum();
    println!("where a step's {:.1} ms go:", ms(total));
    for (phase, secs, backward) in [("forward", phases[0], false), ("backward", phases[1], true)] {
        // Kernels that did not run at all (the pool, when batch norm does it) are left out.
        let ran = kernels.iter().filter(|(_, f, b)| *f > 0.0 || *b > 0.0);
        let parts: Vec<(String, f64)> =
            ran.map(|(k, f, b)| (k.name().to_string(), if backward { *b } else { *f })).collect();
        let rest = secs - parts.iter().map(|(_, s)| s).sum::<f64>();
        let listed: Vec<String> = parts
            .iter()
            .chain([&("other".to_string(), rest)])
            .map(|(name, s)| format!("{name} {:.1}", ms(*s)))
            .collect();
        println!("  {phase:<9} {:>6.1} ms ({:>4.1}%): {}", ms(secs), 100.0 * secs / total, listed.join(" · "));
    }
    println!("  {:<9} {:>6.1} ms ({:>4.1}%): Adam", "optimizer", ms(phases[2]), 100.0 * phases[2] / total);
}

/// One run of the PyTorch twin of the default model.
struct PyTorchRun {
    version: String,
    train: f64,
    eval: f64,
}

/// Runs `benches/pytorch_cnn.py` once; `Err` says why it was skipped (torch missing, …).
fn run_pytorch(python: &std::path::Path, threads: usize, steps: usize) -> std::result::Result<PyTorchRun, String> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pytorch_cnn.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .args(["--threads", &threads.to_string(), "--steps", &steps.to_string()])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(text.trim().to_string());
    }
    let value = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| format!("no '{prefix}' line in its output"))
    };
    let version = text.lines().next().and_then(|l| l.split(':').next()).unwrap_or("pytorch").to_string();
    Ok(PyTorchRun { version, train: value("pytorch train: ")?, eval: value("pytorch eval: ")? })
}

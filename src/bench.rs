//! `tune bench`: training and evaluation images/s of a model at batch 100, the data load
//! time (first decode and cached), and the process's peak memory. Figures, not assertions.

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Int, Tensor, TensorData};

use crate::cli::{BenchArgs, load_params, set_threads};
use crate::data::{FashionMnist, PIXELS, source};
use crate::error::Result;
use crate::model::{Cnn, infer};

pub fn run(args: &BenchArgs) -> Result<()> {
    set_threads(args.threads);
    let threads = rayon::current_num_threads();
    let src = source::locate(args.data.data_dir.as_deref())?;
    // First load without the cache, then through it (written by the first).
    let cache = tempfile::tempdir().map_err(|e| crate::TuneError::io(std::env::temp_dir(), e))?;
    // SAFETY: single-threaded at this point; only this process reads the variable.
    unsafe { std::env::set_var("TUNE_CACHE_DIR", cache.path()) };
    let t = Instant::now();
    let data = FashionMnist::load_source(&src)?;
    let decode = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let cached = FashionMnist::load_source(&src)?;
    let cached_secs = t.elapsed().as_secs_f64();
    assert_eq!(cached.train.len(), data.train.len());
    drop(cached);
    println!("data: {} train + {} validation images from {}", data.train.len(), data.official_test.len(), data.origin.display());
    println!("load (decompress + parse): {decode:.3} s; from the decoded cache: {cached_secs:.3} s");

    let (arch, _) = load_params(args.params.as_deref())?;
    let device = crate::backend::device();
    let ad = device.clone().autodiff();
    ad.seed(1);
    let mut model = Cnn::new(&arch, &ad)?;
    let mut optim = AdamConfig::new().with_epsilon(1e-7).init();
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let batch = 100usize;
    let n = data.train.len();
    let (mut px, mut labels) = (Vec::with_capacity(batch * PIXELS), Vec::new());
    let mut step = |model: Cnn, k: usize| -> Cnn {
        let idx: Vec<usize> = (0..batch).map(|i| (k * batch + i) % n).collect();
        data.train.gather(&idx, &mut px, &mut labels);
        let x = Tensor::<4>::from_data(TensorData::new(std::mem::take(&mut px), [batch, 1, 28, 28]), &ad);
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [batch]), &ad);
        let loss = loss_fn.forward(model.forward(x), y);
        let _ = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optim.step(1e-3, model, grads)
    };
    for k in 0..2 {
        model = step(model, k);
    }
    let t = Instant::now();
    for k in 0..args.steps {
        model = step(model, k + 2);
    }
    let train_secs = t.elapsed().as_secs_f64();
    let eval_idx: Vec<usize> = (0..data.official_test.len().min(2000)).collect();
    let _ = crate::training::evaluate(&model, &data.official_test, &eval_idx[..eval_idx.len().min(500)], &device);
    let t = Instant::now();
    let _ = crate::training::evaluate(&model, &data.official_test, &eval_idx, &device);
    let eval_secs = t.elapsed().as_secs_f64();
    let params = infer(&arch)?.total();
    println!("model: {params} params, backend {}, {threads} threads, batch {batch}", crate::backend::NAME);
    println!(
        "train: {:.1} images/s ({:.1} ms/step over {} steps)",
        (args.steps * batch) as f64 / train_secs,
        1000.0 * train_secs / args.steps as f64,
        args.steps
    );
    println!("eval:  {:.1} images/s ({} images)", eval_idx.len() as f64 / eval_secs, eval_idx.len());
    if let Some(mib) = crate::memory::peak_rss_mib() {
        println!("peak RSS: {mib:.0} MiB");
    }
    if let Some(python) = &args.pytorch {
        let ours = (args.steps * batch) as f64 / train_secs;
        compare_pytorch(python, threads, args.steps, ours);
    }
    Ok(())
}

/// Runs the PyTorch twin of the default model and prints tune's speed relative to it.
fn compare_pytorch(python: &std::path::Path, threads: usize, steps: usize, ours: f64) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pytorch_cnn.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .args(["--threads", &threads.to_string(), "--steps", &steps.to_string()])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            print!("{text}");
            let theirs = text
                .lines()
                .find_map(|l| l.strip_prefix("pytorch train: "))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok());
            if let Some(theirs) = theirs {
                println!("ratio tune/pytorch (training): {:.2}", ours / theirs);
            }
        }
        Ok(o) => println!("pytorch comparison skipped: {}", String::from_utf8_lossy(&o.stdout).trim()),
        Err(e) => println!("pytorch comparison skipped: cannot run {}: {e}", python.display()),
    }
}

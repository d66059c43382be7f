//! `tune data fetch|summary|samples`.

use std::path::PathBuf;

use clap::Subcommand;

use super::DataArgs;
use crate::data::{self, FashionMnist, Splits};
use crate::error::{Result, TuneError};

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Fill data/fashion-mnist/ from Debian's package or the official mirror (verified by SHA-256).
    Fetch {
        #[arg(long, default_value = data::source::LOCAL_DIR)]
        dest: PathBuf,
    },
    /// Per-split, per-class image counts.
    Summary(DataArgs),
    /// A grid of 5 random images per class.
    Samples {
        #[command(flatten)]
        data: DataArgs,
        /// PNG file for the image grid.
        #[arg(long)]
        out: Option<PathBuf>,
        /// PNG file for the per-split class distribution chart.
        #[arg(long)]
        distribution: Option<PathBuf>,
        /// Seed of the random choice of images.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Fetch { dest } => {
            for path in data::source::fetch(&dest)? {
                println!("verified {}", path.display());
            }
            Ok(())
        }
        DataCommand::Summary(args) => {
            let (data, splits) = args.load()?;
            println!("source: {}", data.origin.display());
            println!("split fingerprint (seed {}): {}", args.split_seed, &splits.fingerprint()[..16]);
            println!("{:<13}{:>9}{:>9}{:>12}", "class", "train", "test", "validation");
            let counts = split_counts(&data, &splits);
            for (c, name) in data::CLASS_NAMES.iter().enumerate() {
                println!("{:<13}{:>9}{:>9}{:>12}", name, counts[0].1[c], counts[1].1[c], counts[2].1[c]);
            }
            let total = |i: usize| counts[i].1.iter().sum::<usize>();
            println!("{:<13}{:>9}{:>9}{:>12}", "total", total(0), total(1), total(2));
            Ok(())
        }
        DataCommand::Samples { data: args, out, distribution, seed } => {
            if out.is_none() && distribution.is_none() {
                return Err(TuneError::Config {
                    file: PathBuf::from("<command line>"),
                    key: "--out".into(),
                    problem: "nothing to draw".into(),
                    fix: "pass --out FILE.png and/or --distribution FILE.png".into(),
                });
            }
            let (data, splits) = args.load()?;
            if let Some(out) = out {
                data::plots::samples_grid(&data.train, &splits.train, 5, seed, &out)?;
                println!("wrote {}", out.display());
            }
            if let Some(path) = distribution {
                data::plots::distribution_chart(&split_counts(&data, &splits), &path)?;
                println!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}

fn split_counts(data: &FashionMnist, s: &Splits) -> Vec<(&'static str, [usize; data::CLASSES])> {
    vec![
        ("train", data.train.class_counts(s.train.iter().copied())),
        ("test (balanced)", data.train.class_counts(s.test.iter().copied())),
        ("validation", data.official_test.class_counts(s.validation.iter().copied())),
    ]
}

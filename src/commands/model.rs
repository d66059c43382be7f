//! `tune model summary`: the Keras-style table of a network.

use std::path::PathBuf;

use clap::Subcommand;

use crate::error::Result;

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Keras-style table of layers, output shapes and parameter counts.
    Summary {
        /// Params TOML (keys conv{i}_*, fc{i}_*, drop_rate, ...); default: the seed's model.
        #[arg(long)]
        params: Option<PathBuf>,
    },
}

pub fn run(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Summary { params } => {
            let (arch, _) = crate::model::load_params(params.as_deref())?;
            print!("{}", crate::model::infer(&arch)?.render());
            Ok(())
        }
    }
}

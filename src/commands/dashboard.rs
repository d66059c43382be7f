//! `tune dashboard`: the live web page over a runs directory or a store.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;

use super::StorageArgs;
use crate::error::Result;

#[derive(Args, Debug)]
pub struct DashboardArgs {
    /// A runs directory (every study in it) or one study directory.
    #[arg(default_value = "runs")]
    pub path: PathBuf,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The address to listen on. Anything but loopback (127.0.0.1, ::1) needs a token.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// The port; 0 picks a free one.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The token every data request must carry (default: none on loopback, a fresh random one otherwise; the URL printed includes it).
    #[arg(long, env = "TUNE_DASHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub fn run(args: &DashboardArgs) -> Result<()> {
    use crate::study::storage::StorageSpec;
    let catalog = StorageSpec::parse(args.storage.url().as_deref(), "--storage", &args.path)?.catalog(&args.path);
    crate::dashboard::serve(
        catalog,
        crate::dashboard::Options { host: args.host, port: args.port, token: args.token.clone() },
    )
}

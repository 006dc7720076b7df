//! Commands of this component (none yet; each variant is one `mantisctl` subcommand).

use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum Command {}

pub fn run(command: Command) -> ExitCode {
    match command {}
}

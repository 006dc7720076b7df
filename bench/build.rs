//! Records the git commit the binary is built from: result files carry it, because the
//! commit checked out when a benchmark runs may be a later one.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_string());
    // Dirty when tracked files of the crates the benchmark measures differ from the commit.
    let dirty = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        "../engine",
        ".",
    ])
    .is_some_and(|s| !s.is_empty());
    println!("cargo:rustc-env=MANTIS_BENCH_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=MANTIS_BENCH_BUILD_DIRTY={dirty}");
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/refs/heads");
        println!("cargo:rerun-if-changed={git_dir}/index");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

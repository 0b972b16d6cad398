//! Writes the CRDs generated from the api types into a folder (default
//! `deploy/crds`), or with `--check` only says whether that folder is up to date.
//!
//!   cargo run -p cebus-kube --bin cebus-crds               # regenerate deploy/crds
//!   cargo run -p cebus-kube --bin cebus-crds -- --check    # exit 1 when out of date

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let mut dir = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!("usage: cebus-crds [--check] [DIR]   (DIR defaults to deploy/crds)");
                return ExitCode::SUCCESS;
            }
            _ if dir.is_none() && !arg.starts_with('-') => dir = Some(PathBuf::from(arg)),
            _ => {
                eprintln!(
                    "cebus-crds: unexpected argument {arg:?}; usage: cebus-crds [--check] [DIR]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from("deploy/crds"));
    let result = if check {
        cebus_kube::stale_files(&dir).map(|stale| {
            for name in &stale {
                eprintln!("cebus-crds: {}: {name}", dir.display());
            }
            stale.is_empty()
        })
    } else {
        cebus_kube::write_files(&dir).map(|written| {
            for path in written {
                println!("{}", path.display());
            }
            true
        })
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cebus-crds: {e}");
            ExitCode::FAILURE
        }
    }
}

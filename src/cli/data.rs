//! Where the CLI finds the MNIST files when `--data` is not given, so that `halfscale train` works
//! from any directory: `./data/MNIST/raw`, else the directory in `HALFSCALE_DATA`, else the
//! repository copy this binary was built from. When none holds the four IDX files, one line says
//! where it looked and what to pass.

use halfscale_sim::dataset::{self, FILE_NAMES};
use std::path::{Path, PathBuf};

/// The environment variable naming a data directory.
pub const DATA_ENV: &str = "HALFSCALE_DATA";
/// The data directory relative to the working directory (and to the repository root).
pub const DEFAULT_DIR: &str = "data/MNIST/raw";

/// The directory to load: `explicit` as given (its errors are the loader's, naming the file);
/// otherwise the first place that holds the four files. A set `HALFSCALE_DATA` is taken as given
/// too, once `./data/MNIST/raw` has nothing, so a wrong value is reported, not skipped.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    let local = PathBuf::from(DEFAULT_DIR);
    if dataset::locate(&local).is_ok() {
        return Ok(local);
    }
    let env = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty());
    if let Some(dir) = env {
        return Ok(PathBuf::from(dir));
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_DIR);
    if dataset::locate(&built).is_ok() {
        return Ok(built);
    }
    Err(format!(
        "no MNIST data: looked in ./{DEFAULT_DIR}, ${DATA_ENV} (not set) and {} (the copy this binary was built from); pass --data DIR, a directory holding {} (gzip or not)",
        built.display(),
        FILE_NAMES.join(", ")
    ))
}

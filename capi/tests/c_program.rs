//! A C program (tests/c/check.c) compiled with the system C compiler against the committed
//! header and linked to `libhalfscale_capi.a`, run: every function against known values and
//! PyTorch's own scale trajectories. And the header compiled as C++.

use std::path::{Path, PathBuf};
use std::process::Command;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The static library cargo built for this test run: the library unit emits every crate type
/// into `target/<profile>/deps/`, beside this test's executable (the copy one level up is only
/// refreshed by `cargo build`, so it may be stale).
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().unwrap().join("libhalfscale_capi.a");
    assert!(lib.exists(), "{} not built", lib.display());
    lib
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn c_program_checks_every_function() {
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join("halfscale_capi_check");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    run(Command::new(cc)
        .args([
            "-std=c11",
            "-O1",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
        ])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(crate_dir().join("tests/c/check.c"))
        .arg(static_lib())
        .args(["-lm", "-lpthread", "-ldl", "-o"])
        .arg(&exe));
    let out = run(&mut Command::new(&exe));
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn header_compiles_as_cpp() {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let src = Path::new(env!("CARGO_TARGET_TMPDIR")).join("halfscale_capi_check.cpp");
    std::fs::write(
        &src,
        "#include \"halfscale.h\"\n\
         int main() {\n\
           HsScalerConfig c = hs_scaler_config_pytorch();\n\
           HsScaler *s = nullptr;\n\
           if (hs_scaler_new(&c, &s) != HS_OK) return 1;\n\
           HsStepOutcome o;\n\
           HsStatus st = hs_scaler_update(s, HS_FOUND_INF, &o);\n\
           hs_scaler_free(s);\n\
           return st == HS_OK && o == HS_SKIPPED_INF ? 0 : 1;\n\
         }\n",
    )
    .unwrap();
    run(Command::new(cxx)
        .args([
            "-fsyntax-only",
            "-std=c++11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
        ])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(&src));
}

/// The README's C example, taken from the README itself, compiles and prints what it says.
#[test]
fn readme_example_runs_as_shown() {
    let readme = std::fs::read_to_string(crate_dir().join("../README.md")).unwrap();
    let section = &readme[readme.find("## From C and C++").expect("README section")..];
    let start = section.find("```c\n").unwrap() + 5;
    let code = &section[start..start + section[start..].find("```").unwrap()];
    assert!(
        code.lines().count() <= 20,
        "the README example should stay short"
    );
    let expected = section
        .lines()
        .find_map(|l| l.strip_prefix("# "))
        .expect("the expected output line");
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let src = tmp.join("halfscale_readme_example.c");
    let exe = tmp.join("halfscale_readme_example");
    std::fs::write(&src, code).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    run(Command::new(cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(crate_dir().join("include"))
        .arg(&src)
        .arg(static_lib())
        .args(["-lm", "-lpthread", "-ldl", "-o"])
        .arg(&exe));
    assert_eq!(run(&mut Command::new(&exe)).trim(), expected);
}

//! Python readers for the tests that check what other tools see: pyarrow
//! and DuckDB, installed from PyPI when absent.

use std::process::Command;

/// Make sure `python3` can import pyarrow and duckdb, installing them with
/// pip when it cannot; `false` only when COFFER_SKIP_INTEROP=1.
pub fn ensure_readers() -> bool {
    if std::env::var("COFFER_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("interop test skipped: COFFER_SKIP_INTEROP=1");
        return false;
    }
    let importable = |module: &str| {
        Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .status()
            .is_ok_and(|s| s.success())
    };
    for (module, package) in [
        ("pyarrow, pyarrow.parquet, pyarrow.csv", "pyarrow"),
        ("duckdb", "duckdb"),
    ] {
        if importable(module) {
            continue;
        }
        let installed = [
            &[][..],
            &["--user"][..],
            &["--user", "--break-system-packages"][..],
        ]
        .iter()
        .any(|extra| {
            let mut args = vec![
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ];
            args.extend_from_slice(extra);
            args.push(package);
            Command::new("python3")
                .args(&args)
                .status()
                .is_ok_and(|s| s.success())
                && importable(module)
        });
        assert!(
            installed,
            "{package} is not installed and `python3 -m pip install {package}` failed; \
             install it, or set COFFER_SKIP_INTEROP=1 to skip this test"
        );
    }
    true
}

//! Tells the test suite whether the PostgreSQL half can run: with `TELECONS_TEST_POSTGRES_URL`
//! unset, the PostgreSQL tests are compiled as ignored, so that `cargo test` reports how many
//! did not run ("N ignored") instead of counting them as passed. The same for the browser
//! tests of the waiting-room page, without chromedriver (`CHROMEDRIVER`, else
//! `/usr/bin/chromedriver`): a fresh machine runs the rest; `.ci/run` installs it first.

fn main() {
    const VAR: &str = "TELECONS_TEST_POSTGRES_URL";
    println!("cargo::rustc-check-cfg=cfg(telecons_postgres_tests)");
    println!("cargo::rerun-if-env-changed={VAR}");
    if std::env::var_os(VAR).is_some_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=telecons_postgres_tests");
    }
    println!("cargo::rustc-check-cfg=cfg(telecons_browser_tests)");
    println!("cargo::rerun-if-env-changed=CHROMEDRIVER");
    let chromedriver = std::env::var_os("CHROMEDRIVER")
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| "/usr/bin/chromedriver".into());
    // Its folder, so that installing it later builds the tests again (a path that does not
    // exist would run this script at every build).
    if let Some(folder) = std::path::Path::new(&chromedriver)
        .parent()
        .filter(|folder| folder.is_dir())
    {
        println!("cargo::rerun-if-changed={}", folder.display());
    }
    if std::path::Path::new(&chromedriver).exists() {
        println!("cargo::rustc-cfg=telecons_browser_tests");
    }
}

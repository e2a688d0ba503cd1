//! Tells the test suite whether the PostgreSQL half can run: with `TELECONS_TEST_POSTGRES_URL`
//! unset, the PostgreSQL tests are compiled as ignored, so that `cargo test` reports how many
//! did not run ("N ignored") instead of counting them as passed.

fn main() {
    const VAR: &str = "TELECONS_TEST_POSTGRES_URL";
    println!("cargo::rustc-check-cfg=cfg(telecons_postgres_tests)");
    println!("cargo::rerun-if-env-changed={VAR}");
    if std::env::var_os(VAR).is_some_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=telecons_postgres_tests");
    }
}

//! Compile tests of `#[workflow]` and `#[step]`: what must compile, and the error
//! each mistake produces. Refresh the `.stderr` snapshots with
//! `TRYBUILD=overwrite cargo test --test ui`, then read them.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}

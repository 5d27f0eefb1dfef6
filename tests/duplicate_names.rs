//! Two workflows under one durable name: `launch()` refuses to start and names both
//! places (a test binary of its own, since every launch in it fails).

mod common;

use exactly::{Error, workflow};

#[workflow(name = "billing.charge")]
async fn charge_card(cents: u64) -> exactly::Result<u64> {
    Ok(cents)
}

#[workflow(name = "billing.charge")]
async fn charge_invoice(cents: u64) -> exactly::Result<u64> {
    Ok(cents)
}

#[test]
fn launch_refuses_two_workflows_with_one_name_naming_both_places() {
    common::block_on(async {
        let url = common::fresh_database("exactly_test_duplicate_names").await;
        let err = exactly::Runtime::builder().database_url(&url).launch().await.unwrap_err();
        let Error::Registration(message) = &err else { panic!("expected a registration error, got {err:?}") };
        assert!(message.contains("two workflows are named `billing.charge`"), "{message}");
        assert!(message.contains("tests/duplicate_names.rs:8") && message.contains("tests/duplicate_names.rs:13"), "{message}");
        assert!(message.contains("#[workflow(name = \"..\")]"), "the message names the fix: {message}");
        // Nothing was set up in the database before the check.
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let schemas: i64 = sqlx::query_scalar("SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'exactly'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(schemas, 0);
        // The unused functions are the point of this binary.
        let _ = (charge_card, charge_invoice);
    })
}

//! Every option of both attributes.
use exactly::{step, workflow};

#[step(name = "payments.charge", retries = 5, backoff_ms = 250, backoff_factor = 1.5, max_backoff_ms = 10_000)]
async fn charge(cents: u64) -> exactly::Result<u64> {
    Ok(cents)
}

#[step(backoff_factor = 3)]
async fn integer_factor() -> exactly::Result<()> {
    Ok(())
}

#[workflow(name = "payments.process", max_recovery_attempts = 10)]
pub async fn process(cents: u64) -> exactly::Result<u64> {
    integer_factor().await?;
    charge(cents).await
}

#[workflow(max_recovery_attempts = 0)]
pub async fn fragile() -> exactly::Result<()> {
    Ok(())
}

#[workflow(name = "r#type")]
pub async fn r#type() -> exactly::Result<()> {
    Ok(())
}

fn main() {
    assert_eq!(process(1).name(), "payments.process");
    assert_eq!(__EXACTLY_WORKFLOW_process.max_recovery_attempts, Some(10));
    assert_eq!(__EXACTLY_WORKFLOW_fragile.max_recovery_attempts, Some(0));
    assert_eq!(__EXACTLY_WORKFLOW_type.name, "r#type");
    let steps: Vec<_> = exactly::__private::inventory::iter::<exactly::__private::StepRegistration>
        .into_iter()
        .map(|registration| registration.0)
        .collect();
    let charge = steps.iter().find(|spec| spec.name == "payments.charge").expect("registered");
    assert_eq!(charge.retries, 5);
    assert_eq!(charge.backoff, std::time::Duration::from_millis(250));
    assert_eq!(charge.backoff_factor, 1.5);
    assert_eq!(charge.max_backoff, std::time::Duration::from_secs(10));
    let default = steps.iter().find(|spec| spec.name.ends_with("::integer_factor")).expect("registered");
    assert_eq!((default.retries, default.backoff_factor), (0, 3.0));
    assert_eq!(default.backoff, std::time::Duration::from_millis(100));
}

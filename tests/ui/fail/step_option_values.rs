use exactly::step;

#[step(retries = "3", backoff_factor = 0.5)]
async fn charge(cents: u64) -> exactly::Result<u64> {
    Ok(cents)
}

#[step(retries = 3, backoff_ms = 1000, max_backoff_ms = 500)]
async fn refund(cents: u64) -> exactly::Result<u64> {
    Ok(cents)
}

#[step(name = "", backoff_ms = 1.5)]
async fn notify() -> exactly::Result<()> {
    Ok(())
}

fn main() {}

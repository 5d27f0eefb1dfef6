use exactly::step;

#[step(retries = 3, backoff_ms = 10, retries = 5)]
async fn charge(cents: u64) -> exactly::Result<u64> {
    Ok(cents)
}

fn main() {}

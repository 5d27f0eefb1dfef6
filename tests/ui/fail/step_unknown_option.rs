use exactly::step;

#[step(retry = 3, backoff = 100)]
async fn charge(cents: u64) -> exactly::Result<u64> {
    Ok(cents)
}

fn main() {}

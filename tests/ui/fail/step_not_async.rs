use exactly::step;

#[step]
fn charge(cents: u64) -> exactly::Result<u64> {
    Ok(cents)
}

fn main() {}

use exactly::step;

#[step]
async fn charge(cents: u64) -> Option<u64> {
    Some(cents)
}

#[step]
async fn notify(cents: u64) {
    let _ = cents;
}

fn main() {}

use exactly::step;

pub struct Card {
    pub number: String,
}

#[step(retries = 3)]
async fn charge(card: Card, cents: u64) -> exactly::Result<u64> {
    let _ = card.number;
    Ok(cents)
}

fn main() {}

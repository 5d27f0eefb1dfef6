use exactly::step;

pub struct Receipt {
    pub cents: u64,
}

#[step]
async fn charge(cents: u64) -> exactly::Result<Receipt> {
    Ok(Receipt { cents })
}

fn main() {}

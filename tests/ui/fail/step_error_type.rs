use exactly::step;

#[derive(Debug)]
pub enum PaymentError {
    Declined,
}

impl std::fmt::Display for PaymentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("declined")
    }
}

#[step]
async fn charge(cents: u64) -> Result<u64, PaymentError> {
    if cents == 0 {
        return Err(PaymentError::Declined);
    }
    Ok(cents)
}

#[step]
async fn refund(cents: u64) -> Result<u64, std::io::Error> {
    Ok(cents)
}

fn main() {}

//! `exactly::Result`, `std::result::Result` with a custom error, and a custom alias.
use exactly::{step, workflow};

#[derive(Debug)]
pub enum PaymentError {
    Declined(String),
    Runtime(exactly::Error),
}

impl std::fmt::Display for PaymentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PaymentError::Declined(reason) => write!(f, "declined: {reason}"),
            PaymentError::Runtime(e) => write!(f, "{e}"),
        }
    }
}

impl From<exactly::Error> for PaymentError {
    fn from(e: exactly::Error) -> Self {
        PaymentError::Runtime(e)
    }
}

type PaymentResult<T> = Result<T, PaymentError>;

#[step(retries = 2)]
async fn authorize(card: String, cents: u64) -> Result<String, PaymentError> {
    if cents > 1_000_000 {
        return Err(PaymentError::Declined(format!("{cents} on {card}")));
    }
    Ok(format!("auth-{card}"))
}

#[step]
async fn capture(authorization: &str) -> PaymentResult<()> {
    let _ = authorization;
    Ok(())
}

#[step]
async fn audit(line: String) -> exactly::Result<u32> {
    Ok(line.len() as u32)
}

#[workflow]
async fn pay(card: String, cents: u64) -> Result<String, PaymentError> {
    let authorization = authorize(card, cents).await?;
    capture(&authorization).await?;
    audit(authorization.clone()).await?; // exactly::Error converts through From
    Ok(authorization)
}

#[workflow]
async fn pay_alias(card: String) -> PaymentResult<()> {
    pay(card, 1).await?;
    Ok(())
}

#[workflow]
async fn std_result(card: String) -> std::result::Result<(), exactly::Error> {
    let _ = card;
    Ok(())
}

fn main() {}

//! A workflow calling steps, the closure form `exactly::run_step`, and another workflow.
use exactly::{step, workflow};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub cents: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Receipt {
    pub order_id: String,
    pub charged: u64,
}

#[step(retries = 3)]
async fn charge(order: &Order) -> exactly::Result<Receipt> {
    Ok(Receipt { order_id: order.id.clone(), charged: order.cents })
}

#[step]
async fn notify(receipt: Receipt) -> exactly::Result<()> {
    println!("charged {} for {}", receipt.charged, receipt.order_id);
    Ok(())
}

#[workflow]
pub async fn process(order: Order) -> exactly::Result<u64> {
    let receipt = charge(&order).await?;
    let charged = receipt.charged;
    notify(receipt).await?;
    let doubled: u64 = exactly::run_step("double", || async move { Ok::<_, exactly::Error>(charged * 2) }).await?;
    let id = exactly::workflow_id();
    println!("{id:?}");
    Ok(doubled)
}

#[workflow]
pub async fn process_many(orders: Vec<Order>) -> exactly::Result<u64> {
    let mut total = 0;
    for order in orders {
        // A child workflow, started with an idempotency key.
        let id = format!("process-{}", order.id);
        total += process(order).with_id(id).await?;
    }
    Ok(total)
}

fn main() {}

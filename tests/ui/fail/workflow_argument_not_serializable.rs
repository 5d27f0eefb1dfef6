use exactly::workflow;

pub struct Order {
    pub id: String,
}

#[workflow]
async fn process(order: Order, cents: u64) -> exactly::Result<()> {
    let _ = (order.id, cents);
    Ok(())
}

fn main() {}

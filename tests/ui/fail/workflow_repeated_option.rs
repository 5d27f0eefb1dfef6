use exactly::workflow;

#[workflow(name = "orders.process", max_recovery_attempts = 3, name = "orders.process2")]
async fn process(order_id: String) -> exactly::Result<()> {
    let _ = order_id;
    Ok(())
}

fn main() {}

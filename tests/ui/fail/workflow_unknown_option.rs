use exactly::workflow;

#[workflow(name = "orders.process", retries = 3)]
async fn process(order_id: String) -> exactly::Result<()> {
    let _ = order_id;
    Ok(())
}

fn main() {}

use exactly::workflow;

#[workflow]
async fn process(order_id: impl Into<String>) -> exactly::Result<()> {
    let _ = order_id.into();
    Ok(())
}

fn main() {}

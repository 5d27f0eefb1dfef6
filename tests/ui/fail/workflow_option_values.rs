use exactly::workflow;

const NAME: &str = "orders.process";

#[workflow(name = NAME, max_recovery_attempts = "3")]
async fn process(order_id: String) -> exactly::Result<()> {
    let _ = order_id;
    Ok(())
}

#[workflow(name = "", max_recovery_attempts = -1)]
async fn empty_name() -> exactly::Result<()> {
    Ok(())
}

#[workflow(max_recovery_attempts = 5000000000)]
async fn too_many() -> exactly::Result<()> {
    Ok(())
}

fn main() {}

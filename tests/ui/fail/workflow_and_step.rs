use exactly::{step, workflow};

#[workflow]
#[step]
async fn process(order_id: String) -> exactly::Result<()> {
    let _ = order_id;
    Ok(())
}

#[step]
#[workflow]
async fn charge(order_id: String) -> exactly::Result<()> {
    let _ = order_id;
    Ok(())
}

fn main() {}

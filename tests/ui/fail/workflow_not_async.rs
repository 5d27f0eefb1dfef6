use exactly::workflow;

#[workflow]
fn process(order_id: String) -> exactly::Result<()> {
    let _ = order_id;
    Ok(())
}

fn main() {}

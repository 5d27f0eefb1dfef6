use exactly::workflow;

pub struct Order;

#[workflow]
async fn by_name(order_id: &str) -> exactly::Result<()> {
    let _ = order_id;
    Ok(())
}

#[workflow]
async fn nested(payload: Option<&[u8]>, order: &Order) -> exactly::Result<()> {
    let _ = (payload, order);
    Ok(())
}

fn main() {}

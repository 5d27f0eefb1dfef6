use exactly::workflow;

pub struct Receipt {
    pub id: String,
}

#[workflow]
async fn process(order_id: String) -> exactly::Result<Receipt> {
    Ok(Receipt { id: order_id })
}

fn main() {}

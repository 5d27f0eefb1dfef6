use exactly::workflow;

#[workflow]
async fn process(order_id: String) -> u64 {
    order_id.len() as u64
}

fn main() {}

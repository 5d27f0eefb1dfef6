use exactly::workflow;

#[workflow]
async fn process(order_id: String) {
    let _ = order_id;
}

fn main() {}

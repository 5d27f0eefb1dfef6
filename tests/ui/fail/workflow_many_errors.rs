// Every mistake is reported in one compile.
use exactly::workflow;

#[workflow(nmae = "orders.process")]
fn process(order_id: &str, items: impl IntoIterator<Item = String>) -> u64 {
    let _ = (order_id, items);
    0
}

fn main() {}

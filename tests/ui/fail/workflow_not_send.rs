use exactly::workflow;

async fn pause() {}

#[workflow]
async fn process(order_id: String) -> exactly::Result<usize> {
    let shared = std::rc::Rc::new(order_id);
    pause().await;
    Ok(shared.len())
}

fn main() {}

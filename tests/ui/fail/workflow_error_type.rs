use exactly::workflow;

#[derive(Debug)]
pub struct ShopError;

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("shop error")
    }
}

#[workflow]
async fn process(order_id: String) -> Result<(), ShopError> {
    let _ = order_id;
    Ok(())
}

fn main() {}

use exactly::workflow;

#[workflow]
async fn process<T: serde::Serialize + serde::de::DeserializeOwned>(item: T) -> exactly::Result<()> {
    let _ = item;
    Ok(())
}

fn main() {}

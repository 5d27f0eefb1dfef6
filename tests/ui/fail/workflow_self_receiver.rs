use exactly::workflow;

pub struct Shop {
    pub name: String,
}

impl Shop {
    #[workflow]
    async fn process(&self, order_id: String) -> exactly::Result<()> {
        let _ = (&self.name, order_id);
        Ok(())
    }
}

fn main() {}

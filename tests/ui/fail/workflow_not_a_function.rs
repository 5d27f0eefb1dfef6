use exactly::workflow;

#[workflow]
pub struct Process {
    pub order_id: String,
}

fn main() {}

use exactly::step;

pub struct Account {
    pub balance: u64,
}

impl Account {
    #[step]
    async fn charge(&mut self, cents: u64) -> exactly::Result<u64> {
        self.balance -= cents;
        Ok(self.balance)
    }
}

fn main() {}

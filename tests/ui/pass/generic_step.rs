//! Steps may be generic, take references and `impl Trait`, and be retried.
use std::collections::HashMap;
use std::fmt::Display;

use exactly::step;
use serde::Serialize;
use serde::de::DeserializeOwned;

#[step(retries = 3)]
async fn lookup<K, V>(table: &HashMap<K, V>, key: &K) -> exactly::Result<Option<V>>
where
    K: std::hash::Hash + Eq,
    V: Clone + Serialize + DeserializeOwned,
{
    Ok(table.get(key).cloned())
}

#[step(retries = 1)]
async fn describe(thing: impl Display + Clone, times: usize) -> exactly::Result<String> {
    Ok(thing.to_string().repeat(times))
}

#[step]
async fn consume<T: Serialize + DeserializeOwned + Send>(
    mut items: Vec<T>,
    mut count: usize,
) -> exactly::Result<Vec<T>> {
    count += 1;
    items.truncate(count);
    Ok(items)
}

#[step(retries = 2)]
async fn with_lifetime<'a>(text: &'a str, (first, second): (u8, u8)) -> exactly::Result<usize> {
    Ok(text.len() + usize::from(first) + usize::from(second))
}

pub struct Cache {
    prefix: String,
}

impl Cache {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    /// An associated function can be a step; `Self` works in it.
    #[step(retries = 1)]
    async fn key(cache: &Self, id: u32) -> exactly::Result<String> {
        let built: String = Self::build(cache.prefix(), id);
        Ok(built)
    }

    fn build(prefix: &str, id: u32) -> String {
        format!("{prefix}{id}")
    }
}

async fn use_them() -> exactly::Result<()> {
    let mut table = HashMap::new();
    table.insert("a".to_owned(), 1u32);
    let _: Option<u32> = lookup(&table, &"a".to_owned()).await?;
    let _ = describe("x", 2).await?;
    let _ = consume(vec![1, 2, 3], 1).await?;
    let _ = with_lifetime("text", (1, 2)).await?;
    let _ = Cache::key(&Cache { prefix: "p".into() }, 1).await?;
    Ok(())
}

fn main() {
    drop(use_them());
}

// Generic steps awaited inside a workflow keep its future `Send`.
#[exactly::workflow]
async fn uses_generic_steps(key: String, items: Vec<u32>) -> exactly::Result<usize> {
    let table: HashMap<String, u32> = HashMap::new();
    let found = lookup(&table, &key).await?;
    let kept = consume(items, 1).await?;
    Ok(found.map_or(0, |v| v as usize) + kept.len())
}

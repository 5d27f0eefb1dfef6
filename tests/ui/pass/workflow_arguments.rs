//! A workflow's arguments: several, with `mut` and destructuring patterns, and a
//! custom serde type.
use exactly::workflow;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub lines: Vec<(String, u32)>,
}

/// Sums an order. Doc comments stay on the function.
#[workflow]
pub async fn total(
    mut order: Order,
    cents_per_unit: u64,
    (tax, rounding): (u64, bool),
    big: u128,
) -> exactly::Result<u64> {
    order.lines.retain(|(_, quantity)| *quantity > 0);
    let units: u64 = order.lines.iter().map(|(_, quantity)| u64::from(*quantity)).sum();
    let total = units * cents_per_unit + tax + (big % 2) as u64;
    Ok(if rounding { total / 100 * 100 } else { total })
}

#[workflow]
async fn no_arguments() -> exactly::Result<()> {
    Ok(())
}

#[allow(clippy::too_many_arguments)]
#[workflow]
pub(crate) async fn options(
    id: Option<String>,
    tags: Vec<String>,
    map: std::collections::BTreeMap<String, i64>,
) -> exactly::Result<usize> {
    Ok(id.map_or(0, |id| id.len()) + tags.len() + map.len())
}

// Calling a workflow returns a `WorkflowCall`: await it for the result, or start it
// with options for a handle. Type-checked only: running it needs a database.
async fn start_them() -> exactly::Result<u64> {
    let order = Order { id: "o-1".into(), lines: vec![("apple".into(), 3)] };
    let call: exactly::WorkflowCall<exactly::Result<u64>> = total(order.clone(), 25, (10, false), 7);
    assert_eq!(call.name(), concat!(module_path!(), "::total"));
    let cents = call.await?;
    let handle = total(order, 25, (10, true), 7).with_id("order-o-1").start().await?;
    println!("{}", handle.id());
    let again: u64 = handle.result().await?;
    no_arguments().with_timeout(std::time::Duration::from_secs(5)).await?;
    options(None, vec![], Default::default()).await?;
    Ok(cents + again)
}

fn main() {
    fn is_send<T: Send>(_: &T) {}
    is_send(&start_them());
    // The static the expansion registers, under its contract name.
    assert_eq!(__EXACTLY_WORKFLOW_total.name, concat!(module_path!(), "::total"));
    assert_eq!(__EXACTLY_WORKFLOW_total.max_recovery_attempts, None);
}

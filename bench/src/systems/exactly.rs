//! `exactly` with its defaults, used the way an application uses it: a `#[workflow]`
//! calling a `#[step]`.

use exactly::Runtime;

use super::{BoxFuture, LocalBoxFuture, QueueVariant, System};
use crate::Error;

/// The step's work: trivial, so that the engine's own cost is what is measured.
#[exactly::step]
async fn work(i: u64) -> exactly::Result<u64> {
    Ok(i * 2)
}

/// One workflow, one step.
#[exactly::workflow]
async fn one_step(i: u64) -> exactly::Result<u64> {
    work(i).await
}

// The `queue` workload's queue: no limits, declared as an application declares one.
exactly::queue!(static BENCH = "bench");

pub struct Exactly {
    runtime: Runtime,
}

impl Exactly {
    /// Launches the runtime on `url` (migrating its schema). `pool` overrides its pool size.
    pub async fn launch(url: &str, pool: Option<u32>) -> Result<Self, Error> {
        let mut builder = Runtime::builder().database_url(url).schema("exactly");
        if let Some(pool) = pool {
            builder = builder.pool_size(pool);
        }
        Ok(Exactly { runtime: builder.launch().await? })
    }
}

impl System for Exactly {
    fn name(&self) -> &'static str {
        "exactly"
    }

    fn describe(&self) -> String {
        format!(
            "exactly: pool {} connections, group commit (writer tasks share transactions), local handles await a oneshot",
            self.runtime.pool().options().get_max_connections()
        )
    }

    fn status_table(&self) -> &'static str {
        "exactly.workflow_status"
    }

    fn one_step(&self, i: u64) -> BoxFuture<'static, Result<u64, Error>> {
        Box::pin(async move { Ok(one_step(i).start().await?.result().await?) })
    }

    fn queues(&self) -> Vec<QueueVariant> {
        vec![QueueVariant {
            label: "exactly",
            queue: BENCH.name,
            describe: "exactly: queue `bench`, no limits; dispatcher claims up to 500 rows per query, \
                       wakes on LISTEN/NOTIFY (a statement trigger on insert), else polls every 200 ms"
                .to_owned(),
        }]
    }

    fn enqueue(&self, queue: &'static str, id: String, i: u64) -> BoxFuture<'static, Result<(), Error>> {
        assert_eq!(queue, BENCH.name, "exactly has one bench queue");
        Box::pin(async move {
            one_step(i).with_id(id).on_queue(&BENCH).start().await?;
            Ok(())
        })
    }

    fn output(&self, id: String) -> BoxFuture<'static, Result<u64, Error>> {
        let handle = self.runtime.handle::<exactly::Result<u64>>(id);
        Box::pin(async move { Ok(handle.result().await?) })
    }

    fn shutdown(&self) -> LocalBoxFuture<'static, Result<(), Error>> {
        let runtime = self.runtime.clone();
        // Not `Send`: `Runtime::shutdown` holds a std lock guard across an await.
        Box::pin(async move { Ok(runtime.shutdown().await?) })
    }
}

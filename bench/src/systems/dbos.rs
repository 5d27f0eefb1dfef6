//! The `dbos` crate (DBOS Transact for Rust) with its defaults.

use std::time::Duration;

use dbos::{Config, DBOS, Enqueue, QueueConflict, QueueOptions, StartOptions, WorkflowRef};

use super::{BoxFuture, LocalBoxFuture, QueueVariant, System};
use crate::Error;

/// The step's work: trivial, so that the engine's own cost is what is measured.
async fn work(i: u64) -> dbos::Result<u64> {
    Ok(i * 2)
}

/// One workflow, one step.
async fn one_step(i: u64) -> dbos::Result<u64> {
    dbos::step("work", move || work(i)).await
}

/// The `queue` workload's queue with DBOS's defaults (no limits, 1 s polling interval).
const QUEUE: &str = "bench";

/// The same queue with the lowest polling interval DBOS's API allows.
const FAST_QUEUE: &str = "bench_fast";

/// `QueueOptions::polling_interval` must be non-zero; tokio's timer ticks in
/// milliseconds, so any interval up to 1 ms sleeps the same (1 to 2 ms).
const FAST_POLLING: Duration = Duration::from_millis(1);

/// How long an idle worker takes to come down to a 1 ms polling interval: it starts
/// at 1 s and multiplies by 0.9 after every poll that claimed without contention
/// (`dequeue::poll_queue`), so 1 s x (1 + 0.9 + 0.81 + ...) = 10 s, after the
/// supervisor's next sweep (at most 1 s) has started it.
const FAST_SETTLE: Duration = Duration::from_secs(12);

pub struct Dbos {
    dbos: DBOS,
    one_step: WorkflowRef<u64, u64>,
}

impl Dbos {
    /// Launches DBOS on `url` (migrating its schema). `pool` overrides its pool size.
    pub async fn launch(url: &str, pool: Option<u32>) -> Result<Self, Error> {
        let mut config = Config {
            // DBOS computes no application version and refuses to launch without one.
            app_version: Some("bench".to_owned()),
            ..Config::new("exactly_bench", url)
        };
        if let Some(pool) = pool {
            config.max_connections = pool;
        }
        let dbos = DBOS::new(config);
        let one_step = dbos.register_workflow("one_step", one_step)?;
        dbos.launch().await?;
        // Queues are rows, registered after launch; the supervisor starts the queue's
        // worker at its next sweep (within 1 s), long before the queue workload runs.
        dbos.register_queue(QUEUE, QueueOptions::default(), QueueConflict::AlwaysUpdate).await?;
        Ok(Dbos { dbos, one_step })
    }
}

impl System for Dbos {
    fn name(&self) -> &'static str {
        "dbos"
    }

    fn describe(&self) -> String {
        let c = self.dbos.config();
        format!(
            "dbos: pool {} connections, LISTEN/NOTIFY {}, outcome poll {:?} (local handles await the task), notification coalesce {:?}",
            c.max_connections,
            if c.use_listen_notify { "on" } else { "off" },
            c.outcome_poll_interval.unwrap_or(std::time::Duration::from_secs(1)),
            c.notification_coalesce.unwrap_or(std::time::Duration::from_millis(10)),
        )
    }

    fn status_table(&self) -> &'static str {
        "dbos.workflow_status"
    }

    fn one_step(&self, i: u64) -> BoxFuture<'static, Result<u64, Error>> {
        let workflow = self.one_step.clone();
        Box::pin(async move {
            let handle = workflow.start(i).await?;
            Ok(handle.result().await?)
        })
    }

    fn queues(&self) -> Vec<QueueVariant> {
        let default = QueueOptions::default();
        vec![
            QueueVariant {
                label: "dbos",
                queue: QUEUE,
                describe: format!(
                    "dbos: queue `{QUEUE}` with QueueOptions::default() (no limits, polling interval {:?}); \
                     a poll claims every ENQUEUED row, then starts them one round trip each",
                    default.polling_interval
                ),
            },
            QueueVariant {
                label: "dbos-1ms",
                queue: FAST_QUEUE,
                describe: format!(
                    "dbos-1ms: queue `{FAST_QUEUE}`, no limits, polling interval {FAST_POLLING:?} (the lowest \
                     QueueOptions allows: it must be non-zero, and tokio's timer has 1 ms ticks)"
                ),
            },
        ]
    }

    fn open_queue(&self, queue: &'static str) -> LocalBoxFuture<'static, Result<(), Error>> {
        let dbos = self.dbos.clone();
        Box::pin(async move {
            assert_eq!(queue, FAST_QUEUE);
            let options = QueueOptions { polling_interval: FAST_POLLING, ..QueueOptions::default() };
            dbos.register_queue(queue, options, QueueConflict::AlwaysUpdate).await?;
            tokio::time::sleep(FAST_SETTLE).await;
            Ok(())
        })
    }

    fn close_queue(&self, queue: &'static str) -> LocalBoxFuture<'static, Result<(), Error>> {
        let dbos = self.dbos.clone();
        Box::pin(async move {
            // Its worker stops at the supervisor's next sweep, so it does not keep polling
            // beside the workloads that follow.
            dbos.delete_queue(queue).await?;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Ok(())
        })
    }

    fn enqueue(&self, queue: &'static str, id: String, i: u64) -> BoxFuture<'static, Result<(), Error>> {
        let workflow = self.one_step.clone();
        Box::pin(async move {
            let options =
                StartOptions { workflow_id: Some(&id), queue: Some(Enqueue::new(queue)), ..StartOptions::default() };
            // Returns once the ENQUEUED row has committed, with a polling handle (dropped).
            workflow.start_with(i, options).await?;
            Ok(())
        })
    }

    fn output(&self, id: String) -> BoxFuture<'static, Result<u64, Error>> {
        let handle = self.dbos.retrieve_workflow::<u64, dbos::EngineOnly>(&id);
        Box::pin(async move { Ok(handle?.result().await?) })
    }

    fn shutdown(&self) -> LocalBoxFuture<'static, Result<(), Error>> {
        let dbos = self.dbos.clone();
        Box::pin(async move {
            dbos.shutdown().await;
            Ok(())
        })
    }
}

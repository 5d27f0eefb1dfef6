//! The `dbos` crate (DBOS Transact for Rust) with its defaults.

use dbos::{Config, DBOS, WorkflowRef};

use super::{BoxFuture, LocalBoxFuture, System};
use crate::Error;

/// The step's work: trivial, so that the engine's own cost is what is measured.
async fn work(i: u64) -> dbos::Result<u64> {
    Ok(i * 2)
}

/// One workflow, one step.
async fn one_step(i: u64) -> dbos::Result<u64> {
    dbos::step("work", move || work(i)).await
}

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

    fn shutdown(&self) -> LocalBoxFuture<'static, Result<(), Error>> {
        let dbos = self.dbos.clone();
        Box::pin(async move {
            dbos.shutdown().await;
            Ok(())
        })
    }
}

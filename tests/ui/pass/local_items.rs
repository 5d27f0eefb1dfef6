//! Workflows and steps declared inside a function, inner attributes, and `#[cfg]`.
use exactly::{step, workflow};

#[workflow]
#[cfg(any())]
async fn compiled_out(id: NotEvenAType) -> exactly::Result<()> {
    Ok(())
}

#[step]
async fn double(x: u8) -> exactly::Result<u8> {
    #![allow(unused_mut)]
    let mut y = x;
    Ok(y * 2)
}

fn main() {
    #[workflow]
    async fn local_workflow(x: u8) -> exactly::Result<u8> {
        local_step(x).await
    }

    #[step(retries = 1)]
    async fn local_step(x: u8) -> exactly::Result<u8> {
        double(x).await
    }

    let call = local_workflow(1);
    assert_eq!(call.name(), concat!(module_path!(), "::local_workflow"));
    assert_eq!(__EXACTLY_WORKFLOW_local_workflow.name, call.name());
}

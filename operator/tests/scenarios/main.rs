//! Scenario tests of the reconcile decisions: the real reconcilers against the real
//! API server, with AWS in memory (`hookline_operator::aws::memory`). Each test is
//! one decision, named for it, so a failure says which decision broke; what only
//! AWS's own behaviour can show (a request delivered end to end, IAM, an emulator's
//! reading of a domain) stays in `operator.rs` on the emulators. See docs/testing.md.
//!
//! # Layout
//! - [`harness`]: a scenario (namespace, gateway, in-memory AWS, driven passes).
//! - [`webhooks`]: a Webhook's queue pair, route and worker; validation; spec changes.
//! - [`gateways`]: the gateway's parts: ownership record, certificate, domain, alias,
//!   what the gateway applies for its Webhooks (stage throttles, resource policy).
//! - [`failures`]: what an AWS failure of each operation shows, and what is not ours.
//! - [`deletion`]: what deletion waits for, what it releases, what it leaves.
//! - [`scaling`]: the scaler's decisions on the queue's depth.
//! - [`steady`]: the steady-state resync (two reads) and the audit.

mod deletion;
mod failures;
mod gateways;
mod harness;
mod scaling;
mod steady;
mod webhooks;

/// Defines the test `<module>::<decision>::holds` that runs the scenario
/// `async fn decision() -> anyhow::Result<()>` on a thread with a large stack (the
/// reconcilers' futures outgrow the test harness's 2 MiB in debug builds).
#[macro_export]
macro_rules! scenario {
    ($($decision:ident),+ $(,)?) => {
        $(
            mod $decision {
                #[test]
                fn holds() -> ::anyhow::Result<()> {
                    ::hookline_tests::block_on_large_stack(super::$decision)
                }
            }
        )+
    };
}

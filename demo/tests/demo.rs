//! The README's first command must keep working: run the demo to its end and check
//! what it reports, on MiniStack (`make demo`) and on LocalStack
//! (`make demo ARGS=--emulator=localstack`).

use anyhow::{Context, Result};
use std::process::Command;

#[test]
fn demo_delivers_signed_webhooks_end_to_end() -> Result<()> {
    demo_delivers(&[])
}

#[test]
fn demo_delivers_signed_webhooks_end_to_end_on_localstack() -> Result<()> {
    demo_delivers(&["--emulator=localstack"])
}

fn demo_delivers(args: &[&str]) -> Result<()> {
    let output = Command::new(env!("CARGO_BIN_EXE_hookline-demo"))
        .args(args)
        .output()
        .context("running hookline-demo")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("Ready: https://hooks.example.com/payments/stripe"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("payments") && l.contains("stripe") && l.contains("True")),
        "kubectl shows the webhook Ready:\n{stdout}"
    );
    for customer in ["cus_A", "cus_B"] {
        let order: Vec<&str> = stdout
            .lines()
            .filter(|l| l.contains("group b:") && l.contains(&format!("evt_{customer}_")))
            .collect();
        assert_eq!(
            order.len(),
            3,
            "three events of {customer} delivered:\n{stdout}"
        );
        for (i, line) in order.iter().enumerate() {
            assert!(
                line.contains(&format!("evt_{customer}_{}", i + 1)),
                "{customer} out of order:\n{stdout}"
            );
        }
    }
    assert!(
        !stdout
            .lines()
            .any(|l| l.contains("group") && l.contains("evt_forged")),
        "the forged event reached the handler"
    );
    assert!(
        stdout.contains("it is in the dead-letter queue"),
        "{stdout}"
    );
    Ok(())
}

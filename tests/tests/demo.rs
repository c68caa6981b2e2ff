//! The README's first command must keep working: run the demo to its end and check
//! what it reports.

use anyhow::{Context, Result};
use std::process::Command;

#[test]
fn demo_applies_the_samples_and_shows_them() -> Result<()> {
    let output = Command::new(env!("CARGO_BIN_EXE_hookline-demo"))
        .output()
        .context("running hookline-demo")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("webhook payments/stripe accepted"),
        "{stdout}"
    );
    assert!(stdout.contains("maxReceiveCount=5"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("payments") && l.contains("stripe")),
        "kubectl shows the webhook:\n{stdout}"
    );
    assert!(
        stdout.contains("refused: Webhook.hookline.dev \"bad\" is invalid"),
        "{stdout}"
    );
    assert!(
        stdout.contains("path must not contain '.' or '..' segments"),
        "{stdout}"
    );
    Ok(())
}

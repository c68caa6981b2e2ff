//! The committed CRD YAML, CRD reference and chart CRD templates must be exactly
//! what the types generate: a change to a type without `make generate` fails here
//! instead of shipping a stale schema.

use std::path::Path;

fn assert_current(path: &Path, expected: &str) {
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == expected,
        "{} is stale or missing; run `make generate` and commit the result",
        path.display()
    );
}

#[test]
fn committed_crd_yaml_is_current() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, expected) in hookline_crds::render_crds()? {
        assert_current(&dir.join(&file), &expected);
    }
    Ok(())
}

#[test]
fn committed_crd_reference_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/crd-reference.md");
    assert_current(&path, &hookline_crds::render_reference());
}

#[test]
fn committed_chart_crds_are_current() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (file, expected) in hookline_crds::render_chart_crds()? {
        assert_current(&root.join(&file), &expected);
    }
    Ok(())
}

//! The committed CRD YAML must be exactly what the types generate: a change to a
//! type without `make generate` fails here instead of shipping a stale schema.

#[test]
fn committed_crd_yaml_is_current() -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, expected) in hookline_crds::render_crds()? {
        let path = dir.join(&file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == expected,
            "{} is stale or missing; run `make generate` and commit the result",
            path.display()
        );
    }
    Ok(())
}

#[test]
fn committed_crd_reference_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/crd-reference.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == hookline_crds::render_reference(),
        "{} is stale or missing; run `make generate` and commit the result",
        path.display()
    );
}

#[test]
fn committed_chart_crds_are_current() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (file, expected) in hookline_crds::render_chart_crds()? {
        let path = root.join(&file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == expected,
            "{} is stale or missing; run `make generate` and commit the result",
            path.display()
        );
    }
    Ok(())
}

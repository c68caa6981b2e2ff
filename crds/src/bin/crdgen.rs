//! Writes the CRD YAML files into `crds/` (or the directory given as the first
//! argument), the reference into `docs/crd-reference.md` and the chart's CRD
//! templates into `charts/hookline/templates/crds/` next to it. `cargo test` fails
//! while the committed files differ from this output.

use anyhow::Context;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    for (file, yaml) in hookline_crds::render_crds()? {
        let path = dir.join(&file);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    let reference = dir.join("../docs/crd-reference.md");
    std::fs::write(&reference, hookline_crds::render_reference())
        .with_context(|| format!("writing {}", reference.display()))?;
    eprintln!("wrote {}", reference.display());
    for (file, template) in hookline_crds::render_chart_crds()? {
        let path = dir.join("..").join(&file);
        std::fs::write(&path, template).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

//! Regenerates the values table of `charts/hookline/README.md` from the `# --`
//! comments of `charts/hookline/values.yaml` (`make generate`). The chart test
//! fails while the committed README differs.

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let chart = hookline_tests::repo_root().join("charts/hookline");
    let values =
        std::fs::read_to_string(chart.join("values.yaml")).context("reading values.yaml")?;
    let path = chart.join("README.md");
    let readme = std::fs::read_to_string(&path).context("reading the chart README")?;
    std::fs::write(
        &path,
        hookline_tests::chart_docs::render_readme(&readme, &values)?,
    )
    .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

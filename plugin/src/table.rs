//! Tables as kubectl prints them: upper-case headers, columns padded to the widest
//! cell and three spaces apart, no borders.

use std::io::Write;
use std::time::{Duration, SystemTime};

/// Writes `rows` under `headers`.
pub fn write(out: &mut impl Write, headers: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i == last {
                    (*cell).to_owned()
                } else {
                    format!("{cell:<width$}   ", width = widths[i])
                }
            })
            .collect::<String>()
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// A duration as kubectl's AGE column writes it: `45s`, `12m`, `3h`, `2d`.
pub fn age(duration: Duration) -> String {
    let s = duration.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// How long ago `at` was, or `-`.
pub fn since(at: Option<SystemTime>) -> String {
    at.and_then(|at| SystemTime::now().duration_since(at).ok())
        .map_or_else(|| "-".to_owned(), age)
}

/// `text` on one line and at most `max` characters, control characters escaped.
pub fn preview(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut out = Vec::new();
        write(
            &mut out,
            &["NAME", "READY"],
            &[
                vec!["stripe".into(), "True".into()],
                vec!["a".into(), "False".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME     READY\nstripe   True\na        False\n"
        );
    }

    #[test]
    fn ages_and_previews() {
        assert_eq!(age(Duration::from_secs(45)), "45s");
        assert_eq!(age(Duration::from_secs(600)), "10m");
        assert_eq!(age(Duration::from_secs(3 * 3600)), "3h");
        assert_eq!(age(Duration::from_secs(3 * 86_400)), "3d");
        assert_eq!(preview("a\nb", 10), "a\\nb");
        assert_eq!(preview("abcdef", 3), "abc…");
    }
}

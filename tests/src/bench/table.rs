//! Markdown tables, the output format of every benchmark.

use std::fmt;

/// A markdown table with a title line and notes under it (a bullet list);
/// the first column (or the first [`Table::left_columns`]) is left-aligned,
/// the others right-aligned.
#[derive(Debug, Clone, Default)]
pub struct Table {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
    left: usize,
}

impl Table {
    pub fn new(title: &str, headers: &[&str]) -> Self {
        Self {
            title: title.to_string(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
            left: 1,
        }
    }

    /// Left-aligns the first `count` columns (text rather than numbers).
    pub fn left_columns(mut self, count: usize) -> Self {
        self.left = count;
        self
    }

    /// Adds a row; missing cells render empty, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// A line printed under the table.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn rows(&self) -> &[Vec<String>] {
        &self.rows
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns = self.headers.len();
        let cell = |row: &[String], i: usize| row.get(i).cloned().unwrap_or_default();
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| cell(r, i).chars().count())
                    .chain(std::iter::once(cell(&self.headers, i).chars().count()))
                    .max()
                    .unwrap_or(0)
                    .max(3)
            })
            .collect();
        if !self.title.is_empty() {
            writeln!(f, "### {}\n", self.title)?;
        }
        let line = |f: &mut fmt::Formatter<'_>, row: &[String]| -> fmt::Result {
            write!(f, "|")?;
            for (i, width) in widths.iter().enumerate() {
                if i < self.left {
                    write!(f, " {:<width$} |", cell(row, i))?;
                } else {
                    write!(f, " {:>width$} |", cell(row, i))?;
                }
            }
            writeln!(f)
        };
        line(f, &self.headers)?;
        write!(f, "|")?;
        for (i, width) in widths.iter().enumerate() {
            if i < self.left {
                write!(f, " {} |", "-".repeat(*width))?;
            } else {
                write!(f, " {}: |", "-".repeat(width.saturating_sub(1)))?;
            }
        }
        writeln!(f)?;
        for row in &self.rows {
            line(f, row)?;
        }
        if !self.notes.is_empty() {
            writeln!(f)?;
        }
        for note in &self.notes {
            writeln!(f, "- {note}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn renders_aligned_markdown() {
        let mut table = Table::new("Admin", &["op", "ops/s"]);
        table.row(vec!["POST /consumers".into(), "1234.5".into()]);
        table.row(vec!["GET".into()]);
        table.note("CP on CPU 0");
        let expected = "### Admin\n\n\
                        | op              |  ops/s |\n\
                        | --------------- | -----: |\n\
                        | POST /consumers | 1234.5 |\n\
                        | GET             |        |\n\
                        \n- CP on CPU 0\n";
        assert_eq!(table.to_string(), expected);

        let mut two = Table::new("", &["a", "b", "c"]).left_columns(2);
        two.row(vec!["x".into(), "y".into(), "1".into()]);
        assert_eq!(
            two.to_string(),
            "| a   | b   |   c |\n| --- | --- | --: |\n| x   | y   |   1 |\n"
        );
    }
}

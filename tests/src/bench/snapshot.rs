//! Size of a declarative config as text and gzip-compressed (the transport
//! compresses snapshots, so both numbers matter).

use super::table::Table;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write as _;

/// `(raw, gzip)` sizes in bytes.
pub fn sizes(text: &[u8]) -> std::io::Result<(usize, usize)> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(text)?;
    let compressed = encoder.finish()?;
    Ok((text.len(), compressed.len()))
}

/// One row per `(label, raw, gzip)`.
pub fn report(entries: &[(String, usize, usize)]) -> Table {
    let mut table = Table::new(
        "Declarative config size",
        &["source", "raw bytes", "gzip bytes", "ratio"],
    );
    for (label, raw, gzip) in entries {
        let ratio = if *gzip > 0 {
            format!("{:.1}x", *raw as f64 / *gzip as f64)
        } else {
            "-".into()
        };
        table.row(vec![
            label.clone(),
            raw.to_string(),
            gzip.to_string(),
            ratio,
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read as _;

    #[test]
    fn gzip_size_is_of_a_stream_that_decodes_to_the_input() {
        let text = crate::bench::config_gen::generate(&Default::default());
        let (raw, gzip) = sizes(text.as_bytes()).unwrap();
        assert_eq!(raw, text.len());
        assert!(
            gzip * 4 < raw,
            "repetitive YAML compresses well: {gzip} of {raw}"
        );

        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(text.as_bytes()).unwrap();
        let compressed = encoder.finish().unwrap();
        assert_eq!(compressed.len(), gzip);
        let mut decoded = String::new();
        GzDecoder::new(compressed.as_slice())
            .read_to_string(&mut decoded)
            .unwrap();
        assert_eq!(decoded, text);
    }
}

//! Prometheus text exposition shared by both planes and the `prometheus`
//! plugin: the naming scheme chosen by `--metrics-prefix`, label escaping, and
//! writers over prometheus-client's encoder that keep every sample name equal
//! to its `# TYPE` name, as the text format 0.0.4 (what Kong serves and what
//! `promtool check metrics` parses) wants.
//!
//! Two schemes: with the prefix `kong`, Kong's exact names, types and units
//! (`kong_http_requests_total`, `kong_kong_latency_ms`, the counter
//! `kong_bandwidth_bytes` without `_total`, gauges named `…_total`), so Kong's
//! Grafana dashboard 7424 and existing alert rules work unchanged; with any
//! other prefix (default `tollgate`), names in base units that pass
//! `promtool check metrics` (`tollgate_request_latency_seconds`,
//! `tollgate_bandwidth_bytes_total`).
//!
//! Why not prometheus-client's own counters and encoder output as is: its
//! encoder writes OpenMetrics (`# TYPE x counter` with samples `x_total`),
//! which cannot express Kong's `kong_bandwidth_bytes`, and its `Family` takes
//! a lock and clones labels per observation. The values here are plain
//! atomics read at scrape time; prometheus-client does the text encoding
//! (descriptors, histograms, number formatting) through its `Collector` API.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelValue, LabelValueEncoder, MetricEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt::{self, Write as _};

/// The content type of the exposition: Prometheus text format 0.0.4 (Kong
/// sends `text/plain; charset=UTF-8`, the same format).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The default `--metrics-prefix`.
pub const DEFAULT_PREFIX: &str = "tollgate";

/// How metric names are formed: a prefix, and whether Kong's exact names apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    prefix: String,
}

impl Default for Naming {
    fn default() -> Self {
        Naming {
            prefix: DEFAULT_PREFIX.to_string(),
        }
    }
}

impl Naming {
    /// The scheme for `prefix`: `kong` selects Kong's names, anything else
    /// Tollgate's. A prefix must be a Prometheus metric name without colons.
    pub fn new(prefix: &str) -> Result<Naming, String> {
        let mut chars = prefix.chars();
        let valid_start = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !valid_start || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "'{prefix}' is not a metric name prefix (letters, digits and '_', not starting with a digit)"
            ));
        }
        Ok(Naming {
            prefix: prefix.to_string(),
        })
    }

    /// Whether names, types and units are Kong's (prefix `kong`).
    pub fn is_kong(&self) -> bool {
        self.prefix == "kong"
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name: `prefix_` + `kong` under Kong's scheme, else `tollgate`.
    pub fn name(&self, tollgate: &str, kong: &str) -> String {
        let base = if self.is_kong() { kong } else { tollgate };
        format!("{}_{base}", self.prefix)
    }

    /// The full name of a metric named alike in both schemes.
    pub fn same(&self, base: &str) -> String {
        format!("{}_{base}", self.prefix)
    }
}

/// The kind of a metric family, as its `# TYPE` line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn metric_type(self) -> MetricType {
        match self {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Histogram => MetricType::Histogram,
        }
    }
}

/// Renders everything registered in `registry` (collectors) as one exposition.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String only fails if a collector reports an error, which
    // ours never do; what was written so far is still served.
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, registry);
    out
}

/// A collector from a closure, for node-level metrics read at scrape time.
pub struct FnCollector<F>(pub F);

impl<F> fmt::Debug for FnCollector<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnCollector")
    }
}

impl<F> Collector for FnCollector<F>
where
    F: Fn(&mut Families<'_, '_>) -> fmt::Result + Send + Sync + 'static,
{
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        (self.0)(&mut Families {
            encoder: &mut encoder,
        })
    }
}

/// Writes metric families through prometheus-client's descriptor encoder.
pub struct Families<'a, 'e> {
    encoder: &'a mut DescriptorEncoder<'e>,
}

impl<'a, 'e> Families<'a, 'e> {
    pub fn new(encoder: &'a mut DescriptorEncoder<'e>) -> Self {
        Families { encoder }
    }

    /// Starts the family `name` (the full name, `_total` included for a
    /// counter: samples are written under exactly this name).
    pub fn family<'s>(
        &'s mut self,
        name: &'s str,
        help: &str,
        kind: Kind,
    ) -> Result<Family<'s>, fmt::Error> {
        let metric = self
            .encoder
            .encode_descriptor(name, help, None, kind.metric_type())?;
        Ok(Family { metric })
    }

    /// A family with one unlabelled sample.
    pub fn single(
        &mut self,
        name: &str,
        help: &str,
        kind: Kind,
        value: impl EncodeGaugeValue,
    ) -> fmt::Result {
        self.family(name, help, kind)?.sample(&[], value)
    }
}

/// One family being written.
pub struct Family<'s> {
    metric: MetricEncoder<'s>,
}

impl Family<'_> {
    /// One sample with `labels` (values escaped here).
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl EncodeGaugeValue) -> fmt::Result {
        if labels.is_empty() {
            // The gauge encoding writes the name as given: no `_total` is added.
            return self.metric.encode_gauge(&value);
        }
        let labels = escaped(labels);
        self.metric.encode_family(&labels)?.encode_gauge(&value)
    }

    /// One histogram series: `buckets` are (upper bound, count in that bucket,
    /// not cumulative), the last one's bound `f64::MAX` for `+Inf`.
    pub fn histogram(
        &mut self,
        labels: &[(&str, &str)],
        sum: f64,
        count: u64,
        buckets: &[(f64, u64)],
    ) -> fmt::Result {
        let labels = escaped(labels);
        self.metric
            .encode_family(&labels)?
            .encode_histogram::<Vec<(String, String)>>(sum, count, buckets, None)
    }
}

fn escaped<'a>(labels: &[(&'a str, &'a str)]) -> Vec<(&'a str, Escaped<'a>)> {
    labels
        .iter()
        .map(|(name, value)| (*name, Escaped(value)))
        .collect()
}

/// A label value escaped as the text format requires (`\`, `"`, newline):
/// consumer names and hosts are user input.
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..at])?;
            let escape = match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            };
            encoder.write_str(escape)?;
            rest = &rest[at + 1..];
        }
        encoder.write_str(rest)
    }
}

/// A node's connection and request counts, as both planes keep them (the
/// data plane for its proxy listeners, the control plane for its Admin API).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionCounts<'a> {
    pub node_id: &'a str,
    /// What the connections are, for the help texts ("client", "Admin API").
    pub subject: &'a str,
    pub accepted: u64,
    /// Connections handled, when counted apart from accepted (data plane);
    /// `None` writes no handled counter under Tollgate's names and the
    /// accepted count as Kong's `handled` state.
    pub handled: Option<u64>,
    pub active: u64,
    /// Connections with a request in flight (at most `active`).
    pub writing: u64,
    pub requests: u64,
}

/// Writes the connection and request families: Kong's
/// `nginx_connections_total` (every state, `subsystem="http"`) and
/// `nginx_requests_total` gauges under `--metrics-prefix kong`, otherwise
/// `connections` by state, `connections_accepted_total`,
/// `connections_handled_total` (when counted) and `requests_total`.
/// `reading` is always 0 (hyper does not expose it); `waiting` is open
/// connections without a request in flight.
pub fn connections(
    families: &mut Families<'_, '_>,
    naming: &Naming,
    counts: &ConnectionCounts<'_>,
) -> fmt::Result {
    let node_id = counts.node_id;
    let subject = counts.subject;
    let writing = counts.writing.min(counts.active);
    let waiting = counts.active - writing;
    if naming.is_kong() {
        let name = naming.same("nginx_connections_total");
        let help = format!("Connections ({subject}) by state");
        let mut family = families.family(&name, &help, Kind::Gauge)?;
        for (state, value) in [
            ("accepted", counts.accepted),
            ("active", counts.active),
            ("handled", counts.handled.unwrap_or(counts.accepted)),
            ("reading", 0),
            ("total", counts.accepted),
            ("waiting", waiting),
            ("writing", writing),
        ] {
            family.sample(
                &[
                    ("node_id", node_id),
                    ("subsystem", "http"),
                    ("state", state),
                ],
                value,
            )?;
        }
        let name = naming.same("nginx_requests_total");
        let help = format!("Requests received ({subject})");
        return families.family(&name, &help, Kind::Gauge)?.sample(
            &[("node_id", node_id), ("subsystem", "http")],
            counts.requests,
        );
    }
    let name = naming.same("connections");
    let help = format!("Open connections ({subject}) by state");
    let mut family = families.family(&name, &help, Kind::Gauge)?;
    for (state, value) in [
        ("active", counts.active),
        ("reading", 0),
        ("waiting", waiting),
        ("writing", writing),
    ] {
        family.sample(&[("node_id", node_id), ("state", state)], value)?;
    }
    let name = naming.same("connections_accepted_total");
    let help = format!("Connections accepted ({subject})");
    families
        .family(&name, &help, Kind::Counter)?
        .sample(&[("node_id", node_id)], counts.accepted)?;
    if let Some(handled) = counts.handled {
        let name = naming.same("connections_handled_total");
        let help = format!("Connections handled ({subject})");
        families
            .family(&name, &help, Kind::Counter)?
            .sample(&[("node_id", node_id)], handled)?;
    }
    let name = naming.same("requests_total");
    let help = format!("Requests received ({subject})");
    families
        .family(&name, &help, Kind::Counter)?
        .sample(&[("node_id", node_id)], counts.requests)
}

/// The hash of a config as a number, as Kong exports
/// `kong_data_plane_config_hash` (`tonumber(hash, 16)`): its hex digits read
/// as an integer in a float, so equal hashes give equal numbers.
pub fn hash_as_number(hash: &str) -> f64 {
    hash.chars()
        .map_while(|c| c.to_digit(16))
        .fold(0.0, |acc, digit| acc * 16.0 + f64::from(digit))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn collect(
        write: impl Fn(&mut Families<'_, '_>) -> fmt::Result + Send + Sync + 'static,
    ) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(FnCollector(write)));
        render(&registry)
    }

    #[test]
    fn counters_keep_their_name_and_values_are_escaped() {
        let text = collect(|families| {
            let mut family = families.family("kong_bandwidth_bytes", "Bytes", Kind::Counter)?;
            family.sample(&[("consumer", "a\"b\\c\nd"), ("direction", "egress")], 5u64)?;
            families.single("kong_datastore_reachable", "Reachable", Kind::Gauge, 1i64)
        });
        assert_eq!(
            text,
            "# HELP kong_bandwidth_bytes Bytes\n\
             # TYPE kong_bandwidth_bytes counter\n\
             kong_bandwidth_bytes{consumer=\"a\\\"b\\\\c\\nd\",direction=\"egress\"} 5\n\
             # HELP kong_datastore_reachable Reachable\n\
             # TYPE kong_datastore_reachable gauge\n\
             kong_datastore_reachable 1\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_inf_last() {
        let text = collect(|families| {
            families.family("x_ms", "X", Kind::Histogram)?.histogram(
                &[("route", "r")],
                7.0,
                3,
                &[(1.0, 1), (5.0, 2), (f64::MAX, 0)],
            )
        });
        // prometheus-client writes `le` first; label order carries no meaning.
        assert!(
            text.contains("x_ms_bucket{le=\"1.0\",route=\"r\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("x_ms_bucket{le=\"5.0\",route=\"r\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("x_ms_bucket{le=\"+Inf\",route=\"r\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("x_ms_count{route=\"r\"} 3\n"), "{text}");
        assert!(text.contains("x_ms_sum{route=\"r\"} 7.0\n"), "{text}");
    }

    #[test]
    fn connection_families_in_both_schemes() {
        let counts = ConnectionCounts {
            node_id: "n",
            subject: "client",
            accepted: 5,
            handled: Some(4),
            active: 3,
            writing: 1,
            requests: 9,
        };
        let text =
            collect(move |families| connections(families, &Naming::new("kong").unwrap(), &counts));
        assert!(
            text.contains("# TYPE kong_nginx_connections_total gauge\n"),
            "{text}"
        );
        for (state, value) in [
            ("accepted", 5),
            ("handled", 4),
            ("total", 5),
            ("waiting", 2),
            ("writing", 1),
            ("reading", 0),
        ] {
            let line = format!("kong_nginx_connections_total{{node_id=\"n\",subsystem=\"http\",state=\"{state}\"}} {value}\n");
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(
            text.contains("kong_nginx_requests_total{node_id=\"n\",subsystem=\"http\"} 9\n"),
            "{text}"
        );

        let admin = ConnectionCounts {
            handled: None,
            subject: "Admin API",
            ..counts
        };
        let text = collect(move |families| connections(families, &Naming::default(), &admin));
        assert!(
            text.contains("tollgate_connections{node_id=\"n\",state=\"waiting\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("tollgate_connections_accepted_total{node_id=\"n\"} 5\n"),
            "{text}"
        );
        assert!(!text.contains("connections_handled_total"), "{text}");
        assert!(text.contains("# TYPE tollgate_requests_total counter\ntollgate_requests_total{node_id=\"n\"} 9\n"), "{text}");
    }

    #[test]
    fn naming_schemes() {
        let kong = Naming::new("kong").unwrap();
        assert!(kong.is_kong());
        assert_eq!(
            kong.name("bandwidth_bytes_total", "bandwidth_bytes"),
            "kong_bandwidth_bytes"
        );
        let ours = Naming::default();
        assert_eq!(
            ours.name("bandwidth_bytes_total", "bandwidth_bytes"),
            "tollgate_bandwidth_bytes_total"
        );
        assert!(Naming::new("9x").is_err());
        assert!(Naming::new("a-b").is_err());
        assert!(Naming::new("").is_err());
    }

    #[test]
    fn hashes_compare_as_numbers() {
        assert_eq!(hash_as_number("00000000000000000000000000000000"), 0.0);
        assert_eq!(hash_as_number("ff"), 255.0);
        assert_ne!(
            hash_as_number("0123456789abcdef0123456789abcdef"),
            hash_as_number("1123456789abcdef0123456789abcdef")
        );
    }
}

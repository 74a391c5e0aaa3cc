//! Metrics of the plugins' background machinery, read at scrape time: the
//! opentelemetry exporters (spans exported, dropped, failed; failed export
//! requests; queue depth), the http-log queues (entries sent, retried,
//! dropped; queue depth), the jwt plugin's JWKS sources (keys held, fetches,
//! failures, last success) and the rate-limiting `local` table (live windows
//! evicted, expired ones reclaimed).
//!
//! The exporters and JWKS sources are labelled by URL (userinfo and query
//! removed: both may carry credentials); two sources with the same URL and
//! other settings are summed into one series, so no series is written twice.
//! Per-source counters start again when a config stops using a source and a
//! later one uses it again; Prometheus reads that as a counter reset.

use crate::plugins::http_log::HttpLogCounters;
use crate::plugins::jwks::JwksFetcher;
use crate::plugins::otlp::OtlpExporters;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tollgate_shared::exposition::{Families, Kind, Naming};
use tollgate_shared::runtime::Resources;

/// What the plugin families are read from.
pub struct PluginSources {
    pub otlp: Arc<OtlpExporters>,
    pub jwks: Arc<JwksFetcher>,
    pub http_log: Arc<HttpLogCounters>,
    /// The compile resources, for node-wide tables that exist only while a
    /// config uses them (rate-limiting `local`).
    pub resources: Resources,
}

impl fmt::Debug for PluginSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginSources").finish_non_exhaustive()
    }
}

/// `url` without userinfo, query or fragment: a label value that carries no
/// credentials.
fn url_label(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    crate::plugins::otlp::without_userinfo(&url[..end])
}

/// A family written per source: base name, help, kind, and how to read a
/// source's value.
type PerSource<'a, T> = (&'a str, &'a str, Kind, fn(&T) -> u64);

/// One family per definition, with one sample per source in `totals`
/// labelled `label`.
fn per_source<T>(
    naming: &Naming,
    families: &mut Families<'_, '_>,
    label: &str,
    totals: &BTreeMap<String, T>,
    definitions: &[PerSource<'_, T>],
) -> fmt::Result {
    for (base, help, kind, read) in definitions {
        let name = naming.same(base);
        let mut family = families.family(&name, help, *kind)?;
        for (source, total) in totals {
            family.sample(&[(label, source)], read(total))?;
        }
    }
    Ok(())
}

#[derive(Default)]
struct ExporterTotals {
    exported: u64,
    dropped: u64,
    failed: u64,
    failed_requests: u64,
    queued: u64,
}

#[derive(Default)]
struct JwksTotals {
    keys: u64,
    fetches: u64,
    failures: u64,
    last_success_ms: u64,
}

impl PluginSources {
    pub fn encode(&self, naming: &Naming, families: &mut Families<'_, '_>) -> fmt::Result {
        self.encode_http_log(naming, families)?;
        self.encode_otlp(naming, families)?;
        self.encode_jwks(naming, families)?;
        self.encode_rate_limiting(naming, families)
    }

    /// Node-wide, always written (zero before any http-log config).
    fn encode_http_log(&self, naming: &Naming, families: &mut Families<'_, '_>) -> fmt::Result {
        let counters = &self.http_log;
        for (base, help, kind, value) in [
            (
                "http_log_entries_sent_total",
                "http-log entries a collector accepted",
                Kind::Counter,
                &counters.sent,
            ),
            (
                "http_log_entries_retried_total",
                "http-log entries sent again after a failed attempt",
                Kind::Counter,
                &counters.retried,
            ),
            (
                "http_log_entries_dropped_total",
                "http-log entries lost (queue full, retry time exceeded, larger than queue.max_bytes)",
                Kind::Counter,
                &counters.dropped,
            ),
            (
                "http_log_queued_entries",
                "http-log entries waiting in a queue",
                Kind::Gauge,
                &counters.queued,
            ),
            (
                "http_log_sending_entries",
                "http-log entries being sent",
                Kind::Gauge,
                &counters.sending,
            ),
            (
                "http_log_queues",
                "http-log queues alive (one per distinct endpoint and queue settings)",
                Kind::Gauge,
                &counters.queues,
            ),
        ] {
            let name = naming.same(base);
            families.single(&name, help, kind, value.load(Ordering::Relaxed))?;
        }
        Ok(())
    }

    /// Per exporter endpoint, once some config uses one.
    fn encode_otlp(&self, naming: &Naming, families: &mut Families<'_, '_>) -> fmt::Result {
        let mut totals: BTreeMap<String, ExporterTotals> = BTreeMap::new();
        for stats in self.otlp.stats() {
            let total = totals.entry(url_label(&stats.endpoint)).or_default();
            total.exported += stats.exported;
            total.dropped += stats.dropped;
            total.failed += stats.failed;
            total.failed_requests += stats.failed_requests;
            total.queued += stats.queued;
        }
        if totals.is_empty() {
            return Ok(());
        }
        per_source(
            naming,
            families,
            "endpoint",
            &totals,
            &[
                (
                    "opentelemetry_spans_exported_total",
                    "Spans an OTLP receiver accepted",
                    Kind::Counter,
                    |t| t.exported,
                ),
                (
                    "opentelemetry_spans_dropped_total",
                    "Spans dropped because the exporter's queue was full (queue.max_entries or queue.max_bytes)",
                    Kind::Counter,
                    |t| t.dropped,
                ),
                (
                    "opentelemetry_spans_failed_total",
                    "Spans of batches given up after queue.max_retry_time",
                    Kind::Counter,
                    |t| t.failed,
                ),
                (
                    "opentelemetry_export_failures_total",
                    "OTLP export requests that failed (each attempt, retried or not)",
                    Kind::Counter,
                    |t| t.failed_requests,
                ),
                (
                    "opentelemetry_queued_spans",
                    "Spans waiting in an exporter's queue",
                    Kind::Gauge,
                    |t| t.queued,
                ),
            ],
        )
    }

    /// Per JWKS URI, once some config uses one.
    fn encode_jwks(&self, naming: &Naming, families: &mut Families<'_, '_>) -> fmt::Result {
        let mut totals: BTreeMap<String, JwksTotals> = BTreeMap::new();
        for health in self.jwks.health() {
            let total = totals.entry(url_label(&health.uri)).or_default();
            total.keys = total.keys.max(health.keys as u64);
            total.fetches += health.fetches;
            total.failures += health.failures;
            total.last_success_ms = total.last_success_ms.max(health.last_success_ms);
        }
        if totals.is_empty() {
            return Ok(());
        }
        per_source(
            naming,
            families,
            "jwks_uri",
            &totals,
            &[
                ("jwks_keys", "Keys held from a JWKS URI", Kind::Gauge, |t| {
                    t.keys
                }),
                (
                    "jwks_fetches_total",
                    "Fetches of a JWKS URI started",
                    Kind::Counter,
                    |t| t.fetches,
                ),
                (
                    "jwks_fetch_failures_total",
                    "Fetches of a JWKS URI that brought no key set (the keys held stay)",
                    Kind::Counter,
                    |t| t.failures,
                ),
            ],
        )?;
        // Absent until the first success: a 0 would read as "1970" in alerts
        // on its age.
        let name = naming.same("jwks_last_success_timestamp_seconds");
        let mut family = families.family(
            &name,
            "When a fetch of a JWKS URI last brought a key set (unix seconds)",
            Kind::Gauge,
        )?;
        for (uri, total) in totals.iter().filter(|(_, t)| t.last_success_ms > 0) {
            family.sample(&[("jwks_uri", uri)], total.last_success_ms as f64 / 1000.0)?;
        }
        Ok(())
    }

    /// The `local` table, while some config uses it.
    fn encode_rate_limiting(
        &self,
        naming: &Naming,
        families: &mut Families<'_, '_>,
    ) -> fmt::Result {
        let Some(table) = tollgate_shared::plugin::rate_limiting_local_table(&self.resources)
        else {
            return Ok(());
        };
        let name = naming.same("rate_limiting_local_evictions_total");
        families.single(
            &name,
            "Live rate-limiting windows evicted from the node's local table because it was full around them",
            Kind::Counter,
            table.evicted_live(),
        )?;
        let name = naming.same("rate_limiting_local_reclaimed_total");
        families.single(
            &name,
            "Expired rate-limiting windows whose slot in the local table was reused",
            Kind::Counter,
            table.reclaimed(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn url_labels_carry_no_credentials() {
        assert_eq!(
            url_label("https://user:secret@otel.example:4318/v1/traces?token=x#f"),
            "https://otel.example:4318/v1/traces"
        );
        assert_eq!(url_label("http://idp/jwks"), "http://idp/jwks");
        assert_eq!(url_label("idp:80/a?b"), "idp:80/a");
    }
}

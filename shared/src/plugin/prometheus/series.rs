//! The `prometheus` plugin's metric families ([`ProxyMetrics`]): one object per
//! data plane, created at start and handed to compile through the resources,
//! so a config swap never resets a count. Series are per route
//! ([`RouteSeries`], resolved at compile time with their `service` and
//! `route` label values), so recording a request is a map lookup, atomic adds
//! and, for status codes and consumers, a short scan under a read lock; no
//! String is built and no registry lock is taken on the request path.
//!
//! Label cardinality is bounded: each family holds at most `max_series`
//! series; a sample whose series would exceed that is dropped and counted in
//! `…_metrics_series_refused_total{metric}`.

use crate::exposition::{Families, Kind, Naming};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// Series per family unless the data plane says otherwise (`--metrics-max-series`).
pub const DEFAULT_MAX_SERIES: usize = 10_000;

/// Kong's buckets for `kong_latency_ms` (milliseconds, `+Inf` implied).
pub const KONG_LATENCY_BUCKETS: [u64; 17] = [
    1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000, 3000, 6000,
];
/// Kong's buckets for `upstream_latency_ms` and `request_latency_ms`.
pub const UPSTREAM_LATENCY_BUCKETS: [u64; 13] = [
    25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000,
];
const MAX_BUCKETS: usize = KONG_LATENCY_BUCKETS.len() + 1;

/// The families a cap applies to, for the refused-series counter's `metric` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capped {
    Requests = 0,
    Latency = 1,
    Bandwidth = 2,
}

const CAPPED: [(Capped, &str); 3] = [
    (Capped::Requests, "http_requests"),
    (Capped::Latency, "latency"),
    (Capped::Bandwidth, "bandwidth"),
];

/// A histogram of whole milliseconds over fixed buckets.
struct MsHistogram {
    bounds: &'static [u64],
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: [AtomicU64; MAX_BUCKETS],
    sum_ms: AtomicU64,
}

impl MsHistogram {
    fn new(bounds: &'static [u64]) -> MsHistogram {
        MsHistogram {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ms: AtomicU64::new(0),
        }
    }

    fn observe(&self, ms: u64) {
        let bucket = self.bounds.partition_point(|bound| *bound < ms);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Buckets for the encoder, in milliseconds or (Tollgate's names) seconds.
    fn encode(
        &self,
        family: &mut crate::exposition::Family<'_>,
        labels: &[(&str, &str)],
        seconds: bool,
    ) -> fmt::Result {
        let scale = if seconds { 1000.0 } else { 1.0 };
        let mut buckets = Vec::with_capacity(self.bounds.len() + 1);
        let mut count = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            let n = self.counts[i].load(Ordering::Relaxed);
            count += n;
            buckets.push((*bound as f64 / scale, n));
        }
        let inf = self.counts[self.bounds.len()].load(Ordering::Relaxed);
        count += inf;
        buckets.push((f64::MAX, inf));
        let sum = self.sum_ms.load(Ordering::Relaxed) as f64 / scale;
        family.histogram(labels, sum, count, &buckets)
    }
}

/// A series of `http_requests_total` within a route.
struct RequestSeries {
    code: u16,
    proxied: bool,
    consumer: Arc<str>,
    count: AtomicU64,
}

/// The two `bandwidth` series of one consumer within a route.
struct BandwidthSeries {
    consumer: Arc<str>,
    ingress: AtomicU64,
    egress: AtomicU64,
}

const UNCLAIMED: u8 = 0;
const CLAIMED: u8 = 1;
const REFUSED: u8 = 2;

/// Every series of one route (its `service` and `route` label values).
pub struct RouteSeries {
    service: Arc<str>,
    route: Arc<str>,
    /// Whether the latency histograms hold a slot under the cap.
    latency_slot: AtomicU8,
    kong_latency: MsHistogram,
    upstream_latency: MsHistogram,
    request_latency: MsHistogram,
    requests: RwLock<Vec<RequestSeries>>,
    bandwidth: RwLock<Vec<BandwidthSeries>>,
}

impl fmt::Debug for RouteSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteSeries")
            .field("service", &self.service)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl RouteSeries {
    fn new(service: Arc<str>, route: Arc<str>) -> RouteSeries {
        RouteSeries {
            service,
            route,
            latency_slot: AtomicU8::new(UNCLAIMED),
            kong_latency: MsHistogram::new(&KONG_LATENCY_BUCKETS),
            upstream_latency: MsHistogram::new(&UPSTREAM_LATENCY_BUCKETS),
            request_latency: MsHistogram::new(&UPSTREAM_LATENCY_BUCKETS),
            requests: RwLock::new(Vec::new()),
            bandwidth: RwLock::new(Vec::new()),
        }
    }

    /// Counts one response with status `code`, answered by the upstream
    /// (`proxied`) or by the gateway.
    pub fn count_request(&self, metrics: &ProxyMetrics, code: u16, proxied: bool, consumer: &str) {
        let matches =
            |s: &RequestSeries| s.code == code && s.proxied == proxied && *s.consumer == *consumer;
        {
            let series = self.requests.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = series.iter().find(|s| matches(s)) {
                found.count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut series = self
            .requests
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = series.iter().find(|s| matches(s)) {
            found.count.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if metrics.claim(Capped::Requests, 1) {
            series.push(RequestSeries {
                code,
                proxied,
                consumer: Arc::from(consumer),
                count: AtomicU64::new(1),
            });
        }
    }

    /// Observes the gateway's own latency, the upstream's (when proxied) and
    /// the whole request's, in milliseconds.
    pub fn observe_latency(
        &self,
        metrics: &ProxyMetrics,
        kong_ms: u64,
        upstream_ms: Option<u64>,
        request_ms: u64,
    ) {
        let slot = self.latency_slot.load(Ordering::Acquire);
        let live = match slot {
            CLAIMED => true,
            REFUSED => {
                metrics.refuse(Capped::Latency);
                false
            }
            _ => {
                // One histogram label set per route; the first request claims it.
                let claimed = metrics.claim(Capped::Latency, 1);
                let state = if claimed { CLAIMED } else { REFUSED };
                match self.latency_slot.compare_exchange(
                    UNCLAIMED,
                    state,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => claimed,
                    Err(current) => {
                        // Another request claimed it first: give the slot back.
                        if claimed {
                            metrics.release(Capped::Latency, 1);
                        }
                        current == CLAIMED
                    }
                }
            }
        };
        if !live {
            return;
        }
        self.kong_latency.observe(kong_ms);
        if let Some(upstream) = upstream_ms {
            self.upstream_latency.observe(upstream);
        }
        self.request_latency.observe(request_ms);
    }

    /// Adds the request's and the response's bytes; zero sizes are skipped, as in Kong.
    pub fn add_bandwidth(&self, metrics: &ProxyMetrics, consumer: &str, ingress: u64, egress: u64) {
        if ingress == 0 && egress == 0 {
            return;
        }
        let add = |s: &BandwidthSeries| {
            s.ingress.fetch_add(ingress, Ordering::Relaxed);
            s.egress.fetch_add(egress, Ordering::Relaxed);
        };
        {
            let series = self
                .bandwidth
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = series.iter().find(|s| *s.consumer == *consumer) {
                add(found);
                return;
            }
        }
        let mut series = self
            .bandwidth
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = series.iter().find(|s| *s.consumer == *consumer) {
            add(found);
            return;
        }
        // Ingress and egress are two series.
        if metrics.claim(Capped::Bandwidth, 2) {
            series.push(BandwidthSeries {
                consumer: Arc::from(consumer),
                ingress: AtomicU64::new(ingress),
                egress: AtomicU64::new(egress),
            });
        }
    }
}

/// A route's label values: `service`, `route`.
type RouteKey = (Arc<str>, Arc<str>);

/// Every series the `prometheus` plugin records on this node.
pub struct ProxyMetrics {
    max_series: usize,
    /// Set when a served config holds a `prometheus` instance: the
    /// per-request families are exposed only from then on, as in Kong.
    configured: AtomicBool,
    routes: Mutex<BTreeMap<RouteKey, Arc<RouteSeries>>>,
    series: [AtomicUsize; 3],
    refused: [AtomicU64; 3],
}

impl fmt::Debug for ProxyMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyMetrics")
            .field("max_series", &self.max_series)
            .field("configured", &self.configured)
            .finish_non_exhaustive()
    }
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        ProxyMetrics::new(DEFAULT_MAX_SERIES)
    }
}

impl ProxyMetrics {
    /// Families holding at most `max_series` series each.
    pub fn new(max_series: usize) -> ProxyMetrics {
        ProxyMetrics {
            max_series,
            configured: AtomicBool::new(false),
            routes: Mutex::new(BTreeMap::new()),
            series: std::array::from_fn(|_| AtomicUsize::new(0)),
            refused: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// A served config uses the plugin: expose its families from now on.
    pub fn mark_configured(&self) {
        self.configured.store(true, Ordering::Relaxed);
    }

    /// The series of the route labelled `service`/`route`, the same object
    /// for every config that names them so.
    pub fn route(&self, service: &str, route: &str) -> Arc<RouteSeries> {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let key: RouteKey = (Arc::from(service), Arc::from(route));
        Arc::clone(
            routes
                .entry(key.clone())
                .or_insert_with(|| Arc::new(RouteSeries::new(key.0, key.1))),
        )
    }

    /// Takes `n` series of `family` under the cap, or counts a refusal.
    fn claim(&self, family: Capped, n: usize) -> bool {
        let max = self.max_series;
        let taken = self.series[family as usize]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + n <= max).then_some(held + n)
            })
            .is_ok();
        if !taken {
            self.refuse(family);
        }
        taken
    }

    fn release(&self, family: Capped, n: usize) {
        self.series[family as usize].fetch_sub(n, Ordering::AcqRel);
    }

    fn refuse(&self, family: Capped) {
        self.refused[family as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Writes the families (nothing before the plugin is configured). Series
    /// come out sorted by service, route, then the other labels.
    pub fn encode(&self, naming: &Naming, families: &mut Families<'_, '_>) -> fmt::Result {
        if !self.configured.load(Ordering::Relaxed) {
            return Ok(());
        }
        let routes: Vec<Arc<RouteSeries>> = self
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let seconds = !naming.is_kong();

        let mut requests: Vec<(&RouteSeries, u16, &'static str, Arc<str>, u64)> = Vec::new();
        for route in &routes {
            let series = route
                .requests
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            for s in series.iter() {
                let source = if s.proxied { "service" } else { "kong" };
                requests.push((
                    route,
                    s.code,
                    source,
                    Arc::clone(&s.consumer),
                    s.count.load(Ordering::Relaxed),
                ));
            }
        }
        if !requests.is_empty() {
            requests.sort_by(|a, b| (a.1, a.2, &a.3).cmp(&(b.1, b.2, &b.3)));
            let name = naming.same("http_requests_total");
            let mut family = families.family(
                &name,
                "Responses by service, route, status code and source (upstream or gateway)",
                Kind::Counter,
            )?;
            for (route, code, source, consumer, count) in &requests {
                let code = code.to_string();
                family.sample(
                    &[
                        ("service", &route.service),
                        ("route", &route.route),
                        ("code", &code),
                        ("source", source),
                        ("workspace", "default"),
                        ("consumer", consumer),
                    ],
                    *count,
                )?;
            }
        }

        let latency: Vec<&Arc<RouteSeries>> = routes
            .iter()
            .filter(|r| r.latency_slot.load(Ordering::Acquire) == CLAIMED)
            .collect();
        if !latency.is_empty() {
            type Pick = fn(&RouteSeries) -> &MsHistogram;
            let histograms: [(&str, &str, &str, Pick); 3] = [
                ("gateway_latency_seconds", "kong_latency_ms", "Time the gateway and its plugins spent on a request, per service and route", |r| &r.kong_latency),
                ("upstream_latency_seconds", "upstream_latency_ms", "Time from sending a request upstream to the first byte of its response, per service and route", |r| &r.upstream_latency),
                ("request_latency_seconds", "request_latency_ms", "Time from receiving a request to finishing its response, per service and route", |r| &r.request_latency),
            ];
            for (ours, kong, help, pick) in histograms {
                let name = naming.name(ours, kong);
                let mut family = families.family(&name, help, Kind::Histogram)?;
                for route in &latency {
                    let labels = [
                        ("service", &*route.service),
                        ("route", &*route.route),
                        ("workspace", "default"),
                    ];
                    pick(route).encode(&mut family, &labels, seconds)?;
                }
            }
        }

        let mut bandwidth: Vec<(&RouteSeries, Arc<str>, u64, u64)> = Vec::new();
        for route in &routes {
            let series = route
                .bandwidth
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            for s in series.iter() {
                bandwidth.push((
                    route,
                    Arc::clone(&s.consumer),
                    s.ingress.load(Ordering::Relaxed),
                    s.egress.load(Ordering::Relaxed),
                ));
            }
        }
        if !bandwidth.is_empty() {
            // Kong's is a counter named without `_total`.
            let name = naming.name("bandwidth_bytes_total", "bandwidth_bytes");
            let mut family = families.family(
                &name,
                "Bytes received (ingress) and sent (egress), heads included, per service and route",
                Kind::Counter,
            )?;
            for (direction, pick) in [("egress", 3usize), ("ingress", 2)] {
                for entry in &bandwidth {
                    let value = if pick == 2 { entry.2 } else { entry.3 };
                    family.sample(
                        &[
                            ("service", &entry.0.service),
                            ("route", &entry.0.route),
                            ("direction", direction),
                            ("workspace", "default"),
                            ("consumer", &entry.1),
                        ],
                        value,
                    )?;
                }
            }
        }

        let name = naming.same("metrics_series_refused_total");
        let mut family = families.family(
            &name,
            "Samples dropped because their series would exceed the per-metric series cap",
            Kind::Counter,
        )?;
        for (capped, label) in CAPPED {
            family.sample(
                &[("metric", label)],
                self.refused[capped as usize].load(Ordering::Relaxed),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_value_on_a_bound_falls_in_that_bucket() {
        let histogram = MsHistogram::new(&UPSTREAM_LATENCY_BUCKETS);
        for ms in [0, 25, 26, 60_000, 60_001] {
            histogram.observe(ms);
        }
        let counts: Vec<u64> = histogram
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts[0], 2, "0 and 25 are <= 25: {counts:?}");
        assert_eq!(counts[1], 1, "26 is <= 50: {counts:?}");
        assert_eq!(counts[UPSTREAM_LATENCY_BUCKETS.len() - 1], 1);
        assert_eq!(counts[UPSTREAM_LATENCY_BUCKETS.len()], 1, "+Inf");
        assert_eq!(
            histogram.sum_ms.load(Ordering::Relaxed),
            25 + 26 + 60_000 + 60_001
        );
    }

    #[test]
    fn the_cap_holds_across_routes_and_a_route_keeps_its_series() {
        let metrics = ProxyMetrics::new(2);
        let a = metrics.route("s", "a");
        let b = metrics.route("s", "b");
        assert!(Arc::ptr_eq(&a, &metrics.route("s", "a")));
        a.count_request(&metrics, 200, true, "");
        a.count_request(&metrics, 200, true, "");
        b.count_request(&metrics, 500, false, "bob");
        b.count_request(&metrics, 404, false, "");
        assert_eq!(
            metrics.refused[Capped::Requests as usize].load(Ordering::Relaxed),
            1
        );
        a.observe_latency(&metrics, 1, None, 2);
        b.observe_latency(&metrics, 1, Some(3), 2);
        assert_eq!(
            metrics.refused[Capped::Latency as usize].load(Ordering::Relaxed),
            0
        );
        // Ingress and egress take two slots: the second consumer is refused.
        a.add_bandwidth(&metrics, "", 10, 20);
        a.add_bandwidth(&metrics, "bob", 10, 20);
        a.add_bandwidth(&metrics, "", 0, 0);
        assert_eq!(
            metrics.refused[Capped::Bandwidth as usize].load(Ordering::Relaxed),
            1
        );
        let series = a.bandwidth.read().unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].egress.load(Ordering::Relaxed), 20);
    }
}

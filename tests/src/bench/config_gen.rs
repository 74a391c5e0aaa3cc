//! Generates large, repeatable Kong declarative configs: N services each with
//! one prefix route `/r{i}`, and N consumers each with one HS256 jwt
//! credential whose key and secret derive from its index.

use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenOptions {
    /// Services, each with exactly one route.
    pub routes: usize,
    pub consumers: usize,
    /// Where every service points (the proxy benchmark's echo upstream).
    pub upstream: String,
    /// Distinct route hosts `h{k}.bench.test`, k in 1..=hosts. Route `i`
    /// carries host `h{i % (hosts + 1)}` unless that is 0: one route in
    /// `hosts + 1` (route 0 among them) matches any host.
    pub hosts: usize,
    /// Variants of the same shape: a non-zero variant tags every service
    /// `variant-{v}`, so importing another variant rewrites every service.
    pub variant: u32,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            routes: 100,
            consumers: 100,
            upstream: "http://127.0.0.1:3000".into(),
            hosts: 4,
            variant: 0,
        }
    }
}

/// The host route `index` is restricted to, if any.
pub fn route_host(index: usize, hosts: usize) -> Option<String> {
    let k = index % (hosts + 1);
    (hosts > 0 && k != 0).then(|| format!("h{k}.bench.test"))
}

/// The jwt credential (`key` = the `iss` claim, `secret`) of consumer `index`.
pub fn jwt_credential(index: usize) -> (String, String) {
    (
        format!("consumer-{index}-iss"),
        format!("bench-secret-{index:08}-0123456789abcdef"),
    )
}

/// A declarative YAML document (`_format_version: "3.0"`).
pub fn generate(options: &GenOptions) -> String {
    let mut out = String::with_capacity(128 * (options.routes + options.consumers) + 256);
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(
        out,
        "# tollgate-bench config-gen: {} services/routes, {} consumers, variant {}",
        options.routes, options.consumers, options.variant
    );
    out.push_str("_format_version: \"3.0\"\n");
    if options.routes > 0 {
        out.push_str("services:\n");
    }
    for i in 0..options.routes {
        let _ = writeln!(out, "  - name: \"svc-{i}\"");
        let _ = writeln!(out, "    url: \"{}\"", options.upstream);
        if options.variant > 0 {
            let _ = writeln!(out, "    tags: [\"variant-{}\"]", options.variant);
        }
        out.push_str("    routes:\n");
        let _ = writeln!(out, "      - name: \"route-{i}\"");
        let _ = writeln!(out, "        paths: [\"/r{i}\"]");
        if let Some(host) = route_host(i, options.hosts) {
            let _ = writeln!(out, "        hosts: [\"{host}\"]");
        }
    }
    if options.consumers > 0 {
        out.push_str("consumers:\n");
    }
    for i in 0..options.consumers {
        let (key, secret) = jwt_credential(i);
        let _ = writeln!(out, "  - username: \"consumer-{i}\"");
        out.push_str("    jwt_secrets:\n");
        let _ = writeln!(out, "      - key: \"{key}\"");
        let _ = writeln!(out, "        secret: \"{secret}\"");
        out.push_str("        algorithm: \"HS256\"\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_norway::Value;
    use std::collections::BTreeSet;

    fn options(routes: usize, consumers: usize) -> GenOptions {
        GenOptions {
            routes,
            consumers,
            ..GenOptions::default()
        }
    }

    fn list<'a>(doc: &'a Value, key: &str) -> &'a Vec<Value> {
        doc.get(key).and_then(Value::as_sequence).unwrap()
    }

    fn str_at<'a>(value: &'a Value, key: &str) -> &'a str {
        value.get(key).and_then(Value::as_str).unwrap()
    }

    #[test]
    fn yaml_has_the_requested_entities_with_distinct_names_and_paths() {
        let text = generate(&options(250, 120));
        let doc: Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(str_at(&doc, "_format_version"), "3.0");
        let services = list(&doc, "services");
        assert_eq!(services.len(), 250);
        let mut names = BTreeSet::new();
        let mut paths = BTreeSet::new();
        let mut hosts = BTreeSet::new();
        let mut hostless = 0;
        for service in services {
            assert_eq!(str_at(service, "url"), "http://127.0.0.1:3000");
            assert!(names.insert(str_at(service, "name").to_string()));
            let routes = list(service, "routes");
            assert_eq!(routes.len(), 1);
            let route = &routes[0];
            assert!(names.insert(str_at(route, "name").to_string()));
            let route_paths = list(route, "paths");
            assert_eq!(route_paths.len(), 1);
            assert!(paths.insert(route_paths[0].as_str().unwrap().to_string()));
            match route.get("hosts") {
                Some(h) => {
                    hosts.insert(h.as_sequence().unwrap()[0].as_str().unwrap().to_string());
                }
                None => hostless += 1,
            }
        }
        assert!(paths.contains("/r0") && paths.contains("/r249"));
        assert_eq!(hosts.len(), 4);
        assert_eq!(hostless, 50);

        let consumers = list(&doc, "consumers");
        assert_eq!(consumers.len(), 120);
        let mut keys = BTreeSet::new();
        for (i, consumer) in consumers.iter().enumerate() {
            assert_eq!(str_at(consumer, "username"), format!("consumer-{i}"));
            let secrets = list(consumer, "jwt_secrets");
            assert_eq!(secrets.len(), 1);
            assert_eq!(str_at(&secrets[0], "algorithm"), "HS256");
            let (key, secret) = jwt_credential(i);
            assert_eq!(str_at(&secrets[0], "secret"), secret);
            assert!(keys.insert(str_at(&secrets[0], "key").to_string()));
            assert_eq!(str_at(&secrets[0], "key"), key);
        }
    }

    #[test]
    fn generation_is_repeatable_and_variants_differ_only_in_tags() {
        let base = options(30, 30);
        assert_eq!(generate(&base), generate(&base));
        let variant = GenOptions {
            variant: 2,
            ..base.clone()
        };
        let text = generate(&variant);
        let doc: Value = serde_norway::from_str(&text).unwrap();
        for service in list(&doc, "services") {
            assert_eq!(list(service, "tags")[0].as_str(), Some("variant-2"));
        }
        let untagged: String = text
            .lines()
            .filter(|l| !l.contains("tags:") && !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let base_text: String = generate(&base)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(untagged, base_text);
    }

    #[test]
    fn empty_collections_are_left_out() {
        let doc: Value = serde_norway::from_str(&generate(&options(0, 0))).unwrap();
        assert!(doc.get("services").is_none());
        assert!(doc.get("consumers").is_none());
    }

    #[test]
    fn hosts_cycle_and_zero_hosts_means_none() {
        assert_eq!(route_host(0, 4), None);
        assert_eq!(route_host(1, 4).as_deref(), Some("h1.bench.test"));
        assert_eq!(route_host(5, 4), None);
        assert_eq!(route_host(9, 4).as_deref(), Some("h4.bench.test"));
        assert_eq!(route_host(3, 0), None);
    }
}

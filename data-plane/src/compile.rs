//! The compile step: one whole [`Config`] becomes one immutable [`Compiled`]
//! (router, per-route plugin chains, services with their upstream pools, TLS
//! certificates by SNI), or every reason it cannot, all or nothing.
//!
//! Plugins: ip-restriction compiles to its runtime form. The other bundled
//! plugins (jwt, rate-limiting, file-log, http-log, prometheus) are refused
//! with [`PluginCompileError::Unsupported`] rather than compiled to no-ops, so
//! a config that relies on them is never served without them.

use crate::plugins::{
    priority, Plugin, PluginChain, PluginCompileError, PluginInstance, ProtocolSet,
};
use crate::proxy::upstream::{PoolKey, PoolRegistry, Timeouts, UpstreamProtocol, UpstreamTarget};
use crate::router::{Router, RouterError};
use crate::tls::{CertificateCompileError, CertificateStore};
use http::{HeaderValue, StatusCode};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tollgate_shared::{Config, PluginSpec, Route, Service};
use uuid::Uuid;

/// What the compile step needs from the running data plane; never I/O.
#[derive(Debug, Clone)]
pub struct Deps {
    pub pools: Arc<PoolRegistry>,
}

/// Identifies the config a [`Compiled`] was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMeta {
    /// Monotonic version (from the control plane, or counted locally in file mode).
    pub version: u64,
    /// Lowercase hex SHA-256 of the canonical config.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("{0}")]
    Router(#[from] RouterError),
    #[error("service {id}: {reason}")]
    Service { id: Uuid, reason: String },
    #[error("route {route}: service {service} does not exist")]
    MissingService { route: Uuid, service: Uuid },
    #[error("plugin {id} ({name}): {reason}")]
    PluginConfig {
        id: Uuid,
        name: String,
        reason: String,
    },
    #[error("plugin {id} ({name}): {source}")]
    Plugin {
        id: Uuid,
        name: String,
        source: PluginCompileError,
    },
    #[error("plugin {id} ({name}): {field} {target} does not exist")]
    PluginScope {
        id: Uuid,
        name: String,
        field: &'static str,
        target: Uuid,
    },
    #[error("{0}")]
    Certificate(#[from] CertificateCompileError),
}

/// A service ready to receive requests.
#[derive(Debug)]
pub struct CompiledService {
    pub id: Uuid,
    pub name: Option<String>,
    pub protocol: UpstreamProtocol,
    pub path: Option<String>,
    /// `Host` sent upstream unless the route preserves the client's: the host,
    /// with `:port` unless it is the protocol's default (kong-compat §2.4).
    pub host_header: HeaderValue,
    /// `scheme://host:port`, the origin of HTTP/2 request URIs.
    pub origin: String,
    pub target: UpstreamTarget,
}

/// A route with everything the request path needs precomputed.
#[derive(Debug)]
pub struct CompiledRoute {
    pub id: Uuid,
    pub protocols: ProtocolSet,
    /// Only gRPC protocols: non-gRPC requests get 415.
    pub grpc_only: bool,
    pub https_redirect_status_code: StatusCode,
    pub strip_path: bool,
    pub preserve_host: bool,
    /// Read the whole request body before taking an upstream connection.
    pub request_buffering: bool,
    pub response_buffering: bool,
    pub service: Option<Arc<CompiledService>>,
    pub chain: Arc<PluginChain>,
}

/// One immutable runtime config; a request loads it once and uses only it.
#[derive(Debug)]
pub struct Compiled {
    pub meta: ConfigMeta,
    pub router: Router,
    /// Indexed like the routes given to the router (`RouteMatch::route_index`).
    pub routes: Vec<CompiledRoute>,
    pub certificates: CertificateStore,
}

impl Compiled {
    /// The config a data plane serves before it received any: every request is 404.
    pub fn empty() -> Compiled {
        Compiled {
            meta: ConfigMeta {
                version: 0,
                hash: String::new(),
            },
            router: Router::default(),
            routes: Vec::new(),
            certificates: CertificateStore::default(),
        }
    }
}

/// Compiles `config` only to learn whether it would be accepted: the check the
/// control plane runs before it publishes a snapshot. No runtime, no I/O.
pub fn check(config: &Config) -> Result<(), Vec<CompileError>> {
    let tls = crate::tls::UpstreamTls::new(rustls::RootCertStore::empty()).map_err(|e| {
        vec![CompileError::Service {
            id: Uuid::nil(),
            reason: e.to_string(),
        }]
    })?;
    let deps = Deps {
        pools: Arc::new(PoolRegistry::new(
            crate::settings::PoolSettings::default(),
            tls,
        )),
    };
    let meta = ConfigMeta {
        version: 0,
        hash: String::new(),
    };
    compile(meta, config, &deps).map(drop)
}

/// Compiles `config`; on any error nothing is returned but every error found.
pub fn compile(
    meta: ConfigMeta,
    config: &Config,
    deps: &Deps,
) -> Result<Compiled, Vec<CompileError>> {
    let mut errors = Vec::new();

    let services: HashMap<Uuid, Arc<CompiledService>> = config
        .services
        .iter()
        .filter_map(|service| match compile_service(service, deps) {
            Ok(compiled) => Some((service.id, Arc::new(compiled))),
            Err(reason) => {
                errors.push(CompileError::Service {
                    id: service.id,
                    reason,
                });
                None
            }
        })
        .collect();
    let service_ids: HashSet<Uuid> = config.services.iter().map(|s| s.id).collect();

    let instances = compile_plugins(config, &service_ids, &mut errors);
    let chains = ChainIndex::new(&instances);

    let mut routes = Vec::with_capacity(config.routes.len());
    let mut shared_chains: HashMap<Option<Uuid>, Arc<PluginChain>> = HashMap::new();
    for route in &config.routes {
        let service_id = route.service.map(|fk| fk.id);
        if let Some(id) = service_id {
            if !service_ids.contains(&id) {
                errors.push(CompileError::MissingService {
                    route: route.id,
                    service: id,
                });
            }
        }
        let chain = if chains.has_route_scoped(route.id) {
            Arc::new(chains.build(route.id, service_id))
        } else {
            // Without route-scoped instances a chain depends on the service only.
            Arc::clone(
                shared_chains
                    .entry(service_id)
                    .or_insert_with(|| Arc::new(chains.build(route.id, service_id))),
            )
        };
        routes.push(compile_route(
            route,
            service_id.and_then(|id| services.get(&id).cloned()),
            chain,
        ));
    }

    let router = match Router::build(&config.routes, &config.services) {
        Ok(router) => Some(router),
        Err(router_errors) => {
            errors.extend(router_errors.into_iter().map(CompileError::Router));
            None
        }
    };
    let certificates = match CertificateStore::compile(&config.certificates, &config.snis) {
        Ok(store) => Some(store),
        Err(cert_errors) => {
            errors.extend(cert_errors.into_iter().map(CompileError::Certificate));
            None
        }
    };

    match (router, certificates) {
        (Some(router), Some(certificates)) if errors.is_empty() => Ok(Compiled {
            meta,
            router,
            routes,
            certificates,
        }),
        _ => Err(errors),
    }
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0).max(1))
}

fn compile_service(service: &Service, deps: &Deps) -> Result<CompiledService, String> {
    let protocol = UpstreamProtocol::parse(&service.protocol).ok_or_else(|| {
        format!(
            "protocol '{}' is not supported by this data plane",
            service.protocol
        )
    })?;
    let port = u16::try_from(service.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port {} is out of range", service.port))?;
    let host = service.host.trim();
    if host.is_empty() {
        return Err("host is empty".to_string());
    }
    // IPv6 literals are bracketed in Host and URIs.
    let host_for_header = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let host_header = if port == protocol.default_port() {
        host_for_header.clone()
    } else {
        format!("{host_for_header}:{port}")
    };
    let host_header = HeaderValue::from_str(&host_header)
        .map_err(|_| format!("host '{host}' cannot be sent as a Host header"))?;
    let origin = format!("{}://{host_for_header}:{port}", protocol.scheme());
    let retries = u32::try_from(service.retries)
        .map_err(|_| format!("retries {} is out of range", service.retries))?;
    let pool = deps.pools.pool(PoolKey {
        protocol,
        host: Arc::from(host.trim_start_matches('[').trim_end_matches(']')),
        port,
        verify_tls: service.tls_verify.unwrap_or(false),
    })?;
    Ok(CompiledService {
        id: service.id,
        name: service.name.clone(),
        protocol,
        path: service.path.clone(),
        host_header,
        origin,
        target: UpstreamTarget {
            pool,
            timeouts: Timeouts {
                connect: millis(service.connect_timeout),
                read: millis(service.read_timeout),
                write: millis(service.write_timeout),
            },
            retries,
        },
    })
}

fn compile_route(
    route: &Route,
    service: Option<Arc<CompiledService>>,
    chain: Arc<PluginChain>,
) -> CompiledRoute {
    let protocols = ProtocolSet::from_names(&route.protocols);
    let grpc_only =
        route.protocols.iter().all(|p| p == "grpc" || p == "grpcs") && !route.protocols.is_empty();
    CompiledRoute {
        id: route.id,
        protocols,
        grpc_only,
        https_redirect_status_code: u16::try_from(route.https_redirect_status_code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::UPGRADE_REQUIRED),
        strip_path: route.strip_path,
        preserve_host: route.preserve_host,
        request_buffering: route.request_buffering,
        response_buffering: route.response_buffering,
        service,
        chain,
    }
}

fn compile_plugins(
    config: &Config,
    service_ids: &HashSet<Uuid>,
    errors: &mut Vec<CompileError>,
) -> Vec<Arc<PluginInstance>> {
    let route_ids: HashSet<Uuid> = config.routes.iter().map(|r| r.id).collect();
    let consumer_ids: HashSet<Uuid> = config.consumers.iter().map(|c| c.id).collect();
    let mut instances = Vec::new();
    for entity in config.plugins.iter().filter(|p| p.enabled) {
        let scope_error = |field: &'static str, target: Uuid| CompileError::PluginScope {
            id: entity.id,
            name: entity.name.clone(),
            field,
            target,
        };
        let mut scope_ok = true;
        for (field, reference, known) in [
            ("route", entity.route, &route_ids),
            ("service", entity.service, service_ids),
            ("consumer", entity.consumer, &consumer_ids),
        ] {
            if let Some(fk) = reference {
                if !known.contains(&fk.id) {
                    errors.push(scope_error(field, fk.id));
                    scope_ok = false;
                }
            }
        }
        let spec = match PluginSpec::from_plugin(entity) {
            Ok(spec) => spec,
            Err(field_errors) => {
                errors.push(CompileError::PluginConfig {
                    id: entity.id,
                    name: entity.name.clone(),
                    reason: field_errors.message(),
                });
                continue;
            }
        };
        let plugin = match Plugin::compile(&spec) {
            Ok(plugin) => plugin,
            Err(source) => {
                errors.push(CompileError::Plugin {
                    id: entity.id,
                    name: entity.name.clone(),
                    source,
                });
                continue;
            }
        };
        let Some(priority) = priority(&entity.name) else {
            errors.push(CompileError::PluginConfig {
                id: entity.id,
                name: entity.name.clone(),
                reason: "unknown plugin".to_string(),
            });
            continue;
        };
        if scope_ok {
            instances.push(Arc::new(PluginInstance {
                id: entity.id,
                name: entity.name.clone(),
                priority,
                protocols: ProtocolSet::from_names(&entity.protocols),
                route: entity.route.map(|fk| fk.id),
                service: entity.service.map(|fk| fk.id),
                consumer: entity.consumer.map(|fk| fk.id),
                plugin,
            }));
        }
    }
    instances
}

/// Instances indexed by the scope that selects them, so building a route's
/// chain looks only at the instances that can concern it.
struct ChainIndex<'a> {
    by_route: HashMap<Uuid, Vec<&'a Arc<PluginInstance>>>,
    /// Service-scoped instances without a route.
    by_service: HashMap<Uuid, Vec<&'a Arc<PluginInstance>>>,
    /// Global and consumer-only instances.
    unscoped: Vec<&'a Arc<PluginInstance>>,
}

impl<'a> ChainIndex<'a> {
    fn new(instances: &'a [Arc<PluginInstance>]) -> Self {
        let mut index = ChainIndex {
            by_route: HashMap::new(),
            by_service: HashMap::new(),
            unscoped: Vec::new(),
        };
        for instance in instances {
            match (instance.route, instance.service) {
                (Some(route), _) => index.by_route.entry(route).or_default().push(instance),
                (None, Some(service)) => {
                    index.by_service.entry(service).or_default().push(instance)
                }
                (None, None) => index.unscoped.push(instance),
            }
        }
        index
    }

    fn has_route_scoped(&self, route: Uuid) -> bool {
        self.by_route.contains_key(&route)
    }

    fn build(&self, route: Uuid, service: Option<Uuid>) -> PluginChain {
        let mut candidates: Vec<&Arc<PluginInstance>> = self.unscoped.clone();
        if let Some(list) = self.by_route.get(&route) {
            candidates.extend(list);
        }
        if let Some(list) = service.and_then(|s| self.by_service.get(&s)) {
            candidates.extend(list);
        }
        PluginChain::build(route, service, &candidates)
    }
}

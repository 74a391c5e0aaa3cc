//! The compile step both planes run: one whole [`Config`] becomes one
//! immutable [`Compiled`] (router, per-route plugin chains, services, TLS
//! certificates by SNI, consumers and their credentials indexed for lookup),
//! or every reason it cannot, all or nothing.
//!
//! The data plane binds each service to its upstream connection pool through
//! [`BindUpstream`] and hands plugins its live [`Resources`]; the control
//! plane's [`check`] runs the very same code with a binding that makes
//! nothing and [`Resources::check_only`], so what the control plane accepts is
//! what a data plane compiles. Plugins the table marks `Unsupported` are
//! refused rather than compiled to no-ops.

use crate::certificates::{CertificateCompileError, CertificateStore};
use crate::plugin::identity::{consumer_json, Identity, Presenting};
use crate::plugin::priority;
use crate::router::{Router, RouterError};
use crate::runtime::{
    CompileContext, EntityJson, PluginChain, PluginCompileError, PluginInstance, ProtocolSet,
    Resources,
};
use crate::{Config, Consumer, PluginSpec, Route, Service};
use http::{HeaderValue, StatusCode};
use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use uuid::Uuid;

/// An upstream's scheme as the proxy speaks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    Http,
    Https,
    /// gRPC over cleartext HTTP/2 (prior knowledge).
    Grpc,
    /// gRPC over TLS with ALPN h2.
    Grpcs,
}

impl UpstreamProtocol {
    pub fn parse(name: &str) -> Option<UpstreamProtocol> {
        Some(match name {
            "http" => UpstreamProtocol::Http,
            "https" => UpstreamProtocol::Https,
            "grpc" => UpstreamProtocol::Grpc,
            "grpcs" => UpstreamProtocol::Grpcs,
            _ => return None,
        })
    }

    pub fn is_tls(self) -> bool {
        matches!(self, UpstreamProtocol::Https | UpstreamProtocol::Grpcs)
    }

    pub fn is_http2(self) -> bool {
        matches!(self, UpstreamProtocol::Grpc | UpstreamProtocol::Grpcs)
    }

    pub fn scheme(self) -> &'static str {
        if self.is_tls() {
            "https"
        } else {
            "http"
        }
    }

    /// The port that is left out of the `Host` header.
    pub fn default_port(self) -> u16 {
        if self.is_tls() {
            443
        } else {
            80
        }
    }
}

/// Connect, read and write timeouts of one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
}

/// Where a service's requests go, as the binding step receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    pub protocol: UpstreamProtocol,
    /// Without IPv6 brackets.
    pub host: Arc<str>,
    pub port: u16,
    pub verify_tls: bool,
    pub timeouts: Timeouts,
    pub retries: u32,
}

/// Turns a service's [`UpstreamSpec`] into what the proxy forwards to (the
/// data plane: a pooled target); the control plane's check binds to `()`.
pub trait BindUpstream {
    type Target: std::fmt::Debug + Send + Sync;
    fn bind(&self, spec: &UpstreamSpec) -> Result<Self::Target, String>;
}

/// The check's binding: accepts every upstream, makes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUpstreams;

impl BindUpstream for NoUpstreams {
    type Target = ();
    fn bind(&self, _spec: &UpstreamSpec) -> Result<(), String> {
        Ok(())
    }
}

/// Consumers by id and username, and the credentials of key-auth,
/// basic-auth and acl by what a request presents, for authentication plugins
/// and the log record; built once per compile and shared by every plugin
/// instance, so no request looks at the config's rows.
#[derive(Debug, Default)]
pub struct ConsumerIndex {
    by_id: HashMap<Uuid, Arc<Consumer>>,
    by_username: HashMap<String, Arc<Consumer>>,
    /// Indexes plugins derive from the same compile's config (the jwt
    /// plugin's credentials with their keys parsed), one per type, so N
    /// instances cost one build.
    derived: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    keys: HashMap<String, KeyCredential>,
    basic: HashMap<String, BasicCredential>,
    groups: HashMap<Uuid, Arc<[String]>>,
}

/// A key-auth credential, found by its key.
#[derive(Debug, Clone)]
pub struct KeyCredential {
    pub id: Uuid,
    pub consumer: Arc<Consumer>,
    /// Unix seconds after which the key no longer authenticates (Kong's `ttl`).
    pub expires_at: Option<i64>,
    /// The credential's id as text: its `X-Credential-Identifier`.
    pub(crate) identifier: Arc<str>,
    /// The consumer as this key identifies it (upstream headers, log JSON),
    /// prepared once so that a request only takes references.
    pub(crate) identity: Arc<Identity>,
}

/// A basic-auth credential, found by its username.
#[derive(Debug, Clone)]
pub struct BasicCredential {
    pub id: Uuid,
    pub username: String,
    /// Kong's hash of the password (lowercase hex SHA-1, salted with the consumer id).
    pub password_hash: String,
    pub consumer: Arc<Consumer>,
}

impl ConsumerIndex {
    pub fn new(consumers: &[Consumer]) -> ConsumerIndex {
        let mut index = ConsumerIndex::default();
        for consumer in consumers {
            let consumer = Arc::new(consumer.clone());
            if let Some(username) = &consumer.username {
                index
                    .by_username
                    .insert(username.clone(), Arc::clone(&consumer));
            }
            index.by_id.insert(consumer.id, consumer);
        }
        index
    }

    /// The consumers of `config` with their key-auth keys, basic-auth
    /// usernames and acl groups. A credential whose consumer is not in the
    /// config identifies nobody and is left out.
    pub fn for_config(config: &Config) -> ConsumerIndex {
        let mut index = ConsumerIndex::new(&config.consumers);
        // Each consumer's log JSON, rendered once for all of its keys.
        let mut json_of: HashMap<Uuid, Option<Arc<str>>> = HashMap::new();
        for credential in &config.keyauth_credentials {
            if let Some(consumer) = index.by_id.get(&credential.consumer.id) {
                let json = json_of
                    .entry(consumer.id)
                    .or_insert_with(|| consumer_json(consumer))
                    .clone();
                let identifier: Arc<str> = Arc::from(credential.id.to_string());
                let header = HeaderValue::from_str(&identifier).ok();
                let entry = KeyCredential {
                    id: credential.id,
                    consumer: Arc::clone(consumer),
                    expires_at: credential.expires_at,
                    identity: Arc::new(Identity::with_json(
                        consumer,
                        Presenting::Credential(header.as_ref()),
                        json,
                    )),
                    identifier,
                };
                index.keys.insert(credential.key.clone(), entry);
            }
        }
        for credential in &config.basicauth_credentials {
            if let Some(consumer) = index.by_id.get(&credential.consumer.id) {
                let entry = BasicCredential {
                    id: credential.id,
                    username: credential.username.clone(),
                    password_hash: credential.password.to_ascii_lowercase(),
                    consumer: Arc::clone(consumer),
                };
                index.basic.insert(credential.username.clone(), entry);
            }
        }
        let mut groups: HashMap<Uuid, Vec<String>> = HashMap::new();
        // In creation order (then id), as Kong lists a consumer's groups.
        let mut acls: Vec<&crate::Acl> = config.acls.iter().collect();
        acls.sort_by_key(|acl| (acl.created_at, acl.id));
        for acl in acls {
            if index.by_id.contains_key(&acl.consumer.id) {
                let list = groups.entry(acl.consumer.id).or_default();
                if !list.contains(&acl.group) {
                    list.push(acl.group.clone());
                }
            }
        }
        index.groups = groups
            .into_iter()
            .map(|(consumer, list)| (consumer, Arc::from(list)))
            .collect();
        index
    }

    pub fn by_id(&self, id: &Uuid) -> Option<&Arc<Consumer>> {
        self.by_id.get(id)
    }

    pub fn by_username(&self, username: &str) -> Option<&Arc<Consumer>> {
        self.by_username.get(username)
    }

    /// A consumer named by id or, failing that, by username (as Kong's
    /// `anonymous` field names one).
    pub fn by_id_or_username(&self, reference: &str) -> Option<&Arc<Consumer>> {
        reference
            .parse::<Uuid>()
            .ok()
            .and_then(|id| self.by_id.get(&id))
            .or_else(|| self.by_username.get(reference))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Consumer>> {
        self.by_id.values()
    }

    /// This compile's one value of type `T` (created with `T::default()` on
    /// first use): where a plugin keeps what it derives once per compile for
    /// all its instances. The type is the key, so a private type stays
    /// private to the plugin that names it.
    pub fn derived<T: Any + Send + Sync + Default>(&self) -> Arc<T> {
        let mut derived = self.derived.lock().unwrap_or_else(PoisonError::into_inner);
        let value = derived
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()));
        // Keyed by the TypeId, so the downcast cannot fail; a fresh value is
        // the safe answer if it ever did.
        Arc::clone(value).downcast::<T>().unwrap_or_default()
    }

    /// The key-auth credential whose key is `key`.
    pub fn key_credential(&self, key: &str) -> Option<&KeyCredential> {
        self.keys.get(key)
    }

    /// The basic-auth credential whose username is `username`.
    pub fn basic_credential(&self, username: &str) -> Option<&BasicCredential> {
        self.basic.get(username)
    }

    /// The acl groups of a consumer, in creation order (`None`: no group).
    pub fn groups(&self, consumer: &Uuid) -> Option<&Arc<[String]>> {
        self.groups.get(consumer)
    }
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

/// A service ready to receive requests; `T` is its upstream binding.
#[derive(Debug)]
pub struct CompiledService<T> {
    pub id: Uuid,
    pub name: Option<String>,
    pub protocol: UpstreamProtocol,
    pub path: Option<String>,
    /// `Host` sent upstream unless the route preserves the client's: the host,
    /// with `:port` unless it is the protocol's default (kong-compat §2.4).
    pub host_header: HeaderValue,
    /// `scheme://host:port`, the origin of HTTP/2 request URIs.
    pub origin: String,
    /// The entity, for plugins and the log record.
    pub entity: Arc<Service>,
    pub target: T,
}

/// A route with everything the request path needs precomputed.
#[derive(Debug)]
pub struct CompiledRoute<T> {
    pub id: Uuid,
    pub protocols: ProtocolSet,
    /// Only gRPC protocols: non-gRPC requests get 415.
    pub grpc_only: bool,
    pub https_redirect_status_code: StatusCode,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub request_buffering: bool,
    pub response_buffering: bool,
    /// The entity, for plugins and the log record.
    pub entity: Arc<Route>,
    pub service: Option<Arc<CompiledService<T>>>,
    pub chain: Arc<PluginChain>,
    /// The route's and service's JSON for the log record, rendered once.
    pub entity_json: Arc<EntityJson>,
}

/// One immutable runtime config; a request loads it once and uses only it.
#[derive(Debug)]
pub struct Compiled<T> {
    pub meta: ConfigMeta,
    pub router: Router,
    /// Indexed like the routes given to the router (`RouteMatch::route_index`).
    pub routes: Vec<CompiledRoute<T>>,
    pub certificates: CertificateStore,
    /// Global instances, for the rewrite phase (before routing).
    pub global_chain: Arc<PluginChain>,
    pub consumers: Arc<ConsumerIndex>,
}

impl<T> Compiled<T> {
    /// The config a data plane serves before it received any: every request is 404.
    pub fn empty() -> Compiled<T> {
        Compiled {
            meta: ConfigMeta {
                version: 0,
                hash: String::new(),
            },
            router: Router::default(),
            routes: Vec::new(),
            certificates: CertificateStore::default(),
            global_chain: Arc::default(),
            consumers: Arc::default(),
        }
    }
}

/// Compiles `config` only to learn whether it would be accepted: the check the
/// control plane runs before it commits a change and before it publishes a
/// snapshot. The same code as [`compile`], with nothing opened.
pub fn check(config: &Config) -> Result<(), Vec<CompileError>> {
    let meta = ConfigMeta {
        version: 0,
        hash: String::new(),
    };
    compile(meta, config, &Resources::check_only(), &NoUpstreams).map(drop)
}

/// Compiles `config`; on any error nothing is returned but every error found.
pub fn compile<B: BindUpstream>(
    meta: ConfigMeta,
    config: &Config,
    resources: &Resources,
    upstreams: &B,
) -> Result<Compiled<B::Target>, Vec<CompileError>> {
    let mut errors = Vec::new();

    let services: HashMap<Uuid, Arc<CompiledService<B::Target>>> = config
        .services
        .iter()
        .filter_map(|service| match compile_service(service, upstreams) {
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

    let consumers = Arc::new(ConsumerIndex::for_config(config));
    let instances = compile_plugins(config, &service_ids, &consumers, resources, &mut errors);
    let chains = ChainIndex::new(&instances);
    let global_chain = Arc::new(PluginChain::build_global(&chains.unscoped));

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
            global_chain,
            consumers,
        }),
        _ => Err(errors),
    }
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0).max(1))
}

fn compile_service<B: BindUpstream>(
    service: &Service,
    upstreams: &B,
) -> Result<CompiledService<B::Target>, String> {
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
    let target = upstreams.bind(&UpstreamSpec {
        protocol,
        host: Arc::from(host.trim_start_matches('[').trim_end_matches(']')),
        port,
        verify_tls: service.tls_verify.unwrap_or(false),
        timeouts: Timeouts {
            connect: millis(service.connect_timeout),
            read: millis(service.read_timeout),
            write: millis(service.write_timeout),
        },
        retries,
    })?;
    Ok(CompiledService {
        id: service.id,
        name: service.name.clone(),
        protocol,
        path: service.path.clone(),
        host_header,
        origin,
        entity: Arc::new(service.clone()),
        target,
    })
}

fn compile_route<T>(
    route: &Route,
    service: Option<Arc<CompiledService<T>>>,
    chain: Arc<PluginChain>,
) -> CompiledRoute<T> {
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
        entity: Arc::new(route.clone()),
        service,
        chain,
        entity_json: Arc::default(),
    }
}

fn compile_plugins(
    config: &Config,
    service_ids: &HashSet<Uuid>,
    consumers: &Arc<ConsumerIndex>,
    resources: &Resources,
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
        let cx = CompileContext {
            config,
            instance: entity,
            consumers,
            resources,
        };
        let plugin = match spec.compile(&cx) {
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

/// Checks one entity that an Admin API write adds or changes with the same
/// compile code the data planes run, so that a change a data plane could not
/// serve is refused before it is committed (and never freezes the cluster by
/// making every later snapshot unpublishable). `entity` is the validated
/// entity JSON. Errors name the field, as Kong's schema errors do.
pub fn check_entity(
    kind: crate::EntityKind,
    entity: &serde_json::Value,
) -> Result<(), crate::FieldErrors> {
    use crate::EntityKind;
    let mut errors = crate::FieldErrors::new();
    let typed = |errors: &mut crate::FieldErrors, e: serde_json::Error| {
        errors.add_entity(format!("cannot read the entity: {e}"));
    };
    match kind {
        EntityKind::Plugins => {
            let plugin: crate::Plugin = match serde_json::from_value(entity.clone()) {
                Ok(plugin) => plugin,
                Err(e) => {
                    typed(&mut errors, e);
                    return Err(errors);
                }
            };
            if !crate::plugin::row(&plugin.name).is_some_and(|row| row.supported) {
                errors.add("name", crate::plugin::not_enabled_message(&plugin.name));
                return Err(errors);
            }
            let spec = PluginSpec::from_plugin(&plugin)?;
            let config = Config::default();
            let consumers = Arc::new(ConsumerIndex::default());
            let resources = Resources::check_only();
            let cx = CompileContext {
                config: &config,
                instance: &plugin,
                consumers: &consumers,
                resources: &resources,
            };
            if let Err(error) = spec.compile(&cx) {
                errors.add("config", error.to_string());
            }
        }
        EntityKind::Routes => {
            let mut route: Route = match serde_json::from_value(entity.clone()) {
                Ok(route) => route,
                Err(e) => {
                    typed(&mut errors, e);
                    return Err(errors);
                }
            };
            // The service is checked by the store's reference rules; the
            // router only needs to compile the route's own matchers here.
            route.service = None;
            if let Err(router_errors) = Router::build(std::slice::from_ref(&route), &[]) {
                for error in router_errors {
                    let field = match &error {
                        RouterError::InvalidRegex { .. } => "paths",
                        RouterError::InvalidHeaderRegex { .. }
                        | RouterError::InvalidHeaderName { .. } => "headers",
                        RouterError::InvalidHost { .. } => "hosts",
                        RouterError::UnknownService { .. } => "service",
                    };
                    errors.add(field, error.to_string());
                }
            }
        }
        EntityKind::Certificates => {
            let certificate: crate::Certificate = match serde_json::from_value(entity.clone()) {
                Ok(certificate) => certificate,
                Err(e) => {
                    typed(&mut errors, e);
                    return Err(errors);
                }
            };
            if let Err(cert_errors) =
                CertificateStore::compile(std::slice::from_ref(&certificate), &[])
            {
                for error in cert_errors {
                    errors.add("cert", error.to_string());
                }
            }
        }
        _ => {}
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

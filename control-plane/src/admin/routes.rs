//! The Admin API route table, generated like Kong's from the entities and
//! their foreign keys. It drives dispatch, 405/OPTIONS answers, `/endpoints`
//! and the OpenAPI document, so all four always agree.

use crate::store::table;
use axum::http::Method;
use tollgate_shared::EntityKind;

/// A foreign key seen from both ends: `child.field` references `parent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relation {
    pub parent: EntityKind,
    pub child: EntityKind,
    /// The child's JSON field (`service`).
    pub field: &'static str,
    /// The child's column (`service_id`).
    pub column: &'static str,
}

/// What an endpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Root,
    Status,
    Endpoints,
    PluginsEnabled,
    EntitySchema,
    PluginSchema,
    ValidateEntity,
    ValidatePlugin,
    Config,
    Audit,
    OpenApi,
    ClusteringDataPlanes,
    ClusteringStatus,
    /// `/clustering/wait`: until data planes applied a version.
    ClusteringWait,
    /// `/tags` and `/tags/{tag}`.
    Tags,
    /// `/E` or `/P/{p}/E`: list, create.
    Collection {
        kind: EntityKind,
        parent: Option<Relation>,
    },
    /// `/E/{e}` or `/P/{p}/E/{e}`: read, upsert, update, delete.
    Entity {
        kind: EntityKind,
        parent: Option<Relation>,
    },
    /// `/E/{e}/f`: the parent an entity references.
    ParentOf {
        relation: Relation,
    },
}

/// One path template and the methods it answers (HEAD and OPTIONS implied).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub path: String,
    pub methods: &'static [Method],
    pub op: Op,
}

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];
const GET_POST: &[Method] = &[Method::GET, Method::POST];
const ENTITY: &[Method] = &[Method::GET, Method::PUT, Method::PATCH, Method::DELETE];
const PARENT: &[Method] = &[Method::GET, Method::PUT, Method::PATCH];

/// The URL segment of a collection (`jwt_secrets` are served at `/jwts`).
pub fn collection(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::JwtSecrets => "jwts",
        EntityKind::KeyauthCredentials => "key-auths",
        EntityKind::BasicauthCredentials => "basic-auths",
        other => other.table_name(),
    }
}

/// The path parameter naming one entity of `kind`.
pub fn param(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Services => "service",
        EntityKind::Routes => "route",
        EntityKind::Consumers => "consumer",
        EntityKind::Plugins => "plugin",
        EntityKind::JwtSecrets => "jwt",
        EntityKind::Certificates => "certificate",
        EntityKind::Snis => "sni",
        EntityKind::KeyauthCredentials => "key_auth",
        EntityKind::BasicauthCredentials => "basic_auth",
        EntityKind::Acls => "acl",
    }
}

/// The URL segment of `kind` nested under a parent (`/consumers/{c}/jwt`).
pub fn nested_collection(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::JwtSecrets => "jwt",
        EntityKind::KeyauthCredentials => "key-auth",
        EntityKind::BasicauthCredentials => "basic-auth",
        other => collection(other),
    }
}

/// Kind named by a `/schemas/{entity}` segment.
pub fn kind_named(name: &str) -> Option<EntityKind> {
    EntityKind::ALL
        .into_iter()
        .find(|k| k.table_name() == name || collection(*k) == name)
}

/// Every foreign key as a relation.
pub fn relations() -> Vec<Relation> {
    EntityKind::ALL
        .into_iter()
        .flat_map(|child| {
            table(child).foreign.iter().map(move |f| Relation {
                parent: f.parent,
                child,
                field: f.field,
                column: f.column,
            })
        })
        .collect()
}

/// The whole table, in a stable order.
pub fn endpoints() -> Vec<Endpoint> {
    let fixed = |path: &str, methods, op| Endpoint {
        path: path.to_string(),
        methods,
        op,
    };
    let mut out = vec![
        fixed("/", GET, Op::Root),
        fixed("/status", GET, Op::Status),
        fixed("/endpoints", GET, Op::Endpoints),
        fixed("/plugins/enabled", GET, Op::PluginsEnabled),
        fixed("/schemas/{entity}", GET, Op::EntitySchema),
        fixed("/schemas/{entity}/validate", POST, Op::ValidateEntity),
        fixed("/schemas/plugins/{name}", GET, Op::PluginSchema),
        fixed("/schemas/plugins/validate", POST, Op::ValidatePlugin),
        fixed("/plugins/schema/{name}", GET, Op::PluginSchema),
        fixed("/config", GET_POST, Op::Config),
        fixed("/audit", GET, Op::Audit),
        fixed("/tags", GET, Op::Tags),
        fixed("/tags/{tag}", GET, Op::Tags),
        fixed("/openapi.json", GET, Op::OpenApi),
        fixed("/clustering/data-planes", GET, Op::ClusteringDataPlanes),
        fixed("/clustering/status", GET, Op::ClusteringStatus),
        fixed("/clustering/wait", GET, Op::ClusteringWait),
    ];
    for kind in EntityKind::ALL {
        let base = format!("/{}", collection(kind));
        out.push(fixed(
            &base,
            GET_POST,
            Op::Collection { kind, parent: None },
        ));
        out.push(fixed(
            &format!("{base}/{{{}}}", param(kind)),
            ENTITY,
            Op::Entity { kind, parent: None },
        ));
    }
    for relation in relations() {
        let parent_base = format!(
            "/{}/{{{}}}",
            collection(relation.parent),
            param(relation.parent)
        );
        let children = format!("{parent_base}/{}", nested_collection(relation.child));
        out.push(fixed(
            &children,
            GET_POST,
            Op::Collection {
                kind: relation.child,
                parent: Some(relation),
            },
        ));
        out.push(fixed(
            &format!("{children}/{{{}}}", param(relation.child)),
            ENTITY,
            Op::Entity {
                kind: relation.child,
                parent: Some(relation),
            },
        ));
        out.push(fixed(
            &format!(
                "/{}/{{{}}}/{}",
                collection(relation.child),
                param(relation.child),
                relation.field
            ),
            PARENT,
            Op::ParentOf { relation },
        ));
    }
    out
}

/// The table and its matcher.
pub struct RouteTable {
    pub endpoints: Vec<Endpoint>,
    matcher: matchit::Router<usize>,
}

/// A matched request path.
pub struct Matched<'a> {
    pub endpoint: &'a Endpoint,
    /// Percent-decoded parameters; `None` when one is not UTF-8.
    pub params: Option<Vec<(String, String)>>,
}

impl RouteTable {
    pub fn new() -> Result<RouteTable, matchit::InsertError> {
        let endpoints = endpoints();
        let mut matcher = matchit::Router::new();
        for (index, endpoint) in endpoints.iter().enumerate() {
            matcher.insert(endpoint.path.clone(), index)?;
        }
        Ok(RouteTable { endpoints, matcher })
    }

    /// Matches a path; a trailing slash is tolerated as Kong does.
    pub fn find(&self, path: &str) -> Option<Matched<'_>> {
        let trimmed = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        let matched = self.matcher.at(trimmed).ok()?;
        let endpoint = self.endpoints.get(*matched.value)?;
        let params = matched
            .params
            .iter()
            .map(|(k, v)| Some((k.to_string(), decode_segment(v)?)))
            .collect();
        Some(Matched { endpoint, params })
    }
}

fn decode_segment(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn kong_paths_resolve() {
        let table = RouteTable::new().unwrap();
        let cases: &[(&str, &str)] = &[
            ("/", "/"),
            ("/services", "/services"),
            ("/services/my-api/routes", "/services/{service}/routes"),
            (
                "/services/my-api/routes/r1",
                "/services/{service}/routes/{route}",
            ),
            ("/routes/r1/service", "/routes/{route}/service"),
            ("/consumers/bob/jwt/", "/consumers/{consumer}/jwt"),
            ("/consumers/bob/jwt/k1", "/consumers/{consumer}/jwt/{jwt}"),
            ("/jwts/k1/consumer", "/jwts/{jwt}/consumer"),
            ("/plugins/enabled", "/plugins/enabled"),
            ("/plugins/abc", "/plugins/{plugin}"),
            ("/schemas/plugins/jwt", "/schemas/plugins/{name}"),
            ("/schemas/services", "/schemas/{entity}"),
            ("/certificates/c/snis", "/certificates/{certificate}/snis"),
            (
                "/consumers/bob/plugins/p",
                "/consumers/{consumer}/plugins/{plugin}",
            ),
        ];
        for (path, template) in cases {
            let m = table.find(path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(m.endpoint.path, *template, "{path}");
        }
        assert!(table.find("/nope").is_none());
        let m = table.find("/services/my%20api").unwrap();
        assert_eq!(
            m.params,
            Some(vec![("service".to_string(), "my api".to_string())])
        );
        assert_eq!(table.find("/services/%FF%FE").unwrap().params, None);
    }
}

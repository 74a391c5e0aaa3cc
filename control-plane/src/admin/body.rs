//! Request bodies as Kong reads them: JSON as-is; form-urlencoded and multipart
//! decoded with Kong's key syntax (`a.b`, `a[]`, `a[1]`, `a[key]`, repeated
//! keys) into a JSON object whose strings the schema then coerces.

use super::error::ApiError;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Kong's cap on URI or form arguments.
const MAX_ARGUMENTS: usize = 1000;

/// How a request body is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    /// No body at all.
    Empty,
    Json,
    Form,
    Multipart {
        boundary: String,
    },
    Yaml,
}

/// Decides the body's encoding from `Content-Type`. `yaml_ok` admits YAML (only `/config`).
pub fn encoding(headers: &HeaderMap, body: &Bytes, yaml_ok: bool) -> Result<Encoding, ApiError> {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let content_type = values.next();
    if values.next().is_some() {
        return Err(ApiError::BadRequest(
            "Multiple Content-Type headers not allowed".into(),
        ));
    }
    let Some(content_type) = content_type else {
        return if body.is_empty() {
            Ok(Encoding::Empty)
        } else {
            Err(ApiError::UnsupportedMediaType)
        };
    };
    let text = content_type
        .to_str()
        .map_err(|_| ApiError::UnsupportedMediaType)?;
    let mime = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(Encoding::Json),
        "application/x-www-form-urlencoded" => Ok(Encoding::Form),
        "multipart/form-data" => multer::parse_boundary(text)
            .map(|boundary| Encoding::Multipart { boundary })
            .map_err(|_| ApiError::BadRequest("multipart body without a boundary".into())),
        "application/yaml" | "text/yaml" | "application/x-yaml" if yaml_ok => Ok(Encoding::Yaml),
        _ if body.is_empty() => Ok(Encoding::Empty),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// The request's arguments as a JSON object. Form values are still strings
/// (`""` already null); the caller coerces them with the schema.
pub async fn arguments(encoding: &Encoding, body: Bytes) -> Result<(Value, bool), ApiError> {
    match encoding {
        Encoding::Empty => Ok((Value::Object(Map::new()), false)),
        Encoding::Json => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok((Value::Object(Map::new()), false));
            }
            match serde_json::from_slice::<Value>(&body) {
                Ok(value @ Value::Object(_)) => Ok((value, false)),
                _ => Err(ApiError::BadJson),
            }
        }
        Encoding::Form => Ok((expand(form_pairs(&body)?), true)),
        Encoding::Multipart { boundary } => {
            Ok((expand(multipart_pairs(boundary, body).await?), true))
        }
        Encoding::Yaml => Err(ApiError::UnsupportedMediaType),
    }
}

/// `application/x-www-form-urlencoded` pairs. Bytes that are not UTF-8 once
/// decoded are refused rather than replaced by U+FFFD and stored.
pub fn form_pairs(body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let pairs = urlencoded_pairs(body)
        .map_err(|_| ApiError::BadRequest("Invalid UTF-8 in the request body".into()))?;
    if pairs.len() > MAX_ARGUMENTS {
        return Err(ApiError::BadRequest("Too many arguments".into()));
    }
    Ok(pairs)
}

/// A percent-decoded component that is not UTF-8.
#[derive(Debug)]
pub struct NotUtf8;

/// `k=v&k2=v2` pairs, `+` as space, percent-decoded strictly.
pub fn urlencoded_pairs(text: &[u8]) -> Result<Vec<(String, String)>, NotUtf8> {
    text.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = match pair.iter().position(|b| *b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            Ok((decode_component(key)?, decode_component(value)?))
        })
        .collect()
}

fn decode_component(raw: &[u8]) -> Result<String, NotUtf8> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    String::from_utf8(percent_encoding::percent_decode(&spaced).collect()).map_err(|_| NotUtf8)
}

/// The text of every multipart part, file parts included (e.g. `-F cert=@cert.pem`).
pub async fn multipart_pairs(
    boundary: &str,
    body: Bytes,
) -> Result<Vec<(String, String)>, ApiError> {
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary.to_string());
    let mut pairs = Vec::new();
    let malformed = |_| ApiError::BadRequest("Cannot parse multipart body".into());
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(malformed)?;
        let value = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::BadRequest("Invalid UTF-8 in the request body".into()))?;
        pairs.push((name, value));
        if pairs.len() > MAX_ARGUMENTS {
            return Err(ApiError::BadRequest("Too many arguments".into()));
        }
    }
    Ok(pairs)
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Name(String),
    /// `[]`: append.
    Append,
    /// `[3]`: a position (Kong's are 1-based; only the order matters).
    Index(u64),
}

fn parse_key(key: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut name = String::new();
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if !name.is_empty() {
                    segments.push(Segment::Name(std::mem::take(&mut name)));
                }
            }
            '[' => {
                if !name.is_empty() {
                    segments.push(Segment::Name(std::mem::take(&mut name)));
                }
                let inner: String = chars.by_ref().take_while(|&c| c != ']').collect();
                segments.push(if inner.is_empty() {
                    Segment::Append
                } else if let Ok(i) = inner.parse::<u64>() {
                    Segment::Index(i)
                } else {
                    Segment::Name(inner)
                });
            }
            _ => name.push(c),
        }
    }
    if !name.is_empty() {
        segments.push(Segment::Name(name));
    }
    segments
}

/// The tree built while reading pairs, before it becomes JSON.
#[derive(Debug)]
enum Node {
    /// Values of one key; `array` when given with `[]`/`[n]` or repeated.
    Leaf {
        values: Vec<String>,
        array: bool,
    },
    Object(Vec<(String, Node)>),
    Indexed(BTreeMap<u64, Node>),
}

impl Node {
    fn insert(&mut self, path: &[Segment], value: String) {
        let Some((head, rest)) = path.split_first() else {
            if let Node::Leaf { values, array } = self {
                *array = *array || !values.is_empty();
                values.push(value);
            }
            return;
        };
        match head {
            Segment::Name(name) => {
                if !matches!(self, Node::Object(_)) {
                    *self = Node::Object(Vec::new());
                }
                if let Node::Object(fields) = self {
                    let index = match fields.iter().position(|(k, _)| k == name) {
                        Some(i) => i,
                        None => {
                            fields.push((name.clone(), Node::empty_for(rest)));
                            fields.len() - 1
                        }
                    };
                    fields[index].1.insert(rest, value);
                }
            }
            Segment::Append if rest.is_empty() => {
                if !matches!(self, Node::Leaf { .. }) {
                    *self = Node::Leaf {
                        values: Vec::new(),
                        array: true,
                    };
                }
                if let Node::Leaf { values, array } = self {
                    *array = true;
                    values.push(value);
                }
            }
            Segment::Append | Segment::Index(_) => {
                if !matches!(self, Node::Indexed(_)) {
                    *self = Node::Indexed(BTreeMap::new());
                }
                if let Node::Indexed(items) = self {
                    let index = match head {
                        Segment::Index(i) => *i,
                        _ => items.keys().next_back().map_or(0, |k| k + 1),
                    };
                    items
                        .entry(index)
                        .or_insert_with(|| Node::empty_for(rest))
                        .insert(rest, value);
                }
            }
        }
    }

    fn empty_for(rest: &[Segment]) -> Node {
        match rest.first() {
            None | Some(Segment::Append) => Node::Leaf {
                values: Vec::new(),
                array: false,
            },
            Some(Segment::Name(_)) => Node::Object(Vec::new()),
            Some(Segment::Index(_)) => Node::Indexed(BTreeMap::new()),
        }
    }

    fn into_json(self) -> Value {
        let scalar = |s: String| {
            if s.is_empty() {
                Value::Null
            } else {
                Value::String(s)
            }
        };
        match self {
            Node::Leaf { mut values, array } => {
                if !array && values.len() == 1 {
                    scalar(values.remove(0))
                } else {
                    Value::Array(values.into_iter().map(Value::String).collect())
                }
            }
            Node::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k, v.into_json()))
                    .collect(),
            ),
            Node::Indexed(items) => Value::Array(
                items
                    .into_values()
                    .map(|n| match n {
                        Node::Leaf { mut values, .. } if values.len() == 1 => {
                            Value::String(values.remove(0))
                        }
                        other => other.into_json(),
                    })
                    .collect(),
            ),
        }
    }
}

/// Builds the argument object from decoded pairs.
pub fn expand(pairs: Vec<(String, String)>) -> Value {
    let mut root = Node::Object(Vec::new());
    for (key, value) in pairs {
        let path = parse_key(&key);
        if path.is_empty() || !matches!(path.first(), Some(Segment::Name(_))) {
            continue;
        }
        root.insert(&path, value);
    }
    root.into_json()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn kong_key_syntax() {
        let cases: Vec<(&str, Value)> = vec![
            (
                "name=my-api&url=http://127.0.0.1:3000",
                json!({"name": "my-api", "url": "http://127.0.0.1:3000"}),
            ),
            (
                "paths[]=/api&strip_path=false",
                json!({"paths": ["/api"], "strip_path": "false"}),
            ),
            ("paths[]=/a&paths[]=/b", json!({"paths": ["/a", "/b"]})),
            ("paths[2]=/b&paths[1]=/a", json!({"paths": ["/a", "/b"]})),
            ("paths=/a&paths=/b", json!({"paths": ["/a", "/b"]})),
            ("paths=/a", json!({"paths": "/a"})),
            (
                "config.minute=100&config.policy=local",
                json!({"config": {"minute": "100", "policy": "local"}}),
            ),
            (
                "config.allow[]=203.0.113.10&config.allow[]=10.0.0.0/8",
                json!({"config": {"allow": ["203.0.113.10", "10.0.0.0/8"]}}),
            ),
            ("service.id=abc", json!({"service": {"id": "abc"}})),
            (
                "service.name=my-api",
                json!({"service": {"name": "my-api"}}),
            ),
            (
                "headers[x-foo]=bar&headers[x-foo]=baz",
                json!({"headers": {"x-foo": ["bar", "baz"]}}),
            ),
            (
                "config.headers[Authorization]=Bearer%20x",
                json!({"config": {"headers": {"Authorization": "Bearer x"}}}),
            ),
            ("name=", json!({"name": null})),
            (
                "config.redis.host=r&config.redis.port=6379",
                json!({"config": {"redis": {"host": "r", "port": "6379"}}}),
            ),
            (
                "tags[1]=a&tags[2]=b&name=x",
                json!({"tags": ["a", "b"], "name": "x"}),
            ),
            ("a%5B%5D=1&a%5B%5D=2", json!({"a": ["1", "2"]})),
            (
                "config.x[1].y=1&config.x[2].y=2",
                json!({"config": {"x": [{"y": "1"}, {"y": "2"}]}}),
            ),
            ("", json!({})),
        ];
        for (body, want) in cases {
            let got = expand(form_pairs(body.as_bytes()).unwrap());
            assert_eq!(got, want, "{body}");
        }
    }

    #[test]
    fn too_many_arguments() {
        let body: String = (0..1001).map(|i| format!("k{i}=v&")).collect();
        assert!(matches!(
            form_pairs(body.as_bytes()),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[tokio::test]
    async fn multipart_is_read_like_a_form() {
        let body = "--XX\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nrate-limiting\r\n\
                    --XX\r\nContent-Disposition: form-data; name=\"config.minute\"\r\n\r\n5\r\n--XX--\r\n";
        let (args, form) = arguments(
            &Encoding::Multipart {
                boundary: "XX".into(),
            },
            Bytes::from(body),
        )
        .await
        .unwrap();
        assert!(form);
        assert_eq!(
            args,
            json!({"name": "rate-limiting", "config": {"minute": "5"}})
        );
    }

    #[test]
    fn encodings() {
        let with = |ct: Option<&str>, body: &'static str| {
            let mut h = HeaderMap::new();
            if let Some(ct) = ct {
                h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            }
            encoding(&h, &Bytes::from(body), false)
        };
        assert_eq!(with(None, "").unwrap(), Encoding::Empty);
        assert!(matches!(
            with(None, "x=1"),
            Err(ApiError::UnsupportedMediaType)
        ));
        assert_eq!(
            with(Some("application/json; charset=utf-8"), "{}").unwrap(),
            Encoding::Json
        );
        assert!(matches!(
            with(Some("text/plain"), "hi"),
            Err(ApiError::UnsupportedMediaType)
        ));
        assert!(matches!(
            with(Some("application/yaml"), "a: 1"),
            Err(ApiError::UnsupportedMediaType)
        ));
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_TYPE, "application/json".parse().unwrap());
        h.append(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(matches!(
            encoding(&h, &Bytes::new(), false),
            Err(ApiError::BadRequest(_))
        ));
    }
}

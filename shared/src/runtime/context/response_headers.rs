//! The headers plugins add to a response before it exists (a challenge, the
//! rate-limit counters): a short list, set into the response's own map once
//! it is there. A request carries a handful at most, so a list with a
//! linear lookup costs far less than a second hashed map per request.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Headers to set on the response; a second `insert` of a name replaces
/// the first, as on a `HeaderMap`.
#[derive(Debug, Clone, Default)]
pub struct ResponseHeaders(Vec<(HeaderName, HeaderValue)>);

impl ResponseHeaders {
    /// Sets `name`, replacing an earlier value of it.
    pub fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        match self.0.iter_mut().find(|(known, _)| *known == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Adds `name`, which the caller knows is not set yet (a plugin's own
    /// headers, set once per request): no search for an earlier value.
    pub fn append_new(&mut self, name: HeaderName, value: HeaderValue) {
        debug_assert!(self.get(&name).is_none(), "{name} set twice");
        self.0.push((name, value));
    }

    pub fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.0
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value)
    }

    pub fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.0.iter().map(|(name, value)| (name, value))
    }

    /// Which fields of a map these headers replace.
    pub fn replaced(&self) -> Replaced<'_> {
        Replaced {
            lengths: self.0.iter().fold(0u64, |mask, (name, _)| {
                mask | 1 << (name.as_str().len() % 64)
            }),
            headers: self,
        }
    }

    /// The fields of a head whose map is `map` once these are set in it:
    /// the map's fields these do not replace, then these.
    pub fn over<'a>(
        &'a self,
        map: &'a HeaderMap,
    ) -> impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)> + 'a {
        let replaced = self.replaced();
        map.iter()
            .filter(move |(name, _)| !replaced.contains(name))
            .chain(self.iter())
    }
}

/// The names of a [`ResponseHeaders`], for telling which fields of a map
/// they replace. Their lengths are checked first: a field of another length
/// is not replaced, which rules out nearly every field without comparing
/// names.
#[derive(Clone, Copy)]
pub struct Replaced<'a> {
    /// Bit `n % 64` is set for every name of length `n`.
    lengths: u64,
    headers: &'a ResponseHeaders,
}

impl Replaced<'_> {
    #[inline]
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.lengths & 1 << (name.as_str().len() % 64) != 0 && self.headers.get(name).is_some()
    }
}

impl IntoIterator for ResponseHeaders {
    type Item = (HeaderName, HeaderValue);
    type IntoIter = std::vec::IntoIter<(HeaderName, HeaderValue)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_name_set_twice_keeps_the_last_value_in_its_first_place() {
        let mut headers = ResponseHeaders::default();
        let a = HeaderName::from_static("x-a");
        let b = HeaderName::from_static("x-b");
        headers.insert(a.clone(), HeaderValue::from_static("1"));
        headers.insert(b.clone(), HeaderValue::from_static("2"));
        headers.insert(a.clone(), HeaderValue::from_static("3"));
        assert_eq!(headers.len(), 2);
        assert_eq!(headers.get(&a).unwrap(), "3");
        let order: Vec<_> = headers.into_iter().map(|(name, _)| name).collect();
        assert_eq!(order, [a, b]);
    }

    #[test]
    fn over_a_map_they_replace_its_fields_of_their_names() {
        let mut map = HeaderMap::new();
        for (name, value) in [("x-b", "old"), ("x-cc", "kept"), ("x-b", "old too")] {
            map.append(name, HeaderValue::from_static(value));
        }
        let mut headers = ResponseHeaders::default();
        for (name, value) in [("x-b", "new"), ("x-d", "added")] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let fields: Vec<(&str, &str)> = headers
            .over(&map)
            .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
            .collect();
        assert_eq!(fields, [("x-cc", "kept"), ("x-b", "new"), ("x-d", "added")]);
        let empty = ResponseHeaders::default();
        assert_eq!(empty.over(&map).count(), 3);
    }
}

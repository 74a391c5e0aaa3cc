//! The headers plugins add to a response before it exists (a challenge, the
//! rate-limit counters): a short list, set into the response's own map once
//! it is there. A request carries a handful at most, so a list with a
//! linear lookup costs far less than a second hashed map per request.

use http::header::{HeaderName, HeaderValue};

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
}

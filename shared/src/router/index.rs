//! The lookup structure over the match groups: buckets by host (exact map,
//! `*.suffix` map, `prefix.*` map, any-host), and inside each bucket prefix
//! paths bucketed by length plus a short list of groups without prefix paths.
//!
//! A request consults one exact-host bucket, one suffix/prefix bucket per dot in
//! its host, and the any-host bucket; in each it probes one prefix per distinct
//! prefix length of that bucket and scans the regex/pathless list. No part
//! of the lookup visits groups whose host or prefix cannot match, so the cost
//! does not grow with the number of routes with distinct hosts or prefixes.
//! Groups with regex paths (or only methods/headers) of the same host bucket
//! are scanned in priority order; that list is the documented linear fallback.

use super::compile::{Group, GroupPaths, NamePattern, Priority, RequestFacts};
use super::RequestInfo;
use std::collections::HashMap;

/// How the winning group matched the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PathMatch {
    None,
    /// Index into the group's prefixes.
    Prefix(usize),
    /// Index into the group's regexes.
    Regex(usize),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Best {
    pub group: usize,
    pub path: PathMatch,
    priority: Priority,
}

#[derive(Debug, Default)]
pub(super) struct HostIndex {
    exact: HashMap<Box<str>, PathIndex, FastHash>,
    /// Keyed by the suffix with its leading dot: `.example.com`.
    suffix: HashMap<Box<str>, PathIndex, FastHash>,
    /// Keyed by the prefix with its trailing dot: `example.`.
    prefix: HashMap<Box<str>, PathIndex, FastHash>,
    /// Key lengths present in `suffix` / `prefix`: a request host's candidate
    /// of another length is skipped without hashing it.
    suffix_lengths: LengthSet,
    prefix_lengths: LengthSet,
    /// Routes without hosts, and wildcard shapes the maps cannot key.
    any: PathIndex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bucket<'g> {
    Exact(&'g str),
    Suffix(&'g str),
    Prefix(&'g str),
    Any,
}

impl HostIndex {
    pub(super) fn build(groups: &[Group]) -> HostIndex {
        let mut index = HostIndex::default();
        let mut buckets: Vec<Bucket<'_>> = Vec::new();
        for (id, group) in groups.iter().enumerate() {
            buckets.clear();
            match &group.hosts {
                None => buckets.push(Bucket::Any),
                Some(hosts) => {
                    for host in hosts {
                        buckets.push(match &host.name {
                            NamePattern::Exact(name) => Bucket::Exact(name),
                            NamePattern::Suffix(s) if s.starts_with('.') => Bucket::Suffix(s),
                            NamePattern::Prefix(p) if p.ends_with('.') => Bucket::Prefix(p),
                            _ => Bucket::Any,
                        });
                    }
                }
            }
            buckets.sort_unstable_by_key(|b| match b {
                Bucket::Exact(s) => (0, *s),
                Bucket::Suffix(s) => (1, *s),
                Bucket::Prefix(s) => (2, *s),
                Bucket::Any => (3, ""),
            });
            buckets.dedup();
            for bucket in &buckets {
                let host_checked = host_settled_by(group, *bucket);
                let path_index = match bucket {
                    Bucket::Exact(s) => index.exact.entry((*s).into()).or_default(),
                    Bucket::Suffix(s) => index.suffix.entry((*s).into()).or_default(),
                    Bucket::Prefix(s) => index.prefix.entry((*s).into()).or_default(),
                    Bucket::Any => &mut index.any,
                };
                path_index.insert(id, group, host_checked);
            }
        }
        let finish = |pi: &mut PathIndex| pi.finish();
        index.exact.values_mut().for_each(finish);
        index.suffix.values_mut().for_each(finish);
        index.prefix.values_mut().for_each(finish);
        index.any.finish();
        index.suffix_lengths = LengthSet::of(index.suffix.keys().map(|k| k.len()));
        index.prefix_lengths = LengthSet::of(index.prefix.keys().map(|k| k.len()));
        index
    }

    /// The highest-priority group that matches the request.
    pub(super) fn best(
        &self,
        groups: &[Group],
        req: &RequestInfo<'_>,
        facts: &RequestFacts<'_>,
    ) -> Option<Best> {
        let mut search = Search {
            groups,
            req,
            facts,
            best: None,
        };
        if let Some(host) = facts.host.as_deref() {
            if let Some(path_index) = self.exact.get(host) {
                search.scan(path_index);
            }
            if !self.suffix.is_empty() || !self.prefix.is_empty() {
                for (dot, _) in host.match_indices('.') {
                    let suffix = &host[dot..];
                    if self.suffix_lengths.contains(suffix.len()) {
                        if let Some(path_index) = self.suffix.get(suffix) {
                            search.scan(path_index);
                        }
                    }
                    let prefix = &host[..=dot];
                    if self.prefix_lengths.contains(prefix.len()) {
                        if let Some(path_index) = self.prefix.get(prefix) {
                            search.scan(path_index);
                        }
                    }
                }
            }
        }
        search.scan(&self.any);
        search.best
    }
}

/// A set of key lengths; lengths past 255 are always reported present.
#[derive(Debug, Default)]
struct LengthSet([u64; 4]);

impl LengthSet {
    fn of(lengths: impl Iterator<Item = usize>) -> LengthSet {
        let mut set = LengthSet::default();
        for len in lengths {
            if let Some(word) = set.0.get_mut(len / 64) {
                *word |= 1 << (len % 64);
            }
        }
        set
    }

    fn contains(&self, len: usize) -> bool {
        self.0
            .get(len / 64)
            .is_none_or(|word| word & (1 << (len % 64)) != 0)
    }
}

/// `true` when reaching `bucket` already proves the group's host predicate:
/// the bucket's key is one of its host patterns and that pattern has no port.
fn host_settled_by(group: &Group, bucket: Bucket<'_>) -> bool {
    let Some(hosts) = &group.hosts else {
        return false;
    };
    hosts.iter().any(|host| {
        !host.has_port()
            && match (&host.name, bucket) {
                (NamePattern::Exact(name), Bucket::Exact(key)) => **name == *key,
                (NamePattern::Suffix(name), Bucket::Suffix(key)) => **name == *key,
                (NamePattern::Prefix(name), Bucket::Prefix(key)) => **name == *key,
                _ => false,
            }
    })
}

struct Search<'s, 'r> {
    groups: &'s [Group],
    req: &'s RequestInfo<'r>,
    facts: &'s RequestFacts<'s>,
    best: Option<Best>,
}

impl Search<'_, '_> {
    fn floor(&self) -> Option<Priority> {
        self.best.map(|b| b.priority)
    }

    fn scan(&mut self, path_index: &PathIndex) {
        let path = self.req.path.as_bytes();
        path_index.prefixes.walk(path, |terminals| {
            for terminal in terminals {
                if self.floor().is_some_and(|floor| terminal.priority <= floor) {
                    // Sorted by priority: nothing further in this node can win.
                    break;
                }
                let Some(group) = self.groups.get(terminal.group) else {
                    continue;
                };
                if group.matches_request(self.req, self.facts, terminal.host_checked) {
                    self.best = Some(Best {
                        group: terminal.group,
                        path: PathMatch::Prefix(terminal.prefix),
                        priority: terminal.priority,
                    });
                    break;
                }
            }
        });
        for candidate in &path_index.pathless {
            let (priority, id) = (candidate.priority, candidate.group);
            if self.floor().is_some_and(|floor| priority <= floor) {
                break;
            }
            let Some(group) = self.groups.get(id) else {
                continue;
            };
            if !group.matches_request(self.req, self.facts, candidate.host_checked) {
                continue;
            }
            let path = match &group.paths {
                GroupPaths::Any => Some(PathMatch::None),
                GroupPaths::Regexes(regexes) => regexes
                    .iter()
                    .position(|re| re.is_match(self.req.path))
                    .map(PathMatch::Regex),
                // Prefix groups live in the prefix buckets.
                GroupPaths::Prefixes(_) => None,
            };
            if let Some(path) = path {
                self.best = Some(Best {
                    group: id,
                    path,
                    priority,
                });
                break;
            }
        }
    }
}

#[derive(Debug, Default)]
struct PathIndex {
    prefixes: PrefixBuckets,
    /// Groups with regex paths or no paths, highest priority first.
    pathless: Vec<Terminal>,
}

impl PathIndex {
    fn insert(&mut self, id: usize, group: &Group, host_checked: bool) {
        let terminal = |prefix| Terminal {
            priority: group.priority,
            group: id,
            prefix,
            host_checked,
        };
        match &group.paths {
            GroupPaths::Prefixes(prefixes) => {
                for (i, prefix) in prefixes.iter().enumerate() {
                    self.prefixes.insert(prefix.text.as_bytes(), terminal(i));
                }
            }
            GroupPaths::Any | GroupPaths::Regexes(_) => self.pathless.push(terminal(0)),
        }
    }

    fn finish(&mut self) {
        self.pathless
            .sort_unstable_by_key(|t| std::cmp::Reverse(t.priority));
        self.prefixes.finish();
    }
}

/// A group filed in a bucket.
#[derive(Debug, Clone, Copy)]
struct Terminal {
    priority: Priority,
    group: usize,
    /// Which of the group's prefixes this is (prefix buckets only).
    prefix: usize,
    /// The bucket already proved the group's host predicate.
    host_checked: bool,
}

/// Prefix paths of one host bucket. A handful are scanned; more are bucketed by
/// length: a map from prefix bytes to the groups ending there, plus the
/// distinct lengths in ascending order. A lookup probes
/// one map entry per distinct length no longer than the path, so its cost
/// depends on how many lengths the table uses, not on how many prefixes; and
/// a probe that misses touches only the map's compact control bytes, which
/// keeps a large table cheap when cold in cache (a radix trie chases several
/// pointers per level instead).
#[derive(Debug)]
enum PrefixBuckets {
    /// Filling, and the final form for a handful of prefixes (typical inside
    /// one host's bucket): scanned in order, one allocation.
    Few(Vec<(Box<[u8]>, Terminal)>),
    Many {
        by_prefix: HashMap<PrefixKey, Terminals, FastHash>,
        lengths: Vec<usize>,
    },
}

impl Default for PrefixBuckets {
    fn default() -> Self {
        PrefixBuckets::Few(Vec::new())
    }
}

/// Up to this many prefixes a linear scan beats hashing.
const FEW_PREFIXES: usize = 8;

/// A prefix stored inside the map entry when short (most are), so comparing
/// it on a lookup reads the entry's own cache line rather than a separate
/// allocation. Hashes and compares exactly as the `[u8]` it borrows as.
#[derive(Debug)]
enum PrefixKey {
    Inline {
        len: u8,
        bytes: [u8; PrefixKey::INLINE],
    },
    Heap(Box<[u8]>),
}

impl PrefixKey {
    const INLINE: usize = 30;

    fn new(key: &[u8]) -> PrefixKey {
        let mut bytes = [0u8; PrefixKey::INLINE];
        match (bytes.get_mut(..key.len()), u8::try_from(key.len())) {
            (Some(dst), Ok(len)) => {
                dst.copy_from_slice(key);
                PrefixKey::Inline { len, bytes }
            }
            _ => PrefixKey::Heap(key.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            PrefixKey::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or(bytes),
            PrefixKey::Heap(bytes) => bytes,
        }
    }
}

impl std::borrow::Borrow<[u8]> for PrefixKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::hash::Hash for PrefixKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq for PrefixKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for PrefixKey {}

/// The groups ending at one prefix; nearly always one, kept inline so that a
/// hit costs no further pointer chase.
#[derive(Debug)]
enum Terminals {
    One([Terminal; 1]),
    Many(Vec<Terminal>),
}

impl Terminals {
    fn push(&mut self, terminal: Terminal) {
        match self {
            Terminals::One([first]) => *self = Terminals::Many(vec![*first, terminal]),
            Terminals::Many(all) => all.push(terminal),
        }
    }

    fn as_slice(&self) -> &[Terminal] {
        match self {
            Terminals::One(one) => one,
            Terminals::Many(all) => all,
        }
    }
}

impl PrefixBuckets {
    fn insert(&mut self, key: &[u8], terminal: Terminal) {
        match self {
            PrefixBuckets::Few(entries) => entries.push((key.into(), terminal)),
            PrefixBuckets::Many { by_prefix, .. } => match by_prefix.get_mut(key) {
                Some(terminals) => terminals.push(terminal),
                None => {
                    by_prefix.insert(PrefixKey::new(key), Terminals::One([terminal]));
                }
            },
        }
    }

    /// Picks the final form and orders everything by priority.
    fn finish(&mut self) {
        let PrefixBuckets::Few(entries) = self else {
            return;
        };
        if entries.len() <= FEW_PREFIXES {
            entries.sort_unstable_by_key(|(_, t)| std::cmp::Reverse(t.priority));
            entries.shrink_to_fit();
            return;
        }
        let mut by_prefix: HashMap<PrefixKey, Terminals, FastHash> =
            HashMap::with_capacity_and_hasher(entries.len(), FastHash);
        for (key, terminal) in entries.drain(..) {
            match by_prefix.get_mut(&*key) {
                Some(terminals) => terminals.push(terminal),
                None => {
                    by_prefix.insert(PrefixKey::new(&key), Terminals::One([terminal]));
                }
            }
        }
        for terminals in by_prefix.values_mut() {
            if let Terminals::Many(all) = terminals {
                all.sort_unstable_by_key(|t| std::cmp::Reverse(t.priority));
                all.shrink_to_fit();
            }
        }
        let mut lengths: Vec<usize> = by_prefix.keys().map(|k| k.as_bytes().len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        *self = PrefixBuckets::Many { by_prefix, lengths };
    }

    /// Calls `visit` with the terminals of every stored prefix of `path`
    /// (in the hashed form shortest first, each slice by priority).
    fn walk(&self, path: &[u8], mut visit: impl FnMut(&[Terminal])) {
        match self {
            PrefixBuckets::Few(entries) => {
                for (key, terminal) in entries {
                    if path.starts_with(key) {
                        visit(std::slice::from_ref(terminal));
                    }
                }
            }
            PrefixBuckets::Many { by_prefix, lengths } => {
                for &len in lengths {
                    let Some(head) = path.get(..len) else {
                        return;
                    };
                    if let Some(terminals) = by_prefix.get(head) {
                        visit(terminals.as_slice());
                    }
                }
            }
        }
    }
}

/// A multiply-rotate hash (the shape of rustc's FxHash) with a final mix so
/// hashbrown's top-bit tags stay well distributed, for maps whose keys all
/// come from the config (the router's hosts and prefixes, prometheus's route
/// ids, jwt's credentials), or are keyed hashes already (jwt's verified
/// tokens): a request only
/// looks them up, so it cannot grow probe chains, and SipHash's flooding
/// resistance buys nothing there at 3-5× the cost.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHash;

impl std::hash::BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

pub(crate) struct FastHasher(u64);

const FAST_HASH_K: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(FAST_HASH_K);
    }
}

impl std::hash::Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn terminal(group: usize) -> Terminal {
        Terminal {
            priority: Priority::MIN,
            group,
            prefix: 0,
            host_checked: false,
        }
    }

    fn prefixes_of(buckets: &PrefixBuckets, path: &str) -> Vec<usize> {
        let mut found = Vec::new();
        buckets.walk(path.as_bytes(), |ts| {
            found.extend(ts.iter().map(|t| t.group))
        });
        found.sort_unstable();
        found
    }

    fn buckets(keys: &[&str]) -> PrefixBuckets {
        let mut buckets = PrefixBuckets::default();
        for (i, key) in keys.iter().enumerate() {
            buckets.insert(key.as_bytes(), terminal(i));
        }
        buckets.finish();
        buckets
    }

    #[test]
    fn buckets_find_every_stored_prefix_in_both_forms() {
        let few = ["/foo", "/foobar", "/f", "/fox", "/foo/bar", "/", "/other"];
        // The same seven first, then fillers that force the hashed form.
        let many = [
            "/foo",
            "/foobar",
            "/f",
            "/fox",
            "/foo/bar",
            "/",
            "/other",
            "/z1",
            "/z2",
            "/z3",
            "/zzzzzzzzzzzzzzzzzz",
        ];
        let few = buckets(&few);
        let many = buckets(&many);
        assert!(matches!(few, PrefixBuckets::Few(_)));
        assert!(matches!(many, PrefixBuckets::Many { .. }));
        let cases: &[(&str, &[usize])] = &[
            ("/foobar/x", &[0, 1, 2, 5]),
            ("/foo/bar", &[0, 2, 4, 5]),
            ("/fo", &[2, 5]),
            ("/fox", &[2, 3, 5]),
            ("/other", &[5, 6]),
            ("/oth", &[5]),
            ("", &[]),
            ("x", &[]),
        ];
        for (path, want) in cases {
            assert_eq!(prefixes_of(&few, path), *want, "few, path {path}");
            assert_eq!(prefixes_of(&many, path), *want, "many, path {path}");
        }
        assert_eq!(prefixes_of(&many, "/z2/"), vec![5, 8]);
    }

    #[test]
    fn buckets_keep_duplicates_of_one_prefix() {
        let few = buckets(&["/a", "/a"]);
        let many = buckets(&["/a", "/a", "/b", "/c", "/d", "/e", "/f", "/g", "/h", "/i"]);
        assert_eq!(prefixes_of(&few, "/abc"), vec![0, 1]);
        assert_eq!(prefixes_of(&many, "/abc"), vec![0, 1]);
    }
}

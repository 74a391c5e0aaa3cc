//! The lookup structure over the match groups: buckets by host (exact map,
//! `*.suffix` map, `prefix.*` map, any-host), and inside each bucket a radix
//! trie of prefix paths plus a short list of groups without prefix paths.
//!
//! A request consults one exact-host bucket, one suffix/prefix bucket per dot in
//! its host, and the any-host bucket; in each it walks the trie along its path
//! (cost bounded by the path length) and scans the regex/pathless list. No part
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
    exact: HashMap<Box<str>, PathIndex>,
    /// Keyed by the suffix with its leading dot: `.example.com`.
    suffix: HashMap<Box<str>, PathIndex>,
    /// Keyed by the prefix with its trailing dot: `example.`.
    prefix: HashMap<Box<str>, PathIndex>,
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
                let path_index = match bucket {
                    Bucket::Exact(s) => index.exact.entry((*s).into()).or_default(),
                    Bucket::Suffix(s) => index.suffix.entry((*s).into()).or_default(),
                    Bucket::Prefix(s) => index.prefix.entry((*s).into()).or_default(),
                    Bucket::Any => &mut index.any,
                };
                path_index.insert(id, group);
            }
        }
        let finish = |pi: &mut PathIndex| pi.finish();
        index.exact.values_mut().for_each(finish);
        index.suffix.values_mut().for_each(finish);
        index.prefix.values_mut().for_each(finish);
        index.any.finish();
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
                    if let Some(path_index) = self.suffix.get(&host[dot..]) {
                        search.scan(path_index);
                    }
                    if let Some(path_index) = self.prefix.get(&host[..=dot]) {
                        search.scan(path_index);
                    }
                }
            }
        }
        search.scan(&self.any);
        search.best
    }
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
        path_index.trie.walk(path, |terminals| {
            for terminal in terminals {
                if self.floor().is_some_and(|floor| terminal.priority <= floor) {
                    // Sorted by priority: nothing further in this node can win.
                    break;
                }
                let Some(group) = self.groups.get(terminal.group) else {
                    continue;
                };
                if group.matches_request(self.req, self.facts) {
                    self.best = Some(Best {
                        group: terminal.group,
                        path: PathMatch::Prefix(terminal.prefix),
                        priority: terminal.priority,
                    });
                    break;
                }
            }
        });
        for &(priority, id) in &path_index.pathless {
            if self.floor().is_some_and(|floor| priority <= floor) {
                break;
            }
            let Some(group) = self.groups.get(id) else {
                continue;
            };
            if !group.matches_request(self.req, self.facts) {
                continue;
            }
            let path = match &group.paths {
                GroupPaths::Any => Some(PathMatch::None),
                GroupPaths::Regexes(regexes) => regexes
                    .iter()
                    .position(|re| re.is_match(self.req.path))
                    .map(PathMatch::Regex),
                // Prefix groups live in the trie.
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
    trie: PrefixTrie,
    /// Groups with regex paths or no paths, highest priority first.
    pathless: Vec<(Priority, usize)>,
}

impl PathIndex {
    fn insert(&mut self, id: usize, group: &Group) {
        match &group.paths {
            GroupPaths::Prefixes(prefixes) => {
                for (i, prefix) in prefixes.iter().enumerate() {
                    self.trie.insert(
                        prefix.as_bytes(),
                        Terminal {
                            priority: group.priority,
                            group: id,
                            prefix: i,
                        },
                    );
                }
            }
            GroupPaths::Any | GroupPaths::Regexes(_) => self.pathless.push((group.priority, id)),
        }
    }

    fn finish(&mut self) {
        self.pathless.sort_unstable_by(|a, b| b.cmp(a));
        self.trie.finish();
    }
}

#[derive(Debug, Clone, Copy)]
struct Terminal {
    priority: Priority,
    group: usize,
    prefix: usize,
}

/// A radix trie over path bytes; node 0 is the root (empty label).
#[derive(Debug)]
struct PrefixTrie {
    nodes: Vec<TrieNode>,
}

impl Default for PrefixTrie {
    fn default() -> Self {
        PrefixTrie {
            nodes: vec![TrieNode::default()],
        }
    }
}

#[derive(Debug, Default)]
struct TrieNode {
    /// The bytes on the edge from the parent.
    label: Box<[u8]>,
    /// First byte of each child's label, sorted; parallel to `children`.
    first_bytes: Vec<u8>,
    children: Vec<usize>,
    /// Groups whose prefix ends exactly here, highest priority first.
    terminals: Vec<Terminal>,
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixTrie {
    fn insert(&mut self, key: &[u8], terminal: Terminal) {
        let mut node = 0;
        let mut rest = key;
        loop {
            let Some(&first) = rest.first() else {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.terminals.push(terminal);
                }
                return;
            };
            let new_id = self.nodes.len();
            let Some(current) = self.nodes.get_mut(node) else {
                return;
            };
            match current.first_bytes.binary_search(&first) {
                Err(pos) => {
                    current.first_bytes.insert(pos, first);
                    current.children.insert(pos, new_id);
                    self.nodes.push(TrieNode {
                        label: rest.into(),
                        terminals: vec![terminal],
                        ..TrieNode::default()
                    });
                    return;
                }
                Ok(pos) => {
                    let Some(&child) = current.children.get(pos) else {
                        return;
                    };
                    let Some(label) = self.nodes.get(child).map(|c| c.label.clone()) else {
                        return;
                    };
                    let common = common_prefix_len(&label, rest);
                    if common < label.len() {
                        // Split the edge: parent → mid (label[..common]) → child (label[common..]).
                        let (head, tail) = label.split_at(common);
                        let Some(&tail_first) = tail.first() else {
                            return;
                        };
                        self.nodes.push(TrieNode {
                            label: head.into(),
                            first_bytes: vec![tail_first],
                            children: vec![child],
                            terminals: Vec::new(),
                        });
                        if let Some(c) = self.nodes.get_mut(child) {
                            c.label = tail.into();
                        }
                        if let Some(slot) = self
                            .nodes
                            .get_mut(node)
                            .and_then(|n| n.children.get_mut(pos))
                        {
                            *slot = new_id;
                        }
                        node = new_id;
                    } else {
                        node = child;
                    }
                    rest = &rest[common..];
                }
            }
        }
    }

    fn finish(&mut self) {
        for node in &mut self.nodes {
            node.terminals
                .sort_unstable_by_key(|t| std::cmp::Reverse(t.priority));
        }
    }

    /// Calls `visit` with the terminals of every stored prefix of `path`,
    /// shortest first.
    fn walk(&self, path: &[u8], mut visit: impl FnMut(&[Terminal])) {
        let mut node = match self.nodes.first() {
            Some(root) => root,
            None => return,
        };
        let mut rest = path;
        loop {
            if !node.terminals.is_empty() {
                visit(&node.terminals);
            }
            let Some(&first) = rest.first() else {
                return;
            };
            let Ok(pos) = node.first_bytes.binary_search(&first) else {
                return;
            };
            let Some(child) = node.children.get(pos).and_then(|&c| self.nodes.get(c)) else {
                return;
            };
            let Some(after) = rest.strip_prefix(&*child.label) else {
                return;
            };
            rest = after;
            node = child;
        }
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
        }
    }

    fn prefixes_of(trie: &PrefixTrie, path: &str) -> Vec<usize> {
        let mut found = Vec::new();
        trie.walk(path.as_bytes(), |ts| {
            found.extend(ts.iter().map(|t| t.group))
        });
        found
    }

    #[test]
    fn trie_finds_every_stored_prefix_shortest_first() {
        let keys = ["/foo", "/foobar", "/f", "/fox", "/foo/bar", "/", "/other"];
        let mut trie = PrefixTrie::default();
        for (i, key) in keys.iter().enumerate() {
            trie.insert(key.as_bytes(), terminal(i));
        }
        trie.finish();
        let cases: &[(&str, &[usize])] = &[
            ("/foobar/x", &[5, 2, 0, 1]),
            ("/foo/bar", &[5, 2, 0, 4]),
            ("/fo", &[5, 2]),
            ("/fox", &[5, 2, 3]),
            ("/other", &[5, 6]),
            ("/oth", &[5]),
            ("", &[]),
            ("x", &[]),
        ];
        for (path, want) in cases {
            assert_eq!(prefixes_of(&trie, path), *want, "path {path}");
        }
    }

    #[test]
    fn trie_keeps_duplicates_of_one_prefix() {
        let mut trie = PrefixTrie::default();
        trie.insert(b"/a", terminal(1));
        trie.insert(b"/a", terminal(2));
        trie.finish();
        let mut found = prefixes_of(&trie, "/abc");
        found.sort_unstable();
        assert_eq!(found, vec![1, 2]);
    }
}

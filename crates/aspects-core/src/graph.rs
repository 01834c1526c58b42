//! The resource graph: an edge runs from a dependency to its dependent, so a topological order is
//! an apply order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::resource::Address;

pub struct Graph {
    g: DiGraph<Address, ()>,
    index: BTreeMap<Address, NodeIndex>,
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("{from} depends on {to}, which is not declared")]
    Dangling { from: Address, to: Address },
    #[error("dependency cycle: {} (each depends on the next)", render_cycle(.0))]
    Cycle(Vec<Address>),
}

pub fn render_cycle(path: &[Address]) -> String {
    path.iter().map(ToString::to_string).collect::<Vec<_>>().join(" -> ")
}

impl Graph {
    /// Builds the graph from `(resource, its dependencies)`; fails on a dependency that is not a
    /// node or on a cycle (reported as a closed path `a -> b -> a`).
    pub fn new<'a>(nodes: impl IntoIterator<Item = (&'a Address, &'a BTreeSet<Address>)>) -> Result<Self, GraphError> {
        let nodes: Vec<_> = nodes.into_iter().collect();
        let mut g = DiGraph::new();
        let mut index = BTreeMap::new();
        for (addr, _) in &nodes {
            index.insert((*addr).clone(), g.add_node((*addr).clone()));
        }
        // Node i is the i-th of `nodes`: no lookup for the dependent's own index.
        for (i, (addr, deps)) in nodes.iter().enumerate() {
            for dep in deps.iter() {
                let Some(&from) = index.get(dep) else {
                    return Err(GraphError::Dangling { from: (*addr).clone(), to: dep.clone() });
                };
                g.add_edge(from, NodeIndex::new(i), ());
            }
        }
        let graph = Self { g, index };
        if let Some(cycle) = graph.find_cycle() {
            return Err(GraphError::Cycle(cycle));
        }
        Ok(graph)
    }

    fn find_cycle(&self) -> Option<Vec<Address>> {
        let scc = tarjan_scc(&self.g)
            .into_iter()
            .filter(|c| c.len() > 1 || self.g.contains_edge(c[0], c[0]))
            .min_by_key(|c| c.iter().map(|n| self.g[*n].clone()).min())?;
        let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
        // Walk inside the component from its smallest address until a node repeats.
        let start = *scc.iter().min_by_key(|n| self.g[**n].clone())?;
        let mut path = vec![start];
        let mut seen = BTreeSet::from([start]);
        let mut at = start;
        loop {
            let next = self
                .g
                .edges(at)
                .map(|e| e.target())
                .filter(|t| members.contains(t))
                .min_by_key(|t| self.g[*t].clone())?;
            path.push(next);
            if !seen.insert(next) {
                let first = path.iter().position(|n| *n == next)?;
                // Edges run dependency -> dependent; report in "depends on" order.
                return Some(path[first..].iter().rev().map(|n| self.g[*n].clone()).collect());
            }
            at = next;
        }
    }

    /// Dependencies first; ties broken by address so output is stable.
    pub fn order(&self) -> Vec<Address> {
        let mut level: BTreeMap<NodeIndex, usize> = BTreeMap::new();
        let topo = toposort(&self.g, None).expect("cycles are rejected in Graph::new");
        for n in &topo {
            let l =
                self.g.neighbors_directed(*n, petgraph::Direction::Incoming).map(|p| level[&p] + 1).max().unwrap_or(0);
            level.insert(*n, l);
        }
        let mut out: Vec<_> = topo.into_iter().map(|n| (level[&n], self.g[n].clone())).collect();
        out.sort();
        out.into_iter().map(|(_, a)| a).collect()
    }

    /// The addresses asked for and everything they depend on, transitively.
    pub fn closure(&self, targets: &[Address]) -> BTreeSet<Address> {
        self.walk(targets, petgraph::Direction::Incoming)
    }

    /// The addresses asked for and everything that depends on them, transitively: what must go
    /// when they go.
    pub fn dependents(&self, targets: &[Address]) -> BTreeSet<Address> {
        self.walk(targets, petgraph::Direction::Outgoing)
    }

    fn walk(&self, targets: &[Address], direction: petgraph::Direction) -> BTreeSet<Address> {
        let mut out = BTreeSet::new();
        let mut stack: Vec<NodeIndex> = targets.iter().filter_map(|t| self.index.get(t).copied()).collect();
        while let Some(n) = stack.pop() {
            if out.insert(self.g[n].clone()) {
                stack.extend(self.g.neighbors_directed(n, direction));
            }
        }
        out
    }

    /// This graph plus `extra` edges `(dependency, dependent)`, each kept only if it closes no
    /// cycle: a rotation orders a secret's clients after the credentials that check it.
    pub fn with_edges(&self, extra: impl IntoIterator<Item = (Address, Address)>) -> Graph {
        let mut g = self.g.clone();
        for (from, to) in extra {
            let (Some(&f), Some(&t)) = (self.index.get(&from), self.index.get(&to)) else { continue };
            if f != t && !petgraph::algo::has_path_connecting(&g, t, f, None) {
                g.update_edge(f, t, ());
            }
        }
        Graph { g, index: self.index.clone() }
    }

    pub fn contains(&self, a: &Address) -> bool {
        self.index.contains_key(a)
    }

    fn edges(&self) -> impl Iterator<Item = (&Address, &Address)> {
        self.g.edge_references().map(|e| (&self.g[e.source()], &self.g[e.target()]))
    }

    pub fn to_dot(&self) -> String {
        let mut s = String::from("digraph aspects {\n  rankdir = LR;\n  node [shape = box];\n");
        for a in self.index.keys() {
            let shape = if a.is_secret() { " [shape = ellipse, style = dashed]" } else { "" };
            let _ = writeln!(s, "  {:?}{shape};", a.to_string());
        }
        for (from, to) in self.edges() {
            let _ = writeln!(s, "  {:?} -> {:?};", from.to_string(), to.to_string());
        }
        s.push_str("}\n");
        s
    }

    pub fn to_mermaid(&self) -> String {
        let id: BTreeMap<&Address, usize> = self.index.keys().enumerate().map(|(i, a)| (a, i)).collect();
        let mut s = String::from("flowchart LR\n");
        for (a, i) in &id {
            let label = a.to_string().replace('"', "#quot;");
            // Secrets are drawn as stadiums, resources as boxes.
            let (open, close) = if a.is_secret() { ("([", "])") } else { ("[", "]") };
            let _ = writeln!(s, "  n{i}{open}\"{label}\"{close}");
        }
        for (from, to) in self.edges() {
            let _ = writeln!(s, "  n{} --> n{}", id[from], id[to]);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn build(spec: &[(&str, &[&str])]) -> Result<Graph, GraphError> {
        let owned: Vec<(Address, BTreeSet<Address>)> =
            spec.iter().map(|(n, deps)| (a(n), deps.iter().map(|d| a(d)).collect())).collect();
        Graph::new(owned.iter().map(|(n, d)| (n, d)))
    }

    #[test]
    fn order_puts_dependencies_first() {
        let g = build(&[("k.grant", &["k.user", "k.db"]), ("k.user", &[]), ("k.db", &[])]).unwrap();
        assert_eq!(g.order(), vec![a("k.db"), a("k.user"), a("k.grant")]);
        assert_eq!(g.closure(&[a("k.grant")]).len(), 3);
        assert_eq!(g.closure(&[a("k.user")]), BTreeSet::from([a("k.user")]));
        assert_eq!(g.dependents(&[a("k.grant")]), BTreeSet::from([a("k.grant")]));
        assert!(g.dependents(&[a("k.user")]).contains(&a("k.grant")));
    }

    #[test]
    fn cycle_reports_the_whole_path() {
        let err = build(&[("k.a", &["k.c"]), ("k.b", &["k.a"]), ("k.c", &["k.b"]), ("k.d", &[])]).err().unwrap();
        assert_eq!(err.to_string(), "dependency cycle: k.a -> k.c -> k.b -> k.a (each depends on the next)");
        let err = build(&[("k.a", &["k.a"])]).err().unwrap();
        assert_eq!(err.to_string(), "dependency cycle: k.a -> k.a (each depends on the next)");
    }

    #[test]
    fn dangling_dependency_is_named() {
        let err = build(&[("k.a", &["k.zz"])]).err().unwrap();
        assert_eq!(err.to_string(), "k.a depends on k.zz, which is not declared");
    }

    #[test]
    fn dot_and_mermaid_name_every_edge() {
        let g = build(&[("k.b", &["k.a"]), ("k.a", &[])]).unwrap();
        assert!(g.to_dot().contains("\"k.a\" -> \"k.b\";"));
        assert!(g.to_mermaid().contains("n0 --> n1"));
    }

    #[test]
    fn extra_edges_order_without_closing_a_cycle() {
        let g = build(&[("k.client", &[]), ("k.cred", &[]), ("k.c2", &["k.cred"])]).unwrap();
        let h = g.with_edges([(a("k.cred"), a("k.client")), (a("k.c2"), a("k.cred")), (a("k.x"), a("k.cred"))]);
        let order = h.order();
        assert!(order.iter().position(|x| x == &a("k.cred")) < order.iter().position(|x| x == &a("k.client")));
        assert!(h.closure(&[a("k.client")]).contains(&a("k.cred")));
        assert!(!h.closure(&[a("k.cred")]).contains(&a("k.c2")), "the edge closing a cycle was dropped");
        assert!(!g.closure(&[a("k.client")]).contains(&a("k.cred")), "the original is unchanged");
    }

    #[test]
    fn secrets_are_nodes_drawn_apart_and_their_consumers_are_dependents() {
        let g = build(&[("k.grant", &["k.user"]), ("k.user", &["secrets.pw"]), ("secrets.pw", &[])]).unwrap();
        assert_eq!(g.dependents(&[a("secrets.pw")]), BTreeSet::from([a("secrets.pw"), a("k.user"), a("k.grant")]));
        assert!(g.to_dot().contains("\"secrets.pw\" [shape = ellipse, style = dashed];"), "{}", g.to_dot());
        assert!(g.to_mermaid().contains("([\"secrets.pw\"])"), "{}", g.to_mermaid());
    }
}

//! The dependency graph: load order, cycle detection (with the cycle named), missing, self and
//! version-mismatched dependencies, and what a failure blocks. Pure (no I/O). One pass builds
//! a petgraph graph, Tarjan's SCC pass finds and names cycles, and Kahn's algorithm orders the
//! rest, taking the lowest input index that is ready so the order is stable: O((n + e) log n).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use petgraph::graph::{DiGraph, NodeIndex};
use semver::Version;

use crate::error::Error;
use crate::manifest::DependencySpec;

/// One plugin as the graph sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node<'a> {
    pub(crate) name: &'a str,
    pub(crate) version: &'a Version,
    pub(crate) dependencies: &'a [DependencySpec],
}

/// The outcome of planning a set of plugins.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Indexes of the plugins that can be loaded, dependencies first.
    pub(crate) order: Vec<usize>,
    /// Plugins that cannot be loaded, with the reason.
    pub(crate) failed: Vec<(usize, Error)>,
    /// Plugins not attempted because a dependency failed or was skipped (that dependency's name).
    pub(crate) skipped: Vec<(usize, String)>,
}

/// Plans `nodes` for loading. `loaded` answers the version of a plugin already loaded elsewhere
/// (those count as satisfied dependencies). Names in `nodes` must be unique.
pub(crate) fn plan(nodes: &[Node<'_>], loaded: &dyn Fn(&str) -> Option<Version>) -> Plan {
    let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name, i)).collect();
    let (graph, mut failure) = build(nodes, &index, loaded);
    mark_cycles(nodes, &index, &graph, &mut failure);
    order(nodes, &graph, failure)
}

/// The dependency graph (edges point from a dependency to its dependent, so topological order
/// is load order) and each node's first problem: itself as a dependency, a missing dependency,
/// or a version that does not match.
fn build(
    nodes: &[Node<'_>],
    index: &HashMap<&str, usize>,
    loaded: &dyn Fn(&str) -> Option<Version>,
) -> (DiGraph<usize, ()>, Vec<Option<Error>>) {
    let mut graph: DiGraph<usize, ()> = DiGraph::with_capacity(nodes.len(), nodes.len());
    for i in 0..nodes.len() {
        graph.add_node(i);
    }
    let mut failure: Vec<Option<Error>> = (0..nodes.len()).map(|_| None).collect();
    for (i, node) in nodes.iter().enumerate() {
        for dep in node.dependencies {
            let problem = if dep.name == node.name {
                Some(Error::SelfDependency {
                    plugin: node.name.to_owned(),
                })
            } else if let Some(&j) = index.get(dep.name.as_str()) {
                graph.add_edge(NodeIndex::new(j), NodeIndex::new(i), ());
                version_problem(node.name, dep, nodes[j].version)
            } else if let Some(found) = loaded(&dep.name) {
                version_problem(node.name, dep, &found)
            } else {
                Some(Error::DependencyNotFound {
                    plugin: node.name.to_owned(),
                    dependency: dep.name.clone(),
                })
            };
            if let (Some(problem), None) = (problem, &failure[i]) {
                failure[i] = Some(problem);
            }
        }
    }
    (graph, failure)
}

/// Every strongly connected component of more than one plugin is a cycle: each member fails,
/// naming its cycle.
fn mark_cycles(
    nodes: &[Node<'_>],
    index: &HashMap<&str, usize>,
    graph: &DiGraph<usize, ()>,
    failure: &mut [Option<Error>],
) {
    for scc in petgraph::algo::tarjan_scc(graph) {
        if scc.len() > 1 {
            let members: HashSet<usize> = scc.iter().map(|n| graph[*n]).collect();
            for &n in &scc {
                let i = graph[n];
                let cycle = find_cycle(nodes, index, &members, i);
                failure[i].get_or_insert(Error::CircularDependency { cycle });
            }
        }
    }
}

/// The load order, the failures and the plugins skipped because of a failed dependency.
fn order(nodes: &[Node<'_>], graph: &DiGraph<usize, ()>, mut failure: Vec<Option<Error>>) -> Plan {
    // Kahn's algorithm, always taking the lowest input index that is ready: dependencies first,
    // and otherwise the order the plugins were given in (stable, easy to read).
    let mut indegree: Vec<usize> = (0..nodes.len())
        .map(|i| {
            graph
                .neighbors_directed(NodeIndex::new(i), petgraph::Direction::Incoming)
                .count()
        })
        .collect();
    let mut ready: BinaryHeap<Reverse<usize>> = (0..nodes.len())
        .filter(|&i| indegree[i] == 0)
        .map(Reverse)
        .collect();
    let mut plan = Plan::default();
    let mut blocked = vec![false; nodes.len()];
    let mut done = vec![false; nodes.len()];
    while let Some(Reverse(i)) = ready.pop() {
        done[i] = true;
        let n = NodeIndex::new(i);
        if let Some(error) = failure[i].take() {
            plan.failed.push((i, error));
            blocked[i] = true;
        } else if let Some(d) = graph
            .neighbors_directed(n, petgraph::Direction::Incoming)
            .find(|d| blocked[d.index()])
        {
            plan.skipped.push((i, nodes[d.index()].name.to_owned()));
            blocked[i] = true;
        } else {
            plan.order.push(i);
        }
        for dependent in graph.neighbors_directed(n, petgraph::Direction::Outgoing) {
            indegree[dependent.index()] -= 1;
            if indegree[dependent.index()] == 0 {
                ready.push(Reverse(dependent.index()));
            }
        }
    }
    // What was never ready is in a cycle or depends on one.
    for i in (0..nodes.len()).filter(|&i| !done[i]) {
        match failure[i].take() {
            Some(error) => plan.failed.push((i, error)),
            None => {
                let because = graph
                    .neighbors_directed(NodeIndex::new(i), petgraph::Direction::Incoming)
                    .map(|d| d.index())
                    .find(|&d| !done[d])
                    .map_or_else(String::new, |d| nodes[d].name.to_owned());
                plan.skipped.push((i, because));
            }
        }
    }
    plan
}

fn version_problem(plugin: &str, dep: &DependencySpec, found: &Version) -> Option<Error> {
    (!dep.version.matches(found)).then(|| Error::DependencyVersion {
        plugin: plugin.to_owned(),
        dependency: dep.name.clone(),
        required: dep.version.to_string(),
        found: found.to_string(),
    })
}

/// A dependency cycle through `start` within one strongly connected component, as names with
/// `start` repeated at the end: `a -> b -> a`. Breadth-first over "depends on" edges, so the
/// shortest such cycle is named.
fn find_cycle(
    nodes: &[Node<'_>],
    index: &HashMap<&str, usize>,
    members: &HashSet<usize>,
    start: usize,
) -> Vec<String> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(i) = queue.pop_front() {
        for dep in nodes[i].dependencies {
            let Some(&j) = index.get(dep.name.as_str()) else {
                continue;
            };
            if !members.contains(&j) {
                continue;
            }
            if j == start {
                let mut path = vec![i];
                let mut at = i;
                while at != start {
                    at = parent[&at];
                    path.push(at);
                }
                path.reverse();
                let mut names: Vec<String> =
                    path.iter().map(|&k| nodes[k].name.to_owned()).collect();
                names.push(nodes[start].name.to_owned());
                return names;
            }
            if j != start && !parent.contains_key(&j) {
                parent.insert(j, i);
                queue.push_back(j);
            }
        }
    }
    vec![nodes[start].name.to_owned()]
}

/// Whether adding the dependencies `deps` to plugin `name` would close a cycle through plugins
/// already loaded (`deps_of` answers their dependencies). Returns the cycle if so.
pub(crate) fn cycle_through(
    name: &str,
    deps: &[DependencySpec],
    deps_of: &dyn Fn(&str) -> Vec<String>,
) -> Option<Vec<String>> {
    let mut parent: HashMap<String, String> = HashMap::new();
    let mut queue: VecDeque<String> = VecDeque::new();
    for d in deps {
        if d.name != name && !parent.contains_key(&d.name) {
            parent.insert(d.name.clone(), name.to_owned());
            queue.push_back(d.name.clone());
        }
    }
    while let Some(at) = queue.pop_front() {
        for next in deps_of(&at) {
            if next == name {
                let mut path = vec![name.to_owned(), at.clone()];
                let mut cur = at;
                while let Some(p) = parent.get(&cur) {
                    if p == name {
                        break;
                    }
                    path.push(p.clone());
                    cur = p.clone();
                }
                // path is name, at, ..., first dep (reversed beyond `name`); put it in order.
                let mut cycle = vec![name.to_owned()];
                cycle.extend(path[1..].iter().rev().cloned());
                cycle.push(name.to_owned());
                return Some(cycle);
            }
            if !parent.contains_key(&next) {
                parent.insert(next.clone(), at.clone());
                queue.push_back(next);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use semver::VersionReq;

    struct Spec {
        name: String,
        version: Version,
        deps: Vec<DependencySpec>,
    }

    fn spec(name: &str, version: &str, deps: &[(&str, &str)]) -> Spec {
        Spec {
            name: name.into(),
            version: Version::parse(version).unwrap(),
            deps: deps
                .iter()
                .map(|(n, r)| DependencySpec {
                    name: (*n).into(),
                    version: VersionReq::parse(r).unwrap(),
                })
                .collect(),
        }
    }

    type Outcome = (Vec<String>, Vec<(String, Error)>, Vec<(String, String)>);

    fn run(specs: &[Spec], loaded: &[(&str, &str)]) -> Outcome {
        let nodes: Vec<Node<'_>> = specs
            .iter()
            .map(|s| Node {
                name: &s.name,
                version: &s.version,
                dependencies: &s.deps,
            })
            .collect();
        let loaded: HashMap<String, Version> = loaded
            .iter()
            .map(|(n, v)| ((*n).to_owned(), Version::parse(v).unwrap()))
            .collect();
        let p = plan(&nodes, &|n| loaded.get(n).cloned());
        (
            p.order.iter().map(|&i| specs[i].name.clone()).collect(),
            p.failed
                .into_iter()
                .map(|(i, e)| (specs[i].name.clone(), e))
                .collect(),
            p.skipped
                .into_iter()
                .map(|(i, d)| (specs[i].name.clone(), d))
                .collect(),
        )
    }

    #[test]
    fn orders_dependencies_first_whatever_the_input_order() {
        let specs = [
            spec("c", "1.0.0", &[("b", "*")]),
            spec("b", "1.0.0", &[("a", "*")]),
            spec("a", "1.0.0", &[]),
        ];
        let (order, failed, skipped) = run(&specs, &[]);
        assert_eq!(order, ["a", "b", "c"]);
        assert!(failed.is_empty() && skipped.is_empty());
    }

    #[test]
    fn independent_plugins_keep_their_input_order() {
        let specs = [
            spec("zeta", "1.0.0", &[]),
            spec("uses-alpha", "1.0.0", &[("alpha", "*")]),
            spec("alpha", "1.0.0", &[]),
            spec("beta", "1.0.0", &[]),
        ];
        let (order, _, _) = run(&specs, &[]);
        assert_eq!(order, ["zeta", "alpha", "uses-alpha", "beta"]);
    }

    #[test]
    fn names_the_cycle_and_skips_dependents() {
        let specs = [
            spec("a", "1.0.0", &[("b", "*")]),
            spec("b", "1.0.0", &[("a", "*")]),
            spec("c", "1.0.0", &[("a", "*")]),
            spec("free", "1.0.0", &[]),
        ];
        let (order, failed, skipped) = run(&specs, &[]);
        assert_eq!(order, ["free"]);
        let a = failed.iter().find(|(n, _)| n == "a").unwrap();
        match &a.1 {
            Error::CircularDependency { cycle } => assert_eq!(cycle, &["a", "b", "a"]),
            other => panic!("{other}"),
        }
        assert_eq!(failed.len(), 2);
        assert_eq!(skipped, [("c".to_owned(), "a".to_owned())]);
    }

    #[test]
    fn longer_cycle_is_named_in_dependency_order() {
        let specs = [
            spec("a", "1.0.0", &[("b", "*")]),
            spec("b", "1.0.0", &[("c", "*")]),
            spec("c", "1.0.0", &[("a", "*")]),
        ];
        let (_, failed, _) = run(&specs, &[]);
        for (name, e) in failed {
            let Error::CircularDependency { cycle } = e else {
                panic!()
            };
            assert_eq!(cycle.first(), Some(&name));
            assert_eq!(cycle.len(), 4, "{cycle:?}");
        }
    }

    #[test]
    fn self_missing_and_version_errors() {
        let specs = [
            spec("selfish", "1.0.0", &[("selfish", "*")]),
            spec("lonely", "1.0.0", &[("ghost", "*")]),
            spec("picky", "1.0.0", &[("base", "^2")]),
            spec("fine", "1.0.0", &[("base", "^1")]),
        ];
        let (order, failed, _) = run(&specs, &[("base", "1.4.0")]);
        assert_eq!(order, ["fine"]);
        let code = |n: &str| {
            failed
                .iter()
                .find(|(x, _)| x == n)
                .unwrap()
                .1
                .code()
                .as_str()
        };
        assert_eq!(code("selfish"), "self_dependency");
        assert_eq!(code("lonely"), "dependency_not_found");
        assert_eq!(code("picky"), "dependency_version_mismatch");
    }

    #[test]
    fn failure_propagates_transitively() {
        let specs = [
            spec("a", "1.0.0", &[("ghost", "*")]),
            spec("b", "1.0.0", &[("a", "*")]),
            spec("c", "1.0.0", &[("b", "*")]),
        ];
        let (order, failed, skipped) = run(&specs, &[]);
        assert!(order.is_empty());
        assert_eq!(failed.len(), 1);
        assert_eq!(skipped.len(), 2);
    }

    #[test]
    fn long_chain_is_linear() {
        let n = 20_000;
        let specs: Vec<Spec> = (0..n)
            .map(|i| {
                let name = format!("p{i}");
                if i == 0 {
                    spec(&name, "1.0.0", &[])
                } else {
                    let dep = format!("p{}", i - 1);
                    spec(&name, "1.0.0", &[(&dep, "*")])
                }
            })
            .rev()
            .collect();
        let (order, failed, _) = run(&specs, &[]);
        assert!(failed.is_empty());
        assert_eq!(order.len(), n);
        assert_eq!(order[0], "p0");
    }

    #[test]
    fn cycle_through_loaded_plugins() {
        let deps: HashMap<&str, Vec<String>> =
            HashMap::from([("b", vec!["c".to_owned()]), ("c", vec!["a".to_owned()])]);
        let new_deps = [DependencySpec {
            name: "b".into(),
            version: VersionReq::STAR,
        }];
        let cycle = cycle_through("a", &new_deps, &|n| {
            deps.get(n).cloned().unwrap_or_default()
        })
        .unwrap();
        assert_eq!(cycle, ["a", "b", "c", "a"]);
        let none = cycle_through("z", &new_deps, &|n| {
            deps.get(n).cloned().unwrap_or_default()
        });
        assert!(none.is_none());
    }
}

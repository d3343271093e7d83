//! Checks the crate's layering (see the crate's opening): reads every `src/*.rs`, collects the
//! `crate::<module>` names each one uses, and proves that no route module names another, that no
//! module below the routes names a route, and that the module graph has no cycle.

use std::collections::{BTreeMap, BTreeSet};

/// The route modules: HTTP handlers, none of which may name another.
const ROUTES: &[&str] = &["admin", "agent", "oauth", "proxy", "mcp", "settings", "ui"];
/// Above the routes: they assemble, document and run them.
const TOP: &[&str] = &["lib", "router", "openapi", "owner", "layers"];

/// `module -> modules it names as crate::<module>`, for every file in `src/`.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("src/ is readable")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    let mut out = BTreeMap::new();
    for m in &modules {
        let text = std::fs::read_to_string(dir.join(format!("{m}.rs"))).expect("readable");
        let mut named = BTreeSet::new();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let mut uses: Vec<&str> = Vec::new();
            if let Some(list) = rest.strip_prefix('{') {
                // `use crate::{a, b::C};`
                let list = &list[..list.find('}').unwrap_or(list.len())];
                uses.extend(
                    list.split(',')
                        .map(|s| s.trim().split("::").next().unwrap_or("")),
                );
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                uses.push(&rest[..end]);
            }
            for u in uses {
                if u != *m && modules.contains(u) {
                    named.insert(u.to_owned());
                }
            }
        }
        out.insert(m.clone(), named);
    }
    out
}

#[test]
fn no_route_names_another_and_nothing_below_names_a_route() {
    let edges = edges();
    let mut listing = String::new();
    for (m, named) in &edges {
        let named: Vec<&str> = named.iter().map(String::as_str).collect();
        listing.push_str(&format!("{m} -> {}\n", named.join(" ")));
    }
    // `cargo test -p akhrot-server layers -- --nocapture` prints the graph.
    println!("{listing}");
    for (m, named) in &edges {
        if TOP.contains(&m.as_str()) {
            continue;
        }
        for n in named {
            assert!(
                !ROUTES.contains(&n.as_str()),
                "`{m}` names the route module `{n}`: move what both need into a module below the routes"
            );
            assert!(
                !TOP.contains(&n.as_str()),
                "`{m}` names `{n}`, which sits above it"
            );
        }
    }
}

#[test]
fn the_module_graph_has_no_cycle() {
    let edges = edges();
    // Depth-first search; `lib` names every module by `mod`, not `crate::`, so it is a plain node.
    fn visit<'a>(
        m: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = path.iter().position(|p| *p == m) {
            panic!("a cycle: {} -> {m}", path[at..].join(" -> "));
        }
        path.push(m);
        for n in edges.get(m).into_iter().flatten() {
            visit(n, edges, path, done);
        }
        path.pop();
        done.insert(m);
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        visit(m, &edges, &mut Vec::new(), &mut done);
    }
}

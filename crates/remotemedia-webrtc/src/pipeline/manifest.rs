//! Pipeline manifests: parsing (YAML or JSON), validation, and the execution order.
//!
//! ```yaml
//! nodes:
//!   - { id: input, node_type: Input }
//!   - { id: vad, node_type: VoiceActivityDetection, params: { threshold_db: -40 } }
//!   - { id: output, node_type: Output }
//! connections:
//!   - { from: input, to: vad }
//!   - { from: vad, to: output }
//! ```
//!
//! Every validation error is [`Error::InvalidManifest`] with a message naming the node or the
//! connection at fault.
//!
//! Work bounds ([`ManifestLimits`], defaults [`MAX_NODES`], [`MAX_CONNECTIONS`], [`MAX_PATHS`]):
//! a frame is copied along every path from an `Input` node, so a small manifest of
//! cross-wired layers could make 2^n copies of one frame. Validation counts those paths (one
//! pass over the DAG, never enumerating them) and refuses a manifest with more than
//! `max_paths`. Files are read with [`Manifest::from_file`]: regular files only (no `/dev/zero`,
//! no FIFO: opened non-blocking and checked with fstat), at most [`MAX_MANIFEST_BYTES`].

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::nodes::{builtin_type, BUILTIN_TYPES};
use crate::error::{Error, Result};

/// One node of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub id: String,
    pub node_type: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub params: Map<String, Value>,
}

/// A connection: frames `from` one node go `to` another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub from: String,
    pub to: String,
}

/// A pipeline description. Serializes back to the same JSON shape (for snapshots).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default, deserialize_with = "null_as_default")]
    pub nodes: Vec<NodeSpec>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub connections: Vec<Edge>,
}

/// `params:` / `nodes:` with nothing after them (YAML null) mean empty.
fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Default most nodes in a manifest.
pub const MAX_NODES: usize = 256;
/// Default most connections in a manifest.
pub const MAX_CONNECTIONS: usize = 4096;
/// Default most node runs one input frame may cause: the number of paths from the `Input`
/// nodes to every node, summed (each path carries one copy of the frame).
pub const MAX_PATHS: u64 = 1024;
/// Most bytes [`Manifest::from_file`] reads.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// How big a manifest may be (see the module header). `Default` gives the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestLimits {
    pub max_nodes: usize,
    pub max_connections: usize,
    pub max_paths: u64,
}

impl Default for ManifestLimits {
    fn default() -> Self {
        ManifestLimits {
            max_nodes: MAX_NODES,
            max_connections: MAX_CONNECTIONS,
            max_paths: MAX_PATHS,
        }
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidManifest(msg.into())
}

impl Manifest {
    /// Parses JSON (text starting with `{`) or YAML. Only the shape is checked here; call
    /// [`Manifest::validate`] before use.
    pub fn parse(text: &str) -> Result<Manifest> {
        if text.trim_start().starts_with('{') {
            Manifest::parse_json(text)
        } else {
            Manifest::parse_yaml(text)
        }
    }

    pub fn parse_json(text: &str) -> Result<Manifest> {
        serde_json::from_str(text).map_err(|e| invalid(format!("not a valid JSON manifest: {e}")))
    }

    pub fn parse_yaml(text: &str) -> Result<Manifest> {
        serde_yaml::from_str(text).map_err(|e| invalid(format!("not a valid YAML manifest: {e}")))
    }

    /// Reads and parses a file: `.json` as JSON, `.yaml` / `.yml` as YAML, anything else by
    /// content.
    /// Only regular files of at most [`MAX_MANIFEST_BYTES`]; a device or FIFO is refused
    /// without reading from it (and without blocking on a FIFO with no writer).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Manifest> {
        let path = path.as_ref();
        let text = read_capped(path, MAX_MANIFEST_BYTES)
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let parsed = match ext.as_deref() {
            Some("json") => Manifest::parse_json(&text),
            Some("yaml" | "yml") => Manifest::parse_yaml(&text),
            _ => Manifest::parse(&text),
        };
        parsed.map_err(|e| match e {
            Error::InvalidManifest(m) => invalid(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Index of the node with this id.
    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Checks the manifest: at least one node; unique, non-empty ids; known node types
    /// (built-in, or one of `custom_types`, whose params are not checked); built-in params per
    /// their table; connections between existing nodes, none repeated, none into an `Input`;
    /// an `Input` and an `Output` node; no cycle.
    /// Also the [`ManifestLimits::default`] bounds.
    pub fn validate(&self, custom_types: &BTreeSet<String>) -> Result<()> {
        self.validate_with(custom_types, &ManifestLimits::default())
    }

    /// [`Manifest::validate`] with other bounds.
    pub fn validate_with(
        &self,
        custom_types: &BTreeSet<String>,
        limits: &ManifestLimits,
    ) -> Result<()> {
        if self.nodes.is_empty() {
            return Err(invalid("manifest has no nodes"));
        }
        if self.nodes.len() > limits.max_nodes {
            return Err(invalid(format!(
                "manifest has {} nodes, more than the limit of {}",
                self.nodes.len(),
                limits.max_nodes
            )));
        }
        if self.connections.len() > limits.max_connections {
            return Err(invalid(format!(
                "manifest has {} connections, more than the limit of {}",
                self.connections.len(),
                limits.max_connections
            )));
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.id.trim().is_empty() {
                return Err(invalid(format!("node #{} has an empty id", i + 1)));
            }
            if let Some(first) = seen.insert(n.id.as_str(), i) {
                return Err(invalid(format!(
                    "duplicate node id '{}' (nodes #{} and #{})",
                    n.id,
                    first + 1,
                    i + 1
                )));
            }
            match builtin_type(&n.node_type) {
                Some(spec) => spec
                    .check_params(&n.params)
                    .map_err(|m| invalid(format!("node '{}' ({}): {m}", n.id, n.node_type)))?,
                None if custom_types.contains(&n.node_type) => {}
                None => {
                    let builtins: Vec<_> = BUILTIN_TYPES.iter().map(|t| t.name).collect();
                    let mut msg = format!(
                        "node '{}': unknown node_type '{}' (built-in: {}",
                        n.id,
                        n.node_type,
                        builtins.join(", ")
                    );
                    if !custom_types.is_empty() {
                        let custom: Vec<_> = custom_types.iter().map(String::as_str).collect();
                        msg.push_str(&format!("; registered: {}", custom.join(", ")));
                    }
                    msg.push(')');
                    return Err(invalid(msg));
                }
            }
        }
        let mut edges = BTreeSet::new();
        for (i, e) in self.connections.iter().enumerate() {
            let name = format!("connection #{} ({} -> {})", i + 1, e.from, e.to);
            for end in [&e.from, &e.to] {
                if !seen.contains_key(end.as_str()) {
                    return Err(invalid(format!("{name}: unknown node '{end}'")));
                }
            }
            if !edges.insert((e.from.as_str(), e.to.as_str())) {
                return Err(invalid(format!("{name}: duplicate connection")));
            }
            if self.nodes[seen[e.to.as_str()]].node_type == "Input" {
                return Err(invalid(format!(
                    "{name}: node '{}' is an Input and takes no connections in",
                    e.to
                )));
            }
        }
        for required in ["Input", "Output"] {
            if !self.nodes.iter().any(|n| n.node_type == required) {
                return Err(invalid(format!("manifest has no {required} node")));
            }
        }
        let order = self.execution_order()?;
        let paths = self.path_count(&order);
        if paths > limits.max_paths {
            return Err(invalid(format!(
                "one frame would run {} node(s) (paths from the Input nodes), more than the limit of {}",
                if paths == u64::MAX {
                    "more than 2^64".to_string()
                } else {
                    paths.to_string()
                },
                limits.max_paths
            )));
        }
        Ok(())
    }

    /// The number of paths from the `Input` nodes to every node, summed (saturating): how many
    /// node runs (frame copies) one frame fed to every `Input` causes. `order` is a
    /// topological order. Dynamic programming over the DAG: O(nodes + connections).
    pub fn path_count(&self, order: &[usize]) -> u64 {
        let index: HashMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let mut succ = vec![Vec::new(); self.nodes.len()];
        for e in &self.connections {
            if let (Some(&a), Some(&b)) = (index.get(e.from.as_str()), index.get(e.to.as_str())) {
                succ[a].push(b);
            }
        }
        let mut paths: Vec<u64> = self
            .nodes
            .iter()
            .map(|n| u64::from(n.node_type == "Input"))
            .collect();
        let mut total = 0u64;
        for &i in order {
            total = total.saturating_add(paths[i]);
            for &j in &succ[i] {
                paths[j] = paths[j].saturating_add(paths[i]);
            }
        }
        total
    }

    /// Node indices in execution order: topological (Kahn's algorithm), ties broken by manifest
    /// order, so the order is deterministic. [`Error::InvalidManifest`] naming a node on a cycle
    /// (with the cycle) or a connection to an unknown node.
    pub fn execution_order(&self) -> Result<Vec<usize>> {
        let n = self.nodes.len();
        let index: HashMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let mut succ = vec![Vec::new(); n];
        let mut indeg = vec![0usize; n];
        for e in &self.connections {
            let (Some(&a), Some(&b)) = (index.get(e.from.as_str()), index.get(e.to.as_str()))
            else {
                return Err(invalid(format!(
                    "connection {} -> {}: unknown node",
                    e.from, e.to
                )));
            };
            succ[a].push(b);
            indeg[b] += 1;
        }
        // Ready nodes, smallest manifest index first.
        let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &j in &succ[i] {
                indeg[j] -= 1;
                if indeg[j] == 0 {
                    ready.insert(j);
                }
            }
        }
        if order.len() == n {
            return Ok(order);
        }
        // Every node left has a predecessor that is also left: walking predecessors from the
        // first one must come back around, and the loop it closes is a cycle.
        let left: Vec<bool> = (0..n).map(|i| indeg[i] > 0).collect();
        let mut pred_left = vec![None; n];
        for (a, s) in succ.iter().enumerate() {
            for &b in s {
                if left[a] && left[b] && pred_left[b].is_none() {
                    pred_left[b] = Some(a);
                }
            }
        }
        let start = left.iter().position(|&l| l).expect("some node is left");
        let mut path = vec![start];
        let mut at = start;
        let cycle = loop {
            at = pred_left[at].expect("a left node has a left predecessor");
            if let Some(k) = path.iter().position(|&p| p == at) {
                break path[k..].to_vec();
            }
            path.push(at);
        };
        // `cycle` follows predecessors; print it in edge direction, from its first node in
        // manifest order.
        let mut fwd: Vec<usize> = cycle.into_iter().rev().collect();
        let lead = fwd
            .iter()
            .enumerate()
            .min_by_key(|(_, &i)| i)
            .map(|(k, _)| k)
            .unwrap_or(0);
        fwd.rotate_left(lead);
        let names: Vec<&str> = fwd
            .iter()
            .chain(fwd.first())
            .map(|&i| self.nodes[i].id.as_str())
            .collect();
        Err(invalid(format!(
            "cycle through node '{}': {}",
            names[0],
            names.join(" -> ")
        )))
    }
}

/// Reads `path` as UTF-8 text if it is a regular file of at most `cap` bytes. Opened with
/// `O_NONBLOCK` (a FIFO with no writer does not block the open), checked with fstat before any
/// read, and read through `take(cap + 1)` (a file that grows while read is still refused).
fn read_capped(path: &Path, cap: u64) -> std::io::Result<String> {
    use std::io::{Error as IoError, ErrorKind, Read};
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(IoError::new(
            ErrorKind::InvalidInput,
            "not a regular file (devices, FIFOs and directories are refused)",
        ));
    }
    if meta.len() > cap {
        return Err(IoError::new(
            ErrorKind::InvalidInput,
            format!("{} bytes, more than the limit of {cap}", meta.len()),
        ));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(IoError::new(
            ErrorKind::InvalidInput,
            format!("more than the limit of {cap} bytes"),
        ));
    }
    String::from_utf8(buf).map_err(|_| IoError::new(ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(yaml: &str) -> Manifest {
        Manifest::parse(yaml).unwrap()
    }

    fn msg(r: Result<()>) -> String {
        match r {
            Err(Error::InvalidManifest(m)) => m,
            other => panic!("expected InvalidManifest, got {other:?}"),
        }
    }

    const LINEAR: &str = "
nodes:
  - { id: in, node_type: Input }
  - { id: g, node_type: Gain, params: { gain_db: -6 } }
  - { id: out, node_type: Output }
connections:
  - { from: in, to: g }
  - { from: g, to: out }
";

    #[test]
    fn yaml_and_json_parse_to_the_same_manifest() {
        let json = r#"{"nodes":[{"id":"in","node_type":"Input"},
            {"id":"g","node_type":"Gain","params":{"gain_db":-6}},
            {"id":"out","node_type":"Output","params":null}],
            "connections":[{"from":"in","to":"g"},{"from":"g","to":"out"}]}"#;
        let a = m(LINEAR);
        assert_eq!(a, Manifest::parse(json).unwrap());
        assert_eq!(a.nodes[1].params["gain_db"], -6);
        assert!(a.nodes[0].params.is_empty());
        a.validate(&BTreeSet::new()).unwrap();
        // Round trip through JSON (snapshots).
        let back: Manifest = serde_json::from_value(serde_json::to_value(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn malformed_text_is_invalid_manifest() {
        for bad in [
            "nodes: [ { id: a",
            "{\"nodes\": 3}",
            "nodes:\n  - { id: a, type: Input }",
            "nodes:\n  - { id: a }",
            "edges: []",
        ] {
            assert!(
                matches!(Manifest::parse(bad), Err(Error::InvalidManifest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn from_file_picks_the_format_by_extension_and_names_the_file() {
        let dir = std::env::temp_dir().join(format!("rm-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("p.json");
        std::fs::write(&json, serde_json::to_string(&m(LINEAR)).unwrap()).unwrap();
        assert_eq!(Manifest::from_file(&json).unwrap(), m(LINEAR));
        let yml = dir.join("p.yml");
        std::fs::write(&yml, LINEAR).unwrap();
        assert_eq!(Manifest::from_file(&yml).unwrap(), m(LINEAR));
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "nodes: {").unwrap();
        let e = Manifest::from_file(&bad).unwrap_err();
        assert!(e.to_string().contains("bad.yaml"), "{e}");
        let missing = Manifest::from_file(dir.join("nope.yaml")).unwrap_err();
        assert_eq!(missing.code(), "ERR_INVALID_MANIFEST");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// One case per error kind: (what, manifest, text the message must contain).
    #[test]
    fn validation_table_names_the_node_or_connection() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("empty", "nodes: []", &["no nodes"]),
            (
                "unknown type",
                "nodes: [{id: in, node_type: Input}, {id: x, node_type: Reverb}, {id: out, node_type: Output}]",
                &["node 'x'", "unknown node_type 'Reverb'"],
            ),
            (
                "missing param",
                "nodes: [{id: in, node_type: Input}, {id: rs, node_type: Resample}, {id: out, node_type: Output}]",
                &["node 'rs'", "missing required param 'target_rate'"],
            ),
            (
                "missing one-of param",
                "nodes: [{id: in, node_type: Input}, {id: g1, node_type: Gain}, {id: out, node_type: Output}]",
                &["node 'g1'", "gain_db"],
            ),
            (
                "out of range",
                "nodes: [{id: in, node_type: Input}, {id: loud, node_type: Gain, params: {gain_db: 100}}, {id: out, node_type: Output}]",
                &["node 'loud'", "'gain_db'", "out of range"],
            ),
            (
                "wrong type",
                "nodes: [{id: in, node_type: Input}, {id: vad1, node_type: VoiceActivityDetection, params: {threshold_db: loud}}, {id: out, node_type: Output}]",
                &["node 'vad1'", "'threshold_db'", "must be a number"],
            ),
            (
                "odd video size",
                "nodes: [{id: in, node_type: Input}, {id: sd, node_type: VideoScale, params: {width: 639, height: 360}}, {id: out, node_type: Output}]",
                &["node 'sd'", "'width'", "even"],
            ),
            (
                "unknown param",
                "nodes: [{id: in, node_type: Input, params: {rate: 1}}, {id: out, node_type: Output}]",
                &["node 'in'", "unknown param 'rate'"],
            ),
            (
                "duplicate id",
                "nodes: [{id: in, node_type: Input}, {id: out, node_type: Output}, {id: in, node_type: Passthrough}]",
                &["duplicate node id 'in'", "#1", "#3"],
            ),
            (
                "empty id",
                "nodes: [{id: '', node_type: Input}]",
                &["node #1", "empty id"],
            ),
            (
                "dangling from",
                "nodes: [{id: in, node_type: Input}, {id: out, node_type: Output}]\nconnections: [{from: mic, to: out}]",
                &["connection #1 (mic -> out)", "unknown node 'mic'"],
            ),
            (
                "dangling to",
                "nodes: [{id: in, node_type: Input}, {id: out, node_type: Output}]\nconnections: [{from: in, to: out}, {from: in, to: speaker}]",
                &["connection #2 (in -> speaker)", "unknown node 'speaker'"],
            ),
            (
                "duplicate edge",
                "nodes: [{id: in, node_type: Input}, {id: out, node_type: Output}]\nconnections: [{from: in, to: out}, {from: in, to: out}]",
                &["connection #2 (in -> out)", "duplicate"],
            ),
            (
                "edge into input",
                "nodes: [{id: in, node_type: Input}, {id: out, node_type: Output}]\nconnections: [{from: out, to: in}]",
                &["connection #1 (out -> in)", "Input"],
            ),
            (
                "cycle",
                "nodes: [{id: in, node_type: Input}, {id: a, node_type: Passthrough}, {id: b, node_type: Passthrough}, {id: c, node_type: Passthrough}, {id: out, node_type: Output}]\nconnections: [{from: in, to: a}, {from: a, to: b}, {from: b, to: c}, {from: c, to: a}, {from: c, to: out}]",
                &["cycle through node 'a'", "a -> b -> c -> a"],
            ),
            (
                "self loop",
                "nodes: [{id: in, node_type: Input}, {id: loop, node_type: Passthrough}, {id: out, node_type: Output}]\nconnections: [{from: in, to: loop}, {from: loop, to: loop}, {from: loop, to: out}]",
                &["cycle through node 'loop'", "loop -> loop"],
            ),
            (
                "no input",
                "nodes: [{id: p, node_type: Passthrough}, {id: out, node_type: Output}]",
                &["no Input node"],
            ),
            (
                "no output",
                "nodes: [{id: in, node_type: Input}, {id: p, node_type: Passthrough}]",
                &["no Output node"],
            ),
        ];
        for (what, text, wants) in cases {
            let e = msg(m(text).validate(&BTreeSet::new()));
            for want in *wants {
                assert!(e.contains(want), "{what}: {e:?} lacks {want:?}");
            }
        }
    }

    #[test]
    fn registered_custom_types_are_accepted_with_any_params() {
        let text = "nodes: [{id: in, node_type: Input}, {id: js, node_type: MyNode, params: {anything: [1, 2]}}, {id: out, node_type: Output}]\nconnections: [{from: in, to: js}, {from: js, to: out}]";
        let e = msg(m(text).validate(&BTreeSet::new()));
        assert!(e.contains("unknown node_type 'MyNode'"), "{e}");
        let custom = BTreeSet::from(["MyNode".to_string()]);
        m(text).validate(&custom).unwrap();
    }

    #[test]
    fn execution_order_is_topological_with_ties_in_manifest_order() {
        // Diamond plus a side branch, listed out of order.
        let text = "
nodes:
  - { id: out, node_type: Output }
  - { id: mix, node_type: Passthrough }
  - { id: right, node_type: Passthrough }
  - { id: left, node_type: Passthrough }
  - { id: in, node_type: Input }
  - { id: side, node_type: Passthrough }
connections:
  - { from: in, to: left }
  - { from: in, to: right }
  - { from: left, to: mix }
  - { from: right, to: mix }
  - { from: mix, to: out }
  - { from: side, to: out }
";
        let man = m(text);
        man.validate(&BTreeSet::new()).unwrap();
        let ids: Vec<_> = man
            .execution_order()
            .unwrap()
            .into_iter()
            .map(|i| man.nodes[i].id.as_str())
            .collect();
        // Ready at first: in (#5), side (#6) → in first; then right (#3) before left (#4).
        assert_eq!(ids, ["in", "right", "left", "mix", "side", "out"]);
        // Every connection goes forward in the order.
        let pos = |id: &str| ids.iter().position(|&x| x == id).unwrap();
        assert!(man.connections.iter().all(|e| pos(&e.from) < pos(&e.to)));
    }
}
